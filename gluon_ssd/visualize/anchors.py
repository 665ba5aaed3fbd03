"""Pictures of default boxes: one feature map's anchors and a preset's layers."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from ..anchors import (anchor_shapes, feature_map_anchors, num_anchors, preset_anchors,
                       preset_layer_of_anchor, spec_priors)
from ..presets import AnchorSpec
from .canvas import (HW, ImageLike, as_image, box_colors, check_cell, draw_boxes,
                     draw_centres, image_panel_size, new_figure, save_figure)

# Feature maps with more cells than this are drawn without their grid of centres.
MAX_CENTRES = 4096


# ---------------------------------------------------------------------------------------------
# Anchors.

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
        shapes = prior.shapes((spec.image_size, spec.image_size))
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
