"""The canvas every picture starts from: images, figures, colours, and the one place boxes are
drawn (:func:`draw_boxes`). Boxes are corners ``xmin, ymin, xmax, ymax``, normalised to [0, 1]
by the image width (x) and height (y) unless ``pixels=True``; points and cells are ``(row, col)``.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

import matplotlib
import numpy as np
from gluoncv.utils.viz import plot_bbox
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..boxes import corner_to_centre, to_pixels
from ..data.io import read_image
from .labels import place_labels

HW = Tuple[int, int]
ImageLike = Union[str, "os.PathLike[str]", np.ndarray, None]
Color = Tuple[float, float, float]
# Boxes one panel draws at most; the rest are counted in a note (a crowd of boxes shows nothing).
MAX_BOXES = 50


# ---------------------------------------------------------------------------------------------
# Images and coordinates.

def sample_image() -> np.ndarray:
    """Matplotlib's bundled photo of Grace Hopper, ``(600, 512, 3)`` uint8: a real, non-square
    image for examples that needs no download."""
    return read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def blank_canvas(image_size: HW) -> np.ndarray:
    """A light grey ``(H, W, 3)`` uint8 image."""
    h, w = image_size
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be at least 1x1, got {h}x{w}")
    return np.full((h, w, 3), 235, dtype=np.uint8)


def as_image(image: ImageLike, image_size: HW = (300, 300)) -> np.ndarray:
    """``image`` (array, path, or ``None`` for a blank ``image_size`` canvas) as ``(H, W, 3)``
    uint8 (arrays of another dtype are cast)."""
    if image is None:
        return blank_canvas(image_size)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
        return image.astype(np.uint8, copy=False)
    return read_image(image)


def box_colors(n: int) -> List[Color]:
    """``n`` distinct-looking RGB colours (matplotlib's tab10, repeated)."""
    palette = matplotlib.colormaps["tab10"].colors
    return [tuple(palette[i % len(palette)]) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Shared building blocks.

def new_figure(nrows: int = 1, ncols: int = 1,
               panel_size: Tuple[float, float] = (5.0, 5.0)) -> Tuple[Figure, np.ndarray]:
    """A Figure (not tracked by pyplot) with an ``(nrows, ncols)`` array of axes."""
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def image_panel_size(image_size: HW, longest: float = 5.0,
                     legend: bool = False) -> Tuple[float, float]:
    """Inches ``(width, height)`` for a panel showing an ``(H, W)`` image (and maybe a legend)."""
    h, w = image_size
    scale = longest / max(h, w)
    return w * scale + 0.5 + (1.5 if legend else 0.0), h * scale + 0.6


def save_figure(fig: Figure, path: Union[str, "os.PathLike[str]", None] = None) -> Figure:
    """Write ``fig`` as PNG to ``path`` (creating its folder) when a path is given; return it."""
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        fig.savefig(path, format="png", dpi=100)
    return fig


def draw_boxes(ax: Axes, image: np.ndarray, boxes, *, pixels: bool = False,
               texts: Optional[Sequence[str]] = None, colors: Optional[Sequence[Color]] = None,
               legend: bool = False, linewidth: float = 2.0, fontsize: float = 9,
               max_boxes: int = MAX_BOXES) -> Axes:
    """Show ``image (H, W, 3)`` on ``ax`` with ``boxes (N, 4)``, each in its colour with its text.

    Boxes are normalised corners unless ``pixels``. ``texts`` (default: none; empty strings are
    not shown) go next to their boxes where they cover no other label
    (:func:`~gluon_ssd.visualize.labels.place_labels`; those without room are left out), or with
    ``legend`` into a legend beside the axes. ``colors`` default to :func:`box_colors`. Only the
    first ``max_boxes`` boxes are drawn (pass them best first); a note counts what is left out.
    The view grows to show boxes that reach outside the image.
    """
    h, w = image.shape[:2]
    boxes_px = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    if not pixels:
        boxes_px = to_pixels(boxes_px, (h, w)).reshape(-1, 4)
    n = len(boxes_px)
    texts = [""] * n if texts is None else list(texts)
    colors = box_colors(n) if colors is None else list(colors)
    if len(texts) != n or len(colors) != n:
        raise ValueError(f"need one text and one colour per box: {n} boxes, {len(texts)} texts, "
                         f"{len(colors)} colours")
    not_drawn = max(n - max_boxes, 0)
    boxes_px, texts, colors = boxes_px[:max_boxes], texts[:max_boxes], colors[:max_boxes]
    plot_bbox(image, boxes_px, labels=np.arange(len(boxes_px)), class_names=[""] * len(texts),
              colors=dict(enumerate(colors)), ax=ax, linewidth=linewidth)
    if len(boxes_px):
        margin = 0.02 * max(h, w)
        ax.set_xlim(min(0, boxes_px[:, 0].min()) - margin, max(w, boxes_px[:, 2].max()) + margin)
        ax.set_ylim(max(h, boxes_px[:, 3].max()) + margin, min(0, boxes_px[:, 1].min()) - margin)
    left_out = 0
    if legend and any(texts):
        handles = [Patch(fill=False, edgecolor=c, linewidth=linewidth, label=t)
                   for t, c in zip(texts, colors) if t]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=fontsize, frameon=False)
    elif any(texts):
        left_out = place_labels(ax, boxes_px, texts, colors, fontsize)[1]
    notes = [f"{not_drawn} more boxes not drawn"] * bool(not_drawn)
    notes += [f"{left_out} labels left out (no free place)"] * bool(left_out)
    if notes:
        ax.text(0.01, 0.01, "; ".join(notes), transform=ax.transAxes, fontsize=fontsize - 1,
                va="bottom", ha="left", color="black",
                bbox=dict(facecolor="white", alpha=0.8, pad=1.5, linewidth=0))
    return ax


def draw_centres(ax: Axes, boxes, image_size: HW, *, size: float = 4.0, color="white") -> None:
    """Mark the centres of normalised ``boxes (N, 4)`` on an ``(H, W)`` image with outlined dots."""
    px = to_pixels(boxes, image_size).reshape(-1, 4)
    centres = corner_to_centre(px)
    ax.scatter(centres[:, 0], centres[:, 1], s=size, c=[color],
               edgecolors="black", linewidths=0.5, zorder=3)


def check_cell(cell: HW, grid: HW, name: str) -> HW:
    """``cell = (row, col)`` as ints; ``ValueError`` naming ``name`` unless it lies in ``grid``."""
    i, j = cell
    if not (0 <= i < grid[0] and 0 <= j < grid[1]):
        raise ValueError(f"{name} {i},{j} is outside the {grid[0]}x{grid[1]} grid "
                         f"(rows 0..{grid[0] - 1}, columns 0..{grid[1] - 1})")
    return int(i), int(j)


