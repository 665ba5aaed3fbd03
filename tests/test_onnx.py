"""ONNX export and its engines: the MXNet detector's detections from ONNX Runtime and OpenVINO.

Equal detections: the shipped demo model (at its 192x192 and at a non-square 256x320) and SSD300
with random weights (GluonCV's, converted), each decoder, both engines, several images, against
:class:`~gluon_ssd.model.head.DetectionNet` on the same preprocessed batch: per image the same
number of rows, each matched by one row of the same class with score and box within 1e-4
(compared as sets: equal scores may be ordered differently). The random SSD300's predictors are
scaled so that the probabilities spread over (0, 1) (``test_gluoncv_ssd.gluoncv_reference``):
untouched, every class of every anchor scores about 1 / 21 and the ranking is noise.

Then: the checker and the opset, the metadata, other decoding settings, a fixed batch, INT8 and
BF16 close to FP32, a GluonCV SSD converted and exported, the command line, bad inputs (one
line, exit status 2) and the package without onnx installed.
"""
import json
import os
import subprocess
import sys
from dataclasses import replace

import mxnet as mx
import numpy as np
import onnx
import pytest
from gluoncv.utils.bbox import bbox_iou
from PIL import Image

from gluon_ssd import DetectionNet, get_model, get_preset
from gluon_ssd.cli import main
from gluon_ssd.convert import load_gluoncv_ssd
from gluon_ssd.data.synthetic import SyntheticShapes
from gluon_ssd.data.transforms import EvalTransform
from gluon_ssd.deploy import OUTPUTS, RAW_OUTPUTS
from gluon_ssd.deploy.builder import OPSET
from gluon_ssd.deploy.engines import ENGINES, bf16_missing
from gluon_ssd.deploy.onnx_model import export_onnx, read_onnx
from gluon_ssd.detect import load_detector
from gluon_ssd.export import export_meta
from gluon_ssd.presets import DetectSpec
from gluon_ssd.quantize import calibration_batches
from test_bad_inputs import _check
from test_gluoncv_ssd import gluoncv_reference, valid_rows

DECODERS = ("multibox", "per_class")
DEMO_SPEC = get_preset("demo").detect


def image_rows(outputs):
    """Per image the non-empty rows ``(ids (K,), scores (K,), boxes (K, 4))``."""
    ids, scores, boxes = (o.asnumpy() if isinstance(o, mx.nd.NDArray) else o for o in outputs)
    keep = ids[..., 0] >= 0
    return [(ids[b, keep[b], 0], scores[b, keep[b], 0], boxes[b, keep[b]])
            for b in range(len(ids))]


def assert_same_detections(expected, found, tol=1e-4):
    """Per image: as many rows, each expected row matched by a found row of its class with
    score and box within ``tol`` (each found row used once)."""
    for image, ((ids, scores, boxes), (f_ids, f_scores, f_boxes)) in enumerate(
            zip(image_rows(expected), image_rows(found))):
        assert len(f_ids) == len(ids), (image, len(ids), len(f_ids))
        free = np.ones(len(f_ids), bool)
        for row in range(len(ids)):
            match = (free & (f_ids == ids[row]) & (np.abs(f_scores - scores[row]) <= tol)
                     & (np.abs(f_boxes - boxes[row]).max(axis=1) <= tol))
            assert match.any(), (image, row, ids[row], scores[row], boxes[row])
            free[np.argmax(match)] = False


def synthetic_batch(size, count=4, seed=7):
    """``count`` SyntheticShapes validation images of 240x320, preprocessed for ``size (H, W)``
    as detection does: ``(count, 3, H, W)``."""
    spec = get_preset("demo").model
    transform = EvalTransform(size, spec.mean, spec.std)
    shapes = SyntheticShapes(count, (240, 320), "val", seed=seed)
    return mx.nd.stack(*[transform(shapes[i][0], np.zeros((0, 4), np.float32))[0]
                         for i in range(count)])


@pytest.fixture(scope="module")
def demo_ssd():
    return get_model("demo", pretrained=True)


@pytest.fixture(scope="module", params=[(192, 192), (256, 320)], ids=["192x192", "256x320"])
def demo_file(request, demo_ssd, tmp_path_factory):
    """``(path, input batch)``: the demo model exported with its own decoding (per_class) at a
    square and a non-square size, and 4 images at that size."""
    size = request.param
    path = str(tmp_path_factory.mktemp("demo_onnx") / "demo.onnx")
    export_onnx(DetectionNet(demo_ssd, DEMO_SPEC), path, size, preset="demo")
    return path, synthetic_batch(size)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("decoder", DECODERS)
