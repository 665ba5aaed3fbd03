"""Pictures of labelled boxes: ground truth and detections on images, one or a grid."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .canvas import (ImageLike, as_image, box_colors, draw_boxes, image_panel_size, new_figure,
                     save_figure)


# ---------------------------------------------------------------------------------------------
# Labelled boxes (ground truth, detections).

def draw_detections(ax: Axes, image: np.ndarray, boxes, *, class_ids=None, scores=None,
                    class_names: Optional[Sequence[str]] = None, thresh: float = 0.5,
                    pixels: bool = False) -> Axes:
    """Draw boxes ``(N, 4)`` on ``image``, coloured by class and labelled ``name score``.

    ``class_ids (N,)`` start at 0 (rows with a negative id, like MultiBoxDetection's suppressed
    rows, are skipped); ``scores (N,)`` below ``thresh`` are skipped. Boxes are normalised
    corners unless ``pixels``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    ids = np.zeros(n, int) if class_ids is None else np.asarray(class_ids).astype(int).ravel()
    labels = [""] * n if class_ids is None else [
        class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
        for c in ids]
    keep = ids >= 0
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).ravel()
        keep &= scores >= thresh
        labels = [f"{label} {score:.2f}".strip() for label, score in zip(labels, scores)]
    palette = box_colors(max(len(class_names or ()), ids.max(initial=0) + 1))
    return draw_boxes(ax, image, boxes[keep], pixels=pixels,
                      texts=[t for t, k in zip(labels, keep) if k],
                      colors=[palette[c] for c in ids[keep]])


def plot_boxes(image: ImageLike, boxes, *, class_ids=None, scores=None,
               class_names: Optional[Sequence[str]] = None, thresh: float = 0.5,
               pixels: bool = False, title: Optional[str] = None, path=None) -> Figure:
    """One image with its boxes (see :func:`draw_detections`); ``image=None``: a blank canvas."""
    img = as_image(image)
    fig, axes = new_figure(panel_size=image_panel_size(img.shape[:2]))
    draw_detections(axes[0, 0], img, boxes, class_ids=class_ids, scores=scores,
                    class_names=class_names, thresh=thresh, pixels=pixels)
    if title:
        axes[0, 0].set_title(title)
    return save_figure(fig, path)


def plot_detection_grid(images: Sequence[np.ndarray], detections: Sequence[Tuple], *,
                        class_names: Optional[Sequence[str]] = None, thresh: float = 0.5,
                        ncols: int = 4, title: Optional[str] = None, path=None) -> Figure:
    """A grid of images, each with its detections ``(class_ids (K,), scores (K,), boxes (K, 4))``
    (normalised boxes; rows with id -1 or score under ``thresh`` are not drawn)."""
    nrows = max(1, int(np.ceil(len(images) / ncols)))
    fig, axes = new_figure(nrows, ncols, panel_size=(3.2, 3.2))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, (ids, scores, boxes) in zip(axes.ravel(), images, detections):
        draw_detections(ax, image, boxes, class_ids=ids, scores=scores, class_names=class_names,
                        thresh=thresh)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
