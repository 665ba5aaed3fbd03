"""Matching targets and the SSD loss, against hand-computed numpy references."""
import math

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.loss import SSDLoss, hard_negative_mask
from gluon_ssd.boxes import BoxCoder
from gluon_ssd.targets import multibox_targets, to_multibox_labels

# Four hand-placed anchors (normalised corners) on a 100 x 200 (H x W) input.
ANCHORS = np.array([[0.0, 0.0, 0.5, 0.5],    # IoU 1 with box A below
                    [0.5, 0.5, 1.0, 1.0],    # matches nothing
                    [0.05, 0.0, 0.55, 0.5],  # IoU 0.8181 with box A: positive by threshold
                    [0.1, 0.1, 0.6, 0.6]],   # IoU 0.47 with box A: background
                   dtype=np.float32)
SIZE = (100, 200)
# Box A in pixels: x 0..100 of 200, y 0..50 of 100 -> normalised (0, 0, 0.5, 0.5); class 2.
LABELS = np.array([[[0, 0, 100, 50, 2], [-1, -1, -1, -1, -1]],
                   [[-1, -1, -1, -1, -1], [-1, -1, -1, -1, -1]]], dtype=np.float32)


def numpy_encode(box, anchor, var=(0.1, 0.1, 0.2, 0.2)):
    bw, bh = box[2] - box[0], box[3] - box[1]
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    return [((box[0] + box[2]) / 2 - (anchor[0] + anchor[2]) / 2) / aw / var[0],
            ((box[1] + box[3]) / 2 - (anchor[1] + anchor[3]) / 2) / ah / var[1],
            math.log(bw / aw) / var[2], math.log(bh / ah) / var[3]]


def test_labels_become_normalised_class_first_with_three_rows():
    out = to_multibox_labels(LABELS, SIZE)
    assert out.shape == (2, 3, 5)
    np.testing.assert_allclose(out[0, 0], [2, 0, 0, 0.5, 0.5])
    assert (out[0, 1:] == -1).all() and (out[1] == -1).all()


