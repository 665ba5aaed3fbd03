"""One box coder: a preset's variances are the ones training encodes with and detection decodes
with, also when they are not the default ones (they once lived in two places)."""
import dataclasses

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd import presets
from gluon_ssd.boxes import to_normalised
from gluon_ssd.data.labels import BOX, CLASS, is_object
from gluon_ssd.detect import load_detector
from gluon_ssd.presets import DetectSpec, get_preset
from gluon_ssd.train import Run, TrainConfig

VARIANCES = (0.2, 0.25, 0.4, 0.5)  # not the default (0.1, 0.1, 0.2, 0.2)


@pytest.fixture
def wide_variances(monkeypatch):
    demo = get_preset("demo")
    preset = dataclasses.replace(demo, name="demo_wide_variances",
                                 model=dataclasses.replace(demo.model, variances=VARIANCES))
    monkeypatch.setitem(presets.PRESETS, preset.name, preset)
    return preset


def test_a_preset_with_other_variances_trains_and_detects_its_targets_exactly(
        wide_variances, tmp_path):
    cfg = TrainConfig(preset=wide_variances.name, out=str(tmp_path / "run"), image_size=64,
                      train_size=8, val_size=4, batch_size=4, epochs=1, progress=False)
    run = Run(cfg)
    batch = next(iter(run.train_loader.epoch(0)))
    cls_target, loc_target, _ = run.targets(batch.labels, (64, 64))
    run.run()  # a few steps, a checkpoint
    model = load_detector(str(tmp_path / "run" / "checkpoint-last.params"),
                          DetectSpec(score_threshold=0.5, nms_threshold=1.0, max_detections=400))
    assert model.net.ssd.spec.variances == VARIANCES
    assert model.net.head.coder.variances == VARIANCES

    # The detection head fed what training taught as the perfect answer (each positive anchor's
    # class certain, its box offsets the encoded target) must give back the ground truth.
    cls = cls_target.asnumpy().astype(int)  # (B, N): 0 background, class + 1
    logits = np.eye(len(model.classes) + 1, dtype=np.float32)[cls] * 20  # (B, N, C+1)
    anchors = run.anchors
    ids, scores, boxes = (o.asnumpy() for o in model.net.head(
        mx.nd.array(logits), loc_target, anchors))
    labels = batch.labels.asnumpy()
    for i in range(labels.shape[0]):
        truth = to_normalised(labels[i][is_object(labels[i])][:, BOX], (64, 64))
        found = boxes[i][ids[i, :, 0] >= 0]
        assert len(found) and (cls[i] > 0).sum() >= len(truth)
        # every detection is one of the image's boxes, and every box is found (the positive
        # anchors of one box all decode to it: NMS keeps one of them)
        error = np.abs(found[:, None, :] - truth[None]).max(axis=2)
        assert error.min(axis=1).max() < 1e-5 and error.min(axis=0).max() < 1e-5
        classes = labels[i][is_object(labels[i])][:, CLASS]
        assert set(ids[i, ids[i, :, 0] >= 0, 0].astype(int)) == set(classes.astype(int))


def test_decoding_with_other_variances_would_not_give_the_truth_back(wide_variances):
    """The check above has teeth: the default coder misplaces the same targets."""
    default, wide = get_preset("demo").model.coder, wide_variances.model.coder
    anchors = np.array([[0.2, 0.2, 0.6, 0.5]])
    box = np.array([[0.25, 0.18, 0.7, 0.55]])
    assert np.abs(default.decode(wide.encode(box, anchors), anchors) - box).max() > 0.01
