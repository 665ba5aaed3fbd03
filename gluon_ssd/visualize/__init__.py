"""Every picture of gluon-ssd: small functions that build and return a matplotlib ``Figure``.

Conventions (every function here):

* Boxes are corners ``xmin, ymin, xmax, ymax`` normalised to [0, 1] by the image width (x) and
  height (y), ``(N, 4)``, unless an argument ``pixels=True`` says they are in pixels.
* Images are ``(H, W, 3)`` uint8 RGB arrays or paths to image files; ``None`` means a blank canvas
  of ``image_size = (H, W)``. Points and cells are ``(row, col)``.
* ``plot_*`` functions create a new ``Figure`` that pyplot does not track (no GUI backend needed,
  nothing accumulates), write it as PNG only when ``path`` is given, and return it.
* Pictures take arrays and small plain records, never a job's types.

Modules: ``canvas`` (images, figures, :func:`draw_boxes`, the one place boxes are drawn),
``anchors`` (default boxes), ``coverage`` (how well anchors fit a dataset's boxes), ``iou``
(intersection over union), ``detections`` (labelled boxes on images), ``matching`` (positive
anchors, hard negatives), ``augmentation`` (an image and its boxes after each augmentation step,
the crop's candidate patches), ``curves`` (training log, precision-recall).
"""

from .anchors import (MAX_CENTRES, default_canvas_size, plot_anchors_at, plot_feature_map_anchors,
                      plot_preset_anchors)
from .augmentation import network_input_to_image, plot_augmentation_steps, plot_crop_patches
from .canvas import (as_image, blank_canvas, box_colors, check_cell, draw_boxes, draw_centres,
                     image_panel_size, new_figure, sample_image, save_figure)
from .coverage import plot_coverage, plot_dataset_coverage
from .curves import AP_LABELS, draw_pr_curve, plot_pr_curve, plot_pr_curves, plot_training_curves
from .detections import draw_detections, plot_boxes, plot_detection_grid
from .iou import draw_iou, plot_iou, plot_iou_examples
from .matching import MIN_LOSS, plot_hard_negatives, plot_matches

__all__ = [
    "MAX_CENTRES", "default_canvas_size", "plot_anchors_at", "plot_feature_map_anchors",
    "plot_preset_anchors", "network_input_to_image", "plot_augmentation_steps",
    "plot_crop_patches", "as_image", "blank_canvas", "box_colors", "check_cell", "draw_boxes",
    "draw_centres", "image_panel_size", "new_figure", "sample_image", "save_figure",
    "plot_coverage", "plot_dataset_coverage", "AP_LABELS", "draw_pr_curve", "plot_pr_curve",
    "plot_pr_curves", "plot_training_curves", "draw_detections", "plot_boxes",
    "plot_detection_grid", "draw_iou", "plot_iou", "plot_iou_examples", "MIN_LOSS",
    "plot_hard_negatives", "plot_matches",
]
