"""Anchors fitted to a dataset's boxes, and the benchmark's VOC-format generator."""
import os
from dataclasses import asdict, replace

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.anchor_fit import _spec_best_iou, describe_fit, extend_anchors, fit_anchors
from gluon_ssd.anchors import preset_anchors, spec_priors
from gluon_ssd.coverage import preset_coverage, sample_boxes
from gluon_ssd.model import SSD
from gluon_ssd.presets import DEMO_ANCHORS, SSD300_ANCHORS, ModelSpec, get_preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generator_like_boxes(num_images: int, seed: int) -> np.ndarray:
    """Boxes drawn as gluon_ssd.data.voc_shapes draws them, without the pixels: 1-5
    objects on 320x240 / 240x320 / 400x300 / 300x400 images, longer side 5%-50% of sqrt(W*H):
    bars 1:3-1:6 tilted up to 5 degrees, arrows 1:0.8 tilted up to 10, ellipses 1:0.45-0.8 at
    any angle, hexagons; each horizontal or vertical, plus 2 px of antialiased edges.
    Normalised corners ``(M, 4)`` in the network-input frame."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_images):
        w, h = [(320, 240), (240, 320), (400, 300), (300, 400)][rng.integers(4)]
        for _ in range(rng.integers(1, 6)):
            length = np.sqrt(w * h) * rng.uniform(0.05, 0.5)
            kind = rng.integers(4)
            across = length * [1 / rng.uniform(3, 6), 0.8, rng.uniform(0.45, 0.8), 0.87][kind]
            tilt = np.deg2rad(rng.uniform(0, [5, 10, 90, 30][kind]))
            c, s = np.cos(tilt), np.sin(tilt)
            bw, bh = length * c + across * s + 2, length * s + across * c + 2
            if rng.integers(2):
                bw, bh = bh, bw
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            rows.append([x / w, y / h, (x + bw) / w, (y + bh) / h])
    return np.array(rows)


def assert_valid_fit(fitted, spec):
    assert (fitted.image_size, fitted.feature_maps, fitted.steps, fitted.offset) == \
        (spec.image_size, spec.feature_maps, spec.steps, spec.offset)
    assert len(fitted.sizes) == len(spec.feature_maps) + 1 and min(fitted.sizes) > 0
    assert len(fitted.ratios) == len(spec.feature_maps)
    for ratios in fitted.ratios:
        assert ratios[0] == 1 and min(ratios) > 0
    assert all(p.num_anchors <= 8 for p in spec_priors(fitted))
    assert all(e > 0 for layer in fitted.extra_sizes for e in layer)


WITH_EXTRA_SIZES = replace(DEMO_ANCHORS, extra_sizes=((14.0,), (37.5, 45.0), (), (), (), (150.0,)))


def test_grid_search_equals_the_networks_anchors():
    """The fit scores shapes by the nearest cell centre; that is the best over all anchors."""
    boxes = sample_boxes(300, seed=5, min_size=0.03, max_ratio=5.0)
    for spec in (DEMO_ANCHORS, SSD300_ANCHORS, WITH_EXTRA_SIZES):
        np.testing.assert_allclose(_spec_best_iou(boxes, spec),
                                   preset_coverage(boxes, spec).best_iou, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_raises_coverage_on_small_and_elongated_boxes(seed):
    boxes = generator_like_boxes(400, seed)
    before = preset_coverage(boxes, DEMO_ANCHORS)
    fitted = fit_anchors(boxes, DEMO_ANCHORS)
    after = preset_coverage(boxes, fitted)
    assert before.coverage < 0.75
    # Extra sizes (ratios at sizes between two layers') take it past the paper's form's ceiling.
    assert after.coverage >= 0.90 and after.coverage >= before.coverage + 0.15
    assert any(fitted.extra_sizes)
    assert after.forced_only < before.forced_only
    assert_valid_fit(fitted, DEMO_ANCHORS)
    assert fit_anchors(boxes, DEMO_ANCHORS) == fitted  # deterministic
    text = describe_fit(DEMO_ANCHORS, fitted, before, after)
    assert f"{before.coverage:.1%} -> {after.coverage:.1%}" in text and "layer 5" in text


def test_fit_adds_the_missing_aspect_ratio():
    """Tall thin boxes (w/h = 1/6) that SSD300 (ratios down to 1/3) covers badly."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.3, 0.7, (200, 2))
    wh = np.array([0.06, 0.36]) * rng.uniform(0.9, 1.1, (200, 1))
    boxes = np.concatenate([centres - wh / 2, centres + wh / 2], axis=1)
    before = preset_coverage(boxes, SSD300_ANCHORS).coverage
    fitted = fit_anchors(boxes, SSD300_ANCHORS)
    assert before < 0.5 and preset_coverage(boxes, fitted).coverage > before + 0.4
    assert any(0.1 < r < 0.25 for layer in fitted.ratios for r in layer)
    assert_valid_fit(fitted, SSD300_ANCHORS)


