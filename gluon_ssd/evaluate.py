"""Evaluation: VOC mAP at IoU 0.5 (VOC07 11-point or VOC2010+ area) through gluoncv's metrics."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Sequence

import mxnet as mx
import numpy as np
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
from tqdm import tqdm


@dataclass
class EvalResult:
    """mAP and per-class AP (``nan`` for a class with no ground truth)."""

    map: float
    ap: Dict[str, float]
    metric: str


def evaluate_voc(det_net: mx.gluon.Block, batches: Iterable, classes: Sequence[str],
                 use_07_metric: bool = True, progress: bool = False) -> EvalResult:
    """VOC mAP@0.5 of a detector over batches of ``(images (B,3,H,W), labels (B,M,5+))``.

    ``det_net`` maps images to ``(ids, scores, boxes)`` with normalised boxes (a
    :class:`~gluon_ssd.model.detector.DetectionNet` or an imported export); labels are pixel rows
    ``xmin, ymin, xmax, ymax, class[, difficult]`` of the network input, padding rows -1.
    Difficult boxes (6th column 1) are ignored as in the VOC protocol.
    """
    metric = (VOC07MApMetric if use_07_metric else VOCMApMetric)(iou_thresh=0.5,
                                                                 class_names=list(classes))
    for images, labels in tqdm(batches, desc="evaluate", disable=not progress, leave=False):
        ids, scores, boxes = det_net(images.as_in_context(mx.cpu()))
        h, w = images.shape[2:]
        boxes = boxes.asnumpy() * np.array([w, h, w, h], dtype=np.float32)
        labels = labels.asnumpy() if isinstance(labels, mx.nd.NDArray) else np.asarray(labels)
        difficult = labels[:, :, 5] if labels.shape[2] > 5 else None
        metric.update(boxes, ids.asnumpy()[:, :, 0], scores.asnumpy()[:, :, 0],
                      labels[:, :, :4], labels[:, :, 4], difficult)
    names, values = metric.get()
    ap = dict(zip(names[:-1], (float(v) for v in values[:-1])))
    return EvalResult(float(values[-1]), ap, "voc07" if use_07_metric else "voc2010")
