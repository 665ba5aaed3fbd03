"""Detection on top of SSD's raw outputs: softmax, box decoding and non-maximum suppression."""
from __future__ import annotations

from typing import Optional

from mxnet import gluon

from ..boxes import BoxCoder
from ..presets import DetectSpec

# The decoders a DetectSpec may name (see DetectSpec.decoder).
DECODERS = ("multibox", "per_class")


class DetectionHead(gluon.HybridBlock):
    """Softmax, box decoding and non-maximum suppression on SSD's raw outputs, hybridizable.

    Forward ``(cls_preds (B, N, C+1), box_preds (B, N*4), anchors (1, N, 4))`` -> ``(ids, scores,
    boxes)``:

    * ``ids (B, K, 1)``: class id (0 = first object class), ``-1`` for an empty row,
    * ``scores (B, K, 1)``: class probability, ``-1`` for an empty row,
    * ``boxes (B, K, 4)``: normalised corners ``xmin, ymin, xmax, ymax`` (clipped to [0, 1]),

    rows sorted by score, ``K = spec.max_detections`` always. Offsets are decoded by ``coder``
    (the model's :class:`~gluon_ssd.boxes.BoxCoder`, ``ModelSpec.coder``: the variances the
    targets were encoded with).
    Candidates with a probability not above ``score_threshold`` are dropped, the ``nms_topk``
    best are kept and suppressed per class at ``nms_threshold`` (across classes with
    ``force_suppress``). ``spec.decoder`` chooses the candidates:

    * ``"multibox"`` (``contrib.MultiBoxDetection``): one per anchor, its most probable object
      class; boxes are clipped before NMS.
    * ``"per_class"`` (the paper's Caffe ``DetectionOutput``, GluonCV's SSD): every (anchor,
      object class) pair, so one anchor may yield boxes of several classes; NMS sees the boxes
      unclipped, as in GluonCV, and the kept ones are clipped afterwards. Up to the clipping
      (and the order of equal scores) the output equals GluonCV's SSD ``net(x)`` divided by the
      image size.
    """

    def __init__(self, spec: DetectSpec = DetectSpec(), coder: BoxCoder = BoxCoder(), **kwargs):
        super().__init__(**kwargs)
        if spec.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {spec.decoder!r}; choose one of {DECODERS}")
        self.spec = spec
        self.coder = coder

    def hybrid_forward(self, F, cls_preds, box_preds, anchors):
        probs = F.softmax(cls_preds, axis=-1)
        if self.spec.decoder == "multibox":
            rows = self._multibox(F, probs, box_preds, anchors)
        else:
            rows = self._per_class(F, probs, box_preds, anchors)
        # K empty rows appended, so that K rows exist even with fewer than K candidates.
        k = self.spec.max_detections
        empty = F.tile(-F.ones_like(F.slice_axis(rows, axis=1, begin=0, end=1)), reps=(1, k, 1))
        rows = F.slice_axis(F.concat(rows, empty, dim=1), axis=1, begin=0, end=k)
        ids = F.slice_axis(rows, axis=2, begin=0, end=1)
        scores = F.slice_axis(rows, axis=2, begin=1, end=2)
        boxes = F.slice_axis(rows, axis=2, begin=2, end=6)
        return ids, scores, boxes

    def _multibox(self, F, probs, box_preds, anchors):
        """Rows ``(B, N, 6)`` ``[id, score, xmin, ymin, xmax, ymax]``, kept ones first."""
        s = self.spec
        rows = F.contrib.MultiBoxDetection(
            F.transpose(probs, (0, 2, 1)), box_preds, anchors, clip=True,
            threshold=s.score_threshold, nms_threshold=s.nms_threshold,
            force_suppress=s.force_suppress, variances=self.coder.variances, nms_topk=s.nms_topk)
        # MultiBoxDetection leaves suppressed rows (id -1) in place; move the survivors to the
        # top (box_nms with IoU threshold 1 suppresses nothing, it only sorts and compacts).
        return F.contrib.box_nms(rows, overlap_thresh=1.0, valid_thresh=0.0,
                                 topk=s.max_detections, coord_start=2, score_index=1, id_index=0,
                                 background_id=-1)

    def _per_class(self, F, probs, box_preds, anchors):
        """Rows ``(B, C*N, 6)`` ``[id, score, xmin, ymin, xmax, ymax]``, kept ones first.

        The candidates are laid out class by class (all N anchors of class 0, then class 1...),
        as GluonCV lays them out, so that even equal scores are ordered the same way.
        """
        s = self.spec
        boxes = self.coder.decode_graph(F, box_preds, anchors)  # (B, N, 4)
        scores = F.transpose(F.slice_axis(probs, axis=2, begin=1, end=None), (0, 2, 1))
        scores = scores.expand_dims(axis=3)  # (B, C, N, 1)
        ids = F.broadcast_like(F.contrib.arange_like(scores, axis=1).reshape((1, -1, 1, 1)),
                               scores)
        boxes = F.broadcast_like(boxes.expand_dims(axis=1), scores, lhs_axes=(1,), rhs_axes=(1,))
        rows = F.concat(ids, scores, boxes, dim=3).reshape((0, -3, 6))  # (B, C*N, 6)
        rows = F.contrib.box_nms(rows, overlap_thresh=s.nms_threshold,
                                 valid_thresh=s.score_threshold, topk=s.nms_topk, coord_start=2,
                                 score_index=1, id_index=0, background_id=-1,
                                 force_suppress=s.force_suppress)
        kept = F.slice_axis(rows, axis=2, begin=0, end=2)
        corners = F.slice_axis(rows, axis=2, begin=2, end=6)
        clipped = F.where(F.broadcast_like(F.slice_axis(rows, axis=2, begin=0, end=1) >= 0,
                                           corners), F.clip(corners, 0.0, 1.0), corners)
        return F.concat(kept, clipped, dim=2)


class DetectionNet(gluon.HybridBlock):
    """An SSD and its :class:`DetectionHead` as one block: ``x (B, 3, H, W)`` -> ``(ids, scores, boxes)``.

    This is what is exported and what inference runs; training uses the SSD's raw outputs. The
    head decodes with ``coder``, by default the SSD's own (``ssd.spec.coder``; an SSD loaded from
    an exported graph has no spec, so its coder comes from the export's metadata).
    """

    def __init__(self, ssd, spec: DetectSpec = DetectSpec(), coder: Optional[BoxCoder] = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.ssd = ssd
        self.head = DetectionHead(spec, coder or ssd.spec.coder)

    def hybrid_forward(self, F, x):
        return self.head(*self.ssd(x))
