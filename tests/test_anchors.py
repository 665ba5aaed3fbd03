"""Anchors against independent expectations: a numpy MultiBoxPrior, hand-computed and published
values."""
import math

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.anchors import (AnchorGenerator, LayerPrior, anchor_shapes, check_prior_args,
                               feature_map_anchors, format_anchor_table, num_anchors,
                               paper_scales, paper_to_priors, preset_anchors,
                               preset_layer_of_anchor, priors_to_paper, spec_priors)
from gluon_ssd.presets import SSD300_ANCHORS, SSD512_ANCHORS, get_preset


def reference_prior(h, w, sizes, ratios, steps=(-1, -1), offsets=(0.5, 0.5)):
    """MultiBoxPrior written from its definition: ``(h*w*A, 4)`` normalised corners.

    Shapes ``(s, ratios[0]) for s in sizes`` then ``(sizes[0], r) for r in ratios[1:]``; a shape is
    ``s * sqrt(r) * h / w`` wide and ``s / sqrt(r)`` tall; cell (i, j) is centred at
    ``((j + off_x) * step_x, (i + off_y) * step_y)`` with step -1 meaning 1 / map size.
    """
    step_y = 1 / h if steps[0] == -1 else steps[0]
    step_x = 1 / w if steps[1] == -1 else steps[1]
    pairs = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]
    half_w = np.array([s * math.sqrt(r) * h / w / 2 for s, r in pairs])
    half_h = np.array([s / math.sqrt(r) / 2 for s, r in pairs])
    cy, cx = np.meshgrid((np.arange(h) + offsets[0]) * step_y, (np.arange(w) + offsets[1]) * step_x,
                         indexing="ij")
    cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)  # (h*w, 1), row-major cells
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
    return boxes.reshape(-1, 4)  # cell -> anchor


def paper_layer(spec, k):
    """Layer k of a preset as the paper describes it, normalised (independently of anchors.py)."""
    side = spec.image_size
    s_k, s_next = spec.sizes[k] / side, spec.sizes[k + 1] / side
    sizes = (s_k, math.sqrt(s_k * s_next))
    step = spec.steps[k] / side
    return spec.feature_maps[k], sizes, spec.ratios[k], step


@pytest.mark.parametrize("h, w, sizes, ratios, steps, offsets", [
    (1, 1, [0.2, 0.5], [1, 4, 0.25], (-1, -1), (0.5, 0.5)),
    (2, 4, [0.2, 0.5], [1, 4, 0.25], (-1, -1), (0.5, 0.5)),
    (3, 5, [0.3], [2, 0.5], (0.1, 0.2), (0.25, 0.75)),
    (4, 4, [0.75, 0.5, 0.25], [1, 2, 0.5], (-1, -1), (0.0, 1.0)),
    (6, 2, [1.05, 0.9], [1], (-1, -1), (0.5, 0.5)),
])
def test_feature_map_anchors_match_numpy_reference(h, w, sizes, ratios, steps, offsets):
    got = feature_map_anchors((h, w), sizes, ratios, steps, offsets)
    assert got.shape == (h * w * num_anchors(sizes, ratios), 4)
    np.testing.assert_allclose(got, reference_prior(h, w, sizes, ratios, steps, offsets), atol=1e-6)


def test_seed_example_four_boxes_by_hand():
    """sizes [0.2, 0.5], ratios [1, 4, 0.25]: 2 + 3 - 1 = 4 boxes, centred on a 1x1 map."""
    boxes = feature_map_anchors((1, 1), [0.2, 0.5], [1, 4, 0.25])
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    # (0.2, 1), (0.5, 1), (0.2, 4): 0.2*2 x 0.2/2, (0.2, 1/4): 0.2/2 x 0.2*2
    np.testing.assert_allclose(widths, [0.2, 0.5, 0.4, 0.1], atol=1e-6)
    np.testing.assert_allclose(heights, [0.2, 0.5, 0.1, 0.4], atol=1e-6)
    np.testing.assert_allclose((boxes[:, :2] + boxes[:, 2:]) / 2, 0.5, atol=1e-6)
    shapes = anchor_shapes([0.2, 0.5], [1, 4, 0.25], (300, 300))
    np.testing.assert_allclose([(a.width_px, a.height_px) for a in shapes],
                               [(60, 60), (150, 150), (120, 30), (30, 120)])


def test_ratio0_applies_to_every_size():
    """MXNet 1.9.1: ratios[0] = 2 makes *both* sizes' boxes 2:1 (older MXNet ignored it)."""
    boxes = feature_map_anchors((1, 1), [0.2, 0.5], [2, 4, 0.25])
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    np.testing.assert_allclose(widths / heights, [2, 2, 4, 0.25], rtol=1e-5)
    np.testing.assert_allclose(widths * heights, [0.04, 0.25, 0.04, 0.04], rtol=1e-5)