def test_demo_detections_equal_mxnet(demo_file, demo_ssd, engine, decoder):
    path, x = demo_file
    spec = replace(DEMO_SPEC, decoder=decoder)  # multibox: the file's head replaced at load
    expected = DetectionNet(demo_ssd, spec)(x)
    detector = load_detector(path, spec, engine=engine)
    assert (detector.engine, detector.precision) == (engine, "fp32")
    assert_same_detections(expected, detector.net(x))
    assert (expected[1].asnumpy() > 0.5).sum() >= 4  # a trained model: real detections


@pytest.fixture(scope="module")
def ssd300_file(tmp_path_factory):
    """``(reference, ssd, path, x)``: GluonCV's SSD300 for VOC with random weights (its
    predictors scaled, see ``test_gluoncv_ssd.gluoncv_reference``), converted into gluon-ssd,
    exported with the multibox decoder; 2 images: GluonCV's input and another."""
    folder = tmp_path_factory.mktemp("ssd300_onnx")
    reference = gluoncv_reference("ssd_300_vgg16_atrous_voc", 300, str(folder))
    ssd, _ = load_gluoncv_ssd(reference.path)
    path = str(folder / "ssd300.onnx")
    export_onnx(DetectionNet(ssd, DetectSpec()), path, (300, 300), preset="ssd300_vgg16")
    other = mx.nd.array(np.random.RandomState(1).normal(size=(1, 3, 300, 300)), dtype="float32")
    return reference, ssd, path, mx.nd.concat(reference.x, other, dim=0)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("decoder", DECODERS)
def test_ssd300_random_weights_detections_equal_mxnet(ssd300_file, engine, decoder):
    _, ssd, path, x = ssd300_file
    spec = DetectSpec(decoder=decoder)
    expected = DetectionNet(ssd, spec)(x)
    assert_same_detections(expected, load_detector(path, spec, engine=engine).net(x))
    assert all(len(ids) == 100 for ids, _, _ in image_rows(expected))  # NMS fills every row


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("change", [
    dict(force_suppress=True), dict(nms_topk=50), dict(nms_threshold=0.3, max_detections=20),
    dict(decoder="multibox", force_suppress=True), dict(decoder="multibox", nms_threshold=0.0),
    dict(decoder="multibox", nms_threshold=1.0, score_threshold=0.2),
    dict(score_threshold=0.99999),
], ids=["force", "topk50", "nms03-max20", "multibox-force", "multibox-no-nms",
        "multibox-nms1", "nothing-above-threshold"])
def test_other_decoding_settings_equal_mxnet(demo_file, demo_ssd, engine, change):
    path, x = demo_file
    spec = replace(DEMO_SPEC, **change)
    detector = load_detector(path, change, engine=engine)
    assert detector.spec == spec
    assert_same_detections(DetectionNet(demo_ssd, spec)(x), detector.net(x))


def test_the_checker_passes_the_opset_is_stated_and_the_graph_is_plain_onnx(demo_file):
    path, _ = demo_file
    onnx.checker.check_model(path, full_check=True)
    model = onnx.load(path)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "BatchNormalization", "MaxPool", "NonMaxSuppression", "TopK"} <= ops
    assert [i.name for i in model.graph.input] == ["data"]
    assert [o.name for o in model.graph.output] == list(OUTPUTS)
    shapes = [[d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
              for o in model.graph.output]
    assert shapes == [["batch", 100, 1], ["batch", 100, 1], ["batch", 100, 4]]
    assert RAW_OUTPUTS[2] in {init.name for init in model.graph.initializer}


def test_metadata_round_trip(demo_file, demo_ssd):
    path, x = demo_file
    model, meta = read_onnx(path)
    size = tuple(x.shape[2:])
    expected = export_meta(DetectionNet(demo_ssd, DEMO_SPEC), size, "demo", RAW_OUTPUTS,
                           {"format": "onnx", "opset": OPSET, "batch": "dynamic",
                            "precision": "fp32"})
    assert meta == json.loads(json.dumps(expected))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["classes"]) == list(demo_ssd.classes)
    assert json.loads(props["input"])["image_size"] == list(size)
    detector = load_detector(path)
    assert (detector.classes, detector.image_size, detector.preset) == (demo_ssd.classes, size,
                                                                        "demo")
    assert detector.mean == demo_ssd.spec.mean and detector.std == demo_ssd.spec.std


