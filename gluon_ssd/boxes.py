"""Boxes: the formats, the units, and the one box coder.

Formats of a box array ``(..., 4)``:

* ``corner``: ``xmin, ymin, xmax, ymax`` (what every public function of gluon-ssd takes and
  returns);
* ``centre``: ``cx, cy, w, h``;
* ``xywh``: ``xmin, ymin, w, h`` (COCO's ``bbox``).

Units: datasets and users speak **pixels** of an image (continuous coordinates: pixel ``(row r,
col c)`` covers ``[c, c + 1) x [r, r + 1)``); the MultiBox operators speak coordinates
**normalised** to [0, 1] by the image's width (x) and height (y). :func:`to_pixels` and
:func:`to_normalised` are the one conversion in each direction.

The coder: SSD's box regression predicts a matched anchor's ground truth as offsets from it,
scaled by the preset's ``variances`` (``ModelSpec.variances``); :class:`BoxCoder` encodes
(what ``contrib.MultiBoxTarget`` writes) and decodes (what ``contrib.MultiBoxDetection`` and
``contrib.box_decode`` invert), so training and detection always agree on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

HW = Tuple[int, int]
DEFAULT_VARIANCES = (0.1, 0.1, 0.2, 0.2)


def corner_to_centre(boxes) -> np.ndarray:
    """``(..., 4)`` corners -> ``(..., 4)`` ``cx, cy, w, h`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2,
                     b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]], axis=-1)


def centre_to_corner(boxes) -> np.ndarray:
    """``(..., 4)`` ``cx, cy, w, h`` -> ``(..., 4)`` corners (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    half = b[..., 2:] / 2
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def corner_to_xywh(boxes) -> np.ndarray:
    """``(..., 4)`` corners -> ``(..., 4)`` ``xmin, ymin, w, h`` (COCO's ``bbox``; float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., 2:] - b[..., :2]], axis=-1)


def xywh_to_corner(boxes) -> np.ndarray:
    """``(..., 4)`` ``xmin, ymin, w, h`` -> ``(..., 4)`` corners (float64)."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)


def _scale(image_size: HW) -> np.ndarray:
    h, w = image_size
    return np.array([w, h, w, h], dtype=np.float64)


def to_pixels(boxes, image_size: HW) -> np.ndarray:
    """Normalised corners ``(..., 4)`` -> pixel corners on an ``(H, W)`` image (float64)."""
    return np.asarray(boxes, dtype=np.float64) * _scale(image_size)


def to_normalised(boxes, image_size: HW) -> np.ndarray:
    """Pixel corners ``(..., 4)`` on an ``(H, W)`` image -> normalised corners (float64)."""
    return np.asarray(boxes, dtype=np.float64) / _scale(image_size)


@dataclass(frozen=True)
class BoxCoder:
    """SSD's box encoding with ``variances = (v0, v1, v2, v3)`` (x, y, w, h).

    A corner box (cx, cy, w, h) on an anchor (acx, acy, aw, ah) encodes to
    ``dx = (cx - acx) / aw / v0``, ``dy = (cy - acy) / ah / v1``, ``dw = log(w / aw) / v2``,
    ``dh = log(h / ah) / v3`` (the paper's eq. 2, divided by the variances as in its Caffe code).
    Boxes and anchors are normalised corners; offsets are ``(..., 4)``.
    """

    variances: Tuple[float, float, float, float] = DEFAULT_VARIANCES

    def __post_init__(self):
        if len(self.variances) != 4 or not all(v > 0 for v in self.variances):
            raise ValueError(f"variances must be four positive numbers, got {self.variances}")

    def encode(self, boxes, anchors) -> np.ndarray:
        """Corner ``boxes (N, 4)`` on corner ``anchors (N, 4)`` -> offsets ``(N, 4)`` (float64)."""
        v = self.variances
        c, a = corner_to_centre(boxes), corner_to_centre(anchors)
        return np.stack([(c[..., 0] - a[..., 0]) / a[..., 2] / v[0],
                         (c[..., 1] - a[..., 1]) / a[..., 3] / v[1],
                         np.log(c[..., 2] / a[..., 2]) / v[2],
                         np.log(c[..., 3] / a[..., 3]) / v[3]], axis=-1)

    def decode(self, offsets, anchors) -> np.ndarray:
        """Inverse of :meth:`encode`: offsets ``(N, 4)`` on anchors ``(N, 4)`` -> corners."""
        v = self.variances
        d, a = np.asarray(offsets, dtype=np.float64), corner_to_centre(anchors)
        centre = np.stack([a[..., 0] + d[..., 0] * v[0] * a[..., 2],
                           a[..., 1] + d[..., 1] * v[1] * a[..., 3],
                           a[..., 2] * np.exp(d[..., 2] * v[2]),
                           a[..., 3] * np.exp(d[..., 3] * v[3])], axis=-1)
        return centre_to_corner(centre)

    def decode_graph(self, F, box_preds, anchors):
        """:meth:`decode` in an MXNet graph: offsets ``(B, N*4)`` or ``(B, N, 4)`` on
        ``anchors (1, N, 4)`` -> boxes ``(B, N, 4)``, normalised corners, not clipped."""
        v = self.variances
        return F.contrib.box_decode(box_preds.reshape((0, -1, 4)), anchors, v[0], v[1], v[2],
                                    v[3], clip=-1, format="corner")


__all__ = ["BoxCoder", "DEFAULT_VARIANCES", "corner_to_centre", "centre_to_corner",
           "corner_to_xywh", "xywh_to_corner", "to_pixels", "to_normalised"]
