"""Intersection over union, drawn: two boxes with their intersection (IoU's numerator) and their
union (its denominator) shaded.

``IoU(A, B) = area(A ∩ B) / area(A ∪ B)``, with ``area(A ∪ B) = area(A) + area(B) -
area(A ∩ B)``: 1 for the same box, 0 for boxes that do not overlap. The value shown is
GluonCV's ``bbox_iou`` (what :mod:`gluon_ssd.coverage` matches anchors with; continuous
coordinates, no ``+1`` on widths), the same formula as ``contrib.MultiBoxTarget``'s matching.
Boxes are corners ``xmin, ymin, xmax, ymax``, normalised unless ``pixels=True``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
from gluoncv.utils.bbox import bbox_iou
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..boxes import to_pixels
from .canvas import HW, ImageLike, as_image, box_colors, draw_boxes, new_figure, save_figure

SHADE = (1.0, 0.85, 0.3)  # the shaded area: intersection or union


class Overlap(NamedTuple):
    """Areas of two boxes (in the units of their coordinates, squared) and their IoU."""

    area_a: float
    area_b: float
    intersection: float
    union: float
    iou: float


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def intersection_box(box_a, box_b) -> Optional[np.ndarray]:
    """The corners ``(4,)`` of the overlap of two corner boxes, or ``None`` if they do not
    overlap."""
    a, b = np.asarray(box_a, np.float64), np.asarray(box_b, np.float64)
    box = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
    return box if (box[2:] > box[:2]).all() else None


def overlap(box_a, box_b) -> Overlap:
    """Areas, intersection, union and IoU (GluonCV's ``bbox_iou``) of two corner boxes ``(4,)``."""
    a, b = np.asarray(box_a, np.float64), np.asarray(box_b, np.float64)
    inter = intersection_box(a, b)
    i = 0.0 if inter is None else _area(inter)
    iou = float(bbox_iou(a[None], b[None])[0, 0])
    return Overlap(_area(a), _area(b), i, _area(a) + _area(b) - i, iou)


def _shade(ax: Axes, box_px, color=SHADE) -> None:
    x0, y0, x1, y1 = box_px
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor=color, edgecolor="none",
                           zorder=0.5))


def draw_iou(ax: Axes, image: np.ndarray, box_a, box_b, *, shade: str = "intersection",
             pixels: bool = False, texts: Sequence[str] = ("A", "B"),
             fontsize: float = 10) -> Overlap:
    """Draw boxes A and B on ``image (H, W, 3)`` with ``shade`` (``"intersection"``,
    ``"union"`` or ``"none"``) filled; return their :class:`Overlap` in pixels."""
    if shade not in ("intersection", "union", "none"):
        raise ValueError(f"shade must be 'intersection', 'union' or 'none', got {shade!r}")
    size = image.shape[:2]
    boxes = np.array([box_a, box_b], np.float64).reshape(2, 4)
    px = boxes if pixels else to_pixels(boxes, size)
    draw_boxes(ax, image, px, pixels=True, texts=list(texts), colors=box_colors(2),
               fontsize=fontsize)
    found = overlap(px[0], px[1])
    if shade == "union":
        for box in px:
            _shade(ax, box)
    inter = intersection_box(px[0], px[1])
    if shade == "intersection" and inter is not None:
        _shade(ax, inter)
    return found


def plot_iou(box_a, box_b, *, image: ImageLike = None, image_size: HW = (300, 300),
             pixels: bool = False, path=None) -> Figure:
    """IoU's numerator and denominator side by side: the intersection of boxes A and B shaded
    on the left, their union on the right, the areas (pixels²) and the IoU in the titles."""
    img = as_image(image, image_size)
    fig, axes = new_figure(1, 2, panel_size=(4.5, 4.5 * img.shape[0] / img.shape[1] + 0.6))
    o = draw_iou(axes[0, 0], img, box_a, box_b, shade="intersection", pixels=pixels)
    draw_iou(axes[0, 1], img, box_a, box_b, shade="union", pixels=pixels)
    axes[0, 0].set_title(f"intersection A ∩ B: {o.intersection:.0f} px²", fontsize=10)
    axes[0, 1].set_title(f"union A ∪ B: {o.area_a:.0f} + {o.area_b:.0f} − "
                         f"{o.intersection:.0f} = {o.union:.0f} px²", fontsize=10)
    fig.suptitle(f"IoU = {o.intersection:.0f} / {o.union:.0f} = {o.iou:.3f}")
    return save_figure(fig, path)


def plot_iou_examples(pairs: Sequence[Tuple[Sequence[float], Sequence[float]]], *,
                      titles: Optional[Sequence[str]] = None, image: ImageLike = None,
                      image_size: HW = (300, 300), pixels: bool = False, ncols: int = 4,
                      path=None) -> Figure:
    """One panel per ``(box_a, box_b)`` pair, the intersection shaded and the IoU in the title
    (under ``titles[i]`` when given)."""
    img = as_image(image, image_size)
    if titles is not None and len(titles) != len(pairs):
        raise ValueError(f"need one title per pair: {len(pairs)} pairs, {len(titles)} titles")
    ncols = max(1, min(ncols, len(pairs)))
    nrows = -(-len(pairs) // ncols)
    fig, axes = new_figure(nrows, ncols, panel_size=(3.2, 3.2 * img.shape[0] / img.shape[1] + 0.5))
    for i, (ax, (a, b)) in enumerate(zip(axes.flat, pairs)):
        o = draw_iou(ax, img, a, b, pixels=pixels, fontsize=9)
        head = f"{titles[i]}\n" if titles else ""
        ax.set_title(f"{head}IoU = {o.iou:.3f}", fontsize=10)
    for ax in axes.flat[len(pairs):]:
        ax.axis("off")
    return save_figure(fig, path)


__all__ = ["Overlap", "draw_iou", "intersection_box", "overlap", "plot_iou", "plot_iou_examples"]
