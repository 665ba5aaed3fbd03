"""The SSD network and the detector, checked against the paper's numbers, numpy and GluonCV.

Full-width SSD300/SSD512 forwards cost one to four seconds on a CPU, so each network is built and
run once per module (fixtures) and most checks read the stored outputs; feature-map shapes come
from symbolic shape inference, which computes nothing.
"""
import math
from types import SimpleNamespace

import gluoncv
import mxnet as mx
import numpy as np
import pytest

from gluon_ssd import DetectionNet, DetectionHead, get_model, get_preset
from gluon_ssd.anchors import preset_anchors
from gluon_ssd.presets import DetectSpec

VOC = tuple(f"voc{i}" for i in range(20))
# The paper's anchors per cell: 4 on layers with ratios {1, 2, 1/2}, 6 with {1, 2, 1/2, 3, 1/3}
# (keyed by preset short name; the demo preset has SSD300's layout).
ANCHORS_PER_CELL = {"ssd300": (4, 6, 6, 6, 4, 4), "ssd512": (4, 6, 6, 6, 6, 4, 4)}


def random_images(shape, seed=0):
    """Normalised-looking input ``shape = (B, 3, H, W)``."""
    return mx.nd.array(np.random.RandomState(seed).normal(size=shape).astype(np.float32))


def feature_map_sizes(net, image_hw):
    """``[(h_k, w_k)]`` of an SSD's feature maps for an ``(H, W)`` input (shape inference only)."""
    outputs = mx.sym.Group(net.features(mx.sym.var("data")))
    _, shapes, _ = outputs.infer_shape(data=(1, 3) + tuple(image_hw))
    return [s[2:] for s in shapes]


def trainable_size(block):
    """Number of trainable scalars (``grad_req != 'null'``) of an initialised block."""
    return sum(int(np.prod(p.shape)) for p in block.collect_params().values()
               if p.grad_req != "null")


def run(net, x):
    """``net(x)`` as numpy arrays."""
    return [o.asnumpy() for o in net(x)]


@pytest.fixture(scope="module")
def ssd300():
    """SSD300 (20 classes): outputs at 300x300 imperatively, then hybridized (static_alloc)."""
    mx.random.seed(0)
    net = get_model("ssd300_vgg16", VOC)
    x = random_images((1, 3, 300, 300))
    imperative = run(net, x)
    net.hybridize(static_alloc=True)
    return SimpleNamespace(net=net, x=x, imperative=imperative, hybrid=run(net, x))


@pytest.fixture(scope="module")
def ssd512():
    """SSD512 (20 classes), hybridized (static_alloc), outputs at 512x512."""
    mx.random.seed(0)
    net = get_model("ssd512_vgg16", VOC)
    net.hybridize(static_alloc=True)
    return SimpleNamespace(net=net, outputs=run(net, random_images((1, 3, 512, 512))))


# ---------------------------------------------------------------------------------------------
# Shapes and anchors.

@pytest.mark.parametrize("preset, sizes", [
    ("ssd300", [38, 19, 10, 5, 3, 1]),
    ("ssd512", [64, 32, 16, 8, 4, 2, 1]),
])
def test_feature_maps_of_the_paper(preset, sizes, request):
    net = request.getfixturevalue(preset).net
    image_size = get_preset(preset).model.anchors.image_size
    assert feature_map_sizes(net, (image_size, image_size)) == [(s, s) for s in sizes]


@pytest.mark.parametrize("name, outputs, boxes", [("ssd300", "hybrid", 8732),
                                                  ("ssd512", "outputs", 24564)])
def test_outputs_at_the_preset_size(request, name, outputs, boxes):
    cls_preds, box_preds, anchors = getattr(request.getfixturevalue(name), outputs)
    assert cls_preds.shape == (1, boxes, 21)
    assert box_preds.shape == (1, boxes * 4)
    assert anchors.shape == (1, boxes, 4)
    np.testing.assert_allclose(anchors[0], preset_anchors(get_preset(name).model.anchors),
                               atol=1e-6)


