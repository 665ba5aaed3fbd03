"""Every plot of gluon-ssd: small functions that build and return a matplotlib ``Figure``.

Conventions (every function here):

* Boxes are corners ``xmin, ymin, xmax, ymax`` normalised to [0, 1] by the image width (x) and
  height (y), ``(N, 4)``, unless an argument ``pixels=True`` says they are in pixels.
* Images are ``(H, W, 3)`` uint8 RGB arrays or paths to image files; ``None`` means a blank canvas
  of ``image_size = (H, W)``. Points and cells are ``(row, col)``.
* ``plot_*`` functions create a new ``Figure`` that pyplot does not track (no GUI backend needed,
  nothing accumulates), write it as PNG only when ``path`` is given, and return it.
* :func:`draw_boxes` is the one place boxes are drawn (through gluoncv's ``plot_bbox``);
  :func:`new_figure` and :func:`save_figure` are the shared start and end of every plot.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import matplotlib
import numpy as np
from gluoncv.utils.viz import plot_bbox
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .anchors import (anchor_shapes, feature_map_anchors, num_anchors, preset_anchors,
                      preset_layer_of_anchor, spec_priors)
from .data.datasets import read_image as data_read_image
from .presets import AnchorSpec

if TYPE_CHECKING:
    from .coverage import CoverageReport
    from .evaluate import PRCurve

HW = Tuple[int, int]
ImageLike = Union[str, "os.PathLike[str]", np.ndarray, None]
Color = Tuple[float, float, float]

# Feature maps with more cells than this are drawn without their grid of centres.
MAX_CENTRES = 4096


# ---------------------------------------------------------------------------------------------
# Images and coordinates.

def read_image(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
    """The image file at ``path`` as ``(H, W, 3)`` uint8 RGB numpy; a ``BadImageError`` (a
    ``ValueError``) naming the file if it is missing or not an image."""
    return data_read_image(os.fspath(path)).asnumpy()


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


def to_pixels(boxes, image_size: HW) -> np.ndarray:
    """Normalised corners ``(N, 4)`` -> pixel corners ``(N, 4)`` (float) on an ``(H, W)`` image."""
    h, w = image_size
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([w, h, w, h])


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
               legend: bool = False, linewidth: float = 2.0, fontsize: float = 8) -> Axes:
    """Show ``image (H, W, 3)`` on ``ax`` with ``boxes (N, 4)``, each in its colour with its text.

    Boxes are normalised corners unless ``pixels``. ``texts`` (default: none; empty strings are
    not shown) go on the boxes' top-left corners, or with ``legend`` into a legend beside the
    axes. ``colors`` default to :func:`box_colors`. The view grows to show boxes that reach
    outside the image.
    """
    h, w = image.shape[:2]
    boxes_px = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    if not pixels:
        boxes_px = to_pixels(boxes_px, (h, w))
    n = len(boxes_px)
    texts = [""] * n if texts is None else list(texts)
    colors = box_colors(n) if colors is None else list(colors)
    if len(texts) != n or len(colors) != n:
        raise ValueError(f"need one text and one colour per box: {n} boxes, {len(texts)} texts, "
                         f"{len(colors)} colours")
    plot_bbox(image, boxes_px, labels=np.arange(n), class_names=[""] * n if legend else texts,
              colors=dict(enumerate(colors)), ax=ax, linewidth=linewidth, fontsize=fontsize)
    if legend and any(texts):
        handles = [Patch(fill=False, edgecolor=c, linewidth=linewidth, label=t)
                   for t, c in zip(texts, colors) if t]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=fontsize, frameon=False)
    if n:
        margin = 0.02 * max(h, w)
        ax.set_xlim(min(0, boxes_px[:, 0].min()) - margin, max(w, boxes_px[:, 2].max()) + margin)
        ax.set_ylim(max(h, boxes_px[:, 3].max()) + margin, min(0, boxes_px[:, 1].min()) - margin)
    return ax


def draw_centres(ax: Axes, boxes, image_size: HW, *, size: float = 4.0, color="white") -> None:
    """Mark the centres of normalised ``boxes (N, 4)`` on an ``(H, W)`` image with outlined dots."""
    px = to_pixels(boxes, image_size)
    ax.scatter((px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2, s=size, c=[color],
               edgecolors="black", linewidths=0.5, zorder=3)


# ---------------------------------------------------------------------------------------------
# Anchors.

def check_cell(cell: HW, grid: HW, name: str) -> HW:
    """``cell = (row, col)`` as ints; ``ValueError`` naming ``name`` unless it lies in ``grid``."""
    i, j = cell
    if not (0 <= i < grid[0] and 0 <= j < grid[1]):
        raise ValueError(f"{name} {i},{j} is outside the {grid[0]}x{grid[1]} grid "
                         f"(rows 0..{grid[0] - 1}, columns 0..{grid[1] - 1})")
    return int(i), int(j)


def _shape_texts(sizes: Sequence[float], ratios: Sequence[float]) -> List[str]:
    return [f"s={a.size:.3g} r={a.ratio:.3g}" for a in anchor_shapes(sizes, ratios)]


def default_canvas_size(feature_map: HW, height: int = 300) -> HW:
    """A canvas ``height`` pixels tall with the feature map's aspect ratio.

    MultiBoxPrior assumes the image has its map's aspect (it scales widths by the map's H / W),
    so drawing a map's anchors on such a canvas shows them as the network sees them.
    """
    h, w = feature_map
    return height, max(1, round(height * w / h))


def plot_feature_map_anchors(feature_map: HW, sizes: Sequence[float], ratios: Sequence[float], *,
                             cells: Optional[Sequence[HW]] = None,
                             steps: Sequence[float] = (-1.0, -1.0),
                             offsets: Sequence[float] = (0.5, 0.5), image: ImageLike = None,
                             image_size: Optional[HW] = None, title: Optional[str] = None,
                             path=None) -> Figure:
    """MultiBoxPrior's anchors of one ``(H, W)`` feature map drawn on an image.

    Draws every anchor of the given ``cells`` (``(row, col)`` of the map; default: the centre
    cell), coloured by anchor index with a legend of sizes and ratios, and, for maps of at most
    :data:`MAX_CENTRES` cells, the grid of all cell centres. Without an image the canvas is
    ``image_size`` (default :func:`default_canvas_size`).
    """
    img = as_image(image, image_size or default_canvas_size(feature_map))
    cells = [check_cell(c, feature_map, "cells:")
             for c in (cells or [(feature_map[0] // 2, feature_map[1] // 2)])]
    anchors = feature_map_anchors(feature_map, sizes, ratios, steps, offsets)
    per_cell = num_anchors(sizes, ratios)
    grid = anchors.reshape(feature_map[0], feature_map[1], per_cell, 4)
    boxes = np.concatenate([grid[i, j] for i, j in cells])
    texts = _shape_texts(sizes, ratios) + [""] * (len(boxes) - per_cell)
    fig, axes = new_figure(panel_size=image_panel_size(img.shape[:2], legend=True))
    ax = axes[0, 0]
    draw_boxes(ax, img, boxes, texts=texts, colors=box_colors(per_cell) * len(cells), legend=True)
    if feature_map[0] * feature_map[1] <= MAX_CENTRES:
        draw_centres(ax, anchors[::per_cell], img.shape[:2])
    draw_centres(ax, boxes[::per_cell], img.shape[:2], size=30, color="red")
    ax.set_title(title or f"{feature_map[0]}x{feature_map[1]} map, {per_cell} anchors per cell, "
                 f"{len(anchors)} in all", fontsize=10)
    return save_figure(fig, path)


def plot_anchors_at(sizes: Sequence[float], ratios: Sequence[float],
                    at: Optional[Sequence[HW]] = None, *, image: ImageLike = None,
                    image_size: HW = (300, 300), path=None) -> Figure:
    """The anchors MultiBoxPrior centres on pixel(s) ``at`` ``(row, col)`` (default: the centre).

    The feature map is the image's own pixel grid (one cell per pixel), as in MXNet's anchor
    tutorial, so ``sizes`` are fractions of the image height and ``ratios`` pixel aspect ratios.
    """
    img = as_image(image, image_size)
    h, w = img.shape[:2]
    at = at or [(h // 2, w // 2)]
    title = (f"{num_anchors(sizes, ratios)} anchors at pixel{'s' if len(at) > 1 else ''} "
             f"{', '.join(f'({i}, {j})' for i, j in at)} of a {h}x{w} image")
    return plot_feature_map_anchors((h, w), sizes, ratios, cells=at, image=img, title=title,
                                    path=path)


def _cell_at(point: Tuple[float, float], spec: AnchorSpec, layer: int) -> HW:
    """The cell of ``layer`` containing the normalised ``(y, x)`` point."""
    f, step = spec.feature_maps[layer], spec.steps[layer]
    return tuple(min(int(p * spec.image_size // step), f - 1) for p in point)


def plot_preset_anchors(spec: AnchorSpec, *, image: ImageLike = None, at: Optional[HW] = None,
                        title: Optional[str] = None, path=None, ncols: int = 3) -> Figure:
    """One panel per layer of a preset: its grid of centres and the anchors of one cell.

    The cell is the one containing pixel ``at = (row, col)`` of the image (default: the centre).
    The preset's normalised anchors are drawn on the image as given: on a non-square photo this
    shows what they cover after SSD resizes the photo to ``spec.image_size`` square.
    """
    img = as_image(image, (spec.image_size, spec.image_size))
    h, w = img.shape[:2]
    row, col = check_cell(at or (h // 2, w // 2), (h, w), "at:")
    anchors, layer_of = preset_anchors(spec), preset_layer_of_anchor(spec)
    priors = spec_priors(spec)
    nrows = -(-len(priors) // ncols)
    fig, axes = new_figure(nrows, ncols, panel_size=image_panel_size((h, w), 4.0, legend=True))
    for k, (ax, prior) in enumerate(zip(axes.flat, priors)):
        f, per_cell = spec.feature_maps[k], prior.num_anchors
        layer = anchors[layer_of == k]
        i, j = _cell_at(((row + 0.5) / h, (col + 0.5) / w), spec, k)
        boxes = layer.reshape(f, f, per_cell, 4)[i, j]
        shapes = anchor_shapes(prior.sizes, prior.ratios, (spec.image_size, spec.image_size))
        texts = [f"{a.width_px:.0f}x{a.height_px:.0f} px" for a in shapes]
        draw_boxes(ax, img, boxes, texts=texts, legend=True, linewidth=1.5, fontsize=7)
        draw_centres(ax, layer[::per_cell], (h, w), size=min(12.0, 100.0 / f))
        draw_centres(ax, boxes[:1], (h, w), size=30, color="red")
        ax.set_title(f"layer {k}: {f}x{f} cells, step {spec.steps[k]:g} px\n"
                     f"{per_cell} anchors per cell, {len(layer)} in all", fontsize=9)
    for ax in axes.flat[len(priors):]:
        ax.axis("off")
    fig.suptitle(title or f"{len(anchors)} anchors on {len(priors)} feature maps")
    return save_figure(fig, path)


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


def plot_training_curves(history: Sequence[Mapping[str, float]], path=None) -> Figure:
    """Loss (total, confidence, localization) and validation mAP per epoch.

    ``history``: one mapping per epoch with ``epoch``, ``loss``, ``confidence``,
    ``localization`` and optionally ``val_map`` (None when not evaluated that epoch).
    """
    epochs = [h["epoch"] for h in history]
    fig, axes = new_figure(1, 2, panel_size=(5.0, 3.6))
    loss_ax, map_ax = axes[0]
    for key in ("loss", "confidence", "localization"):
        loss_ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    loss_ax.legend()
    evaluated = [(h["epoch"], h["val_map"]) for h in history if h.get("val_map") is not None]
    if evaluated:
        map_ax.plot(*zip(*evaluated), marker="o", color="tab:green")
    map_ax.set(xlabel="epoch", ylabel="VOC07 mAP@0.5", title="validation mAP", ylim=(0, 1))
    map_ax.grid(alpha=0.3)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Anchor coverage.

def plot_coverage(reports: Union["CoverageReport", Mapping[str, "CoverageReport"]],
                  path=None) -> Figure:
    """Histogram of each box's best anchor IoU and, with layers, boxes per layer.

    ``reports``: one :class:`~gluon_ssd.coverage.CoverageReport` or several by name (e.g.
    ``{"SSD300": before, "suggested": after}``), drawn side by side in the same panels.
    """
    named: Dict[str, CoverageReport] = (dict(reports) if isinstance(reports, Mapping)
                                        else {"anchors": reports})
    with_layers = all(r.num_layers for r in named.values())
    fig, axes = new_figure(1, 2 if with_layers else 1, panel_size=(6.0, 4.0))
    hist = axes[0, 0]
    colors = box_colors(len(named))
    for (name, report), color in zip(named.items(), colors):
        hist.stairs(report.hist_counts, report.hist_edges, color=color, linewidth=2,
                    label=f"{name}: {report.coverage:.1%} covered")
    threshold = next(iter(named.values())).threshold
    hist.axvline(threshold, color="black", linestyle="--", linewidth=1)
    hist.set(xlabel="best IoU of a box with any anchor", ylabel="boxes", xlim=(0, 1),
             title=f"IoU >= {threshold:g} counts as covered")
    hist.legend(fontsize=8)
    if with_layers:
        _plot_layer_counts(axes[0, 1], named, colors)
    return save_figure(fig, path)


def _plot_layer_counts(ax: Axes, named: Mapping[str, "CoverageReport"],
                       colors: Sequence[Color]) -> None:
    """Bars per layer: boxes whose best anchor is there (light) and the covered ones (solid)."""
    width = 0.8 / len(named)
    for n, ((name, report), color) in enumerate(zip(named.items(), colors)):
        x = np.arange(report.num_layers) + (n - (len(named) - 1) / 2) * width
        ax.bar(x, report.layer_counts, width, color=color, alpha=0.3)
        ax.bar(x, report.layer_covered, width, color=color, label=f"{name} (solid: covered)")
    ax.set(xlabel="layer of the best anchor", ylabel="boxes", title="boxes each layer would take")
    ax.set_xticks(np.arange(max(r.num_layers for r in named.values())))
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------
# Matching and hard negative mining.

def plot_matches(image: ImageLike, boxes, anchors, matches, *,
                 texts: Optional[Sequence[str]] = None, title: Optional[str] = None,
                 path=None) -> Figure:
    """Ground-truth boxes and the anchors matched to them (the positives), one colour per box.

    Args:
        image: what to draw on (``None``: a blank 300 x 300 canvas).
        boxes: ``(M, 4)`` ground-truth boxes, normalised corners; drawn thick.
        anchors: ``(N, 4)`` anchors, normalised corners.
        matches: ``(N,)`` index of the box each anchor is matched to, negative for anchors that
            match no box (background or ignored: not drawn). Matched anchors are drawn thin in
            their box's colour.
        texts: a name per box (default ``box 0``, ``box 1``, ...); the legend adds how many
            anchors each box has.
    """
    img = as_image(image)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    matches = np.asarray(matches).astype(int).ravel()
    if len(matches) != len(anchors):
        raise ValueError(f"need one match per anchor: {len(anchors)} anchors, "
                         f"{len(matches)} matches")
    if matches.max(initial=-1) >= len(boxes):
        raise ValueError(f"matches refer to box {matches.max()}, but there are {len(boxes)} boxes")
    texts = [f"box {k}" for k in range(len(boxes))] if texts is None else list(texts)
    counts = np.bincount(matches[matches >= 0], minlength=len(boxes))
    colors = box_colors(len(boxes))
    fig, axes = new_figure(panel_size=image_panel_size(img.shape[:2], legend=True))
    ax = axes[0, 0]
    draw_boxes(ax, img, boxes, colors=colors, linewidth=3.5, legend=True,
               texts=[f"{t}: {c} anchor{'s' if c != 1 else ''}" for t, c in zip(texts, counts)])
    positive = matches >= 0
    draw_boxes(ax, img, anchors[positive], colors=[colors[k] for k in matches[positive]],
               linewidth=1.2)
    if len(boxes):  # the view must show the boxes too, not only the anchors drawn last
        px = to_pixels(np.concatenate([boxes, anchors[positive]]), img.shape[:2])
        h, w = img.shape[:2]
        margin = 0.02 * max(h, w)
        ax.set_xlim(min(0, px[:, 0].min()) - margin, max(w, px[:, 2].max()) + margin)
        ax.set_ylim(max(h, px[:, 3].max()) + margin, min(0, px[:, 1].min()) - margin)
    ax.set_title(title or f"{positive.sum()} positive anchors for {len(boxes)} boxes", fontsize=10)
    return save_figure(fig, path)


# Losses below this are drawn at it in :func:`plot_hard_negatives` (a log axis has no 0).
MIN_LOSS = 1e-6


def plot_hard_negatives(image: ImageLike, anchors, conf_loss, cls_target, kept, *,
                        boxes=None, bins: int = 50, title: Optional[str] = None,
                        path=None) -> Figure:
    """What hard negative mining keeps, for one image: two panels.

    Left, a histogram (log scale) of the confidence loss of every negative anchor (grey) with the
    kept ones (red) and the positives (green) over it; right, the kept negatives on the image
    (thin red) with the ground-truth ``boxes`` (thick, optional).

    Args:
        image: the network input the anchors refer to (or ``None``: a blank canvas).
        anchors: ``(N, 4)`` normalised corners.
        conf_loss: ``(N,)`` cross-entropy of each anchor against its target class.
        cls_target: ``(N,)`` 0 background (a negative), > 0 positive, -1 ignore (not shown).
        kept: ``(N,)`` 1 for the negatives the mining keeps (e.g.
            :func:`gluon_ssd.loss.hard_negative_mask`), else 0.
        boxes: ``(M, 4)`` ground-truth boxes, normalised corners.
    """
    img = as_image(image)
    anchors = np.asarray(anchors, dtype=np.float64).reshape(-1, 4)
    loss, target, kept = (np.asarray(a).ravel() for a in (conf_loss, cls_target, kept))
    if not len(loss) == len(target) == len(kept) == len(anchors):
        raise ValueError(f"need one loss, target and kept flag per anchor: {len(anchors)} "
                         f"anchors, {len(loss)} losses, {len(target)} targets, {len(kept)} flags")
    negative, positive, kept = target == 0, target > 0, (kept > 0) & (target == 0)
    fig, axes = new_figure(1, 2, panel_size=(5.5, 4.6))
    hist, ax = axes[0]
    # Losses span decades (easy background ~1e-3, positives ~1): log-spaced bins on a log axis.
    shown = np.clip(loss, MIN_LOSS, None)
    scored = shown[negative | positive]
    low, high = (scored.min(), scored.max()) if scored.size else (MIN_LOSS, 1.0)
    edges = np.geomspace(low, max(high, low * 10) * 1.001, bins + 1)
    hist.hist(shown[negative], edges, color="0.6", label=f"negatives: {negative.sum()}")
    hist.hist(shown[kept], edges, color="tab:red", label=f"kept negatives: {kept.sum()}")
    hist.hist(shown[positive], edges, histtype="step", color="tab:green", linewidth=2,
              label=f"positives: {positive.sum()}")
    if kept.any():
        hist.axvline(shown[kept].min(), color="tab:red", linestyle="--", linewidth=1)
    hist.set_xscale("log")
    hist.set_yscale("log")
    hist.set(xlabel="confidence loss of the anchor (cross-entropy)", ylabel="anchors",
             title="kept: the highest-loss negatives")
    hist.legend(fontsize=8)
    gt = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    draw_boxes(ax, img, gt, colors=[(1.0, 1.0, 1.0)] * len(gt), linewidth=3.0)
    draw_boxes(ax, img, anchors[kept], colors=[(0.84, 0.15, 0.16)] * int(kept.sum()),
               linewidth=1.0)
    ax.set_title(f"the {kept.sum()} kept negatives (red)"
                 + (" and the ground truth (white)" if len(gt) else ""), fontsize=10)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Evaluation.

AP_LABELS = {"voc07": "VOC07 AP", "voc2010": "VOC2010 AP"}


def draw_pr_curve(ax: Axes, curve: "PRCurve", aps: Optional[Mapping[str, float]] = None, *,
                  title: Optional[str] = None, legend: bool = True, fontsize: float = 8) -> Axes:
    """One class's precision-recall curve (a :class:`~gluon_ssd.evaluate.PRCurve`) on ``ax``.

    Draws the precision after each detection (thin line), its envelope (the best precision at
    equal or higher recall, shaded: the area is the VOC2010+ AP) and the envelope at recall
    0, 0.1, ..., 1 (dots: their mean is the VOC07 AP). ``aps``: e.g. ``{"voc07": 0.7}``, shown
    in the title.
    """
    recall = np.concatenate([[0.0], curve.recall])
    envelope = curve.interpolated()
    envelope = np.concatenate([envelope[:1], envelope]) if len(envelope) else np.zeros(1)
    ax.plot(curve.recall, curve.precision, ".-", color="tab:blue", linewidth=1, markersize=3,
            label="precision after each detection")
    ax.step(recall, envelope, where="pre", color="tab:orange", linewidth=1.5,
            label="envelope (area: VOC2010 AP)")
    ax.fill_between(recall, envelope, step="pre", color="tab:orange", alpha=0.15)
    ax.plot(np.linspace(0, 1, 11), curve.eleven_point(), "o", color="tab:red", markersize=3,
            label="11 points (mean: VOC07 AP)")
    text = ", ".join(f"{AP_LABELS.get(k, k)} {v:.3f}" for k, v in (aps or {}).items()
                     if v is not None and not np.isnan(v))
    ax.set_title(f"{title or ''}{': ' if title and text else ''}{text}\n"
                 f"{curve.num_positives} boxes, {len(curve.scores)} detections", fontsize=fontsize + 1)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    ax.grid(alpha=0.3)
    if legend:
        ax.legend(loc="lower left", fontsize=fontsize)
    return ax


def plot_pr_curve(curve: "PRCurve", aps: Optional[Mapping[str, float]] = None, *,
                  title: Optional[str] = None, path=None) -> Figure:
    """One class's precision-recall curve with its legend (see :func:`draw_pr_curve`)."""
    fig, axes = new_figure(panel_size=(5.5, 4.5))
    draw_pr_curve(axes[0, 0], curve, aps, title=title)
    return save_figure(fig, path)


def plot_pr_curves(curves: Mapping[str, "PRCurve"],
                   aps: Optional[Mapping[str, Mapping[str, float]]] = None, *, ncols: int = 4,
                   title: Optional[str] = None, path=None) -> Figure:
    """A grid with every class's precision-recall curve (see :func:`draw_pr_curve`).

    Args:
        curves: class name -> curve.
        aps: metric name (``"voc07"``, ``"voc2010"``) -> class name -> AP, for the titles.
        ncols: panels per row.
    """
    names = list(curves)
    ncols = max(1, min(ncols, len(names)))
    nrows = max(1, -(-len(names) // ncols))
    fig, axes = new_figure(nrows, ncols, panel_size=(3.6, 3.2))
    for k, (ax, name) in enumerate(zip(axes.flat, names)):
        draw_pr_curve(ax, curves[name], {m: a.get(name) for m, a in (aps or {}).items()},
                      title=name, legend=k == 0, fontsize=6)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    if not names:
        axes[0, 0].text(0.5, 0.5, "no class has ground truth", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
