"""Pictures of matching and the loss: positive anchors per box, and the negatives hard negative
mining keeps."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..boxes import to_pixels
from .canvas import (ImageLike, as_image, box_colors, draw_boxes, image_panel_size, new_figure,
                     save_figure)


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