@pytest.mark.parametrize("spec, seed", [(DEMO_ANCHORS, 3), (SSD300_ANCHORS, 4)])
def test_fit_never_lowers_coverage(spec, seed):
    boxes = sample_boxes(300, seed=seed, min_size=0.03, max_size=0.95, max_ratio=4.0)
    fitted = fit_anchors(boxes, spec)
    assert preset_coverage(boxes, fitted).coverage >= preset_coverage(boxes, spec).coverage
    assert_valid_fit(fitted, spec)


def test_fit_keeps_a_preset_that_covers_everything():
    """SyntheticShapes-like boxes (22%-84% of the side, near square): the demo covers them all."""
    boxes = sample_boxes(300, seed=2, min_size=0.22, max_size=0.84, max_ratio=1.3)
    assert preset_coverage(boxes, DEMO_ANCHORS).coverage == 1.0
    assert fit_anchors(boxes, DEMO_ANCHORS) == DEMO_ANCHORS
    anchors = preset_anchors(SSD300_ANCHORS)
    perfect = anchors[(anchors.min(1) >= 0) & (anchors.max(1) <= 1)][::300]
    assert fit_anchors(perfect, SSD300_ANCHORS) == SSD300_ANCHORS


def test_fit_subsamples_many_boxes_and_checks_arguments():
    boxes = generator_like_boxes(100, 7)
    fitted = fit_anchors(boxes, DEMO_ANCHORS, max_boxes=100)
    assert_valid_fit(fitted, DEMO_ANCHORS)
    capped = fit_anchors(boxes, DEMO_ANCHORS, max_anchors_per_cell=3)
    assert capped == DEMO_ANCHORS or all(len(r) <= 2 for r in capped.ratios)
    with pytest.raises(ValueError, match="max_anchors_per_cell"):
        fit_anchors(boxes, DEMO_ANCHORS, max_anchors_per_cell=1)
    with pytest.raises(ValueError, match="row 0 has coordinates outside"):
        fit_anchors([[10, 20, 50, 80]], DEMO_ANCHORS)


def _anchor_set(spec):
    return {tuple(np.round(a, 5)) for a in preset_anchors(spec)}


@pytest.mark.parametrize("seed", [0, 2])
def test_extend_keeps_every_preset_anchor_and_covers_the_small_boxes(seed):
    """``extend``: the preset's anchors all stay (same sizes, ratios, places), extra sizes on
    top reach boxes under the smallest size, no layer over 8 anchors per cell."""
    boxes = generator_like_boxes(400, seed)
    extended = extend_anchors(boxes, DEMO_ANCHORS)
    assert (extended.sizes, extended.ratios) == (DEMO_ANCHORS.sizes, DEMO_ANCHORS.ratios)
    assert _anchor_set(DEMO_ANCHORS) < _anchor_set(extended)
    assert_valid_fit(extended, DEMO_ANCHORS)
    before, after = (preset_coverage(boxes, s) for s in (DEMO_ANCHORS, extended))
    assert after.coverage >= before.coverage + 0.08
    assert min(e for layer in extended.extra_sizes for e in layer) < DEMO_ANCHORS.sizes[0]
    small = (boxes[:, 2:] - boxes[:, :2]).max(axis=1) < 0.1
    assert after.best_iou[small].mean() > before.best_iou[small].mean() + 0.1
    assert extend_anchors(boxes, DEMO_ANCHORS) == extended  # deterministic
    # extending again only adds (the earlier extra sizes stay)
    again = extend_anchors(boxes, extended, max_anchors_per_cell=10)
    assert all(b[:len(a)] == a for a, b in zip(extended.extra_sizes, again.extra_sizes))


