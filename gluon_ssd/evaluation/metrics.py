"""Detection metrics: VOC07 11-point and VOC2010+ area mAP at IoU 0.5, COCO AP (pycocotools)
and per-class precision-recall curves, accumulated batch by batch.

Inputs of :meth:`DetectionEvaluator.update`, all in **pixels of the original images** (as the
VOC devkit and the COCO API score them; :mod:`gluon_ssd.evaluation.run` converts a detector's
normalised boxes and a batch's network-input labels):

* detections ``ids (B, K)`` (class id from 0, ``-1`` for an empty row), ``scores (B, K)`` and
  ``boxes (B, K, 4)`` corners ``xmin, ymin, xmax, ymax``;
* labels ``(B, M, 6)`` rows ``xmin, ymin, xmax, ymax, class_id, ignore``
  (:mod:`gluon_ssd.data.labels`), padding rows -1. ``ignore`` is VOC's ``difficult`` (or COCO's
  ``iscrowd``) flag.

Units matter in two places only (IoU itself does not change under resizing): the VOC metric adds
1 to ``xmax``/``ymax`` (the devkit's integer-pixel convention), and COCO's small / medium / large
buckets are areas in pixels (below 32^2, up to 96^2, above).

VOC matching is the devkit's (and GluonCV's ``VOCMApMetric``, reproduced here number for number,
so that its results are those of the reference; ``tests/test_evaluate.py`` compares them):
per image and class, detections in descending score order take the ground-truth box they overlap
most if that IoU is at least 0.5 and the box is not taken yet (true positive), else they are
false positives; a detection whose best box is ignored is neither. Precision and recall follow
the detections of a class over all images in score order; the curves are exactly what the AP
integrates. For COCO, ignored boxes become crowd regions (``iscrowd=1``), which COCOeval treats
the same way (its crowd IoU is intersection over the detection's area).
"""
from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from gluoncv.utils.bbox import bbox_iou
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.labels import BOX, CLASS, IGNORE

METRICS = ("voc07", "voc2010", "coco")
VOC_METRICS = ("voc07", "voc2010")
METRIC_NAMES = {"voc07": "VOC07 mAP", "voc2010": "VOC2010 mAP", "coco": "COCO AP"}
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[:6]
IOU_THRESHOLD = 0.5
# The VOC07 recall points 0, 0.1, ..., 1 (written as the devkit's loop writes them: the values
# differ from linspace's in the last bit, which decides whether e.g. a recall of 0.3 reaches 0.3).
ELEVEN_POINTS = np.arange(0.0, 1.1, 0.1)
TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1


# ---------------------------------------------------------------------------------------------
# Results.

@dataclass
class EvalResult:
    """mAP and per-class AP (``nan`` for a class with no ground truth) of one VOC metric."""

    map: float
    ap: Dict[str, float]
    metric: str


@dataclass
class PRCurve:
    """Precision and recall of one class at IoU 0.5, after each detection in score order.

    Attributes:
        recall, precision: ``(D,)`` after the 1st, 2nd, ... D-th most confident detection of
            the class (detections on ignored boxes keep the previous values; ``nan`` precision
            before the first detection that counts).
        scores: ``(D,)`` the detection scores, descending: point ``i`` is the curve at score
            threshold ``scores[i]``.
        num_positives: ground-truth boxes of the class that are not ignored (> 0).
    """

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray
    num_positives: int

    def interpolated(self) -> np.ndarray:
        """``(D,)`` the precision envelope: at point ``i``, the best precision at recall
        ``>= recall[i]``; the area under it is the VOC2010+ AP."""
        return _envelope(np.nan_to_num(self.precision))

    def eleven_point(self) -> np.ndarray:
        """``(11,)`` the envelope at recall :data:`ELEVEN_POINTS` (0 beyond the largest
        recall); their mean is the VOC07 AP."""
        precision = np.nan_to_num(self.precision)
        return np.array([precision[self.recall >= t].max(initial=0.0) for t in ELEVEN_POINTS])

    def average_precision(self, metric: str) -> float:
        """The AP of ``metric`` (``"voc07"``: mean of :meth:`eleven_point`; ``"voc2010"``: the
        area under the envelope, recall from 0 to the largest reached)."""
        if metric == "voc07":
            ap = 0.0
            for p in self.eleven_point():  # summed in order, as the devkit does
                ap += p / 11.0
            return float(ap)
        if metric == "voc2010":
            recall = np.concatenate(([0.0], self.recall, [1.0]))
            envelope = _envelope(np.concatenate(([0.0], np.nan_to_num(self.precision), [0.0])))
            steps = np.where(recall[1:] != recall[:-1])[0]
            return float(np.sum((recall[steps + 1] - recall[steps]) * envelope[steps + 1]))
        raise ValueError(f"unknown VOC metric {metric!r}; choose from {list(VOC_METRICS)}")


