"""Detection on top of SSD's raw outputs: softmax, box decoding and non-maximum suppression."""
from __future__ import annotations

from mxnet import gluon

from ..presets import DetectSpec


class Detector(gluon.HybridBlock):
    """Softmax + ``contrib.MultiBoxDetection`` (decoding and NMS), hybridizable.

    Forward ``(cls_preds (B, N, C+1), box_preds (B, N*4), anchors (1, N, 4))`` -> ``(ids, scores,
    boxes)``:

    * ``ids (B, K, 1)``: class id (0 = first object class), ``-1`` for an empty row,
    * ``scores (B, K, 1)``: class probability, ``-1`` for an empty row,
    * ``boxes (B, K, 4)``: normalised corners ``xmin, ymin, xmax, ymax`` (clipped to [0, 1]),

    rows sorted by score, ``K = spec.max_detections``. Each anchor contributes at most one
    detection, of its most probable object class; boxes under ``score_threshold`` are dropped,
    the ``nms_topk`` best are kept and suppressed per class at ``nms_threshold`` (across
    classes with ``force_suppress``). Offsets are decoded with ``variances``:
    ``cx = acx + dx * v0 * aw``, ``w = aw * exp(dw * v2)`` (likewise y, h).
    """

    def __init__(self, spec: DetectSpec = DetectSpec(), **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def hybrid_forward(self, F, cls_preds, box_preds, anchors):
        s = self.spec
        cls_prob = F.transpose(F.softmax(cls_preds, axis=-1), (0, 2, 1))
        rows = F.contrib.MultiBoxDetection(
            cls_prob, box_preds, anchors, clip=True, threshold=s.score_threshold,
            nms_threshold=s.nms_threshold, force_suppress=s.force_suppress,
            variances=s.variances, nms_topk=s.nms_topk)
        # MultiBoxDetection leaves suppressed rows (id -1) in place; move the survivors to the
        # top (box_nms with IoU threshold 1 suppresses nothing, it only sorts and compacts).
        rows = F.contrib.box_nms(rows, overlap_thresh=1.0, valid_thresh=0.0,
                                 topk=s.max_detections, coord_start=2, score_index=1, id_index=0,
                                 background_id=-1)
        # K empty rows appended, so that K rows exist even with fewer than K anchors.
        empty = F.tile(-F.ones_like(F.slice_axis(rows, axis=1, begin=0, end=1)),
                       reps=(1, s.max_detections, 1))
        rows = F.slice_axis(F.concat(rows, empty, dim=1), axis=1, begin=0, end=s.max_detections)
        ids = F.slice_axis(rows, axis=2, begin=0, end=1)
        scores = F.slice_axis(rows, axis=2, begin=1, end=2)
        boxes = F.slice_axis(rows, axis=2, begin=2, end=6)
        return ids, scores, boxes


class DetectionNet(gluon.HybridBlock):
    """An SSD and its :class:`Detector` as one block: ``x (B, 3, H, W)`` -> ``(ids, scores, boxes)``.

    This is what is exported and what inference runs; training uses the SSD's raw outputs.
    """

    def __init__(self, ssd, spec: DetectSpec = DetectSpec(), **kwargs):
        super().__init__(**kwargs)
        self.ssd = ssd
        self.detector = Detector(spec)

    def hybrid_forward(self, F, x):
        return self.detector(*self.ssd(x))