@pytest.mark.parametrize("preset, image_hw", [("ssd300", (300, 500)), ("ssd512", (384, 512))])
def test_non_square_input(preset, image_hw, request):
    """Anchor count = sum h_k w_k A_k of the actual maps; first-layer anchors in pixels.

    The preset's grid of centres (pitch ``step`` px at its square size S, so ``f * step / S`` of
    the image for an f-cell map) spreads over the input: on an ``H x W`` input with an ``h x w``
    map, cell (i, j) is centred at ``((j + 0.5) * W / w, (i + 0.5) * H / h) * f * step / S`` px.
    The boxes keep their sizes in pixels.
    """
    net = request.getfixturevalue(preset).net
    spec = get_preset(preset).model.anchors
    height, width = image_hw
    cls_preds, box_preds, anchors = run(net, random_images((1, 3, height, width)))
    maps = feature_map_sizes(net, image_hw)
    n = sum(h * w * a for (h, w), a in zip(maps, ANCHORS_PER_CELL[preset]))
    assert cls_preds.shape == (1, n, 21) and box_preds.shape == (1, 4 * n)
    assert anchors.shape == (1, n, 4)

    (h0, w0), step, f0 = maps[0], spec.steps[0], spec.feature_maps[0]
    first = anchors[0, :h0 * w0 * 4].reshape(h0, w0, 4, 4) * [width, height, width, height]
    rows, cols = np.meshgrid(np.arange(h0), np.arange(w0), indexing="ij")
    expected_x = (cols + 0.5) * width / w0 * f0 * step / spec.image_size
    expected_y = (rows + 0.5) * height / h0 * f0 * step / spec.image_size
    np.testing.assert_allclose((first[..., 0] + first[..., 2]) / 2,
                               np.repeat(expected_x[..., None], 4, -1), atol=1e-3)
    np.testing.assert_allclose((first[..., 1] + first[..., 3]) / 2,
                               np.repeat(expected_y[..., None], 4, -1), atol=1e-3)
    size, next_size = spec.sizes[:2]
    root2 = math.sqrt(2)
    expected_wh = [(size, size), (math.sqrt(size * next_size),) * 2,
                   (size * root2, size / root2), (size / root2, size * root2)]
    np.testing.assert_allclose(first[..., 2:] - first[..., :2],
                               np.broadcast_to(expected_wh, (h0, w0, 4, 2)), rtol=1e-4)


def test_hybridized_equals_imperative(ssd300):
    for imperative, hybrid in zip(ssd300.imperative, ssd300.hybrid):
        np.testing.assert_allclose(hybrid, imperative, rtol=1e-4, atol=1e-5)


def test_untrained_ssd_scores_every_class_alike(ssd300):
    """The paper's initialisation (predictor biases 0, small weights): no class, background
    included, is favoured before training, so background starts at about 1/(C + 1) per anchor
    and the negatives' confidence loss near log(C + 1), the imbalance mining exists for."""
    assert all(not p.bias.data().asnumpy().any() for p in ssd300.net.class_predictors)
    probs = mx.nd.softmax(mx.nd.array(ssd300.imperative[0]), axis=-1).asnumpy()[0]  # (8732, 21)
    np.testing.assert_allclose(probs.mean(axis=0), 1 / 21, rtol=0.5)  # random weights: spread
    assert abs(-np.log(probs[:, 0]).mean() - np.log(21)) < 0.5  # log 21 = 3.04


@pytest.mark.parametrize("preset, gluoncv_name, image_size", [
    ("ssd300", "ssd_300_vgg16_atrous_voc", 300),
    ("ssd512", "ssd_512_vgg16_atrous_voc", 320),  # smaller input: shapes do not depend on it
])
def test_parameter_count_equals_gluoncv(preset, gluoncv_name, image_size, request):
    ours = request.getfixturevalue(preset).net
    theirs = gluoncv.model_zoo.get_model(gluoncv_name, pretrained=False, pretrained_base=False)
    theirs.initialize()
    theirs(mx.nd.zeros((1, 3, image_size, image_size)))
    assert trainable_size(ours) == trainable_size(theirs)


# ---------------------------------------------------------------------------------------------
# Which output row and column a predictor channel lands in.

def only_one_tap(conv, channel, tap):
    """Zero ``conv`` except weight ``[channel, :, tap]`` = 1.

    Output channel ``channel`` at (i, j) is then ``sum_c f(c, (i, j) + tap - (1, 1))`` (0 outside).
    """
    weight = np.zeros(conv.weight.shape, np.float32)
    weight[channel, :, tap[0], tap[1]] = 1.0
    conv.weight.set_data(mx.nd.array(weight))
    conv.bias.set_data(mx.nd.zeros(conv.bias.shape))


def layer_offset(net, layer, image_size):
    """Row of the first anchor of ``layer`` in N: anchors of the earlier layers."""
    maps = feature_map_sizes(net, (image_size, image_size))
    return sum(h * w * a for (h, w), a in zip(maps[:layer], ANCHORS_PER_CELL["ssd300"]))


