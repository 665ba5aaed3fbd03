"""``gluon-ssd detect`` and ``gluon-ssd export`` through the command line, with a random demo SSD:
files written, COCO-layout JSON, counts of skipped and unreadable inputs, exit statuses."""
import json
from dataclasses import replace

import matplotlib.cbook
import matplotlib.figure
import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from PIL import Image
from pycocotools.coco import COCO

from gluon_ssd import get_model
from gluon_ssd.checkpoint import load_checkpoint, save_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.detect import load_detector
from gluon_ssd.model import DetectionNet
from gluon_ssd.presets import get_preset

CLASSES = ("circle", "square")
PHOTO = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)  # 600 x 512


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random demo SSD's checkpoint, trained (nominally) at 96x96."""
    mx.random.seed(0)
    path = tmp_path_factory.mktemp("model") / "checkpoint.params"
    save_checkpoint(str(path), get_model("demo", CLASSES), {"preset": "demo", "image_size": 96})
    return path


def load_document(folder):
    with open(folder / "detections.json") as f:
        return json.load(f)


def test_detect_on_a_real_photo_writes_an_annotated_png_and_coco_json(checkpoint, tmp_path,
                                                                      capsys):
    out = tmp_path / "out"
    status, stdout, _ = run(capsys, "detect", checkpoint, PHOTO, "-o", out, "--threshold", 0.0,
                            "--quiet")
    assert status == 0
    assert "1 image(s)" in stdout and "detections.json" in stdout
    with Image.open(out / "grace_hopper.png") as png:
        assert png.format == "PNG" and png.width > 100
    document = load_document(out)
    assert document["categories"] == [{"id": 0, "name": "circle"}, {"id": 1, "name": "square"}]
    assert document["images"] == [{"id": 0, "file_name": PHOTO, "height": 600, "width": 512}]
    rows = document["detections"]
    # threshold 0: every non-empty row the network itself outputs for the photo
    model = load_detector(str(checkpoint))
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    ids = model.net(model.preprocess(photo).expand_dims(0))[0].asnumpy()
    assert len(rows) == int((ids >= 0).sum()) > 0
    for row in rows:
        x, y, w, h = row["bbox"]
        assert row["image_id"] == 0 and row["category_id"] in (0, 1) and 0 <= row["score"] <= 1
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0
        assert x + w <= 512 + 0.01 and y + h <= 600 + 0.01  # the photo's pixels, not the model's
    assert max(r["bbox"][0] + r["bbox"][2] for r in rows) > 96  # so not the 96x96 input's
    gt = COCO()
    gt.dataset = {"images": document["images"], "categories": document["categories"],
                  "annotations": []}
    gt.createIndex()
    assert len(gt.loadRes(rows).getAnnIds()) == len(rows)


