"""gluon_ssd.model.summary: receptive fields against numbers worked out by hand and against an
experiment on the network itself, output shapes against the network's real forward outputs,
parameter counts against the network's parameters."""
import math
from dataclasses import replace

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.model import SSD, VGG16
from gluon_ssd.model.summary import (backbone_layers, feature_layers, feature_map_fields,
                                     layer_summary, learnable_params, receptive_fields)
from gluon_ssd.presets import get_preset

# VGG16's receptive fields by hand (size = size_in + (k - 1) * jump_in): conv1_1 3, conv1_2 5,
# pool1 6 (jump 2), conv2_x 10, 14, pool2 16 (jump 4), conv3_x 24, 32, 40, pool3 44 (jump 8),
# conv4_x 60, 76, 92, pool4 100 (jump 16), conv5_x 132, 164, 196; SSD's pool5 (3x3 s1) 228,
# fc6 (3x3, dilation 6: spans 13 cells of 16 px) 228 + 12 * 16 = 420, fc7 (1x1) 420.
BY_HAND = {"conv1_2": (5, 1), "pool1": (6, 2), "conv2_2": (14, 2), "conv3_3": (40, 4),
           "conv4_3": (92, 8), "pool4": (100, 16), "conv5_3": (196, 16), "pool5": (228, 16),
           "fc6": (420, 16), "fc7": (420, 16),
           # SSD300's extras: 1x1, then 3x3 stride 2 (2x2) twice and 3x3 stride 1 twice
           "extra1_2": (452, 32), "extra2_2": (516, 64), "extra3_2": (644, 64),
           "extra4_2": (772, 64)}


def fields_by_name(spec):
    layers = backbone_layers(spec)
    return {layer.name: field for layer, field in zip(layers, receptive_fields(layers, 300))}


def test_receptive_fields_of_ssd300_match_the_hand_computed_values():
    fields = fields_by_name(get_preset("ssd300").model.backbone)
    assert {name: (fields[name].size, fields[name].jump) for name in BY_HAND} == BY_HAND
    # 300 -> 150 -> 75 -> 38 -> 19 (pools round up), then 10, 5, 3, 1
    assert [f.cells for _, f in feature_layers(get_preset("ssd300").model.backbone, 300)] == [
        38, 19, 10, 5, 3, 1]


def test_feature_map_fields_put_ssd300_anchors_beside_their_fields():
    rows = feature_map_fields(get_preset("ssd300").model)
    assert [r.cells for r in rows] == [38, 19, 10, 5, 3, 1]
    assert [r.rf_size for r in rows] == [92, 420, 452, 516, 644, 772]
    assert [r.jump for r in rows[:4]] == [r.step for r in rows[:4]] == [8, 16, 32, 64]
    assert rows[0].anchor_sizes[0] == pytest.approx(30) and rows[-1].anchor_sizes[0] == 264
    assert rows[-1].anchor_sizes[1] == pytest.approx(np.sqrt(264 * 315))
    assert rows[0].rf_in_image == 92 and all(r.rf_in_image == 300 for r in rows[1:])
    assert rows[0].rf_centre == rows[0].anchor_centre == 4.0  # conv4_3's cell 0: pixels 0..7


def test_feature_map_fields_refuse_anchors_for_other_maps():
    spec = get_preset("ssd300").model
    bad = replace(spec, anchors=replace(spec.anchors, feature_maps=(37, 19, 10, 5, 3, 1)))
    with pytest.raises(ValueError, match="37"):
        feature_map_fields(bad)


def impulse_response_network(spec, side):
    """The backbone of ``spec`` at the smallest width with every weight positive (an average)
    and every bias 0: a zero image gives zero everywhere, and a cell turns positive exactly when
    a bright pixel lies in its receptive field (max pools, ReLUs and the L2Norm keep 0 at 0 and
    a positive value positive)."""
    net = VGG16(replace(spec, width=1e-3, batch_norm=False))
    net.initialize()
    for name, param in net.collect_params().items():
        shape = param.shape
        if name.endswith("weight"):
            param.set_data(mx.nd.full(shape, 1.0 / np.prod(shape[1:])))
        elif name.endswith("bias"):
            param.set_data(mx.nd.zeros(shape))
    return net


@pytest.mark.parametrize("preset", ["ssd300", "demo"])
def test_receptive_fields_match_an_impulse_experiment(preset):
    """For the centre cell of each detection map: bright pixels everywhere outside its computed
    receptive field leave it at 0, one bright pixel at either corner inside makes it positive."""
    spec, side = get_preset(preset).model.backbone, 640
    net = impulse_response_network(spec, side)
    found = feature_layers(spec, side)
    images, spans = [], []
    for _, field in found:
        start, end = field.span(field.cells // 2)
        lo, hi = max(math.ceil(start), 0), min(math.floor(end), side)  # pixels lo .. hi - 1
        outside = np.ones((side, side), np.float32)
        outside[lo:hi, lo:hi] = 0
        corners = [np.zeros((side, side), np.float32) for _ in range(2)]
        corners[0][lo, lo] = corners[1][hi - 1, hi - 1] = 1e6
        images += [outside] + corners
        spans.append((lo, hi))
    x = mx.nd.array(np.repeat(np.stack(images)[:, None], 3, axis=1))
    outputs = net(x)
    for k, (_, field) in enumerate(found):
        c = field.cells // 2
        centre = outputs[k][3 * k:3 * k + 3, :, c, c].max(axis=1).asnumpy()
        assert centre[0] == 0, f"map {k}: a pixel outside {spans[k]} reaches the centre cell"
        assert (centre[1:] > 0).all(), f"map {k}: a corner of {spans[k]} does not reach it"
    assert any(0 < lo and hi < side for lo, hi in spans)  # a field with both edges inside


@pytest.mark.parametrize("preset", ["ssd300", "demo"])
def test_layer_summary_matches_the_real_network(preset):
    spec = get_preset(preset).model
    side = spec.anchors.image_size
    net = SSD(spec, ("cat", "dog"))
    net.initialize()
    rows = layer_summary(net)
    x = mx.nd.zeros((1, 3, side, side))
    features = net.features(x)
    maps = [r for r in rows if r.feature is not None and r.kind != "predictor"]
    assert [r.output for r in maps] == [f.shape[1:] for f in features]
    classes = [r for r in rows if r.name.startswith("class_pred")]
    assert [r.output for r in classes] == [
        p(f).shape[1:] for p, f in zip(net.class_predictors, features)]
    # the backbone's shapes from shape inference agree with the field arithmetic's cells
    layers = backbone_layers(net.features)
    cells = [f.cells for f in receptive_fields(layers, side)]
    assert [r.output[1] for r in rows[:len(layers)]] == cells
    # every learnable value of the network is in one row
    total = sum(int(np.prod(p.shape)) for p in net.collect_params().values()
                if p.grad_req != "null")
    assert sum(r.params for r in rows) == total == learnable_params(net)


def test_layer_summary_takes_another_input_size_without_allocating_it():
    net = SSD(get_preset("ssd300").model, ("object",))  # not even initialised
    rows = {r.name: r for r in layer_summary(net, (600, 1000))}
    assert rows["conv4_3_norm"].output == (512, 75, 125)
    assert rows["fc6"].kernel == "3x3 s1 p6 d6" and rows["pool5"].kernel == "3x3 s1 p1"