def _envelope(precision: np.ndarray) -> np.ndarray:
    """At each point, the largest precision at that point or after it."""
    return np.maximum.accumulate(precision[::-1])[::-1]


@dataclass
class CocoResult:
    """COCO box AP.

    Attributes:
        stats: ``AP`` (IoU 0.5:0.95), ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` (areas below
            32^2, 32^2-96^2, above 96^2 pixels); ``nan`` where no ground truth falls in a bucket.
        ap: per-class AP at IoU 0.5:0.95 (``nan`` for a class without ground truth).
    """

    stats: Dict[str, float]
    ap: Dict[str, float]


@dataclass
class Evaluation:
    """Everything measured on one split by one detector (boxes in original image pixels).

    Attributes:
        classes: class names; id ``k`` is ``classes[k]``.
        num_images: images evaluated.
        voc: ``"voc07"`` / ``"voc2010"`` -> :class:`EvalResult`, the ones asked for.
        coco: COCO AP, if asked for.
        curves: class name -> :class:`PRCurve` for each class with ground truth.
        num_ground_truth: class name -> boxes that count (not ignored).
        num_detections: class name -> detections (rows with an id).
    """

    classes: Tuple[str, ...]
    num_images: int
    voc: Dict[str, EvalResult] = field(default_factory=dict)
    coco: Optional[CocoResult] = None
    curves: Dict[str, PRCurve] = field(default_factory=dict)
    num_ground_truth: Dict[str, int] = field(default_factory=dict)
    num_detections: Dict[str, int] = field(default_factory=dict)

    def headline(self) -> Dict[str, float]:
        """Metric name (``"VOC07 mAP"``, ``"VOC2010 mAP"``, ``"COCO AP"``) -> value."""
        values = {METRIC_NAMES[k]: r.map for k, r in self.voc.items()}
        if self.coco is not None:
            values[METRIC_NAMES["coco"]] = self.coco.stats["AP"]
        return values


# ---------------------------------------------------------------------------------------------
# VOC: matching detections to boxes.

def match_detections(boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray,
                     gt_ignore: np.ndarray, iou_threshold: float = IOU_THRESHOLD
                     ) -> Tuple[np.ndarray, np.ndarray]:
    """The devkit's matching of one class's detections on one image.

    Args:
        boxes: ``(D, 4)`` detection corners in pixels; ``scores`` ``(D,)``.
        gt_boxes: ``(G, 4)`` ground-truth corners in pixels; ``gt_ignore`` ``(G,)`` flags.

    Returns:
        ``scores`` in descending order ``(D,)`` and each detection's outcome ``(D,)`` int:
        :data:`TRUE_POSITIVE`, :data:`FALSE_POSITIVE` or :data:`IGNORED` (its box is ignored).
    """
    order = scores.argsort()[::-1]
    boxes, scores = boxes[order], scores[order]
    outcome = np.full(len(boxes), FALSE_POSITIVE, np.int32)
    if not len(boxes) or not len(gt_boxes):
        return scores, outcome
    # integer pixel boxes: a box from pixel 0 to pixel 9 is 10 wide
    iou = bbox_iou(_inclusive(boxes), _inclusive(gt_boxes))
    best = iou.argmax(axis=1)
    best[iou.max(axis=1) < iou_threshold] = -1
    taken = np.zeros(len(gt_boxes), bool)
    for i, k in enumerate(best):
        if k < 0:
            continue
        if gt_ignore[k]:
            outcome[i] = IGNORED
        elif not taken[k]:
            outcome[i] = TRUE_POSITIVE
        taken[k] = True
    return scores, outcome


def _inclusive(boxes: np.ndarray) -> np.ndarray:
    boxes = boxes.copy()
    boxes[:, 2:] += 1
    return boxes


