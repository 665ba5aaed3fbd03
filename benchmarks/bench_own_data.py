"""Training on a user's own data, through the command line exactly as a user would: the demo
recipe for finite datasets against the same command with its choice switched off, and with the
choices it does not make by default switched on.

    python benchmarks/bench_own_data.py --out runs/bench_own_data [--data PATH | --seed S]

Without ``--data`` a VOC-format set unlike SyntheticShapes is generated first
(:mod:`gluon_ssd.data.voc_shapes`: arrows, 1:3-1:6 bars, hexagon outlines, ellipses on 320x240 to
400x300 images, objects 5-50% of the side, clutter; 600 training and 150 validation images from
``--seed``). Then, one after the other, each configuration runs

    gluon-ssd train --data PATH --out OUT/runs/NAME --quiet [its flags]
    gluon-ssd evaluate OUT/runs/NAME/checkpoint-best.params --data PATH -o OUT/runs/NAME/eval

and the table prints, side by side, VOC07 / VOC2010 mAP and COCO AP of the best epoch (COCO AP
of small / medium / large objects and each class's VOC07 AP too), the anchors' coverage of the
validation boxes (best IoU >= 0.5) and the wall-clock training time. The configurations:

* ``recipe``: ``gluon-ssd train --data PATH``, nothing else: the demo preset's
  ``FiniteDataSpec``, a schedule by images seen in batches of 4, the preset's anchors extended
  for the boxes they miss, colour distortion, zoom-in crops that keep every box, flips, and
  detection at the larger side where whole images show objects as large as the crops do;
* ``preset schedule`` (the demo's recipe for endless synthetic data: 6 epochs of 16, the
  preset's anchors, no augmentation): every choice off, what the command did before the recipe;
* one choice off each: ``batches of 8``, ``preset anchors``, ``no distortion``, ``no zoom-in``
  (which also detects at the training side), ``no flips``, ``detect at 192`` (the training
  side, not the zoom-in's larger detection side);
* ``augmentation`` (``--augment``: the paper's photometric distortion, zoom-out, min-IoU crop and
  flip, in place of the lighter kind), ``fitted anchors`` (``--anchors fit``: every anchor
  fitted to the training boxes) and ``init demo`` (``--init demo``: fine-tuned from the shipped
  SyntheticShapes model): choices the recipe could make, each measured on top of it (this
  benchmark decided against the first two as defaults; the third needs a trained model of the
  same preset).

Every run goes alone (two jobs on 2 cores run ~3x slower each); the times are this machine's.
``--jobs N`` instead runs N configurations at a time, each on ``cores / N`` threads: the mAP of a
run does not depend on it beyond the noise of floating-point order, its time does, so the table
marks those times as shared. ``--configs`` picks a subset by name. Results go to
``OUT/results.json`` and ``OUT/results.md``; ``OUT`` must be new or empty (nothing is
overwritten).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Dict, List, Sequence

from gluon_ssd.data.voc_shapes import make_dataset

CONFIGS: Dict[str, List[str]] = {
    "recipe": [],
    "preset schedule": ["--epochs", "6", "--batch-size", "16", "--anchors", "preset",
                        "--no-distort", "--zoom-in", "1", "--no-flip"],
    "batches of 8": ["--batch-size", "8"],
    "preset anchors": ["--anchors", "preset"],
    "no distortion": ["--no-distort"],
    "no zoom-in": ["--zoom-in", "1"],
    "no flips": ["--no-flip"],
    "detect at 192": ["--detect-size", "192"],
    "augmentation": ["--augment"],
    "fitted anchors": ["--anchors", "fit"],
    "init demo": ["--init", "demo"],
}


def _gluon_ssd() -> List[str]:
    """The console command, from this interpreter's environment."""
    return [sys.executable, "-m", "gluon_ssd.cli"]