def test_prediction_rows_follow_multibox_prior_order():
    """A class channel a*(C+1)+c and a box channel 4a+j light up anchor a's rows, cell by cell.

    Tap (0, 1) of a 3x3 padded kernel reads the cell above: zero on the first row of the map
    only. Tap (1, 0) reads the cell to the left: zero on the first column only. Features are
    non-negative (ReLU, L2Norm), so every other cell is positive.
    """
    net = get_model("ssd300_vgg16", VOC)
    x = random_images((1, 3, 300, 300))
    net(x)  # shapes
    cls_anchor, cls_class = 2, 5  # layer 0 (38x38, 4 anchors): ratio-2 anchor, class 5
    box_anchor, box_coord = 3, 2  # layer 4 (3x3, 4 anchors): ratio-1/2 anchor, coordinate 2
    only_one_tap(net.class_predictors[0], cls_anchor * 21 + cls_class, (0, 1))
    only_one_tap(net.box_predictors[4], 4 * box_anchor + box_coord, (1, 0))
    cls_preds, box_preds, anchors = run(net, x)

    cls_rows = np.array([(i * 38 + j) * 4 + cls_anchor for i in range(1, 38) for j in range(38)])
    lit = np.argwhere(cls_preds[0, :38 * 38 * 4] != 0)
    np.testing.assert_array_equal(lit[:, 0], cls_rows)
    np.testing.assert_array_equal(lit[:, 1], cls_class)
    widths, heights = (anchors[0, cls_rows, 2:] - anchors[0, cls_rows, :2]).T
    np.testing.assert_allclose(widths / heights, 2.0, rtol=1e-4)

    offset = layer_offset(net, 4, 300)
    box_rows = np.array([(i * 3 + j) * 4 + box_anchor for i in range(3) for j in range(1, 3)])
    lit = np.argwhere(box_preds[0].reshape(-1, 4)[offset:offset + 36] != 0)
    np.testing.assert_array_equal(lit[:, 0], box_rows)
    np.testing.assert_array_equal(lit[:, 1], box_coord)
    centres_y = anchors[0, offset + box_rows, 1::2].mean(axis=1)
    np.testing.assert_allclose(centres_y, np.repeat([50.0, 150.0, 250.0], 2) / 300, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Detection: layout, decoding, suppression.

def detect(cls_logits, offsets, anchors, **spec):
    """A :class:`DetectionHead` on hand-made ``(N, C+1)`` logits, ``(N, 4)`` offsets, ``(N, 4)`` anchors.

    ``max_detections`` defaults to N (MultiBoxDetection returns N rows).
    """
    spec.setdefault("max_detections", len(anchors))
    detector = DetectionHead(DetectSpec(**spec))
    batch = [mx.nd.array(np.asarray(a, np.float32)[None]) for a in (cls_logits, offsets, anchors)]
    batch[1] = batch[1].reshape((1, -1))
    return [o.asnumpy()[0] for o in detector(*batch)]


def softmax(logits):
    e = np.exp(logits - np.max(logits))
    return e / e.sum()


def test_detector_decodes_with_variances():
    anchor = [0.2, 0.3, 0.6, 0.5]  # centre (0.4, 0.4), 0.4 wide, 0.2 tall
    offset = [1.0, -2.0, 0.5, -1.0]
    logits = [0.0, 1.0, 3.0, 0.5]  # background, then 3 object classes: class id 1 wins
    background = [9.0, 0.0, 0.0, 0.0]  # every object class under the 0.01 score threshold
    ids, scores, boxes = detect([logits] + [background] * 4, [offset] * 5, [anchor] * 5)
    cx, cy = 0.4 + 1.0 * 0.1 * 0.4, 0.4 - 2.0 * 0.1 * 0.2
    w, h = 0.4 * math.exp(0.5 * 0.2), 0.2 * math.exp(-1.0 * 0.2)
    assert ids.shape == (5, 1) and scores.shape == (5, 1) and boxes.shape == (5, 4)
    assert ids[0, 0] == 1
    np.testing.assert_allclose(scores[0, 0], softmax(np.array(logits))[2], rtol=1e-5)
    np.testing.assert_allclose(boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2],
                               atol=1e-6)
    np.testing.assert_array_equal(ids[1:], -1)


def test_force_suppress_crosses_classes():
    """Two boxes with IoU 0.875 of different classes: kept both per class, one across classes."""
    anchors = [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.45]]
    logits = [[0.0, 6.0, 0.0], [0.0, 0.0, 5.0]]
    ids, _, _ = detect(logits, np.zeros((2, 4)), anchors)
    assert ids[:2, 0].tolist() == [0, 1]
    ids, _, _ = detect(logits, np.zeros((2, 4)), anchors, force_suppress=True)
    assert ids[0, 0] == 0 and (ids[1:] == -1).all()


def valid_rows(ids):
    return ids[..., 0] >= 0


def test_same_class_overlap_is_suppressed_above_the_nms_threshold_only():
    """The survivors come first; the suppressed row is all -1."""
    # IoU with the first box: 0.875 (suppressed), 0.375 (kept).
    anchors = [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.45], [0.1, 0.1, 0.5, 0.25]]
    logits = [[0.0, 6.0], [0.0, 5.0], [0.0, 4.0]]
    ids, scores, boxes = detect(logits, np.zeros((3, 4)), anchors)
    assert valid_rows(ids).tolist() == [True, True, False]
    np.testing.assert_allclose(boxes[:2], np.array(anchors)[[0, 2]], atol=1e-6)
    assert scores[2, 0] == -1 and (boxes[2] == -1).all()