class _VOCRecords:
    """Every detection's score and outcome, and the ground truth that counts, per class."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.scores: Dict[int, List[np.ndarray]] = defaultdict(list)
        self.outcomes: Dict[int, List[np.ndarray]] = defaultdict(list)
        self.positives = np.zeros(num_classes, np.int64)
        self.highest_id = -1  # the largest class id seen in detections or ground truth

    def add_image(self, ids, scores, boxes, gt_ids, gt_boxes, gt_ignore) -> None:
        """One image's valid rows (class ids ``>= 0``), boxes in pixels."""
        for k in np.unique(np.concatenate([ids, gt_ids])).astype(int):
            mine, truth = ids == k, gt_ids == k
            self.highest_id = max(self.highest_id, k)
            if k < self.num_classes:
                self.positives[k] += int(np.sum(gt_ignore[truth] <= 0))
            ranked, outcome = match_detections(boxes[mine], scores[mine], gt_boxes[truth],
                                               gt_ignore[truth] > 0)
            self.scores[k].append(ranked)
            self.outcomes[k].append(outcome)

    def curve(self, k: int) -> Optional[PRCurve]:
        """Class ``k``'s curve, ``None`` without ground truth."""
        if self.positives[k] == 0:
            return None
        scores = np.concatenate(self.scores[k])
        order = scores.argsort()[::-1]
        outcome = np.concatenate(self.outcomes[k])[order]
        tp = np.cumsum(outcome == TRUE_POSITIVE)
        fp = np.cumsum(outcome == FALSE_POSITIVE)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (fp + tp)
        return PRCurve(tp / self.positives[k], precision, scores[order].astype(np.float64),
                       int(self.positives[k]))

    def result(self, metric: str, classes: Sequence[str],
               curves: Dict[int, PRCurve]) -> EvalResult:
        ap = np.full(len(classes), np.nan)
        for k, curve in curves.items():
            ap[k] = curve.average_precision(metric)
        # the mean over the classes up to the largest id seen, as GluonCV's metric takes it
        # (the classes after it have no ground truth: nan, which the mean skips either way)
        seen = ap[:self.highest_id + 1]
        mean = float(np.nanmean(seen)) if np.isfinite(seen).any() else float("nan")
        return EvalResult(mean, dict(zip(classes, map(float, ap))), metric)


# ---------------------------------------------------------------------------------------------
# Accumulating detections and ground truth.

class DetectionEvaluator:
    """Collects the detections and ground truth of a split, batch by batch; :meth:`result`
    computes the metrics.

    Args:
        classes: class names (id ``k`` is ``classes[k]``).
        metrics: any of :data:`METRICS`. The precision-recall curves come with every metric.
    """

    def __init__(self, classes: Sequence[str], metrics: Sequence[str] = METRICS):
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metric(s) {unknown or list(metrics)}; choose from "
                             f"{list(METRICS)}")
        self.classes = tuple(classes)
        self.metrics = tuple(metrics)
        self._voc = _VOCRecords(len(self.classes))
        self._coco = _CocoRecords(self.classes) if "coco" in self.metrics else None
        self._num_gt = np.zeros(len(self.classes), np.int64)
        self._num_det = np.zeros(len(self.classes), np.int64)
        self._num_images = 0

    def update(self, ids, scores, boxes, labels,
               image_sizes: Optional[np.ndarray] = None) -> None:
        """Add one batch (see the module docstring), every box in pixels of its image.

        Args:
            ids, scores: ``(B, K)`` or ``(B, K, 1)`` class id (-1: empty row) and score.
            boxes: ``(B, K, 4)`` detection corners.
            labels: ``(B, M, 6)`` ground-truth rows (``(B, M, 5)``: nothing ignored).
            image_sizes: ``(B, 2)`` ``(height, width)`` of the images (for the COCO records).
        """
        labels = np.asarray(labels, np.float64)
        batch = labels.shape[0]
        ids = np.asarray(ids).reshape(batch, -1)
        scores = np.asarray(scores).reshape(batch, -1)
        boxes = np.asarray(boxes, np.float64).reshape(batch, -1, 4)
        gt_ids = labels[:, :, CLASS]
        ignore = labels[:, :, IGNORE] if labels.shape[2] > IGNORE else np.zeros_like(gt_ids)
        self._num_images += batch
        for i in range(batch):
            gt, det = gt_ids[i] >= 0, ids[i] >= 0
            rows = (ids[i][det], scores[i][det], boxes[i][det], gt_ids[i][gt],
                    labels[i, :, BOX][gt], ignore[i][gt])
            self._voc.add_image(*rows)
            self._num_gt += np.bincount(rows[3][rows[5] <= 0].astype(int),
                                        minlength=len(self.classes))[:len(self.classes)]
            self._num_det += np.bincount(rows[0].astype(int),
                                         minlength=len(self.classes))[:len(self.classes)]
            if self._coco is not None:
                self._coco.add_image(None if image_sizes is None else image_sizes[i], *rows)

    def result(self) -> Evaluation:
        """The metrics over everything added so far."""
        if not self._num_images:
            raise ValueError("nothing to evaluate: no images were given")
        evaluation = Evaluation(
            self.classes, self._num_images,
            num_ground_truth=dict(zip(self.classes, map(int, self._num_gt))),
            num_detections=dict(zip(self.classes, map(int, self._num_det))))
        curves = {k: c for k in range(len(self.classes))
                  if (c := self._voc.curve(k)) is not None}
        for name in self.metrics:
            if name in VOC_METRICS:
                evaluation.voc[name] = self._voc.result(name, self.classes, curves)
        evaluation.curves = {self.classes[k]: c for k, c in curves.items()}
        if self._coco is not None:
            evaluation.coco = self._coco.result()
        return evaluation


