"""The detection head as ONNX nodes: softmax, box decoding, non-maximum suppression, top-k.

The same rows as :class:`~gluon_ssd.model.head.DetectionHead` from the SSD's raw outputs
``cls_preds (B, N, C + 1)``, ``box_preds (B, N * 4)``, ``anchors (1, N, 4)``:

* ``ids (B, K, 1)``: class id (0 = first object class), ``-1`` for an empty row,
* ``scores (B, K, 1)``: class probability, ``-1`` for an empty row,
* ``boxes (B, K, 4)``: normalised corners ``xmin, ymin, xmax, ymax`` clipped to [0, 1], ``-1``
  for an empty row,

rows sorted by score, ``K = spec.max_detections``, all float32 as MXNet's. The steps follow
MXNet 1.9.1's operators:

1. candidates: ``multibox`` (``contrib.MultiBoxDetection``): each anchor's most probable object
   class (the first on ties), kept when its probability is ``>= score_threshold``, the box
   decoded and clipped; ``per_class`` (``contrib.box_nms`` on every class of every anchor):
   every (class, anchor) pair with a probability ``> score_threshold``, the box unclipped;
2. the ``nms_topk`` best candidates (stable: equal scores in candidate order);
3. greedy NMS in score order, per class (``NonMaxSuppression`` over one score row per class,
   a candidate scoring only in its own) or across classes with ``force_suppress``;
   MultiBoxDetection suppresses at IoU ``>= nms_threshold``, box_nms at ``> nms_threshold``
   (ONNX's operator: ``>``), and MultiBoxDetection skips NMS and top-k for an ``nms_threshold``
   outside (0, 1];
4. the ``K`` best survivors with a score above 0, ``per_class`` boxes clipped now, empty rows
   ``-1``.

Ties in score may order rows differently than MXNet; the set of rows is the same. Every tensor
here is float32 (or int64 indices): quantization leaves the head alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from onnx import TensorProto

from ..boxes import BoxCoder
from ..presets import DetectSpec
from . import OUTPUTS
from .builder import GraphBuilder

HEAD_PREFIX = "head/"  # every node and constant of the head; re-decoding removes them


@dataclass(frozen=True)
class Candidates:
    """Tensor names of ``k`` candidates per image, best first: ``scores (B, k)`` float (-1: not a
    candidate), ``classes (B, k)`` int64, ``boxes (B, k, 4)`` normalised corners."""

    scores: str
    classes: str
    boxes: str
    k: int


def decode_boxes(b: GraphBuilder, box_preds: str, anchors: str, coder: BoxCoder,
                 clip: bool) -> str:
    """Offsets ``box_preds (B, N * 4)`` on ``anchors (1, N, 4)`` -> corners ``(B, N, 4)``,
    MultiBoxDetection's arithmetic: ``cx = dx * v0 * aw + acx``, ``w / 2 = exp(dw * v2) * aw /
    2``; clipped to [0, 1] with ``clip``."""
    offsets = b.op("Reshape", [box_preds, b.const([0, -1, 4], np.int64)])
    first, second, axis = b.const([0], np.int64), b.const([2], np.int64), b.const([2], np.int64)
    end = b.const([4], np.int64)
    a_min, a_max = b.op("Slice", [anchors, first, second, axis]), b.op(
        "Slice", [anchors, second, end, axis])
    a_size = b.op("Sub", [a_max, a_min])
    a_centre = b.op("Div", [b.op("Add", [a_min, a_max]), b.const(2.0)])
    v = coder.variances
    xy = b.op("Mul", [b.op("Slice", [offsets, first, second, axis]), b.const(v[:2])])
    wh = b.op("Mul", [b.op("Slice", [offsets, second, end, axis]), b.const(v[2:])])
    centre = b.op("Add", [b.op("Mul", [xy, a_size]), a_centre])
    half = b.op("Div", [b.op("Mul", [b.op("Exp", [wh]), a_size]), b.const(2.0)])
    corners = b.op("Concat", [b.op("Sub", [centre, half]), b.op("Add", [centre, half])], axis=2)
    return b.op("Clip", [corners, b.const(0.0), b.const(1.0)]) if clip else corners


def _gather_rows(b: GraphBuilder, data: str, index: str) -> str:
    """``data (B, M, 4)`` rows at ``index (B, k)`` -> ``(B, k, 4)``."""
    index4 = b.op("Expand", [b.op("Unsqueeze", [index, b.const([2], np.int64)]),
                             b.const([1, 1, 4], np.int64)])
    return b.op("GatherElements", [data, index4], axis=1)


def _best(b: GraphBuilder, scores: str, k: int) -> Tuple[str, str]:
    """The ``k`` largest of ``scores (B, M)`` along axis 1, sorted: ``(values, indices)``."""
    return b.op("TopK", [scores, b.const([k], np.int64)], outputs=2, axis=1, largest=1,
                sorted=1)


def _masked(b: GraphBuilder, valid: str, scores: str) -> str:
    return b.op("Where", [valid, scores, b.const(-1.0)])


def multibox_candidates(b: GraphBuilder, objects: str, boxes: str, spec: DetectSpec,
                        num_anchors: int) -> Candidates:
    """MultiBoxDetection's candidates from ``objects (B, N, C)`` probabilities and clipped
    ``boxes (B, N, 4)``: each anchor's best class, ``>= score_threshold``; the ``nms_topk`` best
    (all of them when NMS is off, ``nms_threshold`` outside (0, 1])."""
    score = b.op("ReduceMax", [objects], axes=[2], keepdims=0)
    classes = b.op("ArgMax", [objects], axis=2, keepdims=0)
    valid = b.op("GreaterOrEqual", [score, b.const(spec.score_threshold)])
    nms_on = 0 < spec.nms_threshold <= 1
    k = min(spec.nms_topk, num_anchors) if nms_on and spec.nms_topk > 0 else num_anchors
    values, index = _best(b, _masked(b, valid, score), k)
    return Candidates(values, b.op("GatherElements", [classes, index], axis=1),
                      _gather_rows(b, boxes, index), k)


def per_class_candidates(b: GraphBuilder, objects: str, boxes: str, spec: DetectSpec,
                         num_anchors: int, num_classes: int) -> Candidates:
    """box_nms's candidates from ``objects (B, N, C)`` and unclipped ``boxes (B, N, 4)``: every
    (class, anchor) pair ``> score_threshold``, laid out class by class as the MXNet head lays
    them out; the ``nms_topk`` best."""
    flat = b.op("Reshape", [b.op("Transpose", [objects], perm=[0, 2, 1]),
                            b.const([0, -1], np.int64)])  # (B, C * N)
    valid = b.op("Greater", [flat, b.const(spec.score_threshold)])
    total = num_anchors * num_classes
    k = min(spec.nms_topk, total) if spec.nms_topk > 0 else total
    values, index = _best(b, _masked(b, valid, flat), k)
    n = b.const(num_anchors, np.int64)
    classes, anchor = b.op("Div", [index, n]), b.op("Mod", [index, n])
    return Candidates(values, classes, _gather_rows(b, boxes, anchor), k)


def suppress(b: GraphBuilder, c: Candidates, spec: DetectSpec, num_classes: int,
             iou_threshold: float) -> str:
    """Greedy NMS of the candidates: their scores ``(B, k)`` with every suppressed one ``-1``.

    Per class, each candidate scores in its own class's row of ``(B, C, k)`` and is ``-1`` in
    the others, so ``NonMaxSuppression`` compares only boxes of one class; with
    ``force_suppress`` all share one row."""
    scores = b.op("Unsqueeze", [c.scores, b.const([1], np.int64)])  # (B, 1, k)
    if not spec.force_suppress:
        same = b.op("Equal", [b.op("Unsqueeze", [c.classes, b.const([1], np.int64)]),
                              b.const(np.arange(num_classes).reshape(1, -1, 1), np.int64)])
        scores = _masked(b, same, scores)  # (B, C, k)
    selected = b.op("NonMaxSuppression", [c.boxes, scores, b.const([c.k], np.int64),
                                          b.const([iou_threshold]), b.const([0.0])])
    where = b.op("Gather", [selected, b.const([0, 2], np.int64)], axis=1)  # (S, 2) batch, box
    count = b.op("Slice", [b.op("Shape", [selected]), b.const([0], np.int64),
                           b.const([1], np.int64)])
    kept = b.op("ScatterND", [b.full(b.op("Shape", [c.scores]), 0.0), where,
                              b.full(count, 1.0)])
    return _masked(b, b.op("Greater", [kept, b.const(0.5)]), c.scores)


def detection_rows(b: GraphBuilder, c: Candidates, kept_scores: str, max_detections: int,
                   clip: bool) -> Tuple[str, str, str]:
    """The ``K = max_detections`` best kept candidates with a score above 0 as the outputs
    ``ids (B, K, 1)``, ``scores (B, K, 1)``, ``boxes (B, K, 4)`` (clipped with ``clip``), empty
    rows ``-1``."""
    t = min(max_detections, c.k)
    values, index = _best(b, kept_scores, t)
    valid = b.op("Greater", [values, b.const(0.0)])
    ids = _masked(b, valid, b.op("Cast", [b.op("GatherElements", [c.classes, index], axis=1)],
                                 to=TensorProto.FLOAT))
    boxes = _gather_rows(b, c.boxes, index)
    if clip:
        boxes = b.op("Clip", [boxes, b.const(0.0), b.const(1.0)])
    boxes = _masked(b, b.op("Unsqueeze", [valid, b.const([2], np.int64)]), boxes)
    scores = _masked(b, valid, values)
    last = b.const([2], np.int64)
    columns = [b.op("Unsqueeze", [ids, last]), b.op("Unsqueeze", [scores, last]), boxes]
    # K rows always, as the MXNet head: rows of -1 below the t best.
    pads = b.const([0, 0, 0, 0, max_detections - t, 0], np.int64)
    return tuple(b.op("Pad", [x, pads, b.const(-1.0)], outputs=[name])
                 for x, name in zip(columns, OUTPUTS))


def add_head(b: GraphBuilder, raw: Tuple[str, str, str], spec: DetectSpec, coder: BoxCoder,
             num_anchors: int, num_classes: int) -> Tuple[str, str, str]:
    """Add the detection head on the raw outputs ``raw = (cls_preds, box_preds, anchors)``;
    returns the output names ``ids, scores, boxes`` (see the module docstring)."""
    cls_preds, box_preds, anchors = raw
    probs = b.op("Softmax", [cls_preds], axis=-1)
    objects = b.op("Slice", [probs, b.const([1], np.int64), b.const([num_classes + 1], np.int64),
                             b.const([2], np.int64)])  # (B, N, C), background dropped
    multibox = spec.decoder == "multibox"
    boxes = decode_boxes(b, box_preds, anchors, coder, clip=multibox)
    if multibox:
        c = multibox_candidates(b, objects, boxes, spec, num_anchors)
        # MultiBoxDetection suppresses at IoU >= threshold, ONNX's operator at > threshold:
        # the float32 just below the threshold makes them agree.
        iou = float(np.nextafter(np.float32(spec.nms_threshold), np.float32(0)))
        kept = suppress(b, c, spec, num_classes, iou) if 0 < spec.nms_threshold <= 1 else c.scores
    else:
        c = per_class_candidates(b, objects, boxes, spec, num_anchors, num_classes)
        kept = suppress(b, c, spec, num_classes, spec.nms_threshold)
    return detection_rows(b, c, kept, spec.max_detections, clip=not multibox)