def test_extend_keeps_a_preset_that_covers_everything():
    boxes = sample_boxes(300, seed=2, min_size=0.22, max_size=0.84, max_ratio=1.3)
    assert extend_anchors(boxes, DEMO_ANCHORS) == DEMO_ANCHORS


def test_generated_dataset_loads_as_a_voc_folder(tmp_path):
    from gluon_ssd.data import voc_shapes as gen

    out = gen.make_dataset(tmp_path / "shapes", train=10, val=2, seed=3)
    from gluon_ssd.data.datasets import VOCFolderDataset
    train, val = VOCFolderDataset(str(out), "train"), VOCFolderDataset(str(out), "val")
    assert len(train) == 10 and len(val) == 2
    assert set(train.classes) <= set(gen.CLASSES) and len(train.classes) >= 2
    sizes = set()
    for i in range(len(train)):
        image, label = train[i]
        h, w = image.shape[:2]
        sizes.add((w, h))
        assert (w, h) in gen.IMAGE_SIZES and label.shape[1] == 6 and len(label) >= 1
        assert (label[:, 0] >= 0).all() and (label[:, 2] <= w).all() and (label[:, 3] <= h).all()
        assert (label[:, :2] < label[:, 2:4]).all()
    assert len(sizes) >= 2  # non-square images of several sizes
    # the same seed makes the same set; an existing folder is never overwritten
    again = gen.make_dataset(tmp_path / "again", train=10, val=2, seed=3)
    assert (out / "Annotations" / "000004.xml").read_text() == \
        (again / "Annotations" / "000004.xml").read_text()
    with pytest.raises(ValueError, match="not an empty folder"):
        gen.make_dataset(out, train=1, val=0)
    assert gen.main([str(out), "--train", "1", "--val", "0"]) == 2


def test_extra_sizes_carry_every_ratio_of_their_layer_in_the_network():
    """An SSD built on a spec with extra sizes has their anchors, in MultiBoxPrior's order."""
    prior = spec_priors(WITH_EXTRA_SIZES)[1]
    assert prior.num_anchors == (2 + 4) + 2 * 5  # two squares + 4 ratios, then 5 per extra size
    shapes = prior.shapes((192, 192))
    assert [round(a.size * 192, 2) for a in shapes[6:]] == [37.5] * 5 + [45.0] * 5
    assert [a.ratio for a in shapes[6:11]] == list(WITH_EXTRA_SIZES.ratios[1])
    model = replace(get_preset("demo").model, anchors=WITH_EXTRA_SIZES)
    net = SSD(model, ["a", "b"])
    net.initialize()
    cls_preds, box_preds, anchors = net(mx.nd.zeros((1, 3, 192, 192)))
    expected = preset_anchors(WITH_EXTRA_SIZES)
    assert anchors.shape == (1, len(expected), 4) and cls_preds.shape == (1, len(expected), 3)
    np.testing.assert_allclose(anchors[0].asnumpy(), expected, atol=1e-6)
    assert ModelSpec.from_dict(asdict(model)) == model


def test_a_spec_with_the_wrong_number_of_extra_size_layers_is_refused():
    with pytest.raises(ValueError, match="extra_sizes needs 6 entries for 6 feature maps, got 2"):
        replace(DEMO_ANCHORS, extra_sizes=((10.0,), ()))