# ---------------------------------------------------------------------------------------------
# COCO.

class _CocoRecords:
    """The images, ground truth and detections in COCO's format, for COCOeval.

    COCO wants ``bbox = [x, y, w, h]`` and ``area``; ids from 1 (COCOeval treats id 0 as
    "unmatched"), so category ``k + 1`` is class ``k``.
    """

    def __init__(self, classes: Sequence[str]):
        self.classes = tuple(classes)
        self.images: List[dict] = []
        self.ground_truth: List[dict] = []
        self.detections: List[dict] = []

    def add_image(self, size, ids, scores, boxes, gt_ids, gt_boxes, gt_ignore) -> None:
        """One image's valid rows, boxes ``(n, 4)`` corners in pixels; ``size`` ``(h, w)``."""
        image_id = len(self.images) + 1
        image = {"id": image_id}
        if size is not None:
            image.update(height=float(size[0]), width=float(size[1]))
        self.images.append(image)
        for box, cls, crowd in zip(gt_boxes, gt_ids, gt_ignore):
            self.ground_truth.append(dict(_coco_box(box), id=len(self.ground_truth) + 1,
                                          image_id=image_id, category_id=int(cls) + 1,
                                          iscrowd=int(crowd > 0)))
        for box, cls, score in zip(boxes, ids, scores):
            self.detections.append(dict(_coco_box(box), id=len(self.detections) + 1,
                                        image_id=image_id, category_id=int(cls) + 1,
                                        score=float(score), iscrowd=0))

    def result(self) -> CocoResult:
        """COCOeval on the collected records (built in memory; its prints silenced)."""
        categories = [{"id": k + 1, "name": c} for k, c in enumerate(self.classes)]
        sets = []
        for records in (self.ground_truth, self.detections):
            coco = COCO()
            coco.dataset = {"images": self.images, "annotations": records,
                            "categories": categories}
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
            sets.append(coco)
        cocoeval = COCOeval(*sets, iouType="bbox")
        with contextlib.redirect_stdout(io.StringIO()):
            cocoeval.evaluate()
            cocoeval.accumulate()
            cocoeval.summarize()
        stats = {k: _nan_if_negative(v) for k, v in zip(COCO_STATS, cocoeval.stats)}
        # precision (IoU thresholds, recall points, classes, area ranges, max detections) at
        # area "all" and 100 detections per image; -1 where a class has no ground truth.
        precision = cocoeval.eval["precision"][:, :, :, 0, -1]
        ap = {}
        for k, name in enumerate(self.classes):
            measured = precision[:, :, k][precision[:, :, k] > -1]
            ap[name] = float(measured.mean()) if measured.size else float("nan")
        return CocoResult(stats, ap)


def _coco_box(box: np.ndarray) -> Dict[str, Any]:
    """Corners ``(4,)`` -> COCO's ``bbox [x, y, w, h]`` and ``area``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {"bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)}


def _nan_if_negative(value: float) -> float:
    """COCOeval's ``-1`` (nothing to measure) -> ``nan``."""
    return float("nan") if value < 0 else float(value)


__all__ = [
    "METRICS", "VOC_METRICS", "METRIC_NAMES", "COCO_STATS", "IOU_THRESHOLD", "ELEVEN_POINTS",
    "EvalResult", "PRCurve", "CocoResult", "Evaluation", "DetectionEvaluator", "match_detections",
]
