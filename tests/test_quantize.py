"""INT8 quantization: the INT8 detector tracks its float32 original, exports in the float32
layout (``load_detector``, ``detect`` and ``evaluate`` take it), both calibration modes run, and
bad calibration input is a one-line error.

The float32 reference is a ``demo`` network trained for a few seconds (96x96 images, 3 epochs of
256), so that its detections have scores to compare; the INT8 copy is judged against that
network's own outputs on images it was not calibrated on.
"""
import json

import cv2
import mxnet as mx
import numpy as np
import pytest
from gluoncv.utils.bbox import bbox_iou

from gluon_ssd.cli import main
from gluon_ssd.detect import load_detector
from gluon_ssd.quantize import (FP32_OPERATORS, QuantizedSSD, calibration_batches,
                                export_quantized, quantize_model)
from gluon_ssd.model import DetectionNet
from gluon_ssd.presets import DetectSpec
from gluon_ssd.train import TrainConfig, train

SIZE = 96


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32")
    train(TrainConfig(preset="demo", out=str(out), image_size=SIZE, train_size=256, val_size=16,
                      batch_size=16, epochs=3, progress=False))
    return str(out / "checkpoint-last.params")


@pytest.fixture(scope="module")
def fp32(checkpoint):
    return load_detector(checkpoint)


def _batches(detector, batch_size=8, seed=0):
    return calibration_batches("synthetic", detector.image_size, detector.mean, detector.std,
                               batch_size, seed=seed)


@pytest.fixture(scope="module")
def int8(fp32):
    """INT8 copy, naive calibration on 2 batches of 8 training images."""
    return quantize_model(fp32.net, _batches(fp32), 2, "naive", source="synthetic (train split)")


@pytest.fixture(scope="module")
def images(fp32):
    """16 images the INT8 network was not calibrated on (another seed, another order)."""
    batches = _batches(fp32, seed=7)
    return mx.nd.concat(next(batches), next(batches), dim=0)


@pytest.fixture(scope="module")
def exported(int8, fp32, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("int8") / "demo-int8")
    return prefix, export_quantized(int8, prefix, fp32.image_size, fp32.preset)


def test_int8_raw_outputs_track_float32(fp32, int8, images):
    cls_ref, box_ref, anchors_ref = fp32.net.ssd(images)
    cls_q, box_q, anchors_q = int8.ssd(images)
    assert cls_q.shape == cls_ref.shape and box_q.shape == box_ref.shape
    np.testing.assert_array_equal(anchors_q.asnumpy(), anchors_ref.asnumpy())  # float32 ops
    p_ref = mx.nd.softmax(cls_ref).asnumpy().ravel()
    p_q = mx.nd.softmax(cls_q).asnumpy().ravel()
    assert np.corrcoef(p_ref, p_q)[0, 1] > 0.999
    assert np.abs(p_ref - p_q).mean() < 0.005 and np.abs(p_ref - p_q).max() < 0.15
    assert np.corrcoef(box_ref.asnumpy().ravel(), box_q.asnumpy().ravel())[0, 1] > 0.99


def test_int8_detections_match_float32_boxes(fp32, int8, images):
    """Each float32 detection scoring >= 0.1 mostly has an INT8 detection of its class at IoU
    >= 0.7, with a close score (small models quantize coarsely: a few near-ties flip in NMS)."""
    ref = [a.asnumpy() for a in fp32.net(images)]
    out = [a.asnumpy() for a in int8(images)]
    best_iou, score_gap = [], []
    for i in range(images.shape[0]):
        for cls, score, box in zip(*(a[i][ref[1][i, :, 0] >= 0.1] for a in ref)):
            same = out[0][i, :, 0] == cls[0]
            ious = bbox_iou(box[None], out[2][i][same])[0] if same.any() else np.zeros(1)
            best_iou.append(ious.max())
            if same.any():
                score_gap.append(abs(out[1][i][same][ious.argmax(), 0] - score[0]))
    assert len(best_iou) >= 10  # the trained network detects something to compare
    assert np.mean(np.array(best_iou) >= 0.7) >= 0.85
    assert np.mean(score_gap) < 0.03


def test_int8_graph_quantizes_convolutions_and_keeps_layout_ops_float32(exported):
    prefix, paths = exported
    with open(paths["symbol"]) as f:
        nodes = json.load(f)["nodes"]
    ops = [n["op"] for n in nodes]
    quantized_convs = [n for n in nodes if n["op"] == "_sg_mkldnn_conv"
                       and n.get("attrs", {}).get("quantized") == "true"]
    assert len(quantized_convs) >= 20  # VGG16 + extras + predictors of the demo preset
    assert all(op in ops for op in FP32_OPERATORS)  # kept float32
    assert not any(op.startswith("_contrib_quantized_") and op.endswith(("flatten", "concat"))
                   for op in ops)
    assert "L2Normalization" in ops and "_contrib_box_nms" in ops  # float32 only (both decoders)