def test_a_fixed_batch_file_takes_any_number_of_images(demo_ssd, tmp_path):
    path = str(tmp_path / "batch3.onnx")
    export_onnx(DetectionNet(demo_ssd, DEMO_SPEC), path, (192, 192), batch=3)
    x = synthetic_batch((192, 192), count=5)
    detector = load_detector(path)
    assert detector.net.batch == 3 and read_onnx(path)[1]["batch"] == 3
    assert_same_detections(DetectionNet(demo_ssd, DEMO_SPEC)(x), detector.net(x))
    with pytest.raises(ValueError, match="exists"):
        export_onnx(DetectionNet(demo_ssd, DEMO_SPEC), path, (192, 192))


# ---------------------------------------------------------------------------------------------
# Reduced precision: detections close to FP32 (loosely: no timing is asserted anywhere)

def assert_close_to(reference, found, min_recall=0.85):
    """Most detections of ``reference`` with score >= 0.5 are found (same class, IoU >= 0.7,
    score >= 0.3) among ``found``'s."""
    hits = total = 0
    for (ids, scores, boxes), (f_ids, f_scores, f_boxes) in zip(image_rows(reference),
                                                                 image_rows(found)):
        for c, box in zip(ids[scores >= 0.5], boxes[scores >= 0.5]):
            candidates = f_boxes[(f_ids == c) & (f_scores >= 0.3)]
            total += 1
            hits += bool(len(candidates)) and bbox_iou(box[None], candidates).max() >= 0.7
    assert total >= 4 and hits >= min_recall * total, (hits, total)


@pytest.fixture(scope="module")
def int8_file(demo_ssd, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("int8") / "demo-int8.onnx")
    spec = demo_ssd.spec
    batches = calibration_batches("synthetic", (192, 192), spec.mean, spec.std, 8)
    export_onnx(DetectionNet(demo_ssd, DEMO_SPEC), path, (192, 192), preset="demo",
                precision="int8", calibration=(b.asnumpy() for b in batches), calib_batches=2,
                calib_source="synthetic (train split)")
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_int8_detections_are_close_to_fp32(int8_file, demo_ssd, engine):
    model, meta = read_onnx(int8_file)
    assert meta["precision"] == "int8" and meta["calibration"]["images"] == 16
    assert "QuantizeLinear" in {node.op_type for node in model.graph.node}
    detector = load_detector(int8_file, engine=engine)
    assert detector.precision == "int8"
    x = synthetic_batch((192, 192), count=8)
    assert_close_to(DetectionNet(demo_ssd, DEMO_SPEC)(x), detector.net(x))
    # its head can be replaced like a float32 file's
    assert load_detector(int8_file, {"decoder": "multibox"}, engine=engine).spec.decoder == \
        "multibox"


@pytest.mark.skipif(bf16_missing() is not None, reason=f"OpenVINO finds no BF16 on this CPU: "
                                                         f"{bf16_missing()}")
def test_bf16_detections_are_close_to_fp32(demo_file, demo_ssd):
    path, x = demo_file
    detector = load_detector(path, engine="openvino", precision="bf16")
    assert detector.precision == "bf16"
    assert_close_to(DetectionNet(demo_ssd, DEMO_SPEC)(x), detector.net(x))


@pytest.mark.skipif(bf16_missing() is None, reason="this CPU has BF16")
def test_bf16_on_a_cpu_without_it_names_the_argument(demo_file, tmp_path, capfd):
    with pytest.raises(ValueError, match=r"^--precision bf16: this CPU has no BF16"):
        load_detector(demo_file[0], engine="openvino", precision="bf16")
    status = main(["evaluate", demo_file[0], "--engine", "openvino", "--precision", "bf16"])
    _check(status, *capfd.readouterr(), ["--precision bf16", "no BF16"])


# ---------------------------------------------------------------------------------------------
# GluonCV's SSDs, converted, export the same way

