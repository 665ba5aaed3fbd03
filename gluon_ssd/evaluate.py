"""Evaluation: VOC07 11-point and VOC2010+ area mAP at IoU 0.5 (gluoncv's metrics), COCO AP
(pycocotools) and per-class precision-recall curves, all fed by one pass over the data.

Inputs, per batch:

* detections ``ids (B, K, 1)`` (class id from 0, ``-1`` for an empty row), ``scores (B, K, 1)``
  and ``boxes (B, K, 4)``: corners ``xmin, ymin, xmax, ymax`` **normalised** to [0, 1] (what
  :class:`~gluon_ssd.model.detector.DetectionNet` and an exported graph return);
* labels ``(B, M, 5+)``: rows ``xmin, ymin, xmax, ymax, class_id[, ignore[, width, height]]``
  in **pixels of the network input**, padding rows -1. ``ignore`` is VOC's ``difficult`` (or
  COCO's ``iscrowd``) flag. When the rows carry ``width, height`` (the original image's size,
  added by :class:`SizedEvalTransform`), every metric is computed in **pixels of the original
  image**, as the VOC devkit and the COCO API do; otherwise in pixels of the network input (what
  training's validation does: ``evaluate_voc``).

Units matter in two places only (IoU itself does not change under resizing): gluoncv's VOC
metric adds 1 to ``xmax``/``ymax`` (the devkit's integer-pixel convention), and COCO's
small / medium / large buckets are areas in pixels (below 32^2, up to 96^2, above).

Ignored boxes: the VOC metrics skip difficult boxes (a detection matching one is neither a true
nor a false positive); for COCO they become crowd regions (``iscrowd=1``), which COCOeval treats
the same way (its crowd IoU is intersection over the detection's area).

Precision / recall come from gluoncv's own records (``VOCMApMetric._recall_prec``: the per-class
detections matched greedily by score), so the curves are exactly what the VOC AP integrates.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from .data.transforms import DetectionLoader, EvalTransform
from .detect import LoadedDetector, load_detector
from .model.detector import DECODERS, DetectionNet, Detector
from .presets import get_preset
from .visualize import plot_pr_curve, plot_pr_curves

# ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4) normalised corners.
Detections = Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]

METRICS = ("voc07", "voc2010", "coco")
VOC_METRICS = {"voc07": VOC07MApMetric, "voc2010": VOCMApMetric}
METRIC_NAMES = {"voc07": "VOC07 mAP", "voc2010": "VOC2010 mAP", "coco": "COCO AP"}
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[:6]
IOU_THRESHOLD = 0.5
# Label columns: xmin, ymin, xmax, ymax, class_id, ignore, width, height (original image).
IGNORE_COLUMN = 5
SIZE_COLUMNS = slice(6, 8)
EVAL_LABEL_WIDTH = 8


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
            the class (detections on ignored boxes keep the previous values).
        scores: ``(D,)`` the detection scores, descending: point ``i`` is the curve at score
            threshold ``scores[i]``.
        num_positives: ground-truth boxes of the class that are not ignored.
    """

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray
    num_positives: int

    def interpolated(self) -> np.ndarray:
        """``(D,)`` the precision envelope: at point ``i``, the best precision at recall
        ``>= recall[i]``; the area under it is the VOC2010+ AP."""
        return np.maximum.accumulate(np.nan_to_num(self.precision)[::-1])[::-1]

    def eleven_point(self) -> np.ndarray:
        """``(11,)`` the envelope at recall 0, 0.1, ..., 1 (0 beyond the largest recall); their
        mean is the VOC07 AP."""
        precision = np.nan_to_num(self.precision)
        return np.array([precision[self.recall >= t].max(initial=0.0)
                         for t in np.linspace(0, 1, 11)])


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
    """Everything measured on one split by one detector.

    Attributes:
        classes: class names; id ``k`` is ``classes[k]``.
        num_images: images evaluated.
        box_units: ``"original"`` (pixels of the original images) or ``"input"`` (pixels of the
            network input): see the module docstring.
        voc: ``"voc07"`` / ``"voc2010"`` -> :class:`EvalResult`, the ones asked for.
        coco: COCO AP, if asked for.
        curves: class name -> :class:`PRCurve` for each class with ground truth.
        num_ground_truth: class name -> boxes that count (not ignored).
        num_detections: class name -> detections (rows with an id).
    """

    classes: Tuple[str, ...]
    num_images: int
    box_units: str
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

    def table(self) -> str:
        """Per-class text table: ground truth, detections and AP per metric, then the means."""
        columns = [(f"{k.upper()} AP", r.ap) for k, r in self.voc.items()]
        if self.coco is not None:
            columns.append(("COCO AP", self.coco.ap))
        width = max([5] + [len(c) for c in self.classes])
        head = f"{'class':<{width}} {'GT':>6} {'dets':>7}" + "".join(f" {n:>11}"
                                                                    for n, _ in columns)
        lines = [head, "-" * len(head)]
        for c in self.classes:
            lines.append(f"{c:<{width}} {self.num_ground_truth.get(c, 0):>6} "
                         f"{self.num_detections.get(c, 0):>7}"
                         + "".join(f" {_fmt(ap[c]):>11}" for _, ap in columns))
        means = [r.map for r in self.voc.values()]
        if self.coco is not None:
            means.append(self.coco.stats["AP"])
        lines.append("-" * len(head))
        lines.append(f"{'mean':<{width}} {sum(self.num_ground_truth.values()):>6} "
                     f"{sum(self.num_detections.values()):>7}"
                     + "".join(f" {_fmt(m):>11}" for m in means))
        return "\n".join(lines)

    def summary(self) -> str:
        """One line per metric family, e.g. ``VOC07 mAP 0.8123`` and the six COCO numbers."""
        lines = [f"{METRIC_NAMES[k]} {_fmt(r.map)}" for k, r in self.voc.items()]
        if self.coco is not None:
            lines.append("COCO " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.coco.stats.items()))
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able dict (``nan`` -> ``None``); the curves are left out (see the plots)."""
        doc = {"classes": list(self.classes), "num_images": self.num_images,
               "box_units": self.box_units, "iou_threshold_voc": IOU_THRESHOLD,
               "num_ground_truth": self.num_ground_truth, "num_detections": self.num_detections,
               "voc": {k: dataclasses.asdict(r) for k, r in self.voc.items()},
               "coco": None if self.coco is None else dataclasses.asdict(self.coco)}
        return _json_safe(doc)


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def _json_safe(value: Any) -> Any:
    """``value`` with every float ``nan`` replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# Accumulating detections and ground truth.

