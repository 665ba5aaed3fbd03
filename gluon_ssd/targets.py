"""Training targets: match default boxes to ground truth with ``contrib.MultiBoxTarget``.

Matching (the paper's): every ground-truth box takes its best-overlapping anchor, then every
anchor whose IoU with some box exceeds ``overlap_threshold`` (0.5) takes that box. A matched
anchor's target is the box encoded as offsets from the anchor (``encode`` below, with
``variances``); every other anchor is background.

Label layouts:

* dataset / batch labels: ``(B, M, 5+)`` rows ``xmin, ymin, xmax, ymax, class`` in **pixels**,
  class ids from 0, padding rows ``-1`` (extra columns such as ``difficult`` are ignored);
* MultiBoxTarget labels: ``(B, max(M, 3), 5)`` rows ``class, xmin, ymin, xmax, ymax``
  **normalised** to [0, 1], padding rows all ``-1``;
* targets: ``cls_target (B, N)`` with 0 = background and ``class + 1`` for a match (the op shifts
  ids by one), ``loc_target (B, N*4)`` encoded offsets, ``loc_mask (B, N*4)`` 1 on matched anchors.
"""
from __future__ import annotations

from typing import Tuple

import mxnet as mx
import numpy as np

VARIANCES = (0.1, 0.1, 0.2, 0.2)
MIN_LABEL_ROWS = 3  # label rows per image MultiBoxTarget is given, at least (padding -1)


def to_multibox_labels(labels: np.ndarray, image_size: Tuple[int, int]) -> np.ndarray:
    """Pixel batch labels ``(B, M, 5+)`` -> MultiBoxTarget labels ``(B, max(M, 3), 5)``.

    Args:
        labels: rows ``xmin, ymin, xmax, ymax, class`` in pixels of the network input; rows with
            class < 0 are padding.
        image_size: ``(H, W)`` of the network input.
    """
    labels = np.asarray(labels, dtype=np.float32)
    batch, rows = labels.shape[:2]
    h, w = image_size
    out = np.full((batch, max(rows, MIN_LABEL_ROWS), 5), -1.0, dtype=np.float32)
    valid = labels[:, :, 4] >= 0
    out[:, :rows, 0] = labels[:, :, 4]
    out[:, :rows, 1:5] = labels[:, :, :4] / np.array([w, h, w, h], dtype=np.float32)
    out[:, :rows][~valid] = -1.0
    return out


def multibox_targets(anchors: mx.nd.NDArray, labels: np.ndarray, image_size: Tuple[int, int],
                     overlap_threshold: float = 0.5, variances=VARIANCES
                     ) -> Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
    """Match anchors to a batch of pixel labels: ``(cls_target, loc_target, loc_mask)``.

    Args:
        anchors: ``(1, N, 4)`` normalised corners (the SSD's third output).
        labels: ``(B, M, 5+)`` pixel rows ``xmin, ymin, xmax, ymax, class``, padding ``-1``.
        image_size: ``(H, W)`` of the network input the labels refer to.

    Returns ``cls_target (B, N)`` (0 background, class + 1 matched), ``loc_target (B, N*4)``,
    ``loc_mask (B, N*4)``. Hard negative mining is left to the loss (see ``loss.py``).

    An image without objects: MultiBoxTarget marks all its anchors ignore (-1), which would give
    it nothing to learn; here they become background, so empty images teach "no object".
    """
    mb_labels = to_multibox_labels(labels, image_size)
    batch, n = mb_labels.shape[0], anchors.shape[1]
    loc_target, loc_mask, cls_target = mx.nd.contrib.MultiBoxTarget(
        anchors, mx.nd.array(mb_labels, ctx=anchors.context),
        mx.nd.zeros((batch, 1, n), ctx=anchors.context),  # class scores: only used for mining
        overlap_threshold=overlap_threshold, ignore_label=-1, negative_mining_ratio=-1,
        variances=variances)
    empty = (mb_labels[:, :, 0] < 0).all(axis=1)
    if empty.any():
        cls = cls_target.asnumpy()
        cls[empty] = 0
        cls_target = mx.nd.array(cls, ctx=anchors.context)
    return cls_target, loc_target, loc_mask


def encode(boxes: np.ndarray, anchors: np.ndarray, variances=VARIANCES) -> np.ndarray:
    """Offsets of corner ``boxes (N, 4)`` from corner ``anchors (N, 4)``: ``(N, 4)`` ``dx, dy, dw, dh``.

    ``dx = (cx - acx) / aw / v0``, ``dy = (cy - acy) / ah / v1``, ``dw = log(w / aw) / v2``,
    ``dh = log(h / ah) / v3``: what MultiBoxTarget writes and MultiBoxDetection inverts.
    """
    def centre_size(b):
        return (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]

    cx, cy, w, h = centre_size(np.asarray(boxes, dtype=np.float64))
    acx, acy, aw, ah = centre_size(np.asarray(anchors, dtype=np.float64))
    return np.stack([(cx - acx) / aw / variances[0], (cy - acy) / ah / variances[1],
                     np.log(w / aw) / variances[2], np.log(h / ah) / variances[3]], axis=1)


def decode(offsets: np.ndarray, anchors: np.ndarray, variances=VARIANCES) -> np.ndarray:
    """Inverse of :func:`encode`: offsets ``(N, 4)`` + anchors ``(N, 4)`` -> corner boxes ``(N, 4)``."""
    a = np.asarray(anchors, dtype=np.float64)
    d = np.asarray(offsets, dtype=np.float64)
    aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    cx = (a[:, 0] + a[:, 2]) / 2 + d[:, 0] * variances[0] * aw
    cy = (a[:, 1] + a[:, 3]) / 2 + d[:, 1] * variances[1] * ah
    w = aw * np.exp(d[:, 2] * variances[2])
    h = ah * np.exp(d[:, 3] * variances[3])
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