def test_detection_net_layout(ssd300):
    """ids (B, K, 1) with -1 for dropped rows, scores descending, boxes inside the image.

    No score threshold: an untrained network's class probabilities may all be tiny.
    """
    net = DetectionNet(ssd300.net, DetectSpec(max_detections=50, score_threshold=0.0))
    net.hybridize(static_alloc=True)
    ids, scores, boxes = run(net, ssd300.x)
    assert ids.shape == (1, 50, 1) and scores.shape == (1, 50, 1) and boxes.shape == (1, 50, 4)
    valid = valid_rows(ids)
    assert valid.any()
    assert set(np.unique(ids[valid])) <= set(range(len(VOC)))
    assert (np.diff(scores[0, :, 0]) <= 0).all()
    assert ((boxes[valid] >= 0) & (boxes[valid] <= 1)).all()
    assert (boxes[valid][:, 2:] >= boxes[valid][:, :2]).all()


def test_detector_returns_the_best_k_surviving_boxes():
    """20 copies of one box (19 suppressed) and 5 disjoint boxes, K = 6: all 6 survivors return."""
    disjoint = [[0.3 + 0.1 * i, 0.5, 0.35 + 0.1 * i, 0.6] for i in range(5)]
    anchors = [[0.0, 0.0, 0.2, 0.2]] * 20 + disjoint
    logits = [[0.0, 5.0 - 0.01 * i] for i in range(20)] + [[0.0, 1.0 - 0.1 * i] for i in range(5)]
    ids, _, _ = detect(logits, np.zeros((25, 4)), anchors, max_detections=6)
    assert valid_rows(ids).sum() == 6


# ---------------------------------------------------------------------------------------------
# New classes on a trained network.

@pytest.fixture()
def demo_net():
    """The small demo preset (same SSD code, 1/8 width) with classes cat, dog, bird, run once."""
    net = get_model("demo", ["cat", "dog", "bird"])
    net(random_images((1, 3, 192, 192)))
    return net


def class_parameters(net):
    """``[(weight, bias)]`` of each class predictor, numpy."""
    return [(p.weight.data().asnumpy(), p.bias.data().asnumpy()) for p in net.class_predictors]


def test_reset_classes_without_reuse_changes_the_class_count(demo_net):
    demo_net.reset_classes(["a", "b", "c", "d", "e"], reuse=False)
    demo_net.hybridize()
    cls_preds, box_preds, anchors = run(demo_net, random_images((2, 3, 192, 192)))
    assert cls_preds.shape == (2, anchors.shape[1], 6)
    assert demo_net.num_classes == 5


def test_reset_classes_reuses_kept_classes_and_background(demo_net):
    """Channel a*(C+1)+c: old columns bg, cat, dog, bird -> new bg, dog, fish, cat."""
    old = class_parameters(demo_net)
    demo_net.reset_classes(["dog", "fish", "cat"])
    cls_preds, _, _ = run(demo_net, random_images((1, 3, 192, 192)))
    assert cls_preds.shape[-1] == 4
    new = class_parameters(demo_net)
    for anchors, old_layer, new_layer in zip(ANCHORS_PER_CELL["ssd300"], old, new):
        for before, after in zip(old_layer, new_layer):  # weight, then bias
            before = before.reshape((anchors, 4, -1))  # (anchor, class column, rest)
            after = after.reshape((anchors, 4, -1))
            np.testing.assert_array_equal(after[:, [0, 1, 3]], before[:, [0, 2, 1]])
        fish = new_layer[0].reshape((anchors, 4, -1))[:, 2]
        assert not any(np.array_equal(fish, old_layer[0].reshape((anchors, 4, -1))[:, c])
                       for c in range(4))


def test_detector_returns_k_rows_even_with_fewer_anchors():
    # one anchor, class 1 likely: one detection, then K - 1 empty rows (id and score -1)
    ids, scores, boxes = DetectionHead(DetectSpec(max_detections=5))(
        mx.nd.array([[[0.0, 1.0, 6.0]]]), mx.nd.zeros((1, 4)), mx.nd.array([[[0.1, 0.1, 0.5, 0.5]]]))
    assert ids.shape == (1, 5, 1) and boxes.shape == (1, 5, 4)
    np.testing.assert_array_equal(ids[0, :, 0].asnumpy(), [1, -1, -1, -1, -1])
    np.testing.assert_allclose(boxes[0, 0].asnumpy(), [0.1, 0.1, 0.5, 0.5], atol=1e-6)
    assert (scores[0, 1:, 0].asnumpy() == -1).all()
