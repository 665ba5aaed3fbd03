"""The pictures of a finished training run, drawn from its run folder: ``curve.png`` (the loss
parts and the validation mAP per epoch, from ``log.json``) and ``detections.png`` (the last
checkpoint's detections on the first validation images).

Training writes no pictures itself (its module imports no plotting); ``gluon-ssd train`` and the
demo call :func:`write_run_pictures` after :func:`~gluon_ssd.train.train`, on the process that
wrote the run folder (rank 0).
"""
from __future__ import annotations

import json
import os
from typing import List

import numpy as np

from .data.datasets import DataConfig, build_split
from .detect import load_detector
from .evaluation.run import evaluation_loader
from .train import LAST, LOG
from .visualize import plot_detection_grid, plot_training_curves

CURVE, DETECTIONS = "curve.png", "detections.png"
SCORE_THRESHOLD = 0.5  # the detections drawn


def write_run_pictures(out: str, count: int = 8) -> List[str]:
    """Write ``out/curve.png`` and ``out/detections.png`` for the run folder ``out`` (one that
    :func:`~gluon_ssd.train.train` wrote); returns their paths.

    The detections are those of ``checkpoint-last.params`` on the first ``count`` images of the
    validation split it records, drawn on the original images (boxes normalised).
    """
    with open(os.path.join(out, LOG)) as f:
        history = json.load(f)
    paths = [os.path.join(out, CURVE), os.path.join(out, DETECTIONS)]
    plot_training_curves(history, path=paths[0])

    model = load_detector(os.path.join(out, LAST))
    dataset = build_split(DataConfig.from_dict(model.training_config, model.source,
                                                 ignore_unknown=True), "val", model.image_size)
    count = min(count, len(dataset))
    if not count:
        return paths[:1]
    batch = next(iter(evaluation_loader(dataset, model.image_size, model.mean, model.std,
                                        count).epoch(0)))
    ids, scores, boxes = (a.asnumpy() for a in model.net(batch.images))
    images = [_numpy(dataset[i][0]) for i in range(count)]
    detections = [(ids[i, :, 0], scores[i, :, 0], boxes[i]) for i in range(count)]
    plot_detection_grid(images, detections, class_names=model.classes, thresh=SCORE_THRESHOLD,
                        title=f"{model.preset}: validation detections "
                              f"(score >= {SCORE_THRESHOLD})",
                        path=paths[1])
    return paths


def _numpy(image) -> np.ndarray:
    return image.asnumpy() if hasattr(image, "asnumpy") else np.asarray(image)


__all__ = ["CURVE", "DETECTIONS", "write_run_pictures"]
