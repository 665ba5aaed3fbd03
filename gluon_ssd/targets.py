"""Training targets: match default boxes to ground truth with ``contrib.MultiBoxTarget``.

Matching (the paper's): every ground-truth box takes its best-overlapping anchor, then every
anchor whose IoU with some box exceeds ``overlap_threshold`` (0.5) takes that box. A matched
anchor's target is the box encoded as offsets from the anchor by the model's box coder
(:class:`~gluon_ssd.boxes.BoxCoder`, ``ModelSpec.coder``, the one the detection head decodes
with); every other anchor is background.

Label layouts:

* batch labels (:mod:`gluon_ssd.data.labels`): ``(B, M, 6)`` rows ``xmin, ymin, xmax, ymax,
  class_id, ignore`` in **pixels** of the network input, class ids from 0, padding rows ``-1``
  (the ``ignore`` column is for evaluation; here only the boxes and the class count);
* MultiBoxTarget labels: ``(B, max(M, 3), 5)`` rows ``class, xmin, ymin, xmax, ymax``
  **normalised** to [0, 1], padding rows all ``-1``;
* targets: ``cls_target (B, N)`` with 0 = background and ``class + 1`` for a match (the op shifts
  ids by one), ``loc_target (B, N*4)`` encoded offsets, ``loc_mask (B, N*4)`` 1 on matched anchors.
"""
from __future__ import annotations

from typing import Tuple

import mxnet as mx
import numpy as np

from .boxes import BoxCoder, to_normalised
from .data.labels import BOX, CLASS, is_object

MIN_LABEL_ROWS = 3  # label rows per image MultiBoxTarget is given, at least (padding -1)


def to_multibox_labels(labels: np.ndarray, image_size: Tuple[int, int]) -> np.ndarray:
    """Pixel batch labels ``(B, M, 6)`` -> MultiBoxTarget labels ``(B, max(M, 3), 5)``.

    Args:
        labels: rows ``xmin, ymin, xmax, ymax, class`` in pixels of the network input; rows with
            class < 0 are padding.
        image_size: ``(H, W)`` of the network input.
    """
    labels = np.asarray(labels, dtype=np.float32)
    batch, rows = labels.shape[:2]
    h, w = image_size
    out = np.full((batch, max(rows, MIN_LABEL_ROWS), 5), -1.0, dtype=np.float32)
    valid = is_object(labels)
    out[:, :rows, 0] = labels[:, :, CLASS]
    out[:, :rows, 1:5] = to_normalised(labels[:, :, BOX], (h, w))
    out[:, :rows][~valid] = -1.0
    return out


def multibox_targets(anchors: mx.nd.NDArray, labels: np.ndarray, image_size: Tuple[int, int],
                     coder: BoxCoder = BoxCoder(), overlap_threshold: float = 0.5
                     ) -> Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
    """Match anchors to a batch of pixel labels: ``(cls_target, loc_target, loc_mask)``.

    Args:
        anchors: ``(1, N, 4)`` normalised corners (the SSD's third output).
        labels: ``(B, M, 6)`` pixel rows ``xmin, ymin, xmax, ymax, class_id, ignore``, padding ``-1``.
        image_size: ``(H, W)`` of the network input the labels refer to.
        coder: the model's box coder (``ModelSpec.coder``): its variances scale the offsets.
        overlap_threshold: an anchor matches a box whose IoU with it is above this.

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
        variances=coder.variances)
    empty = (mb_labels[:, :, 0] < 0).all(axis=1)
    if empty.any():
        cls = cls_target.asnumpy()
        cls[empty] = 0
        cls_target = mx.nd.array(cls, ctx=anchors.context)
    return cls_target, loc_target, loc_mask