def test_export_has_the_float32_layout_and_says_int8(exported, fp32, int8, images):
    prefix, paths = exported
    assert paths == {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-0000.params",
                     "meta": f"{prefix}-meta.json"}
    with open(paths["meta"]) as f:
        meta = json.load(f)
    assert meta["dtype"] == "int8"
    q = meta["quantization"]
    assert (q["mode"], q["batches"], q["images"]) == ("naive", 2, 16)
    assert q["fp32_operators"] == list(FP32_OPERATORS)
    loaded = load_detector(prefix)
    assert (loaded.classes, loaded.image_size, loaded.preset) == (fp32.classes, fp32.image_size,
                                                                   "demo")
    assert loaded.mean == pytest.approx(fp32.mean) and loaded.std == pytest.approx(fp32.std)
    for a, b in zip(loaded.net(images), int8(images)):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)


def test_int8_export_decodes_with_other_settings(exported, int8, images):
    prefix, _ = exported
    spec = DetectSpec(nms_threshold=0.3, decoder="per_class", max_detections=20)
    loaded = load_detector(prefix, spec)
    expected = DetectionNet(int8.ssd, spec)
    for a, b in zip(loaded.net(images), expected(images)):
        assert a.shape[1] == 20
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)


def test_cli_entropy_quantize_then_evaluate_and_detect(checkpoint, tmp_path, capsys):
    prefix = tmp_path / "entropy"
    status = main(["quantize", checkpoint, "--calib-data", "synthetic", "--calib-batches", "1",
                   "--batch-size", "4", "--calib-mode", "entropy", "-o", str(prefix), "--quiet"])
    out, _ = capsys.readouterr()
    assert status == 0 and "entropy calibration on 4 images" in out
    with open(f"{prefix}-meta.json") as f:
        assert json.load(f)["quantization"]["mode"] == "entropy"

    assert main(["evaluate", str(prefix), "--data", "synthetic", "--val-size", "16",
                 "--metric", "voc07", "--quiet"]) == 0
    assert "VOC07 mAP" in capsys.readouterr()[0]

    image = (np.random.RandomState(0).rand(120, 160, 3) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    assert main(["detect", str(prefix), str(tmp_path / "photo.png"), "-o",
                 str(tmp_path / "detections"), "--quiet"]) == 0
    assert (tmp_path / "detections" / "detections.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--calib-data", "MISSING"], ["--calib-data", "MISSING", "neither a dataset name"]),
    (["--calib-data", "EMPTY"], ["--calib-data", "no dataset found in folder"]),
    (["--calib-data", "synthetic", "--calib-batches", "0"], ["--calib-batches", "'0'"]),
    (["--calib-data", "synthetic", "--calib-mode", "minmax"], ["--calib-mode", "'minmax'"]),
])
def test_cli_bad_calibration_input_is_one_line(checkpoint, tmp_path, capsys, argv, message):
    (tmp_path / "EMPTY").mkdir()
    argv = [str(tmp_path / a) if a in ("MISSING", "EMPTY") else a for a in argv]
    status = main(["quantize", checkpoint, *argv, "-o", str(tmp_path / "x")])
    err = capsys.readouterr()[1]
    assert status == 2 and len(err.strip().splitlines()) == 1
    for part in message:
        assert part in err.replace(str(tmp_path) + "/", "")


def test_cli_rejects_an_export_as_checkpoint(exported, tmp_path, capsys):
    prefix, _ = exported
    assert main(["quantize", prefix, "--calib-data", "synthetic", "-o",
                 str(tmp_path / "x")]) == 2
    assert "is an export; quantize takes a checkpoint file" in capsys.readouterr()[1]


def test_quantize_model_errors(fp32, int8):
    with pytest.raises(ValueError, match="no calibration images"):
        quantize_model(fp32.net, iter([]), 1)
    with pytest.raises(ValueError, match="unknown calibration mode 'minmax'"):
        quantize_model(fp32.net, _batches(fp32), 1, "minmax")
    with pytest.raises(ValueError, match="at least one calibration batch"):
        quantize_model(fp32.net, _batches(fp32), 0)
    assert isinstance(int8.ssd, QuantizedSSD)
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(int8, _batches(fp32), 1)
    with pytest.raises(ValueError, match="takes a detector made by quantize_model"):
        export_quantized(fp32.net, "unused", fp32.image_size)
