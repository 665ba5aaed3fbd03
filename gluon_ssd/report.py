"""Pictures written to disk: those of a finished training run, drawn from its run folder
(``curve.png``: the loss parts and the validation mAP per epoch, from ``log.json``;
``detections.png``: the last checkpoint's detections on the first validation images), and the
output folder of ``gluon-ssd detect`` (an annotated PNG per image and ``detections.json``,
:func:`write_detections`).

Training writes no pictures itself (its module imports no plotting); ``gluon-ssd train`` and the
demo call :func:`write_run_pictures` after :func:`~gluon_ssd.train.train`, on the process that
wrote the run folder (rank 0).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Union

import numpy as np

from .data.datasets import DataConfig, build_split
from .data.io import BadImageError, collect_truncated
from .detect import Detections, LoadedModel, coco_document, iter_detections, load_detector
from .evaluation.run import evaluation_loader
from .jsonfile import write_json
from .run_folder import LAST, LOG
from .visualize import plot_boxes, plot_detection_grid, plot_training_curves

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


# ---------------------------------------------------------------------------------------------
# `gluon-ssd detect`'s output folder: one annotated PNG per image and detections.json.
#
# The folder only ever receives new files: every name is decided before the first image is read
# and checked not to exist, so an input image, or an earlier run's PNGs and JSON, can never be
# replaced (and each file is created exclusively, so one that appears meanwhile is not either).

DETECTIONS_JSON = "detections.json"


@dataclass
class DetectionRun:
    """What :func:`write_detections` did.

    Attributes:
        results: the detections of each image read, in input order.
        failed: the unreadable images (each names its file).
        truncated: the truncated JPEGs (detected on what could be decoded).
        pngs: the annotated PNG written for each of ``results``.
        json: the ``detections.json`` written (``None`` when no image could be read).
    """

    results: List[Detections]
    failed: List[BadImageError]
    truncated: List[str]
    pngs: List[str]
    json: Optional[str]


def annotated_names(paths: Sequence[str]) -> List[str]:
    """One distinct file name ``STEM.png`` per input image (``STEM-2.png``, ``STEM-3.png``...
    for stems already taken, such as ``a.png`` and ``a.jpg``; never ``detections.json``)."""
    used, names = {DETECTIONS_JSON}, []
    for path in paths:
        stem = Path(path).stem or "image"
        name, k = f"{stem}.png", 1
        while name in used:
            k += 1
            name = f"{stem}-{k}.png"
        used.add(name)
        names.append(name)
    return names


def detection_outputs(paths: Sequence[str], folder: Union[str, "os.PathLike[str]"]
                      ) -> List[str]:
    """The files :func:`write_detections` writes into ``folder`` for the images ``paths``: one
    annotated PNG each (:func:`annotated_names`), then ``detections.json``.

    Raises:
        ValueError: ``folder`` holds one of the input images (the PNGs would mix with the
            inputs), or one of the files exists already (an input, or an earlier run's output;
            it is named): nothing is ever overwritten.
    """
    folder = os.fspath(folder)
    if os.path.isdir(folder):
        for path in paths:
            parent = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(parent) and os.path.samefile(parent, folder):
                raise ValueError(f"the output folder {folder} holds the input image {path}; "
                                 "write the detections to another folder")
    outputs = [os.path.join(folder, name) for name in annotated_names(paths) + [DETECTIONS_JSON]]
    for path in outputs:
        if os.path.lexists(path):
            raise ValueError(f"{path} exists already and is never overwritten; choose a new "
                             "or empty output folder, or move the file away")
    return outputs


def write_detections(detector: LoadedModel, paths: Sequence[str],
                     folder: Union[str, "os.PathLike[str]"], threshold: float, *,
                     batch_size: int = 8, progress: bool = False,
                     document: Optional[Mapping[str, Any]] = None) -> DetectionRun:
    """Detect in the images ``paths`` and write, into ``folder`` (created), one annotated PNG
    per image (boxes in the image's pixels, class name and score) and ``detections.json``
    (:func:`~gluon_ssd.detect.coco_document` plus the model, the threshold, the failed and
    truncated images, and the entries of ``document``).

    Unreadable images are skipped and listed; when none can be read, no JSON is written
    (``json`` is ``None``). Every output name is checked first
    (:func:`detection_outputs`) and each file is created exclusively: an existing file is never
    replaced.

    Raises:
        ValueError: an output exists (named) or ``folder`` holds an input image; nothing is
            written then.
        OSError: a file cannot be written, or appeared since the check (``FileExistsError``).
    """
    outputs = detection_outputs(paths, folder)
    os.makedirs(folder, exist_ok=True)
    failed: List[BadImageError] = []
    results, pngs = [], []
    with collect_truncated() as truncated:
        for image, found in iter_detections(detector, paths, threshold, batch_size=batch_size,
                                            progress=progress, on_error=failed.append):
            pngs.append(outputs[found.index])
            save_annotated(image, found, threshold, pngs[-1])
            results.append(found)
    if not results:  # nothing to describe: no JSON (the caller reports the failures)
        return DetectionRun(results, failed, truncated, pngs, None)
    doc = dict(coco_document(results, detector.classes), model=detector.source,
               threshold=threshold,
               failed=[{"file_name": err.path, "error": str(err)} for err in failed],
               truncated=truncated, **(document or {}))
    write_json(outputs[-1], doc, indent=1, mode="x")
    return DetectionRun(results, failed, truncated, pngs, outputs[-1])


def save_annotated(image: np.ndarray, found: Detections, threshold: float, path: str) -> None:
    """Draw ``found`` on ``image`` ``(H, W, 3)`` uint8 (its own pixels) and write a new PNG at
    ``path`` (``FileExistsError`` if it exists)."""
    fig = plot_boxes(image, found.boxes, class_ids=found.class_ids, scores=found.scores,
                     class_names=found.classes, thresh=0.0, pixels=True,
                     title=f"{Path(found.source).name}\n{len(found)} detections "
                           f"(score >= {threshold:g})")
    with open(path, "xb") as f:
        fig.savefig(f, format="png", dpi=100)


__all__ = ["CURVE", "DETECTIONS", "DETECTIONS_JSON", "DetectionRun", "annotated_names",
           "detection_outputs", "save_annotated", "write_detections", "write_run_pictures"]
