"""Pictures of the training augmentation (:mod:`gluon_ssd.data.transforms`): an image with its
boxes after each step, side by side, and the random patches the min-IoU crop chooses from.

Boxes here are in **pixels** of the image they are drawn on (what the transforms return), rows
``xmin, ymin, xmax, ymax`` (the label layout of :mod:`gluon_ssd.data.labels`: the class id, if
given, in column 4). Images are ``(H, W, 3)`` arrays in 0..255 (float images are rounded).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from ..data.labels import BOX, CLASS
from .canvas import box_colors, draw_boxes, new_figure, save_figure
from .detections import draw_detections

# One panel of :func:`plot_augmentation_steps`: (title, image (H, W, 3), label (M, 4+) pixels).
Panel = Tuple[str, np.ndarray, np.ndarray]


def network_input_to_image(x, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """The inverse of :func:`~gluon_ssd.data.transforms.to_network_input`, for display:
    ``(3, H, W)`` float ``(x / 255 - mean) / std`` (numpy or NDArray) -> ``(H, W, 3)`` uint8."""
    x = x.asnumpy() if hasattr(x, "asnumpy") else np.asarray(x)
    rgb = x.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def _as_label(label) -> np.ndarray:
    """``label`` as a float64 ``(M, K)`` array, ``K >= 4`` (an empty label: ``(0, 4)``)."""
    label = np.asarray(label, dtype=np.float64)
    return label if label.ndim == 2 and label.shape[1] >= 4 else label.reshape(-1, 4)


def _as_uint8(image) -> np.ndarray:
    image = image.asnumpy() if hasattr(image, "asnumpy") else np.asarray(image)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def plot_augmentation_steps(panels: Sequence[Panel], *,
                            class_names: Optional[Sequence[str]] = None, ncols: int = 4,
                            panel_size: Tuple[float, float] = (3.2, 3.4),
                            title: Optional[str] = None, path=None) -> Figure:
    """A grid of images with their boxes, one panel per augmentation step.

    Args:
        panels: ``(title, image (H, W, 3), label (M, 4+))`` each; the images may differ in size
            (zoom-out makes a larger canvas, a crop a smaller one); boxes in pixels of their
            image, coloured and named by ``label[:, 4]`` (the class id) when that column exists.
        class_names: names of the class ids.
        ncols: panels per row.
    """
    nrows = max(1, -(-len(panels) // ncols))
    fig, axes = new_figure(nrows, min(ncols, max(len(panels), 1)), panel_size=panel_size)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, image, label) in zip(axes.ravel(), panels):
        label = _as_label(label)
        ids = label[:, CLASS] if label.shape[1] > CLASS else None
        draw_detections(ax, _as_uint8(image), label[:, BOX], class_ids=ids,
                        class_names=class_names, pixels=True)
        h, w = np.shape(image)[:2]
        ax.set_title(f"{name}\n{w} x {h} px, {len(label)} boxes", fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_crop_patches(image, label, patches, *, chosen: Optional[int] = None,
                      title: Optional[str] = None, path=None) -> Figure:
    """The candidate patches of the min-IoU crop on the image, with the ground truth.

    Args:
        image: ``(H, W, 3)``.
        label: ``(M, 4+)`` ground-truth boxes in pixels (drawn thick, black).
        patches: ``(K, 4)`` patches ``(x, y, width, height)`` in pixels, as
            :func:`~gluon_ssd.data.transforms.sample_patches` returns them (the first is the
            whole image); drawn thin, numbered.
        chosen: index of the patch the crop took (drawn thick), if any.
    """
    image = _as_uint8(image)
    patches = np.asarray(patches, dtype=np.float64).reshape(-1, 4)
    corners = np.concatenate([patches[:, :2], patches[:, :2] + patches[:, 2:]], axis=1)
    fig, axes = new_figure(panel_size=(5.5, 5.5 * image.shape[0] / image.shape[1] + 0.6))
    ax = axes[0, 0]
    truth = _as_label(label)[:, BOX]
    draw_boxes(ax, image, truth, pixels=True, colors=[(0.0, 0.0, 0.0)] * len(truth),
               linewidth=3.0)
    colors = box_colors(len(corners))
    draw_boxes(ax, image, corners, pixels=True, colors=colors, linewidth=1.2,
               texts=[f"patch {k}" + (" (chosen)" if k == chosen else "")
                      for k in range(len(corners))])
    if chosen is not None:  # drawn again, thick, over the others
        draw_boxes(ax, image, corners[chosen:chosen + 1], pixels=True, colors=[colors[chosen]],
                   linewidth=3.5)
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_title(title or f"{len(corners)} candidate patches (patch 0: the whole image)",
                 fontsize=10)
    return save_figure(fig, path)


__all__ = ["Panel", "network_input_to_image", "plot_augmentation_steps", "plot_crop_patches"]