@pytest.mark.slow
def test_a_converted_gluoncv_ssd300_exports_and_detects_like_gluoncv(ssd300_file, tmp_path):
    ref = ssd300_file[0]
    checkpoint, path = str(tmp_path / "converted.params"), str(tmp_path / "converted.onnx")
    assert main(["convert", "--from-gluoncv", ref.path, "-o", checkpoint]) == 0
    assert main(["export", checkpoint, "--format", "onnx", "-o", path, "--decoder",
                 "per_class"]) == 0
    theirs = valid_rows(ref.final[0], ref.final[1], np.clip(ref.final[2] / ref.size, 0, 1))
    mxnet_net = load_detector(checkpoint, {"decoder": "per_class"}).net
    for engine in ENGINES:
        found = load_detector(path, engine=engine).net(ref.x)
        assert_same_detections(mxnet_net(ref.x), found)
        np.testing.assert_allclose(valid_rows(*(o.asnumpy() for o in found)), theirs, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The command line

@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    shapes = SyntheticShapes(3, (200, 260), "val", seed=1)
    for i in range(3):
        Image.fromarray(shapes[i][0].asnumpy()).save(folder / f"{i}.png")
    return str(folder)


def _detections(folder):
    with open(os.path.join(folder, "detections.json")) as f:
        rows = json.load(f)["detections"]
    return sorted((r["image_id"], r["category_id"], r["score"], *r["bbox"]) for r in rows)


def test_cli_export_detect_and_evaluate_an_onnx_file(tmp_path, photos, capsys):
    path = str(tmp_path / "demo.onnx")
    assert main(["export", "demo", "--format", "onnx", "-o", path]) == 0
    assert "ONNX opset" in capsys.readouterr().out
    assert main(["detect", "demo", photos, "-o", str(tmp_path / "mxnet"), "--quiet"]) == 0
    for engine in ENGINES:
        out = str(tmp_path / engine)
        assert main(["detect", path, photos, "-o", out, "--engine", engine, "--quiet"]) == 0
        expected, found = _detections(tmp_path / "mxnet"), _detections(out)
        assert len(found) == len(expected) >= 3
        np.testing.assert_allclose(np.array(found), np.array(expected), atol=0.02)
    capsys.readouterr()
    args = ["--val-size", "16", "--metric", "voc07", "--quiet", "--decoder", "both"]
    assert main(["evaluate", "demo", *args]) == 0
    expected = capsys.readouterr().out
    assert main(["evaluate", path, *args, "--engine", "openvino"]) == 0
    found = capsys.readouterr().out
    assert "multibox" in found and expected.splitlines()[-1] == found.splitlines()[-1]


def test_cli_export_int8_at_a_fixed_batch(tmp_path, capsys):
    path = str(tmp_path / "int8.onnx")
    assert main(["export", "demo", "--format", "onnx", "-o", path, "--precision", "int8",
                 "--calib-data", "synthetic", "--calib-batches", "1", "--batch-size", "4",
                 "--batch", "2", "--image-size", "128"]) == 0
    assert "naive calibration on 4 images" in capsys.readouterr().out
    meta = read_onnx(path)[1]
    assert (meta["batch"], meta["precision"], meta["input"]["image_size"]) == (2, "int8",
                                                                                [128, 128])


# ---------------------------------------------------------------------------------------------
# Bad inputs: one line naming the argument or the file, exit status 2, nothing written

@pytest.fixture(scope="module")
def bad(tmp_path_factory, demo_ssd, photos):
    root = tmp_path_factory.mktemp("onnx_bad")
    f = {"photo": os.path.join(photos, "0.png"), "new": str(root / "new"),
         "model": str(root / "model.onnx"), "garbage": str(root / "garbage.onnx"),
         "plain": str(root / "plain.onnx")}
    export_onnx(DetectionNet(demo_ssd, DEMO_SPEC), f["model"], (64, 64))
    with open(f["garbage"], "wb") as out:
        out.write(os.urandom(2048))
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph(
        [node], "g", [value], [onnx.helper.make_tensor_value_info(
            "y", onnx.TensorProto.FLOAT, [1])])), f["plain"])
    return f