def train_and_evaluate(name: str, flags: Sequence[str], data: Path, out: Path,
                       jobs: int = 1) -> Dict:
    """One configuration: train through the CLI (timed), evaluate its best checkpoint; with
    ``jobs`` > 1 on its share of the cores (``OMP_NUM_THREADS``), beside other configurations."""
    run = out / "runs" / name.replace(" ", "_")
    command = _gluon_ssd() + ["train", "--data", str(data), "--out", str(run), "--quiet",
                              *flags]
    env = dict(os.environ)
    if jobs > 1:
        env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // jobs))
    print(f"\n== {name}: {' '.join(command[3:])}", flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - start
    subprocess.run(_gluon_ssd() + ["evaluate", str(run / "checkpoint-best.params"), "--data",
                                   str(data), "-o", str(run / "eval"), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    with open(run / "eval" / "metrics.json") as f:
        metrics = json.load(f)
    with open(run / "log.json") as f:
        log = json.load(f)
    return {"name": name, "flags": list(flags), "seconds": seconds, "epochs": len(log),
            "train_seconds": sum(r["load_seconds"] + r["step_seconds"] for r in log),
            "shared": jobs > 1,
            "coverage": validation_coverage(run / "checkpoint-best.params", data),
            "metrics": metrics}


def validation_coverage(checkpoint: Path, data: Path) -> float:
    """Coverage (best IoU >= 0.5) of the validation boxes by the checkpoint's anchors."""
    from gluon_ssd.checkpoint import read_checkpoint
    from gluon_ssd.coverage import preset_coverage
    from gluon_ssd.data.datasets import get_dataset
    from gluon_ssd.data.labels import dataset_boxes
    from gluon_ssd.presets import ModelSpec

    _, meta = read_checkpoint(str(checkpoint))
    anchors = ModelSpec.from_dict(meta["model_spec"]).anchors
    boxes, _ = dataset_boxes(get_dataset(str(data), "val"), "validation split")
    return preset_coverage(boxes, anchors).coverage


def _evaluation(result: Dict) -> Dict:
    """The evaluation of the model's own decoder in a ``metrics.json``."""
    return next(iter(result["metrics"]["decoders"].values()))


def _number(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _row(result: Dict) -> List[str]:
    ev = _evaluation(result)
    voc07, coco = ev["voc"]["voc07"], ev["coco"]["stats"]
    cells = [result["name"], f"{voc07['map']:.3f}", f"{ev['voc']['voc2010']['map']:.3f}",
             f"{coco['AP']:.3f}", " / ".join(_number(coco[k]) for k in ("APs", "APm", "APl"))]
    cells += [_number(voc07["ap"][c]) for c in ev["classes"]]
    shared = " (shared)" if result.get("shared") else ""
    cells += [f"{result['coverage']:.2f}", str(result["epochs"]),
              f"{result['train_seconds'] / 60:.1f}{shared}",
              f"{result['seconds'] / 60:.1f}{shared}"]
    return cells


def table(results: Sequence[Dict]) -> str:
    """The results as a markdown table."""
    classes = _evaluation(results[0])["classes"]
    head = (["configuration", "VOC07", "VOC2010", "COCO AP", "COCO AP S / M / L"]
            + [f"{c} (VOC07)" for c in classes]
            + ["val coverage", "epochs", "training min", "wall min"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in results]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="a new or empty folder for runs and results")
    p.add_argument("--data", help="a VOC/COCO-format dataset folder (default: generate one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                   metavar="NAME", help=f"configurations to run, of {list(CONFIGS)}")
    p.add_argument("--jobs", type=int, default=1, choices=range(1, 9), metavar="N",
                   help="configurations run at once, sharing the cores (default 1: each alone, "
                        "times comparable)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        p.error(f"--out {out} is not empty; choose a new folder")
    data = Path(args.data) if args.data else make_dataset(out / "data", seed=args.seed,
                                                          progress=True)
    done: Dict[str, Dict] = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        runs = {pool.submit(train_and_evaluate, name, CONFIGS[name], data, out, args.jobs): name
                for name in args.configs}
        for future in as_completed(runs):
            done[runs[future]] = future.result()
            results = [done[name] for name in args.configs if name in done]  # in --configs order
            text = table(results)
            print("\n" + text, flush=True)
            (out / "results.md").write_text(text + "\n")
            (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
