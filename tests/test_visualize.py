"""Plots: each returns a Figure, writes a PNG only when asked, and draws boxes where they belong."""
import mxnet as mx
import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from gluon_ssd import visualize
from gluon_ssd.boxes import to_normalised, to_pixels
from gluon_ssd.coverage import preset_coverage, sample_boxes
from gluon_ssd.data.io import read_image
from gluon_ssd.presets import SSD300_ANCHORS
from gluon_ssd.visualize import (as_image, blank_canvas, check_cell, default_canvas_size,
                                 draw_boxes, new_figure, plot_anchors_at, plot_boxes,
                                 plot_coverage, plot_detection_grid, plot_feature_map_anchors,
                                 plot_hard_negatives, plot_matches, plot_preset_anchors,
                                 plot_training_curves, sample_image)


def rectangles(ax):
    """``(N, 4)`` pixel corners of the box patches on ``ax``."""
    return np.array([[p.get_x(), p.get_y(), p.get_x() + p.get_width(), p.get_y() + p.get_height()]
                     for p in ax.patches if isinstance(p, Rectangle)])


def assert_png(path):
    with Image.open(path) as img:
        assert img.format == "PNG" and min(img.size) > 100


def test_to_pixels_scales_x_by_width_and_y_by_height():
    np.testing.assert_allclose(to_pixels([[0.1, 0.2, 0.5, 1.0]], (200, 400)), [[40, 40, 200, 200]])
    np.testing.assert_allclose(to_normalised(to_pixels([[0.1, 0.2, 0.5, 1.0]], (200, 400)),
                                             (200, 400)), [[0.1, 0.2, 0.5, 1.0]])


def test_draw_boxes_normalised_and_pixel_boxes_agree_and_input_is_untouched():
    image = blank_canvas((200, 400))
    boxes = np.array([[0.1, 0.2, 0.5, 0.9]])
    fig, axes = new_figure(1, 2)
    draw_boxes(axes[0, 0], image, boxes, texts=["a"])
    draw_boxes(axes[0, 1], image, to_pixels(boxes, (200, 400)), pixels=True)
    np.testing.assert_allclose(boxes, [[0.1, 0.2, 0.5, 0.9]])
    np.testing.assert_allclose(rectangles(axes[0, 0]), [[40, 40, 200, 180]])
    np.testing.assert_allclose(rectangles(axes[0, 1]), [[40, 40, 200, 180]])
    assert [t.get_text() for t in axes[0, 0].texts] == ["a"]


def test_draw_boxes_view_grows_for_boxes_outside_the_image():
    fig, axes = new_figure()
    draw_boxes(axes[0, 0], blank_canvas((100, 100)), [[-0.5, 0.0, 0.5, 1.5]], legend=True,
               texts=["big"])
    x0, x1 = axes[0, 0].get_xlim()
    y1, y0 = axes[0, 0].get_ylim()
    assert x0 < -50 and x1 > 100 and y1 > 150
    assert [t.get_text() for t in axes[0, 0].get_legend().get_texts()] == ["big"]


def test_plot_anchors_at_draws_the_anchors_of_that_pixel(tmp_path):
    fig = plot_anchors_at([0.2, 0.5], [1, 4, 0.25], [(100, 150)], image_size=(200, 300))
    assert isinstance(fig, Figure) and not list(tmp_path.iterdir())
    boxes = rectangles(fig.axes[0])
    assert len(boxes) == 4
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, 150.5, atol=1)  # pixel centre
    np.testing.assert_allclose((boxes[:, 1] + boxes[:, 3]) / 2, 100.5, atol=1)
    # sizes are fractions of the height (200 px): 0.2 -> 40 px, ratio 4 -> 80 x 20 px
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], [40, 100, 80, 20], atol=1)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], [40, 100, 20, 80], atol=1)


def test_plot_feature_map_anchors_writes_png(tmp_path):
    path = tmp_path / "sub" / "fm.png"
    fig = plot_feature_map_anchors((2, 4), [0.2, 0.5], [1, 4, 0.25], cells=[(0, 0), (1, 3)],
                                   path=path)
    assert_png(path)
    assert len(rectangles(fig.axes[0])) == 8
    assert default_canvas_size((2, 4)) == (300, 600)
    with pytest.raises(ValueError, match="cells: 2,0 is outside the 2x4 grid"):
        plot_feature_map_anchors((2, 4), [0.2], [1], cells=[(2, 0)])


