"""Bad inputs to every command: exit status 2 and ONE line on stderr naming the argument or the
file, never a traceback (issue 20).

Every case of :data:`CASES` runs through the console script (``python -m gluon_ssd.cli``) in a
subprocess, so that no traceback can hide behind pytest, and in this process through ``main``
(stdout and stderr captured at the file descriptors, so MXNet's own messages would show), where
the earlier run's files are also checked byte-identical after each case. The bad files are built here, small: a
random demo checkpoint, its export, VOC and COCO folders of two images.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import cv2
import mxnet as mx
import numpy as np
import pytest

import gluon_ssd.train  # noqa: F401  (imported here, so import-time warnings stay out of capfd)
from gluon_ssd import get_model
from gluon_ssd.checkpoint import save_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.detect import load_detector
from gluon_ssd.export import export_model
from gluon_ssd.presets import DEMO_ANCHORS

CLASSES = ("circle", "square")
TINY = ["--image-size", "64", "--train-size", "16", "--val-size", "8", "--batch-size", "8",
        "--epochs", "1", "--quiet"]


def _image(path, height=60, width=80):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), (0, 128, 255), np.uint8))


def _voc(root, xmin="10"):
    """A VOC-format folder: two images, the first box's xmin as given."""
    for i, name in enumerate(("a", "b")):
        _image(root / "JPEGImages" / f"{name}.jpg")
        os.makedirs(root / "Annotations", exist_ok=True)
        x = xmin if i == 0 else "10"
        (root / "Annotations" / f"{name}.xml").write_text(
            "<annotation><size><width>80</width><height>60</height><depth>3</depth></size>"
            f"<object><name>{CLASSES[i]}</name><difficult>0</difficult><bndbox><xmin>{x}</xmin>"
            "<ymin>10</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>")
    os.makedirs(root / "ImageSets" / "Main", exist_ok=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("a\nb\n")


def _coco(root, change=None, text=None, splits=("val2017",)):
    """A COCO folder with ``splits`` (each the same two images); ``change(document)`` edits the
    annotations, ``text`` replaces the file."""
    images = [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60},
              {"id": 2, "file_name": "b.jpg", "width": 80, "height": 60}]
    document = {"images": images,
                "annotations": [{"id": 11, "image_id": 1, "category_id": 1,
                                 "bbox": [10, 5, 20, 30], "area": 600, "iscrowd": 0},
                                {"id": 12, "image_id": 2, "category_id": 2,
                                 "bbox": [5, 5, 30, 30], "area": 900, "iscrowd": 0}],
                "categories": [{"id": 1, "name": CLASSES[0]}, {"id": 2, "name": CLASSES[1]}]}
    if change:
        change(document)
    os.makedirs(root / "annotations")
    for split in splits:
        for entry in images:
            _image(root / split / entry["file_name"])
        (root / "annotations" / f"instances_{split}.json").write_text(
            text if text is not None else json.dumps(document))


def _anchor_file(path, change):
    """An anchor file of the demo preset's anchors, ``change(fields)`` applied."""
    fields = json.loads(json.dumps(dataclasses.asdict(DEMO_ANCHORS)))  # tuples -> lists
    change(fields)
    with open(path, "w") as f:
        json.dump({"kind": "gluon-ssd anchors", "preset": "demo", "anchors": fields}, f)


def _export_copy(prefix, target, suffix, content):
    """A copy of the export at ``prefix`` as ``target`` with one file replaced."""
    for end in ("-symbol.json", "-0000.params", "-meta.json"):
        shutil.copy(f"{prefix}{end}", f"{target}{end}")
    with open(f"{target}{suffix}", "wb") as f:
        f.write(content)


