"""Evaluation results as text, JSON and precision-recall plots (what ``gluon-ssd evaluate``
prints and writes).

Text: :func:`format_table` (per-class ground truth, detections and AP), :func:`format_summary`
(the headline numbers), :func:`format_report` (a whole :class:`~gluon_ssd.evaluation.run.
ModelEvaluation`). Files: :func:`write_evaluation` writes ``metrics.json``
(:func:`report_dict`) and the plots (:func:`write_pr_plots`, drawn by
:mod:`gluon_ssd.visualize` from plain arrays).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Dict, List, Optional

from ..jsonfile import json_ready, write_json
from ..visualize import plot_pr_curve, plot_pr_curves
from .metrics import IOU_THRESHOLD, METRIC_NAMES, Evaluation, PRCurve
from .run import ModelEvaluation

BOX_UNITS = "original"  # every metric is computed in pixels of the original images


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def format_table(evaluation: Evaluation) -> str:
    """Per-class text table: ground truth, detections and AP per metric, then the means."""
    columns = [(f"{k.upper()} AP", r.ap) for k, r in evaluation.voc.items()]
    if evaluation.coco is not None:
        columns.append(("COCO AP", evaluation.coco.ap))
    width = max([5] + [len(c) for c in evaluation.classes])
    head = f"{'class':<{width}} {'GT':>6} {'dets':>7}" + "".join(f" {n:>11}"
                                                                for n, _ in columns)
    lines = [head, "-" * len(head)]
    for c in evaluation.classes:
        lines.append(f"{c:<{width}} {evaluation.num_ground_truth.get(c, 0):>6} "
                     f"{evaluation.num_detections.get(c, 0):>7}"
                     + "".join(f" {_fmt(ap[c]):>11}" for _, ap in columns))
    means = list(evaluation.headline().values())
    lines.append("-" * len(head))
    lines.append(f"{'mean':<{width}} {sum(evaluation.num_ground_truth.values()):>6} "
                 f"{sum(evaluation.num_detections.values()):>7}"
                 + "".join(f" {_fmt(m):>11}" for m in means))
    return "\n".join(lines)


def format_summary(evaluation: Evaluation) -> str:
    """One line per metric family, e.g. ``VOC07 mAP 0.8123`` and the six COCO numbers."""
    lines = [f"{METRIC_NAMES[k]} {_fmt(r.map)}" for k, r in evaluation.voc.items()]
    if evaluation.coco is not None:
        lines.append("COCO " + ", ".join(f"{k} {_fmt(v)}"
                                         for k, v in evaluation.coco.stats.items()))
    return "\n".join(lines)


def format_report(result: ModelEvaluation) -> str:
    """The per-class table and the headline metrics of every decoder, as printed by
    ``gluon-ssd evaluate``."""
    h, w = result.image_size
    parts = [f"{result.source} on {result.data} {result.split}: {result.num_images} images at "
             f"{h}x{w}, boxes in {BOX_UNITS} pixels"
             + (f"; {len(result.unreadable)} unreadable image(s) left out" if result.unreadable
                else "")]
    for decoder, evaluation in result.evaluations.items():
        parts.append(f"\ndecoder {decoder}:\n{format_table(evaluation)}\n"
                     f"{format_summary(evaluation)}")
    if len(result.evaluations) > 1:
        headlines = {d: e.headline() for d, e in result.evaluations.items()}
        parts.append("\ndecoders compared:")
        parts += [f"{metric}: " + ", ".join(f"{d} {_fmt(h[metric])}"
                                            for d, h in headlines.items())
                  for metric in next(iter(headlines.values()))]
    return "\n".join(parts)


def evaluation_dict(evaluation: Evaluation) -> Dict[str, Any]:
    """JSON-able dict of one evaluation (``nan`` -> ``None``); the curves are left out (see
    the plots)."""
    doc = {"classes": list(evaluation.classes), "num_images": evaluation.num_images,
           "box_units": BOX_UNITS, "iou_threshold_voc": IOU_THRESHOLD,
           "num_ground_truth": evaluation.num_ground_truth,
           "num_detections": evaluation.num_detections,
           "voc": {k: dataclasses.asdict(r) for k, r in evaluation.voc.items()},
           "coco": None if evaluation.coco is None else dataclasses.asdict(evaluation.coco)}
    return json_ready(doc)


def report_dict(result: ModelEvaluation) -> Dict[str, Any]:
    """JSON-able: the setting and, per decoder, :func:`evaluation_dict`."""
    return {"source": result.source, "data": result.data, "split": result.split,
            "num_images": result.num_images, "image_size": list(result.image_size),
            "batch_size": result.batch_size, "unreadable": list(result.unreadable),
            "decoders": {d: evaluation_dict(e) for d, e in result.evaluations.items()}}


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
    write_json(paths[0], report_dict(result))
    for decoder, evaluation in result.evaluations.items():
        folder = out if len(result.evaluations) == 1 else os.path.join(out, decoder)
        paths += write_pr_plots(evaluation, folder, title=f"{os.path.basename(result.source)}"
                                f" on {result.data} {result.split}, decoder {decoder}")
    return paths


def curve_record(curve: PRCurve) -> Dict[str, Any]:
    """The arrays :func:`gluon_ssd.visualize.draw_pr_curve` draws of ``curve``."""
    return {"recall": curve.recall, "precision": curve.precision,
            "envelope": curve.interpolated(), "eleven_point": curve.eleven_point(),
            "num_positives": curve.num_positives}


def write_pr_plots(evaluation: Evaluation, folder: str, title: Optional[str] = None) -> List[str]:
    """``folder/pr_curves.png`` (all classes) and ``folder/pr/NN_class.png`` (one per class);
    returns the paths."""
    aps = {k: r.ap for k, r in evaluation.voc.items()}
    records = {name: curve_record(c) for name, c in evaluation.curves.items()}
    summary = os.path.join(folder, "pr_curves.png")
    plot_pr_curves(records, aps, title=title, path=summary)
    paths = [summary]
    for k, name in enumerate(evaluation.classes):
        if name in records:
            paths.append(os.path.join(folder, "pr", _file_name(k, name) + ".png"))
            plot_pr_curve(**records[name], aps={m: ap[name] for m, ap in aps.items()},
                          title=name, path=paths[-1])
    return paths


__all__ = ["BOX_UNITS", "format_table", "format_summary", "format_report", "evaluation_dict",
           "report_dict", "write_evaluation", "curve_record", "write_pr_plots"]