def test_plot_preset_anchors_one_panel_per_layer(tmp_path):
    fig = plot_preset_anchors(SSD300_ANCHORS, image=sample_image(), path=tmp_path / "p.png")
    assert_png(tmp_path / "p.png")
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 6
    assert [len(rectangles(ax)) for ax in panels] == [4, 6, 6, 6, 4, 4]


def test_plot_boxes_labels_and_threshold():
    fig = plot_boxes(None, [[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.9, 0.9], [0.0, 0.0, 0.1, 0.1]],
                     class_ids=[0, 1, -1], scores=[0.9, 0.3, 0.99], class_names=["cat", "dog"])
    ax = fig.axes[0]
    assert len(rectangles(ax)) == 1
    assert [t.get_text() for t in ax.texts] == ["cat 0.90"]


def test_plot_coverage_panels(tmp_path):
    report = preset_coverage(sample_boxes(50), SSD300_ANCHORS)
    fig = plot_coverage({"a": report, "b": report}, path=tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    assert len(fig.axes) == 2


def test_images_and_cells_are_validated(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(ValueError, match="missing.png"):
        as_image(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="image_size"):
        blank_canvas((0, 4))
    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((5, 7), dtype=np.uint8)).save(grey)
    assert read_image(grey).shape == (5, 7, 3)
    assert check_cell((1, 2), (2, 3), "at") == (1, 2)


def test_plot_detection_grid_draws_each_image_kept_boxes(tmp_path):
    images = [blank_canvas((100, 100))] * 3
    detections = [([0, 1], [0.9, 0.2], [[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]),
                  ([-1], [0.9], [[0.1, 0.1, 0.2, 0.2]]),
                  ([1], [0.7], [[0.2, 0.3, 0.6, 0.8]])]
    fig = plot_detection_grid(images, detections, class_names=["cat", "dog"], ncols=2,
                              path=tmp_path / "grid.png")
    assert_png(tmp_path / "grid.png")
    counts = [len(rectangles(ax)) for ax in fig.axes[:3]]
    assert counts == [1, 0, 1]  # the 0.2 score and the -1 row are not drawn
    np.testing.assert_allclose(rectangles(fig.axes[2])[0], [20, 30, 60, 80])


def test_plot_training_curves_skips_epochs_without_evaluation(tmp_path):
    history = [dict(epoch=1, loss=3.0, confidence=2.0, localization=1.0, val_map=None),
               dict(epoch=2, loss=2.0, confidence=1.5, localization=0.5, val_map=0.4)]
    fig = plot_training_curves(history, path=tmp_path / "curve.png")
    assert_png(tmp_path / "curve.png")
    loss_ax, map_ax = fig.axes
    assert len(loss_ax.lines) == 3
    np.testing.assert_array_equal(map_ax.lines[0].get_xydata(), [[2, 0.4]])


def test_plot_matches_and_hard_negatives(tmp_path):
    anchors = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0]])
    boxes = np.array([[0.1, 0.1, 0.45, 0.45]])
    fig = plot_matches(None, boxes, anchors, np.array([0, -1, -1]), path=tmp_path / "m.png")
    assert_png(tmp_path / "m.png")
    assert len(rectangles(fig.axes[0])) == 2  # the box and its one matched anchor
    fig = plot_hard_negatives(None, anchors, np.array([0.5, 2.0, 0.1]), np.array([1, 0, 0]),
                              np.array([0, 1, 0]), boxes=boxes, path=tmp_path / "h.png")
    assert_png(tmp_path / "h.png")
    with pytest.raises(ValueError):
        plot_matches(None, boxes, anchors, np.array([0, -1]))


def label_extents(ax):
    """Window extents of the box labels on ``ax`` (text with a coloured box behind it)."""
    from gluon_ssd.visualize.labels import renderer_of

    renderer = renderer_of(ax)
    return [t.get_bbox_patch().get_window_extent(renderer) for t in ax.texts
            if t.get_bbox_patch() is not None and t.get_transform() == ax.transData]


