"""Anchor coverage and anchor suggestions, against hand-computed IoUs and constructed boxes."""
import numpy as np
import pytest

from gluon_ssd.anchors import preset_anchors, preset_layer_of_anchor
from gluon_ssd.coverage import (MATCH_THRESHOLD, anchor_coverage, check_boxes, kmeans_shapes,
                                preset_coverage, sample_boxes, shape_iou, suggest_anchors)
from gluon_ssd.presets import SSD300_ANCHORS


def test_best_iou_by_hand():
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    boxes = np.array([[0.0, 0.0, 0.5, 0.25],    # half of anchor 0: IoU 0.5, covered (>=)
                      [0.5, 0.5, 1.0, 1.0],     # anchor 1 exactly
                      [0.25, 0.0, 0.75, 0.5],   # overlaps anchor 0 by 1/3
                      [0.6, 0.0, 0.9, 0.3]])    # touches nothing
    report = anchor_coverage(boxes, anchors, layer_of_anchor=[0, 1])
    np.testing.assert_allclose(report.best_iou, [0.5, 1.0, 1 / 3, 0.0])
    np.testing.assert_array_equal(report.best_anchor[:3], [0, 1, 0])
    assert report.threshold == MATCH_THRESHOLD == 0.5
    assert report.coverage == pytest.approx(0.5)
    assert report.num_boxes == 4 and report.hist_counts.sum() == 4
    assert report.hist_edges[0] == 0 and report.hist_edges[-1] == 1
    np.testing.assert_array_equal(report.layer_counts, [3, 1])
    np.testing.assert_array_equal(report.layer_covered, [1, 1])
    assert "50.0%" in report.summary()


def test_coverage_without_layers():
    report = anchor_coverage([[0.1, 0.1, 0.3, 0.3]], [[0.1, 0.1, 0.3, 0.3]])
    assert report.coverage == 1.0 and report.best_layer is None and report.layer_counts.size == 0


def test_preset_anchors_cover_themselves_and_land_in_their_layer():
    anchors, layer = preset_anchors(SSD300_ANCHORS), preset_layer_of_anchor(SSD300_ANCHORS)
    # One box per layer: a copy of an anchor that lies inside the image.
    picks = [np.flatnonzero((layer == k) & (anchors.min(1) >= 0) & (anchors.max(1) <= 1))[0]
             for k in range(6)]
    report = preset_coverage(anchors[picks], SSD300_ANCHORS)
    assert report.coverage == 1.0
    np.testing.assert_allclose(report.best_iou, 1.0, atol=1e-5)
    np.testing.assert_array_equal(report.layer_counts, np.ones(6))


@pytest.mark.parametrize("boxes, message", [
    ([[0.1, 0.1, 0.3, 0.3], [0.5, 0.2, 0.4, 0.6]], "row 1 has xmin >= xmax"),
    ([[0.1, 0.4, 0.3, 0.4]], "row 0 has ymin >= ymax"),
    ([[0.1, 0.1, 0.3, np.nan]], "row 0 has non-finite"),
    ([[10, 20, 50, 80]], "row 0 has coordinates outside"),
    ([[0.1, 0.2, 0.3]], r"shape \(M, 4\)"),
    (np.zeros((0, 4)), "must not be empty"),
])
def test_bad_boxes_raise_value_error_naming_the_row(boxes, message):
    with pytest.raises(ValueError, match=message):
        check_boxes(boxes)
    with pytest.raises(ValueError, match=message):
        preset_coverage(boxes, SSD300_ANCHORS)


def test_shape_iou_of_centred_boxes():
    np.testing.assert_allclose(shape_iou([[0.2, 0.4]], [[0.4, 0.2], [0.2, 0.4], [0.1, 0.2]]),
                               [[0.04 / 0.12, 1.0, 0.25]])


def test_kmeans_finds_separated_shapes_and_is_deterministic():
    rng = np.random.default_rng(1)
    wide = np.array([0.4, 0.1]) * rng.uniform(0.95, 1.05, (50, 2))
    tall = np.array([0.05, 0.3]) * rng.uniform(0.95, 1.05, (50, 2))
    shapes = np.concatenate([wide, tall])
    clusters = kmeans_shapes(shapes, 2, seed=3)
    np.testing.assert_allclose(clusters, [tall.mean(0), wide.mean(0)], rtol=1e-6)  # by area
    np.testing.assert_array_equal(kmeans_shapes(shapes, 5, seed=7),
                                  kmeans_shapes(shapes, 5, seed=7))
    assert len(kmeans_shapes(np.tile([[0.2, 0.2]], (10, 1)), 4)) == 1  # one distinct shape


def test_suggestion_adds_the_missing_aspect_ratio():
    """Tall thin boxes (w/h = 1/6) that SSD300 (ratios down to 1/3) covers badly."""
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.3, 0.7, (200, 2))
    wh = np.array([0.06, 0.36]) * rng.uniform(0.9, 1.1, (200, 1))
    boxes = np.concatenate([centres - wh / 2, centres + wh / 2], axis=1)
    suggestion = suggest_anchors(boxes, SSD300_ANCHORS, num_clusters=3, seed=0)
    assert suggestion.before.coverage < 0.5
    assert suggestion.after.coverage > suggestion.before.coverage + 0.3
    spec = suggestion.spec
    assert spec.feature_maps == SSD300_ANCHORS.feature_maps and spec.steps == SSD300_ANCHORS.steps
    old = {r for layer in SSD300_ANCHORS.ratios for r in layer}
    new = {r for layer in spec.ratios for r in layer} - old
    assert any(0.1 < r < 0.25 for r in new)
    assert preset_coverage(boxes, spec).coverage == pytest.approx(suggestion.after.coverage)
    assert "->" in suggestion.summary()


def test_suggestion_never_lowers_coverage():
    boxes = sample_boxes(200, seed=4)
    suggestion = suggest_anchors(boxes, SSD300_ANCHORS, seed=4)
    assert suggestion.after.coverage >= suggestion.before.coverage
    anchors = preset_anchors(SSD300_ANCHORS)
    perfect = anchors[(anchors.min(1) >= 0) & (anchors.max(1) <= 1)][::300]
    kept = suggest_anchors(perfect, SSD300_ANCHORS)
    assert kept.before.coverage == kept.after.coverage == 1.0 and kept.spec == SSD300_ANCHORS


def test_sample_boxes_are_valid_and_deterministic():
    boxes = sample_boxes(100, seed=2)
    assert check_boxes(boxes).shape == (100, 4)
    np.testing.assert_array_equal(boxes, sample_boxes(100, seed=2))
