"""A training run's folder: what a run writes there, and the checks that keep an earlier run's
files safe.

* A new run (neither ``resume`` nor ``overwrite``) refuses a folder that already holds a run
  (any of :data:`RUN_FILES`), naming the folder and the two ways out.
* ``overwrite`` removes the earlier run's files (those of :data:`RUN_FILES`, nothing else) once
  the new run is ready to write its own.
* ``resume`` needs ``checkpoint-last.params`` and refuses settings that would change the model,
  the data, its order or augmentation, or the loss (:func:`fixed_settings`), naming both values;
  ``epochs`` may grow (that is how a run is extended), and the learning rate, evaluation
  interval, loader processes and progress bar may change.
* ``config.json`` holds the first run's configuration and is never rewritten; each resume adds
  one line (a JSON object: the epoch it starts at and its configuration) to ``resumes.jsonl``.

Every JSON document written holds only standard JSON: a NaN or infinite number is written as
``null`` (:func:`~gluon_ssd.jsonfile.json_ready`).
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import mxnet as mx

from .checkpoint import read_checkpoint
from .data.datasets import DEFAULT_COCO_ROOT, DEFAULT_VOC_ROOT
from .data.synthetic import DEFAULT_LENGTH
from .jsonfile import json_ready, write_json
from .presets import ANCHOR_CHOICES, Preset, get_preset
from .recipe import choose_recipe

LAST, BEST = "checkpoint-last.params", "checkpoint-best.params"
LOG, LOG_CSV = "log.json", "log.csv"
CONFIG, RESUMES = "config.json", "resumes.jsonl"
RUN_FILES = (LAST, BEST, LOG, LOG_CSV, CONFIG, RESUMES)  # what marks a folder as a run's


def check_run_folder(out: str, resume: bool, overwrite: bool) -> None:
    """``ValueError`` unless a run may start in ``out``: with ``resume``, ``out`` must hold
    ``checkpoint-last.params``; without, it must hold no run unless ``overwrite``."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in --out and --overwrite replaces it: "
                         "choose one")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file, not a folder")
    last = os.path.join(out, LAST)
    if resume:
        if not os.path.isfile(last):
            raise ValueError(f"--resume: no checkpoint to resume in {out} ({last} does not "
                             "exist); check --out, or train without --resume")
        return
    found = run_files(out)
    if found and not overwrite:
        raise ValueError(f"run folder {out} already holds a run ({', '.join(found)}): continue "
                         "it with --resume, replace it with --overwrite, or choose another --out")


def open_run_folder(out: str, resume: bool, overwrite: bool, settings: Mapping[str, Any], *,
                    check_folder: bool = True
                    ) -> Optional[Tuple[Dict[str, mx.nd.NDArray], Dict[str, Any]]]:
    """The checkpoint a run resumes, ``(arrays, meta)``, checked against the run's
    :func:`fixed_settings` ``settings`` (:func:`check_resume`); ``None`` for a new run. With
    ``check_folder`` (the process that writes the folder), :func:`check_run_folder` first."""
    if check_folder:
        check_run_folder(out, resume, overwrite)
    last = os.path.join(out, LAST)
    if not (resume and os.path.exists(last)):
        return None
    arrays, meta = read_checkpoint(last)
    check_resume(last, meta, settings)
    return arrays, meta


def run_files(out: str) -> List[str]:
    """The names of :data:`RUN_FILES` present in ``out``."""
    return [name for name in RUN_FILES if os.path.lexists(os.path.join(out, name))]


def start_run_folder(out: str, config: Mapping[str, Any], resumed_at: Optional[int]) -> None:
    """Make ``out`` ready for the run's files: a new run removes an earlier run's files (only
    :data:`RUN_FILES`; it was checked with :func:`check_run_folder`) and writes ``config.json``;
    a run resumed at epoch index ``resumed_at`` appends its record to ``resumes.jsonl``."""
    os.makedirs(out, exist_ok=True)
    if resumed_at is None:
        for name in run_files(out):
            os.remove(os.path.join(out, name))
        write_json(os.path.join(out, CONFIG), config)
        return
    record = {"epoch": resumed_at + 1, "config": dict(config)}
    with open(os.path.join(out, RESUMES), "a") as f:
        f.write(json.dumps(json_ready(record), allow_nan=False) + "\n")