def test_matching_positives_classes_and_offsets():
    cls_t, loc_t, loc_m = multibox_targets(mx.nd.array(ANCHORS[None]), LABELS, SIZE)
    cls_t, loc_t, loc_m = cls_t.asnumpy(), loc_t.asnumpy(), loc_m.asnumpy()
    # class 2 becomes 3 (0 is background); anchors 0 and 2 match, 1 and 3 are background.
    np.testing.assert_array_equal(cls_t[0], [3, 0, 3, 0])
    np.testing.assert_array_equal(loc_m[0].reshape(4, 4).max(axis=1), [1, 0, 1, 0])
    box = [0, 0, 0.5, 0.5]
    np.testing.assert_allclose(loc_t[0, 8:12], numpy_encode(box, ANCHORS[2]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(loc_t[0, 0:4], numpy_encode(box, ANCHORS[0]), atol=1e-5)


def test_image_without_objects_is_all_background():
    cls_t, _, loc_m = multibox_targets(mx.nd.array(ANCHORS[None]), LABELS, SIZE)
    np.testing.assert_array_equal(cls_t.asnumpy()[1], [0, 0, 0, 0])
    assert loc_m.asnumpy()[1].sum() == 0


def test_encode_decode_round_trip_matches_reference():
    rng = np.random.default_rng(0)
    anchors = np.sort(rng.uniform(0, 1, (20, 2, 2)), axis=1).transpose(0, 2, 1).reshape(20, 4)
    anchors = anchors[:, [0, 2, 1, 3]]
    boxes = anchors + rng.uniform(-0.05, 0.05, (20, 4))
    coder = BoxCoder()
    offsets = coder.encode(boxes, anchors)
    np.testing.assert_allclose(offsets[3], numpy_encode(boxes[3], anchors[3]), rtol=1e-6)
    np.testing.assert_allclose(coder.decode(offsets, anchors), boxes, atol=1e-9)


def _random_problem(batch=2, n=200, classes=4, positives=(5, 0), ignored=10, seed=0):
    rng = np.random.default_rng(seed)
    cls_preds = rng.normal(0, 2, (batch, n, classes + 1)).astype(np.float32)
    box_preds = rng.normal(0, 1, (batch, n * 4)).astype(np.float32)
    cls_t = np.zeros((batch, n), np.float32)
    for b, p in enumerate(positives):
        cls_t[b, rng.choice(n, p, replace=False)] = rng.integers(1, classes + 1, p)
    cls_t[0, np.flatnonzero(cls_t[0] == 0)[:ignored]] = -1
    loc_t = rng.normal(0, 1, (batch, n * 4)).astype(np.float32)
    loc_m = np.repeat((cls_t > 0).astype(np.float32), 4, axis=1)
    return cls_preds, box_preds, cls_t, loc_t, loc_m


def _reference_loss(cls_preds, box_preds, cls_t, loc_t, loc_m, ratio=3, min_neg=16, mining=True):
    """The paper's loss written out with numpy, per image, with an explicit sort."""
    logp = cls_preds - np.log(np.exp(cls_preds).sum(-1, keepdims=True))
    conf, kept = 0.0, 0
    for b in range(cls_preds.shape[0]):
        ce = -logp[b, np.arange(cls_t.shape[1]), np.maximum(cls_t[b], 0).astype(int)]
        pos = cls_t[b] > 0
        neg_idx = np.flatnonzero(cls_t[b] == 0)
        if mining:
            quota = max(int(pos.sum()) * ratio, min_neg)
            neg_idx = neg_idx[np.argsort(-ce[neg_idx], kind="stable")][:quota]
        kept += len(neg_idx)
        conf += ce[pos].sum() + ce[neg_idx].sum()
    d = np.abs(box_preds - loc_t)
    sl1 = np.where(d < 1, 0.5 * d ** 2, d - 0.5) * loc_m
    n_pos = max((cls_t > 0).sum(), 1)
    return conf / n_pos, sl1.sum() / n_pos, kept


@pytest.mark.parametrize("mining", [True, False])
def test_loss_matches_numpy_reference(mining):
    problem = _random_problem()
    parts = SSDLoss(mining=mining)(*map(mx.nd.array, problem))
    conf, loc, kept = _reference_loss(*problem, mining=mining)
    assert parts.confidence.asscalar() == pytest.approx(conf, rel=1e-4)
    assert parts.localization.asscalar() == pytest.approx(loc, rel=1e-4)
    assert parts.num_negatives == kept
    assert parts.total.asscalar() == pytest.approx(conf + loc, rel=1e-4)


def test_mining_keeps_three_negatives_per_positive_and_never_ignored_anchors():
    cls_preds, _, cls_t, _, _ = _random_problem(positives=(7, 0))
    logp = mx.nd.log_softmax(mx.nd.array(cls_preds))
    ce = -mx.nd.pick(logp, mx.nd.maximum(mx.nd.array(cls_t), 0), axis=-1)
    mask = hard_negative_mask(ce, mx.nd.array(cls_t), 3.0, 16).asnumpy()
    assert mask[0].sum() == 21          # 3 x 7 positives
    assert mask[1].sum() == 16          # an image without objects still gets negatives
    assert mask[0][cls_t[0] == -1].sum() == 0 and mask[0][cls_t[0] > 0].sum() == 0
    # the kept negatives are the highest-loss ones
    ce0 = ce.asnumpy()[0]
    negatives = np.flatnonzero(cls_t[0] == 0)
    hardest = negatives[np.argsort(-ce0[negatives])[:21]]
    assert set(np.flatnonzero(mask[0])) == set(hardest)


def test_batch_without_objects_divides_by_one_not_zero():
    cls_preds, box_preds, cls_t, loc_t, loc_m = _random_problem(positives=(0, 0), ignored=0)
    parts = SSDLoss()(*map(mx.nd.array, (cls_preds, box_preds, cls_t, loc_t, loc_m)))
    assert np.isfinite(parts.total.asscalar()) and parts.num_positives == 0
    assert parts.localization.asscalar() == 0