def test_labels_never_cover_each_other_on_a_crowded_panel():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0.3, 0.7, (40, 2))
    sizes = rng.uniform(0.08, 0.3, (40, 2))
    boxes = np.clip(np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1), 0, 1)
    ids, scores = rng.integers(0, 3, 40), np.sort(rng.uniform(0.5, 1.0, 40))[::-1]
    fig = plot_boxes(None, boxes, class_ids=ids, scores=scores, class_names=["cat", "dog", "bird"],
                     thresh=0.0)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    extents = label_extents(ax)
    assert 5 <= len(extents) < 40  # many placed, the rest left out rather than piled up
    for i, a in enumerate(extents):
        for b in extents[i + 1:]:
            assert not a.overlaps(b)
    notes = [t.get_text() for t in ax.texts if t.get_transform() != ax.transData]
    assert notes and f"{40 - len(extents)} labels left out" in notes[0]
    # the best scores keep their labels: the first box (highest score) is labelled
    assert any(t.get_text() == f"{['cat', 'dog', 'bird'][ids[0]]} {scores[0]:.2f}" for t in ax.texts)


def test_a_panel_draws_at_most_max_boxes_and_says_so():
    boxes = np.tile([[0.1, 0.1, 0.4, 0.4]], (60, 1))
    fig, axes = new_figure()
    draw_boxes(axes[0, 0], np.zeros((100, 100, 3), np.uint8), boxes, max_boxes=50)
    ax = axes[0, 0]
    assert len(ax.patches) == 50
    assert any("10 more boxes not drawn" in t.get_text() for t in ax.texts)


def test_augmentation_pictures_and_display_round_trip():
    from gluon_ssd.data.transforms import DEFAULT_MEAN, DEFAULT_STD, to_network_input

    img = (np.random.RandomState(0).rand(40, 60, 3) * 255).astype(np.uint8)
    x = to_network_input(mx.nd.array(img, dtype="uint8"), DEFAULT_MEAN, DEFAULT_STD)
    back = visualize.network_input_to_image(x, DEFAULT_MEAN, DEFAULT_STD)
    assert back.shape == img.shape and np.abs(back.astype(int) - img).max() <= 1
    lab = np.array([[5, 5, 30, 30, 1, 0], [10, 12, 50, 38, 0, 0]], np.float32)
    fig = visualize.plot_augmentation_steps(
        [("a", img, lab), ("empty", img, np.zeros((0, 6))), ("no class", img, lab[:, :4])],
        class_names=["x", "y"], ncols=2)
    assert len(fig.axes) == 4
    visualize.plot_crop_patches(img, lab, [(0, 0, 60, 40), (5, 5, 20, 20)], chosen=1)
    visualize.plot_crop_patches(img, np.zeros((0, 6)), [(0, 0, 60, 40)])


def test_dataset_coverage_picture_has_its_six_panels(tmp_path):
    from gluon_ssd.anchor_fit import fit_anchors
    from gluon_ssd.presets import DEMO_ANCHORS

    boxes = sample_boxes(300, seed=2, min_size=0.04, max_ratio=5.0)
    before = preset_coverage(boxes, DEMO_ANCHORS)
    after = preset_coverage(boxes, fit_anchors(boxes, DEMO_ANCHORS))
    fig = visualize.plot_dataset_coverage({"demo": before, "fitted": after}, title="t",
                                          path=tmp_path / "c.png")
    assert len(fig.axes) == 6 and (tmp_path / "c.png").stat().st_size > 10_000
    shapes = fig.axes[0]
    uncovered = shapes.collections[1].get_offsets()
    assert len(uncovered) == (~before.covered).sum()


def test_iou_picture_shades_the_intersection_and_the_union(tmp_path):
    from gluon_ssd.visualize.iou import overlap, plot_iou, plot_iou_examples

    a, b = [60, 60, 180, 180], [120, 100, 240, 220]
    o = overlap(a, b)
    assert (o.intersection, o.union) == (60 * 80, 2 * 120 ** 2 - 60 * 80)
    mxnet_iou = mx.nd.contrib.box_iou(mx.nd.array([a]), mx.nd.array([b])).asscalar()
    assert o.iou == pytest.approx(float(mxnet_iou))
    assert overlap([0, 0, 1, 1], [2, 2, 3, 3]).iou == 0 and overlap(a, a).iou == 1
    fig = plot_iou(a, b, pixels=True, path=tmp_path / "iou.png")
    shaded = [len([p for p in ax.patches if p.get_zorder() == 0.5]) for ax in fig.axes]
    assert shaded == [1, 2] and (tmp_path / "iou.png").exists()  # A and B; A or B
    fig = plot_iou_examples([(a, b), ([0, 0, 20, 20], [50, 50, 90, 90])], pixels=True,
                            titles=["shifted", "apart"])
    assert [ax.get_title() for ax in fig.axes] == ["shifted\nIoU = 0.200", "apart\nIoU = 0.000"]