def _checkpoint_without(path, target, key):
    arrays = mx.nd.load(str(path))
    meta = json.loads(arrays["meta"].asnumpy().tobytes().decode())
    del meta[key]
    arrays["meta"] = mx.nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                 dtype="uint8")
    mx.nd.save(str(target), arrays)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Name -> path of every (bad) file the cases use."""
    root = tmp_path_factory.mktemp("bad_inputs")
    mx.random.seed(0)
    model = root / "model.params"
    save_checkpoint(str(model), get_model("demo", CLASSES), {"preset": "demo", "image_size": 64})
    export = str(root / "export")
    export_model(load_detector(str(model)).net, export, (64, 64), preset="demo")
    f = {"model": str(model), "export": export, "photo": str(root / "photo.jpg")}
    _image(f["photo"])
    f["corrupt_params"], f["meta_empty"], f["corrupt_symbol"] = (
        str(root / n) for n in ("corrupt_params", "meta_empty", "corrupt_symbol"))
    _export_copy(export, f["corrupt_params"], "-0000.params", os.urandom(4096))
    _export_copy(export, f["meta_empty"], "-meta.json", b"{}")
    _export_copy(export, f["corrupt_symbol"], "-symbol.json", b'{"nodes": [{"op": ')
    f["no_classes"] = str(root / "no_classes.params")
    _checkpoint_without(model, f["no_classes"], "classes")
    f["garbage"] = str(root / "garbage.params")
    with open(f["garbage"], "wb") as out:
        out.write(os.urandom(2048))

    def drop(key, where="annotations"):
        return lambda d: d[where][0].pop(key)

    def set_(key, value, where="annotations"):
        return lambda d: d[where][0].__setitem__(key, value)

    for name, kwargs in {"coco_no_bbox": dict(change=drop("bbox")),
                         "coco_no_width": dict(change=drop("width", "images")),
                         "coco_height_0": dict(change=set_("height", 0, "images")),
                         "coco_string_bbox": dict(change=set_("bbox", "10 5 20 30")),
                         "coco_invalid_json": dict(text='{"images": [')}.items():
        f[name] = str(root / name)
        _coco(root / name, **kwargs)
    f["coco_no_boxes"] = str(root / "coco_no_boxes")
    _coco(root / "coco_no_boxes", change=lambda d: d["annotations"].clear(),
          splits=("train2017", "val2017"))
    for name, change in {"anchors_size_0": lambda a: a["sizes"].__setitem__(0, 0),
                         "anchors_ratio_negative": lambda a: a["ratios"][2].append(-0.5),
                         "anchors_5_layers": lambda a: a["feature_maps"].pop()}.items():
        f[name] = str(root / f"{name}.json")
        _anchor_file(f[name], change)
    f["voc_abc"] = str(root / "voc_abc")
    _voc(root / "voc_abc", xmin="abc")
    f["used_run"] = str(root / "used_run")  # an earlier run's folder
    os.makedirs(f["used_run"])
    shutil.copy(model, os.path.join(f["used_run"], "checkpoint-last.params"))
    return f


# (id, argv with {file} names and {new} for a new folder, what the line must name, run how).
CASES = [
    # numeric flags and sizes (checked when the arguments are parsed)
    ("train-lr-negative", ["train", "--lr=-1"], ["--lr", "'-1'"]),
    ("train-lr-zero", ["train", "--lr", "0"], ["--lr", "'0'"]),
    ("train-lr-nan", ["train", "--lr", "nan"], ["--lr", "'nan'"]),
    ("train-lr-inf", ["train", "--lr", "inf"], ["--lr", "'inf'"]),
    ("train-workers-negative", ["train", "--workers=-1"], ["--workers", "'-1'"]),
    ("train-image-size-huge", ["train", "--image-size", "100000"],
     ["--image-size", "'100000'", "32..2048"]),
    ("train-image-size-under-ssd300", ["train", "--preset", "ssd300", "--out", "{new}",
                                       "--image-size", "100"],
     ["--image-size 100x100", "at least 257x257"]),
    ("demo-epochs-inf", ["demo", "--out", "{new}", "--epochs", "inf"], ["--epochs", "'inf'"]),
    ("anchors-canvas-huge", ["anchors", "--sizes", "0.2", "--image-size", "100000x100000"],
     ["--image-size", "'100000x100000'", "4096"]),
    ("anchors-sizes-1e308", ["anchors", "--sizes", "1e308"], ["--sizes", "'1e308'", "10"]),
    ("anchors-too-many", ["anchors", "--sizes", "0.2", "--feature-map", "4000x4000", "--json",
                          "{new}/a.json"], ["4000x4000", "1000000"]),
    ("export-over-an-export", ["export", "{model}", "-o", "{export}"],
     ["-o", "export-symbol.json exists"]),
    ("quantize-over-an-export", ["quantize", "{model}", "--calib-data", "synthetic", "-o",
                                 "{export}"], ["-o", "export-symbol.json exists"]),
    ("export-image-size-7", ["export", "{model}", "-o", "{new}/x", "--image-size", "7"],
     ["--image-size", "'7'", "32..2048"]),
    ("export-image-size-huge", ["export", "{model}", "-o", "{new}/x", "--image-size", "100000"],
     ["--image-size", "'100000'"]),
    ("launch-port-0", ["launch", "-n", "1", "--port", "0", "--", "true"], ["--port", "'0'"]),
    ("launch-timeout-nan", ["launch", "-n", "1", "--timeout", "nan", "--", "true"],
     ["--timeout", "'nan'"]),
    ("evaluate-workers-negative", ["evaluate", "{model}", "--workers=-1"],
     ["--workers", "'-1'"]),
    ("quantize-calib-batches-0", ["quantize", "{model}", "--calib-data", "synthetic", "-o",
                                  "{new}/q", "--calib-batches", "0"],
     ["--calib-batches", "'0'"]),
    ("detect-threshold-nan", ["detect", "{model}", "{photo}", "-o", "{new}", "--threshold",
                              "nan"], ["--threshold", "'nan'"]),
    ("convert-missing-file", ["convert", "--from-gluoncv", "{new}/none.params", "-o",
                              "{new}/c.params"], ["none.params"]),
    # detect never writes over a file: the output folder holds the input
    ("detect-onto-its-input", ["detect", "{model}", "{photo}", "-o", "{photo_folder}"],
     ["photo.jpg", "output folder"]),
    # Helper FILES's cases: corrupt or incomplete model files, bad annotations, run folders
    ("export-corrupt-params", ["detect", "{corrupt_params}", "{photo}", "-o", "{new}"],
     ["corrupt_params-0000.params"]),
    ("export-meta-empty", ["detect", "{meta_empty}", "{photo}", "-o", "{new}"],
     ["meta_empty-meta.json"]),
    ("export-corrupt-symbol", ["evaluate", "{corrupt_symbol}"], ["corrupt_symbol-symbol.json"]),
    ("checkpoint-no-classes", ["export", "{no_classes}", "-o", "{new}/x"],
     ["no_classes.params", "classes"]),
    ("checkpoint-garbage", ["quantize", "{garbage}", "--calib-data", "synthetic", "-o",
                            "{new}/q"], ["garbage.params"]),
    ("coco-no-bbox", ["evaluate", "{model}", "--data", "{coco_no_bbox}"],
     ["instances_val2017.json", "11", "bbox"]),
    ("coco-no-width", ["evaluate", "{model}", "--data", "{coco_no_width}"],
     ["instances_val2017.json", "width"]),
    ("coco-height-0", ["evaluate", "{model}", "--data", "{coco_height_0}"],
     ["instances_val2017.json", "height"]),
    ("coco-string-bbox", ["evaluate", "{model}", "--data", "{coco_string_bbox}"],
     ["instances_val2017.json", "11", "bbox"]),
    ("coco-invalid-json", ["evaluate", "{model}", "--data", "{coco_invalid_json}"],
     ["instances_val2017.json"]),
    ("voc-coordinate-abc", ["evaluate", "{model}", "--data", "{voc_abc}"],
     ["a.xml", "abc"]),
    ("train-resume-without-checkpoint", ["train", "--out", "{new}", "--resume", *TINY],
     ["--resume", "checkpoint-last.params"]),
    ("train-into-an-earlier-run", ["train", "--out", "{used_run}", *TINY],
     ["used_run", "--resume", "--overwrite"]),
    # a user's own data: no boxes at all, anchor files that cannot be, a missing initial model
    ("train-data-without-boxes", ["train", "--data", "{coco_no_boxes}", "--out", "{new}", *TINY],
     ["training split", "coco_no_boxes", "no object boxes"]),
    ("anchors-data-without-boxes", ["anchors", "--data", "{coco_no_boxes}", "--split", "val",
                                    "-o", "{new}/c.png"], ["coco_no_boxes", "no object boxes"]),
    ("train-anchor-file-size-0", ["train", "--anchors", "{anchors_size_0}", "--out", "{new}",
                                  *TINY], ["anchors_size_0.json", "sizes must be positive"]),
    ("train-anchor-file-ratio-negative", ["train", "--anchors", "{anchors_ratio_negative}",
                                          "--out", "{new}", *TINY],
     ["anchors_ratio_negative.json", "ratios[2] must be positive", "-0.5"]),
    ("train-anchor-file-5-layers", ["train", "--anchors", "{anchors_5_layers}", "--out",
                                    "{new}", *TINY],
     ["anchors_5_layers.json", "has 5 layers", "6 feature maps"]),
    ("train-anchor-file-missing", ["train", "--anchors", "{new}/none.json", "--out", "{new}/r",
                                   *TINY], ["none.json"]),
    ("train-init-missing", ["train", "--init", "{new}/none.params", "--out", "{new}/r", *TINY],
     ["none.params"]),
    ("train-zoom-out-under-1", ["train", "--zoom-out", "0.5"], ["--zoom-out", "'0.5'", "[1, 16]"]),
]


def _argv(argv, files, tmp_path):
    names = dict(files, new=str(tmp_path / "new"),
                 photo_folder=os.path.dirname(files["photo"]))
    return [a.format(**names) for a in argv]


def _check(status, out, err, names):
    assert status == 2, (status, out, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gluon-ssd ") and ": error: " in lines[0], err
    for name in names:
        assert name in lines[0], (name, lines[0])


def _snapshot(folder):
    return {p: open(os.path.join(folder, p), "rb").read() for p in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, p))}


@pytest.mark.parametrize("argv, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(files, tmp_path, capfd, argv, names):
    before = _snapshot(files["used_run"])
    status = main(_argv(argv, files, tmp_path))
    out, err = capfd.readouterr()
    _check(status, out, err, names)
    assert _snapshot(files["used_run"]) == before  # an earlier run is never written over


@pytest.mark.parametrize("argv, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_through_the_console_script(files, tmp_path, argv, names):
    proc = subprocess.run([sys.executable, "-m", "gluon_ssd.cli", *_argv(argv, files, tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    _check(proc.returncode, proc.stdout, proc.stderr, names)


def test_every_command_has_a_case_through_the_console_script():
    from gluon_ssd.cli import COMMANDS

    assert {c[1][0] for c in CASES} == set(COMMANDS)


def test_a_diverged_training_run_is_one_line(tmp_path, monkeypatch, capfd):
    def diverge(cfg):
        raise gluon_ssd.train.TrainingDiverged("loss became nan at epoch 1, iteration 3; no "
                                               "checkpoint was written yet")

    monkeypatch.setattr(gluon_ssd.train, "train", diverge)
    status = main(["train", "--out", str(tmp_path / "run"), "--quiet"])
    _check(status, *capfd.readouterr(), ["loss became nan", "no checkpoint"])


def test_a_bug_keeps_its_traceback(monkeypatch):
    """Only bad input is turned into one line; an unexpected error propagates."""
    def broken(cfg):
        raise KeyError("a bug")

    monkeypatch.setattr(gluon_ssd.train, "train", broken)
    with pytest.raises(KeyError):
        main(["train", "--quiet"])