def test_mxnet_published_values():
    """MXNet/d2l anchor tutorial: a 561x728 input, sizes [0.75, 0.5, 0.25], ratios [1, 2, 0.5]."""
    boxes = feature_map_anchors((561, 728), [0.75, 0.5, 0.25], [1, 2, 0.5])
    assert boxes.shape == (2_042_040, 4)
    np.testing.assert_allclose(boxes.reshape(561, 728, 5, 4)[250, 250, 0],
                               [0.055117, 0.071524, 0.63307, 0.821524], atol=1e-5)


def test_non_square_map_scales_width_by_h_over_w():
    """On an H x W map a ratio-1 box is s*H/W wide: square in pixels on an H x W image."""
    boxes = feature_map_anchors((2, 4), [0.5], [1, 4])
    widths, heights = boxes[:2, 2] - boxes[:2, 0], boxes[:2, 3] - boxes[:2, 1]
    np.testing.assert_allclose(widths, [0.5 * 2 / 4, 0.5 * 2 * 2 / 4], atol=1e-6)
    np.testing.assert_allclose(heights, [0.5, 0.25], atol=1e-6)
    square, wide = anchor_shapes([0.5], [1, 4], (200, 400))
    assert square.width_px == pytest.approx(square.height_px) == pytest.approx(100)
    assert wide.width_px / wide.height_px == pytest.approx(4)


@pytest.mark.parametrize("spec, total", [(SSD300_ANCHORS, 8732), (SSD512_ANCHORS, 24564)])
def test_preset_anchors_are_the_papers(spec, total):
    anchors, layer = preset_anchors(spec), preset_layer_of_anchor(spec)
    assert anchors.shape == (total, 4) and layer.shape == (total,)
    for k in range(len(spec.feature_maps)):
        f, sizes, ratios, step = paper_layer(spec, k)
        expected = reference_prior(f, f, sizes, ratios, (step, step))
        np.testing.assert_allclose(anchors[layer == k], expected, atol=1e-5)
        grid = anchors[layer == k].reshape(f, f, -1, 4)
        centre = (np.arange(f) + 0.5) * spec.steps[k] / spec.image_size
        np.testing.assert_allclose((grid[0, :, :, 0] + grid[0, :, :, 2]).T / 2,
                                   np.broadcast_to(centre, (grid.shape[2], f)), atol=1e-5)
        np.testing.assert_allclose((grid[:, 0, :, 1] + grid[:, 0, :, 3]).T / 2,
                                   np.broadcast_to(centre, (grid.shape[2], f)), atol=1e-5)
        np.testing.assert_allclose(grid[0, 0, 0, 2] - grid[0, 0, 0, 0],
                                   spec.sizes[k] / spec.image_size, atol=1e-5)


def test_ssd300_first_and_last_boxes_in_pixels():
    anchors = preset_anchors(SSD300_ANCHORS) * 300
    np.testing.assert_allclose(anchors[0], [4 - 15, 4 - 15, 4 + 15, 4 + 15], atol=1e-3)
    last = math.sqrt(264 * 315)  # s'_6, the 1x1 layer's extra square: 2nd of its last 4 anchors
    np.testing.assert_allclose(anchors[-3], [150 - last / 2] * 2 + [150 + last / 2] * 2,
                               atol=1e-3)