def write_log(out: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """The training log, one row per epoch so far: ``log.csv`` and ``log.json``."""
    with open(os.path.join(out, LOG_CSV), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_json(os.path.join(out, LOG), rows)


def _folder(path: Optional[str]) -> Optional[str]:
    """A data path as it names a place (``~`` expanded, ``./`` and trailing ``/`` dropped)."""
    return os.path.normpath(os.path.expanduser(path)) if path else path


def fixed_settings(config: Mapping[str, Any], preset: Preset, workers: Optional[int] = None,
                   *, resuming: bool = False) -> Dict[str, Any]:
    """What a resumed run must keep, from a training config (``dataclasses.asdict`` of a
    ``TrainConfig``, or the one a checkpoint records), ``None`` values resolved as training
    resolves them: the model (preset, input sides in training and detection), the data
    (dataset, root, sizes, skipped images), its order and augmentation (seed, batch size,
    augment, flip, distort, zoom-in, number of workers), the loss (mining), the anchors' choice
    and the initial model. ``workers=None``: not known (not compared). ``resuming``: the config
    of a resume, whose anchors and initial model, when it does not name them, are the run's
    (the checkpoint holds the network): ``None``, not compared."""
    recipe = choose_recipe(config, preset)
    data = str(config.get("data") or "synthetic")
    name = data.lower() if data.lower() in ("synthetic", "voc", "coco") else None
    roots = {"voc": DEFAULT_VOC_ROOT, "coco": DEFAULT_COCO_ROOT}  # only these read data_root
    sizes = {f"{split}_size": (config.get(f"{split}_size") or DEFAULT_LENGTH[split]
                               if name == "synthetic" else None) for split in ("train", "val")}
    return {
        "preset": preset.name,
        "image_size": recipe.image_size,
        "detect_size": recipe.detect_size,
        "data": name or _folder(data),
        "data_root": _folder(config.get("data_root") or roots[name]) if name in roots else None,
        **sizes,
        "skip_bad": bool(config.get("skip_bad", False)),
        "seed": config.get("seed", 0),
        "batch_size": recipe.batch_size,
        "augment": recipe.augment,
        "zoom_out": recipe.zoom_out if recipe.augment else None,
        "flip": None if recipe.augment else recipe.flip,
        "distort": None if recipe.augment else recipe.distort,
        "zoom_in": None if recipe.augment else recipe.zoom_in,
        "mining": recipe.mining,
        "anchors": (None if resuming and not config.get("anchors") else
                    recipe.anchors if recipe.anchors in ANCHOR_CHOICES else
                    _folder(recipe.anchors)),
        "init": None if resuming and not config.get("init") else _folder(config.get("init")),
        "workers": workers,
    }


def check_resume(source: str, meta: Mapping[str, Any], settings: Mapping[str, Any]) -> None:
    """``ValueError`` naming ``source`` and both values of every setting of ``settings`` (this
    run's :func:`fixed_settings`) that differs from the one the checkpoint ``meta`` records."""
    if not isinstance(meta.get("config"), dict):
        return  # a checkpoint that records no training config (converted): nothing to compare
    preset = get_preset(meta.get("preset") or settings["preset"])
    recorded = fixed_settings(meta["config"], preset, meta.get("workers"))
    changed = [f"{_flag(k)} {settings[k]!r} (the run's: {recorded[k]!r})" for k in settings
               if recorded[k] != settings[k]
               and not (k == "workers" and None in (recorded[k], settings[k]))
               and not (k in ("anchors", "init") and settings[k] is None)]
    if changed:
        raise ValueError(f"cannot resume {source} with other settings than it was trained with: "
                         f"{', '.join(changed)}; resume with the run's values, or start a new "
                         "run (another --out, or --overwrite)")


def _flag(setting: str) -> str:
    if setting == "workers":
        return "the job's number of workers"
    return "--" + setting.replace("_", "-")


__all__ = ["LAST", "BEST", "LOG", "LOG_CSV", "CONFIG", "RESUMES", "RUN_FILES",
           "check_run_folder", "open_run_folder", "run_files", "start_run_folder", "write_log",
           "write_json", "fixed_settings", "check_resume"]
