"""Anchor coverage reports, against hand-computed IoUs and constructed boxes."""
import numpy as np
import pytest

from gluon_ssd.anchors import preset_anchors, preset_layer_of_anchor
from gluon_ssd.coverage import (MATCH_THRESHOLD, anchor_coverage, box_shapes, check_boxes,
                                preset_coverage, sample_boxes)
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
    # IoU 0.5 is not above 0.5: only box 1 has an anchor MultiBoxTarget matches beyond the forced
    np.testing.assert_array_equal(report.num_matched, [0, 1, 0, 0])
    assert report.forced_only == 3 and (report.anchors_per_box == 1).all()
    assert report.coverage_at(0.4) == 0.5 and report.coverage_at(0.6) == 0.25
    np.testing.assert_array_equal(report.worst(2), [3, 2])
    count, covered = report.shape_table()
    assert count.sum() == 4 and covered.sum() == 2
    assert count[2, 3] == 1 and covered[2, 3] == 1  # box 0: size sqrt(1/8) = 0.35, w/h = 2
    summary = report.summary()
    assert ">= 0.5: 50.0%" in summary and ">= 0.4: 50.0%" in summary and ">= 0.6: 25.0%" in summary
    assert "3 boxes (75.0%) only by their forced best anchor" in summary
    assert "layer 1" in summary and "array(" not in summary


def test_matched_anchors_per_box():
    box = [0.0, 0.0, 0.4, 0.4]
    anchors = [box, [0.02, 0.0, 0.42, 0.4], [0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]
    report = anchor_coverage([box, [0.5, 0.5, 0.9, 0.9]], anchors)  # IoUs 1, 0.905, 0.39, 0
    np.testing.assert_array_equal(report.num_matched, [2, 1])
    assert report.anchors_per_box.mean() == 1.5 and report.forced_only == 0


def test_box_shapes_are_square_frame_size_and_ratio():
    sizes, ratios = box_shapes([[0.1, 0.2, 0.5, 0.3], [0.0, 0.0, 0.2, 0.8]])
    np.testing.assert_allclose(sizes, [0.2, 0.4])
    np.testing.assert_allclose(ratios, [4.0, 0.25])


def test_preset_report_knows_its_anchor_shapes():
    report = preset_coverage(sample_boxes(200, seed=1), SSD300_ANCHORS)
    assert report.image_size == 300 and report.anchor_shapes.shape == (4 + 6 + 6 + 6 + 4 + 4, 3)
    np.testing.assert_array_equal(np.unique(report.anchor_shapes[:, 0]), np.arange(6))
    assert report.anchor_shapes[0, 1] == pytest.approx(0.1)  # 30 px of 300, ratio 1
    summary = report.summary()
    for text in ("percentiles", "anchors: sizes 10.0% (30 px)", "layer 5", "w/h", "worst"):
        assert text in summary


def test_coverage_without_layers():
    report = anchor_coverage([[0.1, 0.1, 0.3, 0.3]], [[0.1, 0.1, 0.3, 0.3]])
    assert report.coverage == 1.0 and report.best_layer is None and report.layer_counts.size == 0
    assert "100.0%" in report.summary() and "layer" not in report.summary()


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


def test_sample_boxes_are_valid_and_deterministic():
    boxes = sample_boxes(100, seed=2)
    assert check_boxes(boxes).shape == (100, 4)
    np.testing.assert_array_equal(boxes, sample_boxes(100, seed=2))
