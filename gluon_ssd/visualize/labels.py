"""Box labels that never cover each other: each label takes the first of a few places around its
box (above it, inside its top, below it, inside its bottom; left or right) where it overlaps no
label already placed and stays inside the axes; a label with no such place is left out and
counted. Boxes come in the caller's order (detections: by score), so the best keep their labels.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from matplotlib.transforms import Bbox

Color = Tuple[float, float, float]

# (corner x: 0 left / 2 right, corner y: 1 top / 3 bottom, horizontal and vertical alignment):
# above the box, inside its top, below it, inside its bottom; on the left, then on the right.
# The y axis of an image points down, so "bottom" alignment puts a label above its anchor point.
PLACES = [(0, 1, "left", "bottom"), (0, 1, "left", "top"), (0, 3, "left", "top"),
          (0, 3, "left", "bottom"), (2, 1, "right", "bottom"), (2, 1, "right", "top"),
          (2, 3, "right", "top"), (2, 3, "right", "bottom")]


def renderer_of(ax: Axes):
    """The renderer that measures text on ``ax``'s figure (Agg when the figure has no canvas
    of a drawing backend, as a ``Figure`` made without pyplot)."""
    figure = ax.figure
    if not hasattr(figure.canvas, "get_renderer"):
        FigureCanvasAgg(figure)
    return figure.canvas.get_renderer()


def place_labels(ax: Axes, boxes_px: np.ndarray, texts: Sequence[str],
                 colors: Sequence[Color], fontsize: float) -> Tuple[List[Text], int]:
    """Put ``texts`` (white on each box's colour) at free places around ``boxes_px (N, 4)``
    (pixel corners in ``ax``'s data coordinates, the view already set).

    Returns the labels placed and the number left out for want of a free place (empty texts
    are neither).
    """
    figure = ax.figure
    figure.draw_without_rendering()  # fixes the layout, so positions measured now stay true
    renderer = renderer_of(ax)
    frame = ax.get_window_extent(renderer)
    taken: List[Bbox] = []
    placed: List[Text] = []
    left_out = 0
    for box, text, color in zip(boxes_px, texts, colors):
        if not text:
            continue
        label = ax.text(0, 0, text, fontsize=fontsize, color="white", clip_on=True,
                        bbox=dict(facecolor=color, alpha=0.8, pad=1.0, linewidth=0))
        label.set_in_layout(False)
        for x_corner, y_corner, ha, va in PLACES:
            label.set_position((box[x_corner], box[y_corner]))
            label.set_ha(ha)
            label.set_va(va)
            extent = label.get_window_extent(renderer).expanded(1.0, 1.0)
            patch = label.get_bbox_patch()
            if patch is not None:
                label.update_bbox_position_size(renderer)
                extent = Bbox.union([extent, patch.get_window_extent(renderer)])
            inside = frame.contains(extent.x0, extent.y0) and frame.contains(extent.x1, extent.y1)
            if inside and not any(extent.overlaps(other) for other in taken):
                taken.append(extent)
                placed.append(label)
                break
        else:
            label.remove()
            left_out += 1
    return placed, left_out