def test_folder_with_bad_and_non_image_files_processes_the_rest(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.RandomState(0)
    Image.fromarray(rng.randint(0, 256, (50, 90, 3)).astype(np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.randint(0, 256, (70, 40)).astype(np.uint8)).save(folder / "gray.jpg")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    status, stdout, stderr = run(capsys, "detect", checkpoint, folder, tmp_path / "missing.png",
                                 "-o", out, "--threshold", 0.0, "--batch-size", 2, "--quiet")
    assert status == 0
    assert "corrupt.jpg" in stderr and "missing.png" in stderr
    assert "2 image(s)" in stdout
    assert "2 unreadable image(s), 1 non-image folder entries skipped" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "gray.png", "wide.png"]
    document = load_document(out)
    assert [(i["file_name"], i["height"], i["width"]) for i in document["images"]] == [
        (str(folder / "gray.jpg"), 70, 40), (str(folder / "wide.png"), 50, 90)]
    assert [f["file_name"] for f in document["failed"]] == [str(folder / "corrupt.jpg"),
                                                            str(tmp_path / "missing.png")]
    assert document["skipped"] == [str(folder / "notes.txt")]


def test_truncated_jpeg_is_detected_named_and_counted(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    with open(PHOTO, "rb") as f:
        data = f.read()
    (folder / "cut.jpg").write_bytes(data[:int(len(data) * 0.4)])  # a partial copy
    (folder / "whole.jpg").write_bytes(data)
    out = tmp_path / "out"
    status, stdout, stderr = run(capsys, "detect", checkpoint, folder, "-o", out, "--quiet")
    assert status == 0
    assert "truncated image " + str(folder / "cut.jpg") in stderr
    assert "2 image(s)" in stdout and "1 truncated image(s)" in stdout
    document = load_document(out)
    assert document["truncated"] == [str(folder / "cut.jpg")] and document["failed"] == []
    assert len(document["images"]) == 2  # detected on what could be decoded


def test_nothing_readable_is_an_error_with_the_counts(checkpoint, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"")
    (folder / "readme.md").write_text("hi")
    status, _, stderr = run(capsys, "detect", checkpoint, folder, "-o", tmp_path / "out",
                            "--quiet")
    assert status == 2
    assert "broken.png" in stderr
    assert "no image could be processed (1 unreadable image(s), 1 non-image" in stderr


@pytest.mark.parametrize("argv, message", [
    (["--classes", "cat", "dog"], "has 2 classes ['circle', 'square'], expected 2 ['cat', 'dog']"),
    (["--preset", "ssd300"], "is a model of preset 'demo', not 'ssd300_vgg16'"),
    (["--threshold", "2"], "--threshold: must be a finite number in [0, 1], got '2'"),
    (["--threshold", "nan"], "--threshold: must be a finite number in [0, 1], got 'nan'"),
    (["--topk", "0"], "--topk: must be an integer in 1..100000, got '0'"),
    (["--decoder", "best"], "--decoder: invalid choice: 'best'"),
])
def test_bad_arguments_are_one_line_errors(checkpoint, tmp_path, capsys, argv, message):
    status, _, stderr = run(capsys, "detect", checkpoint, PHOTO, "-o", tmp_path, *argv)
    assert status == 2
    assert message in stderr and len(stderr.strip().splitlines()) == 1


def test_missing_checkpoint_is_named(tmp_path, capsys):
    status, _, stderr = run(capsys, "detect", tmp_path / "none.params", PHOTO, "-o", tmp_path)
    assert status == 2 and "none.params: no such checkpoint file, export prefix" in stderr


def test_decoding_flags_change_the_detections(checkpoint, tmp_path, capsys):
    def boxes(*flags):
        out = tmp_path / "_".join(map(str, flags or ["default"]))
        assert run(capsys, "detect", checkpoint, PHOTO, "-o", out, "--threshold", 0.0,
                   "--quiet", *flags)[0] == 0
        return load_document(out)["detections"]

    assert len(boxes("--max-detections", 7)) == 7
    default, strict = boxes(), boxes("--nms", 0.05, "--force-suppress")
    assert len(strict) < len(default)


def test_export_reimports_with_plain_symbol_block(checkpoint, tmp_path, capsys):
    prefix = tmp_path / "exported" / "demo"
    status, stdout, _ = run(capsys, "export", checkpoint, "-o", prefix, "--image-size", "96x128",
                            "--nms", 0.3, "--threshold", 0.0)
    assert status == 0 and f"{prefix}-symbol.json" in stdout
    with open(f"{prefix}-meta.json") as f:
        meta = json.load(f)
    assert meta["preset"] == "demo" and meta["classes"] == list(CLASSES)
    assert meta["input"]["image_size"] == [96, 128]
    assert "minus mean, divided by std" in meta["input"]["preprocessing"]
    assert meta["detect"]["nms_threshold"] == 0.3 and meta["detect"]["score_threshold"] == 0.0
    block = gluon.SymbolBlock.imports(f"{prefix}-symbol.json", ["data"], f"{prefix}-0000.params")
    ssd, _ = load_checkpoint(str(checkpoint))
    live = DetectionNet(ssd, replace(get_preset("demo").detect, nms_threshold=0.3,
                                     score_threshold=0.0))
    x = mx.nd.array(np.random.RandomState(2).normal(size=(2, 3, 96, 128)).astype(np.float32))
    for a, b in zip(block(x), live(x)):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size, message", [(["0x5"], "--image-size"), (["1", "2", "3"], "'1 2 3'")])
def test_export_bad_size_and_export_input_are_errors(checkpoint, tmp_path, capsys, size, message):
    status, _, stderr = run(capsys, "export", checkpoint, "-o", tmp_path / "x", "--image-size",
                            *size)
    assert status == 2 and message in stderr


def test_default_export_detects_like_its_checkpoint_and_is_not_exported_again(
        checkpoint, tmp_path, capsys):
    prefix = tmp_path / "first"
    assert run(capsys, "export", checkpoint, "-o", prefix)[0] == 0
    with open(f"{prefix}-meta.json") as f:
        assert json.load(f)["input"]["image_size"] == [96, 96]  # the checkpoint's training size
    for source, out in ((checkpoint, tmp_path / "a"), (prefix, tmp_path / "b")):
        assert run(capsys, "detect", source, PHOTO, "-o", out, "--threshold", 0.0, "--nms", 0.3,
                   "--quiet")[0] == 0
    a, b = load_document(tmp_path / "a")["detections"], load_document(tmp_path / "b")["detections"]
    assert [r["category_id"] for r in a] == [r["category_id"] for r in b]
    np.testing.assert_allclose([r["bbox"] for r in a], [r["bbox"] for r in b], atol=0.02)
    status, _, stderr = run(capsys, "export", prefix, "-o", tmp_path / "second")
    assert status == 2 and "is an export; export takes a checkpoint file" in stderr


# ---------------------------------------------------------------------------------------------
# detect never overwrites (issue 20): not an input, not an earlier run's output, not each other.

def _snapshot(folder):
    """Every file under ``folder``: relative path -> bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _photos(folder):
    """``a.png``, ``b.png`` and ``a.jpg`` (its stem is ``a.png``'s) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(1)
    for name in ("a.png", "b.png", "a.jpg"):
        Image.fromarray(rng.randint(0, 256, (40, 60, 3)).astype(np.uint8)).save(folder / name)
    return folder


@pytest.mark.parametrize("inputs", [["p"], ["p/a.jpg"], ["p/a.png", "p/b.png"]])
def test_detect_onto_the_input_folder_is_refused_and_changes_nothing(checkpoint, tmp_path,
                                                                     capsys, inputs):
    folder = _photos(tmp_path / "p")
    before = _snapshot(tmp_path)
    status, out, err = run(capsys, "detect", checkpoint, *[tmp_path / i for i in inputs],
                           "-o", folder, "--quiet")
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"the output folder {folder} holds the input image" in err
    assert _snapshot(tmp_path) == before


def test_colliding_stems_get_distinct_pngs(checkpoint, tmp_path, capsys):
    folder = _photos(tmp_path / "p")
    inputs = _snapshot(folder)
    out = tmp_path / "out"
    assert run(capsys, "detect", checkpoint, folder, "-o", out, "--threshold", 0, "--quiet")[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["a-2.png", "a.png", "b.png",
                                                     "detections.json"]
    assert [i["file_name"] for i in load_document(out)["images"]] == [
        str(folder / n) for n in ("a.jpg", "a.png", "b.png")]  # a.jpg -> a.png, a.png -> a-2.png
    assert _snapshot(folder) == inputs


@pytest.mark.parametrize("earlier", ["detections.json", "a.png", "a-2.png"])
def test_an_earlier_output_is_never_overwritten(checkpoint, tmp_path, capsys, earlier):
    folder = _photos(tmp_path / "p")
    out = tmp_path / "out"
    out.mkdir()
    (out / earlier).write_bytes(b"an earlier run's file")
    (out / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    status, _, err = run(capsys, "detect", checkpoint, folder, "-o", out, "--quiet")
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f"{out / earlier} exists already" in err
    assert _snapshot(tmp_path) == before


def test_a_file_appearing_during_the_run_is_not_overwritten(checkpoint, tmp_path):
    """Each output is created exclusively: one made after the check still stands."""
    from gluon_ssd.report import write_detections

    folder = _photos(tmp_path / "p")
    out = tmp_path / "out"
    out.mkdir()
    detector = load_detector(str(checkpoint))
    real = matplotlib.figure.Figure.savefig

    def savefig(fig, *args, **kwargs):
        (out / "detections.json").write_text("someone else's")  # appears meanwhile
        return real(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", savefig)
        with pytest.raises(FileExistsError):
            write_detections(detector, [str(folder / "a.png")], out, 0.5)
    assert (out / "detections.json").read_text() == "someone else's"