def _numpy(a) -> np.ndarray:
    return a.asnumpy() if isinstance(a, mx.nd.NDArray) else np.asarray(a)


class DetectionEvaluator:
    """Collects the detections and ground truth of a split, batch by batch; :meth:`result`
    computes the metrics.

    Args:
        classes: class names (id ``k`` is ``classes[k]``).
        metrics: any of :data:`METRICS`. The precision-recall curves come with either VOC
            metric (with only ``"coco"``, a VOC2010 metric is kept for them too).
    """

    def __init__(self, classes: Sequence[str], metrics: Sequence[str] = METRICS):
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metric(s) {unknown or list(metrics)}; choose from "
                             f"{list(METRICS)}")
        self.classes = tuple(classes)
        self.metrics = tuple(metrics)
        voc = [m for m in self.metrics if m in VOC_METRICS] or ["voc2010"]
        self._voc = {m: VOC_METRICS[m](iou_thresh=IOU_THRESHOLD, class_names=list(self.classes))
                     for m in voc}
        self._coco = "coco" in self.metrics
        self._images: List[dict] = []
        self._ground_truth: List[dict] = []
        self._detections: List[dict] = []
        self._num_gt = np.zeros(len(self.classes), np.int64)
        self._num_det = np.zeros(len(self.classes), np.int64)
        self._num_images = 0
        self._units: Optional[str] = None

    def update(self, ids, scores, boxes, labels, input_size: Tuple[int, int]) -> None:
        """Add one batch.

        Args:
            ids, scores: ``(B, K)`` or ``(B, K, 1)`` class id (-1: empty row) and score.
            boxes: ``(B, K, 4)`` normalised corners.
            labels: ``(B, M, 5+)`` pixel rows of the network input (see the module docstring).
            input_size: ``(H, W)`` of the network input the labels refer to.
        """
        labels = _numpy(labels).astype(np.float64)
        batch = labels.shape[0]
        ids = _numpy(ids).reshape(batch, -1)
        scores = _numpy(scores).reshape(batch, -1)
        boxes = _numpy(boxes).reshape(batch, -1, 4).astype(np.float64)
        h, w = input_size
        units = "original" if labels.shape[2] >= EVAL_LABEL_WIDTH else "input"
        if self._units not in (None, units):
            raise ValueError("every batch must carry original image sizes, or none")
        self._units = units
        self._num_images += batch
        # (B, 2) width, height of each image in the units of the metrics; row 0 always carries
        # the size (SizedEvalTransform puts one row even in an image without boxes).
        sizes = labels[:, 0, SIZE_COLUMNS] if units == "original" else np.tile([w, h], (batch, 1))
        scale = np.concatenate([sizes, sizes], axis=1)[:, None, :]  # (B, 1, 4)
        gt_boxes = labels[:, :, :4] * scale / np.array([w, h, w, h])
        det_boxes = boxes * scale
        gt_ids = labels[:, :, 4]
        ignore = (labels[:, :, IGNORE_COLUMN] if labels.shape[2] > IGNORE_COLUMN
                  else np.zeros_like(gt_ids))
        for metric in self._voc.values():
            metric.update(det_boxes, ids, scores, gt_boxes, gt_ids, ignore)
        for i in range(batch):
            valid_gt, valid_det = gt_ids[i] >= 0, ids[i] >= 0
            self._num_gt += np.bincount(gt_ids[i][valid_gt & (ignore[i] <= 0)].astype(int),
                                        minlength=len(self.classes))
            self._num_det += np.bincount(ids[i][valid_det].astype(int),
                                         minlength=len(self.classes))
            if self._coco:
                self._add_coco(sizes[i], gt_boxes[i][valid_gt], gt_ids[i][valid_gt],
                               ignore[i][valid_gt], det_boxes[i][valid_det], ids[i][valid_det],
                               scores[i][valid_det])

    def _add_coco(self, size: np.ndarray, gt_boxes: np.ndarray, gt_ids: np.ndarray,
                  ignore: np.ndarray, det_boxes: np.ndarray, det_ids: np.ndarray,
                  det_scores: np.ndarray) -> None:
        """One image's COCO records: boxes ``(n, 4)`` corners in pixels, class ids from 0.

        COCO wants ``bbox = [x, y, w, h]`` and ``area``; ids from 1 (COCOeval treats id 0 as
        "unmatched"), so category ``k + 1`` is class ``k``.
        """
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "width": float(size[0]), "height": float(size[1])})
        for box, cls, crowd in zip(gt_boxes, gt_ids, ignore):
            self._ground_truth.append(dict(_coco_box(box), id=len(self._ground_truth) + 1,
                                           image_id=image_id, category_id=int(cls) + 1,
                                           iscrowd=int(crowd > 0)))
        for box, cls, score in zip(det_boxes, det_ids, det_scores):
            self._detections.append(dict(_coco_box(box), id=len(self._detections) + 1,
                                         image_id=image_id, category_id=int(cls) + 1,
                                         score=float(score), iscrowd=0))

    def result(self) -> Evaluation:
        """The metrics over everything added so far."""
        if self._units is None:
            raise ValueError("nothing to evaluate: no images were given")
        evaluation = Evaluation(
            self.classes, self._num_images, self._units,
            num_ground_truth=dict(zip(self.classes, map(int, self._num_gt))),
            num_detections=dict(zip(self.classes, map(int, self._num_det))))
        for name, metric in self._voc.items():
            if name in self.metrics:
                evaluation.voc[name] = _voc_result(metric, name, self.classes)
        evaluation.curves = _curves(next(iter(self._voc.values())), self.classes)
        if self._coco:
            evaluation.coco = self._coco_result()
        return evaluation

    def _coco_result(self) -> CocoResult:
        """COCOeval on the collected records (built in memory; its prints silenced)."""
        categories = [{"id": k + 1, "name": c} for k, c in enumerate(self.classes)]
        sets = []
        for annotations in (self._ground_truth, self._detections):
            coco = COCO()
            coco.dataset = {"images": self._images, "annotations": annotations,
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


def _has_records(metric: VOCMApMetric) -> bool:
    """Whether gluoncv's metric saw any ground truth or detection (its ``get`` fails if not)."""
    return bool(metric._n_pos)


def _voc_result(metric: VOCMApMetric, name: str, classes: Sequence[str]) -> EvalResult:
    if not _has_records(metric):
        return EvalResult(float("nan"), {c: float("nan") for c in classes}, name)
    names, values = metric.get()
    ap = dict(zip(names[:-1], (float(v) for v in values[:-1])))
    return EvalResult(float(values[-1]), ap, name)


def _curves(metric: VOCMApMetric, classes: Sequence[str]) -> Dict[str, PRCurve]:
    """The precision-recall curve of each class with ground truth, from gluoncv's records."""
    if not _has_records(metric):
        return {}
    recall, precision = metric._recall_prec()
    curves = {}
    for k, (rec, prec) in enumerate(zip(recall, precision)):
        if rec is None:  # no ground truth of this class (or an id beyond the ones seen)
            continue
        scores = np.sort(np.asarray(metric._score[k], np.float64))[::-1]
        curves[classes[k]] = PRCurve(np.asarray(rec, np.float64), np.asarray(prec, np.float64),
                                     scores, int(metric._n_pos[k]))
    return curves


# ---------------------------------------------------------------------------------------------
# Running a detector over batches.

class SizedEvalTransform(EvalTransform):
    """:class:`~gluon_ssd.data.transforms.EvalTransform` that keeps each image's original size.

    Call with ``(image (h, w, 3), label (M, 5+))``; returns the network input ``(3, H, W)`` and
    label rows ``[xmin, ymin, xmax, ymax, class_id, ignore, w, h]`` ``(max(M, 1), 8)``: boxes in
    pixels of the network input, ``ignore`` 0 where the dataset has no such column, and ``w, h``
    the original image's width and height. An image without boxes gets one row of class -1 (no
    object) that carries its size through batching.
    """

    def __call__(self, image, label: np.ndarray):
        label = np.asarray(label, np.float32)
        h, w = image.shape[:2]
        rows = np.full((max(len(label), 1), EVAL_LABEL_WIDTH), -1, np.float32)
        width = min(label.shape[1], IGNORE_COLUMN + 1)
        rows[:len(label), :width] = label[:, :width]
        if width <= IGNORE_COLUMN:
            rows[:len(label), IGNORE_COLUMN] = 0
        rows[:, SIZE_COLUMNS] = (w, h)
        return super().__call__(image, rows)


Predictor = Callable[[mx.nd.NDArray], Mapping[str, Detections]]


def evaluate_many(predict: Predictor, batches: Iterable, classes: Sequence[str], *,
                  metrics: Sequence[str] = METRICS, progress: bool = False,
                  total: Optional[int] = None) -> Dict[str, Evaluation]:
    """Evaluate several detectors (e.g. decoders) in one pass over ``batches``.

    Args:
        predict: ``images (B, 3, H, W)`` -> name -> ``(ids, scores, boxes)`` (see the module
            docstring); called once per batch.
        batches: ``(images (B, 3, H, W), labels (B, M, 5+))`` pairs (labels as in the module
            docstring, e.g. a :class:`~gluon_ssd.data.transforms.DetectionLoader` epoch).
        classes: class names.
        metrics: any of :data:`METRICS`.
        progress: show a tqdm bar (``total``: the number of batches, for the bar).

    Returns:
        name -> :class:`Evaluation`. ``ValueError`` if there was no batch.
    """
    evaluators: Dict[str, DetectionEvaluator] = {}
    for images, labels in tqdm(batches, total=total, desc="evaluate", unit="batch",
                               disable=not progress, leave=False):
        images = images.as_in_context(mx.cpu())  # loader workers hand over shared memory
        for name, (ids, scores, boxes) in predict(images).items():
            if name not in evaluators:
                evaluators[name] = DetectionEvaluator(classes, metrics)
            evaluators[name].update(ids, scores, boxes, labels, images.shape[2:])
    if not evaluators:
        raise ValueError("nothing to evaluate: the data has no images")
    return {name: e.result() for name, e in evaluators.items()}


def evaluate(det_net: Callable[[mx.nd.NDArray], Detections], batches: Iterable,
             classes: Sequence[str], *, metrics: Sequence[str] = METRICS,
             progress: bool = False, total: Optional[int] = None) -> Evaluation:
    """:func:`evaluate_many` for one detector ``det_net``: images -> ``(ids, scores, boxes)``."""
    return evaluate_many(lambda images: {"": det_net(images)}, batches, classes,
                         metrics=metrics, progress=progress, total=total)[""]


def evaluate_voc(det_net: mx.gluon.Block, batches: Iterable, classes: Sequence[str],
                 use_07_metric: bool = True, progress: bool = False) -> EvalResult:
    """VOC mAP@0.5 (VOC07 11-point, else VOC2010+ area) of a detector over ``batches`` (see
    :func:`evaluate_many`); difficult boxes (6th label column 1) are ignored."""
    name = "voc07" if use_07_metric else "voc2010"
    return evaluate(det_net, batches, classes, metrics=(name,), progress=progress).voc[name]


def decoder_predictor(detector: LoadedDetector, decoders: Sequence[str]) -> Predictor:
    """``images -> {decoder: (ids, scores, boxes)}`` for each of ``decoders``, with the other
    decoding settings of ``detector``.

    A detector whose network is an SSD plus a detector head (a checkpoint, or an export decoded
    anew) runs its SSD once per batch and each decoder on the same raw outputs; an export that
    decodes in its own graph is loaded once per decoder.
    """
    unknown = [d for d in decoders if d not in DECODERS]
    if unknown:
        raise ValueError(f"unknown decoder(s) {unknown}; choose from {list(DECODERS)}")
    if detector.spec is None:
        raise ValueError(f"{detector.source} does not record its decoding settings, so its "
                         "decoder cannot be chosen; evaluate it without --decoder")
    specs = {d: replace(detector.spec, decoder=d) for d in decoders}
    if isinstance(detector.net, DetectionNet):
        ssd = detector.net.ssd
        heads = {d: Detector(s) for d, s in specs.items()}
        for head in heads.values():
            head.hybridize()

        def predict(images: mx.nd.NDArray) -> Dict[str, Detections]:
            raw = ssd(images)
            return {d: head(*raw) for d, head in heads.items()}
        return predict
    nets = {d: load_detector(detector.source, s, ctx=detector.ctx).net for d, s in specs.items()}
    return lambda images: {d: net(images) for d, net in nets.items()}


# ---------------------------------------------------------------------------------------------
# A stored model on a dataset split.

DEFAULT_BATCH_SIZE = 16  # for a model that records neither its training batch size nor a preset


@dataclass
class ModelEvaluation:
    """:func:`evaluate_model`'s result: the setting and one :class:`Evaluation` per decoder.

    Attributes:
        source: the checkpoint file or export prefix.
        data, split: the dataset (name or folder) and split evaluated.
        num_images: images in the split.
        image_size: ``(H, W)`` network input.
        batch_size: images per batch.
        evaluations: decoder name (``"multibox"``, ``"per_class"``; ``"model"`` for an export
            that does not record its decoder) -> :class:`Evaluation`.
    """

    source: str
    data: str
    split: str
    num_images: int
    image_size: Tuple[int, int]
    batch_size: int
    evaluations: Dict[str, Evaluation]

    def report(self) -> str:
        """The per-class table and the headline metrics of every decoder, as printed by
        ``gluon-ssd evaluate``."""
        h, w = self.image_size
        units = next(iter(self.evaluations.values())).box_units
        parts = [f"{self.source} on {self.data} {self.split}: {self.num_images} images at "
                 f"{h}x{w}, boxes in {units} pixels"]
        for decoder, evaluation in self.evaluations.items():
            parts.append(f"\ndecoder {decoder}:\n{evaluation.table()}\n{evaluation.summary()}")
        if len(self.evaluations) > 1:
            headlines = {d: e.headline() for d, e in self.evaluations.items()}
            parts.append("\ndecoders compared:")
            parts += [f"{metric}: " + ", ".join(f"{d} {_fmt(h[metric])}"
                                                for d, h in headlines.items())
                      for metric in next(iter(headlines.values()))]
        return "\n".join(parts)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able: the setting and, per decoder, :meth:`Evaluation.to_dict`."""
        return {"source": self.source, "data": self.data, "split": self.split,
                "num_images": self.num_images, "image_size": list(self.image_size),
                "batch_size": self.batch_size,
                "decoders": {d: e.to_dict() for d, e in self.evaluations.items()}}


def _training_config(detector: LoadedDetector):
    """The :class:`~gluon_ssd.train.TrainConfig` a checkpoint was trained with (its meta's
    ``config``), or the defaults for an export or a converted checkpoint."""
    from .train import TrainConfig  # train.py imports this module

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in detector.training_config.items() if k in known})


def evaluate_model(path: str, *, data: Optional[str] = None, data_root: Optional[str] = None,
                   split: str = "val", val_size: Optional[int] = None,
                   seed: Optional[int] = None, batch_size: Optional[int] = None,
                   metrics: Sequence[str] = METRICS, decoders: Optional[Sequence[str]] = None,
                   num_workers: int = 0, progress: bool = True) -> ModelEvaluation:
    """Evaluate a checkpoint or export on a dataset split (what ``gluon-ssd evaluate`` runs).

    Every setting left ``None`` takes the value the model was trained with (a checkpoint's
    recorded training config), so a checkpoint written by training is evaluated on exactly its
    validation images, batched as in training: the VOC07 mAP equals the one training logged.
    For an export, the defaults are ``synthetic`` data with seed 0.

    Args:
        path: a checkpoint file or an export prefix (:func:`gluon_ssd.detect.load_detector`).
        data: ``synthetic``, ``voc``, ``coco`` or a dataset folder (VOC or COCO format).
        data_root: root folder of ``voc`` / ``coco``.
        split: the split (``val``; ``train``; VOC names such as ``2007_test``).
        val_size, seed: number of synthetic images and their seed.
        batch_size: images per batch.
        metrics: any of :data:`METRICS`.
        decoders: evaluate each of these decoders (:data:`~gluon_ssd.model.detector.DECODERS`)
            on the same SSD outputs; ``None``: the model's own decoding.
        num_workers: data loader processes.
        progress: show a tqdm bar.

    Raises:
        ValueError: a missing or unreadable model or dataset, or a dataset whose classes are not
            the model's (both named).
    """
    from .train import run_dataset  # train.py imports this module

    detector = load_detector(path)
    config = _training_config(detector)
    if data is not None and data != config.data:
        config = replace(config, data=data, data_root=data_root)
    elif data_root is not None:
        config = replace(config, data_root=data_root)
    config = replace(config, **{k: v for k, v in (("val_size", val_size), ("seed", seed))
                                if v is not None})
    dataset = run_dataset(config, split, detector.image_size)
    if tuple(dataset.classes) != detector.classes:
        raise ValueError(f"{detector.source} detects {len(detector.classes)} classes "
                         f"{list(detector.classes)}, but {config.data!r} ({split}) has "
                         f"{len(dataset.classes)} classes {list(dataset.classes)}")
    batch_size = (batch_size or config.batch_size
                  or (get_preset(detector.preset).train.batch_size if detector.preset
                      else DEFAULT_BATCH_SIZE))
    loader = DetectionLoader(dataset, SizedEvalTransform(detector.image_size, detector.mean,
                                                         detector.std),
                             batch_size, shuffle=False, num_workers=num_workers)
    if decoders is None:
        name = detector.spec.decoder if detector.spec is not None else "model"
        predict: Predictor = lambda images: {name: detector.net(images)}  # noqa: E731
    else:
        predict = decoder_predictor(detector, decoders)
    evaluations = evaluate_many(predict, loader.epoch(0), detector.classes, metrics=metrics,
                                progress=progress, total=len(loader))
    return ModelEvaluation(detector.source, config.data, split, len(dataset),
                           tuple(detector.image_size), batch_size, evaluations)


def _file_name(index: int, name: str) -> str:
    """``index_name`` with anything but letters, digits, ``-`` and ``_`` made ``_``."""
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', name)}"


def write_evaluation(result: ModelEvaluation, out: str) -> List[str]:
    """Write ``metrics.json`` and the precision-recall plots to the folder ``out``.

    Plots: ``pr_curves.png`` (every class) and ``pr/NN_class.png`` (one per class); with several
    decoders these go to ``out/<decoder>/``. Returns the paths written.
    """
    os.makedirs(out, exist_ok=True)
    paths = [os.path.join(out, "metrics.json")]
    with open(paths[0], "w") as f:
        json.dump(result.to_dict(), f, indent=2)
    for decoder, evaluation in result.evaluations.items():
        folder = out if len(result.evaluations) == 1 else os.path.join(out, decoder)
        paths += write_pr_plots(evaluation, folder, title=f"{os.path.basename(result.source)}"
                                f" on {result.data} {result.split}, decoder {decoder}")
    return paths


def write_pr_plots(evaluation: Evaluation, folder: str, title: Optional[str] = None) -> List[str]:
    """``folder/pr_curves.png`` (all classes) and ``folder/pr/NN_class.png`` (one per class);
    returns the paths."""
    aps = {k: r.ap for k, r in evaluation.voc.items()}
    summary = os.path.join(folder, "pr_curves.png")
    plot_pr_curves(evaluation.curves, aps, title=title, path=summary)
    paths = [summary]
    for k, name in enumerate(evaluation.classes):
        if name in evaluation.curves:
            paths.append(os.path.join(folder, "pr", _file_name(k, name) + ".png"))
            plot_pr_curve(evaluation.curves[name], {m: ap[name] for m, ap in aps.items()},
                          title=name, path=paths[-1])
    return paths