CASES = [
    ("detect-missing-onnx", ["detect", "{new}/none.onnx", "{photo}", "-o", "{new}/out"],
     ["none.onnx", "no such"]),
    ("detect-not-onnx", ["detect", "{garbage}", "{photo}", "-o", "{new}/out"],
     ["garbage.onnx", "not an ONNX model"]),
    ("evaluate-onnx-without-metadata", ["evaluate", "{plain}"],
     ["plain.onnx", "not a gluon-ssd ONNX detector"]),
    ("detect-unknown-engine", ["detect", "{model}", "{photo}", "-o", "{new}/out", "--engine",
                               "tensorrt"], ["--engine", "tensorrt"]),
    ("detect-bf16-on-onnxruntime", ["detect", "{model}", "{photo}", "-o", "{new}/out",
                                    "--precision", "bf16"], ["--precision bf16", "OpenVINO"]),
    ("detect-int8-of-a-float-file", ["detect", "{model}", "{photo}", "-o", "{new}/out",
                                     "--precision", "int8"], ["--precision int8", "float32"]),
    ("detect-engine-of-a-checkpoint", ["detect", "demo", "{photo}", "-o", "{new}/out",
                                       "--engine", "openvino"], ["--engine", "ONNX"]),
    ("export-onto-an-existing-file", ["export", "demo", "--format", "onnx", "-o", "{model}"],
     ["model.onnx", "exists"]),
    ("export-onnx-not-dot-onnx", ["export", "demo", "--format", "onnx", "-o", "{new}/m.bin"],
     ["-o", "m.bin", ".onnx"]),
    ("export-batch-word", ["export", "demo", "--format", "onnx", "-o", "{new}/m.onnx",
                           "--batch", "many"], ["--batch", "'many'", "dynamic"]),
    ("export-int8-without-calibration", ["export", "demo", "--format", "onnx", "-o",
                                         "{new}/m.onnx", "--precision", "int8"],
     ["--precision int8", "--calib-data"]),
    ("export-onnx-flags-for-mxnet", ["export", "demo", "-o", "{new}/m", "--batch", "2"],
     ["--batch", "--format onnx"]),
    ("export-int8-bad-calibration-data", ["export", "demo", "--format", "onnx", "-o",
                                          "{new}/m.onnx", "--precision", "int8",
                                          "--calib-data", "{new}/nowhere"],
     ["--calib-data", "nowhere"]),
]


@pytest.mark.parametrize("argv, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(bad, capfd, argv, names):
    before = {name: open(path, "rb").read() for name, path in bad.items()
              if os.path.isfile(path)}
    status = main([a.format(**bad) for a in argv])
    _check(status, *capfd.readouterr(), names)
    assert not os.path.exists(bad["new"])  # nothing written
    assert {name: open(bad[name], "rb").read() for name in before} == before


@pytest.mark.parametrize("case", ["detect-not-onnx", "export-onto-an-existing-file"])
def test_bad_input_through_the_console_script(bad, tmp_path, case):
    argv = next(c[1] for c in CASES if c[0] == case)
    proc = subprocess.run([sys.executable, "-m", "gluon_ssd.cli",
                           *[a.format(**bad) for a in argv]],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    _check(proc.returncode, proc.stdout, proc.stderr, next(c[2] for c in CASES if c[0] == case))


def test_the_package_works_without_onnx_and_names_what_is_missing(bad, tmp_path):
    """With onnx, onnxruntime and openvino unimportable: MXNet models load and detect as
    before; an ONNX file or --format onnx is one line naming what to install."""
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('onnx', 'onnxruntime', 'openvino'):\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gluon_ssd.detect\n"
        "from gluon_ssd.cli import main\n"
        f"assert main(['detect', 'demo', {bad['photo']!r}, '-o', 'out', '--quiet']) == 0\n"
        f"assert main(['detect', {bad['model']!r}, {bad['photo']!r}, '-o', 'o2']) == 2\n"
        "assert main(['export', 'demo', '--format', 'onnx', '-o', 'x.onnx']) == 2\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert len(lines) == 2 and all("onnx is not installed" in line and "gluon-ssd[onnx]" in line
                                   for line in lines), proc.stderr


def test_a_layer_without_a_converter_is_named(demo_ssd, tmp_path, monkeypatch):
    from gluon_ssd.deploy import graph

    monkeypatch.delitem(graph.CONVERTERS, "L2Normalization")
    with pytest.raises(ValueError, match=r"cannot export operator 'L2Normalization' \(node "
                                         r"'.*l2normalization0'\) to ONNX: no converter"):
        export_onnx(DetectionNet(demo_ssd, DEMO_SPEC), str(tmp_path / "x.onnx"), (64, 64))
    assert not os.path.exists(tmp_path / "x.onnx")