def test_paper_scale_formula():
    assert paper_scales(6) == pytest.approx([0.2, 0.34, 0.48, 0.62, 0.76, 0.9])
    assert paper_scales(5, 0.1, 0.5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert paper_scales(1, 0.3, 0.9) == [0.3]


def test_paper_priors_round_trip():
    scales = [0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05]
    ratios = [(1, 2, 0.5), (1, 2, 0.5, 3, 1 / 3), (1, 2, 0.5, 3, 1 / 3), (1, 2, 0.5, 3, 1 / 3),
              (1, 2, 0.5), (1, 2, 0.5)]
    priors = paper_to_priors(scales, ratios)
    assert priors[0].sizes == pytest.approx((0.1, math.sqrt(0.1 * 0.2)))
    assert [p.num_anchors for p in priors] == [4, 6, 6, 6, 4, 4]
    back_scales, back_ratios = priors_to_paper(priors)
    assert back_scales == pytest.approx(scales)
    assert [tuple(r) for r in back_ratios] == [tuple(map(float, r)) for r in ratios]
    spec_scales, _ = priors_to_paper(spec_priors(SSD300_ANCHORS))
    assert spec_scales == pytest.approx([s / 300 for s in SSD300_ANCHORS.sizes])


def test_priors_to_paper_rejects_non_paper_layers():
    with pytest.raises(ValueError, match="ratios"):
        priors_to_paper([LayerPrior((0.2, 0.3), (2.0, 1.0))])
    with pytest.raises(ValueError, match="extra size"):
        priors_to_paper([LayerPrior((0.2, 0.25), (1.0,)), LayerPrior((0.4, 0.5), (1.0,))])


def test_anchor_generator_non_square_input_stretches_grid_and_keeps_pixel_sizes():
    spec, (height, width) = SSD300_ANCHORS, (300, 500)
    # SSD300's maps at 300x500: conv4_3 ceil(500/8) = 63, fc7 32, stride-2 extras 16, 8, then the
    # two unpadded 3x3 extras 6, 4 (heights 38, 19, 10, 5, 3, 1 as at 300x300).
    shapes = [(38, 63), (19, 32), (10, 16), (5, 8), (3, 6), (1, 4)]
    generator = AnchorGenerator(spec)
    generator.initialize()
    image = mx.nd.zeros((1, 3, height, width))
    features = [mx.nd.zeros((1, 8, h, w)) for h, w in shapes]
    anchors = generator(image, *features)[0].asnumpy()
    counts = [h * w * n for (h, w), n in zip(shapes, generator.num_anchors)]
    assert len(anchors) == sum(counts)
    start = 0
    for k, ((h, w), count) in enumerate(zip(shapes, counts)):
        layer = anchors[start:start + count].reshape(h, w, -1, 4)
        start += count
        step, s_k, s_next = spec.steps[k], spec.sizes[k], spec.sizes[k + 1]
        # The preset's grid (step * map / image: 8 * 38 / 300 for conv4_3) spread over the input.
        grid_scale = step * spec.feature_maps[k] / spec.image_size
        cx = (layer[..., 0] + layer[..., 2]) / 2
        cy = (layer[..., 1] + layer[..., 3]) / 2 * height
        np.testing.assert_allclose(cx[0, :, 0], (np.arange(w) + 0.5) / w * grid_scale, atol=1e-6)
        np.testing.assert_allclose(cy[:, 0, 0], (np.arange(h) + 0.5) * step, atol=1e-2)
        assert cx.max() * width < width + step  # the last centres stay on (or at the edge of) the image
        box_w = (layer[0, 0, :, 2] - layer[0, 0, :, 0]) * width
        box_h = (layer[0, 0, :, 3] - layer[0, 0, :, 1]) * height
        pairs = [(s_k, 1.0), (math.sqrt(s_k * s_next), 1.0)]
        pairs += [(s_k, r) for r in spec.ratios[k][1:]]
        np.testing.assert_allclose(box_w, [s * math.sqrt(r) for s, r in pairs], rtol=1e-4)
        np.testing.assert_allclose(box_h, [s / math.sqrt(r) for s, r in pairs], rtol=1e-4)


def test_anchor_generator_hybridized_equals_imperative():
    spec = get_preset("demo").model.anchors
    image = mx.nd.zeros((2, 3, 192, 256))
    shapes = [(24, 32), (12, 16), (6, 8), (3, 4), (2, 2), (1, 1)]
    features = [mx.nd.zeros((2, 4, h, w)) for h, w in shapes]
    generator = AnchorGenerator(spec)
    generator.initialize()
    imperative = generator(image, *features).asnumpy()
    generator.hybridize()
    hybrid = generator(image, *features).asnumpy()
    np.testing.assert_array_equal(imperative, hybrid)


@pytest.mark.parametrize("kwargs, name", [
    (dict(sizes=[], ratios=[1]), "sizes"),
    (dict(sizes=[0.2, -0.1], ratios=[1]), "sizes"),
    (dict(sizes=[0.2], ratios=[0]), "ratios"),
    (dict(sizes=[0.2], ratios=[float("nan")]), "ratios"),
    (dict(sizes=[0.2], ratios=[1], steps=(0, 0.1)), "steps"),
    (dict(sizes=[0.2], ratios=[1], offsets=(1.5, 0.5)), "offsets"),
])
def test_bad_prior_args_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        check_prior_args(**kwargs)


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="feature_map"):
        feature_map_anchors((0, 4), [0.2], [1])
    with pytest.raises(ValueError, match="num_layers"):
        paper_scales(0)
    with pytest.raises(ValueError, match="s_min"):
        paper_scales(3, 0.9, 0.2)
    with pytest.raises(ValueError, match="must contain 1"):
        paper_to_priors([0.2, 0.4], [(2, 0.5)])
    with pytest.raises(ValueError, match="scales needs 3"):
        paper_to_priors([0.2, 0.4], [(1,), (1,)])


def test_format_anchor_table_has_a_row_per_shape_and_a_layer_column():
    shapes = anchor_shapes([0.2, 0.5], [1, 4, 0.25], (300, 300))
    table = format_anchor_table(shapes, layer=[0, 0, 1, 1]).splitlines()
    assert len(table) == 5 and table[0].split()[:2] == ["#", "layer"]
    assert table[3].split()[1:4] == ["1", "0.2", "4"]
