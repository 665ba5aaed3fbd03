"""Demo-preset accuracy at a fixed wall-clock budget: the demo recipe vs. the paper's ablation.

Trains the ``demo`` preset on SyntheticShapes for ``--minutes`` of wall-clock training (default
10) with the preset's own recipe (hard negative mining, 3 negatives per positive, no
augmentation) and measures VOC07 mAP@0.5 on the SyntheticShapes validation split (the preset's
500 images unless ``--val-size``). Then the same budget again without hard negative mining and
without augmentation (every background anchor in the confidence loss, plain resized images): the
ablation of the issue, which the paper's Table 2 predicts to be worse. ``--separate`` adds the
paper's full recipe (mining + photometric distortion, zoom-out, min-IoU crop, flip), which this
budget does not favour (see benchmarks/README.md). Prints the mAPs side by side and the
differences, plus where the training time went (the data pipeline vs. the training step): the
data pipeline must not be the bottleneck.

**Three metrics.** The issue's metric, VOC07 mAP, averages each class's interpolated precision
at the 11 recall levels 0, 0.1, ..., 1. The last one is the precision at recall 1, which is 0
unless every validation object of the class is detected at some score; so near the top a class's
VOC07 AP is either below 10/11 = 0.909 or jumps above it when its last object is found, and two
recipes can swap places on one object. The all-point VOC2010 mAP and COCO AP (IoU 0.5 to 0.95)
have no such step; they are computed on the same final weights (``gluon-ssd evaluate``) and
printed beside it, with the number of classes whose recall reaches 1.

**Loader vs. step.** The training log's ``load_seconds`` is the time the loop waited for the
next batch and ``step_seconds`` the training step (the trainer waits for MXNet's asynchronous
backward pass and update before stopping that clock). The calibration also measures each alone
(the loader's batches of one epoch with nothing else running; the steps alone), in ms per image.
``--workers 0`` (the default, as ``make demo``) loads in the training process: on 2 cores a
loader process takes CPU from MKL-DNN's OpenMP threads and costs more than it saves.

**Fitting the budget.** The trainer has no wall-clock option: a run is ``epochs`` passes over
``train_size`` images, and the cosine schedule needs the number of epochs up front. So the
configurations are first timed, in this process, before any run: ``--calibration-rounds``
rounds (default 3) time each configuration in turn, with a throw-away ``Run`` of the same
settings training 2 x ``--calibration-batches`` batches (the first pass warms up MXNet's graph
and is discarded), and each configuration's median images/s, loading included, is kept. The
demo recipe's speed then sizes the budget for all of them:

    images = images_per_second x budget_seconds x (1 - --margin)
    epochs = the preset's (6) unless --epochs;   train_size = images / epochs (whole batches)

i.e. the preset's schedule in epochs (warm-up 0.2 epoch, cosine to 0 at the end, batch 16, Adam
2e-3) is kept and each epoch is sized to fit the time. **Every configuration trains the same
images**, the number the demo recipe trains in the budget: the comparison is then of the
recipes, not of the machine's speed in the hour each ran (it drifts between 41 and 77
images/s), and the ablation, whose step skips the ranking of negatives and is 5-10% faster,
gets no fewer images than it would in the same time less that 5-10%. ``--margin`` (default
0.05) leaves room for checkpointing and drift. The actual training time of each run is printed
next to the budget: the machine may be busier or quieter than during the calibration.

Validation runs after every epoch, outside the budget (the training time is the log's loading +
step seconds); the headline mAP is that of the final weights, and ``map_by_epoch.png`` plots
every configuration's VOC07 mAP against the images it has trained on: mining's effect is mostly
how fast the detector learns, so how far apart the runs end depends on how many images the
machine trains in the budget.

**Seeds.** One run per configuration is one draw: a seed fixes the training and validation
images, the initialisation and the order, and two recipes a few hundredths apart can swap places
with it. ``--seeds 0 1 2`` trains every configuration once per seed, in turn (seed 0's
configurations, then seed 1's, ...: a drifting machine affects each alike), with the one
``train_size`` planned from the first calibration, and adds a summary: each configuration's mean
and standard deviation over the seeds, and the demo recipe's lead over each other configuration
per seed, with the number of seeds where it is ahead.

Examples::

    python benchmarks/bench_demo_accuracy.py --quick            # smoke run, about 2 minutes
    python benchmarks/bench_demo_accuracy.py --threads 2        # the real one: 2 x 10 minutes
    python benchmarks/bench_demo_accuracy.py --threads 2 --separate  # + the paper's full recipe
    python benchmarks/bench_demo_accuracy.py --threads 2 --seeds 0 1 2  # 3 x 2 x 10 minutes
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from typing import List

import numpy as np
from bench_inference import set_threads


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="wall-clock training budget per configuration (default 10)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run (default: the preset's); train_size fills the budget")
    parser.add_argument("--val-size", type=int, default=None,
                        help="SyntheticShapes validation images (default: the preset's 500)")
    parser.add_argument("--calibration-batches", type=int, default=6,
                        help="batches per timing pass before each run (default 6)")
    parser.add_argument("--calibration-rounds", type=int, default=3,
                        help="timing passes per configuration, in turn; medians (default 3)")
    parser.add_argument("--margin", type=float, default=0.05,
                        help="share of the budget left unplanned (default 0.05)")
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for mxnet (set before importing it)")
    parser.add_argument("--separate", action="store_true",
                        help="also run the paper's full recipe (mining + augmentation)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="train every configuration once per seed (its own training and "
                             "validation images, initialisation and order); several seeds add "
                             "the mean and spread over them (default: 0)")
    parser.add_argument("--out", default="runs/bench_demo_accuracy",
                        help="parent of the run folders; results.json is written here")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 0.3 minute per configuration, 2 epochs, 48 val images")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.epochs, args.calibration_batches = 0.3, args.epochs or 2, 2
        args.calibration_rounds = 1
        args.val_size = args.val_size or 48
    if args.minutes <= 0 or (args.epochs is not None and args.epochs < 1):
        parser.error("--minutes must be > 0 and --epochs >= 1")
    return args


@dataclasses.dataclass
class Outcome:
    """One configuration's planned and measured run."""

    name: str
    seed: int
    mining: bool
    augment: bool
    calibration_ips: float
    loader_ms: float
    step_ms: float
    epochs: int
    train_size: int
    train_seconds: float = 0.0  # sum over epochs of loading + steps
    load_seconds: float = 0.0
    step_seconds: float = 0.0
    wall_seconds: float = 0.0   # the whole train() call: + checkpoints, final evaluation, plots
    images_per_second: float = 0.0
    val_map: float = float("nan")
    final_loss: float = float("nan")
    voc2010_map: float = float("nan")
    coco_ap: float = float("nan")
    full_recall: str = ""       # classes whose every validation object is detected at some score
    map_by_epoch: List[float] = dataclasses.field(default_factory=list)  # VOC07, after each epoch


@dataclasses.dataclass
class Calibration:
    """Speeds of one configuration, measured before its run (ms per image)."""

    images_per_second: float  # the training loop as it runs: loading and steps overlap
    loader_ms: float          # the data pipeline alone (render + transform + batchify)
    step_ms: float            # targets + forward + backward + update alone, each waited for


def calibrate(config, batches: int) -> Calibration:
    """Time ``config``'s training loop (a warm-up pass, then a timed one), then the loader alone
    and the steps alone on the batches it yields."""
    import mxnet as mx
    from gluon_ssd.presets import get_preset
    from gluon_ssd.train import Run

    batch = config.batch_size or get_preset(config.preset).train.batch_size
    probe = dataclasses.replace(config, train_size=batches * batch, val_size=batch, epochs=3,
                                progress=False)
    run = Run(probe)
    run.train_epoch(0)  # graph construction, memory planning: not representative
    ips = run.train_epoch(1).images_per_second
    mx.nd.waitall()
    start = time.perf_counter()
    data = [(b.images.as_in_context(mx.cpu()), b.labels) for b in run.train_loader.epoch(2)]
    mx.nd.waitall()
    loader = time.perf_counter() - start
    start = time.perf_counter()
    for images, labels in data:
        run.step(images, labels)
        mx.nd.waitall()  # backward and update run asynchronously: wait for them
    step = time.perf_counter() - start
    n = sum(images.shape[0] for images, _ in data)
    return Calibration(ips, 1000 * loader / n, 1000 * step / n)


def plan(ips: float, budget_s: float, margin: float, epochs: int, batch: int) -> int:
    """``train_size`` (whole batches, at least one) so that ``epochs`` passes fit the budget."""
    images = ips * budget_s * (1 - margin)
    return max(batch, int(images / epochs) // batch * batch)


def base_config(name: str, mining: bool, augment: bool, seed: int, args, root: str):
    """The demo preset's training run for one configuration and seed (``train_size`` still to
    plan)."""
    from gluon_ssd.presets import get_preset
    from gluon_ssd.train import TrainConfig

    epochs = args.epochs or get_preset("demo").train.epochs
    return TrainConfig(preset="demo", data="synthetic", out=os.path.join(root, f"seed{seed}", name),
                       epochs=epochs, eval_every=1, val_size=args.val_size, seed=seed,
                       num_workers=args.workers, mining=mining, augment=augment,
                       progress=sys.stderr.isatty())


def calibrate_all(configs, args) -> List[Calibration]:
    """Each configuration's median speeds over ``--calibration-rounds`` rounds that calibrate
    every configuration in turn, all before the first run: one timing pass is a few seconds at
    one moment of a shared machine whose speed drifts by a third from hour to hour."""
    def once(config) -> Calibration:
        with tempfile.TemporaryDirectory() as scratch:
            return calibrate(dataclasses.replace(config, out=scratch), args.calibration_batches)

    rounds = [[once(config) for config in configs] for _ in range(args.calibration_rounds)]
    return [Calibration(*np.median([dataclasses.astuple(c) for c in cals], axis=0))
            for cals in zip(*rounds)]


def run_one(name: str, config, cal: Calibration, train_size: int, args) -> Outcome:
    from gluon_ssd.train import train

    epochs = config.epochs
    label = f"{name}, seed {config.seed}"
    print(f"[{label}] calibration: {cal.images_per_second:.1f} images/s (loader alone "
          f"{cal.loader_ms:.0f} ms/image, step alone {cal.step_ms:.0f} ms/image) -> {epochs} "
          f"epochs x {train_size} images = {epochs * train_size} images in {args.minutes:g} min",
          flush=True)
    config = dataclasses.replace(config, train_size=train_size)
    start = time.perf_counter()
    result = train(config)
    wall = time.perf_counter() - start
    history = result.history
    load = sum(r.load_seconds for r in history)
    step = sum(r.step_seconds for r in history)
    images = len(history) * train_size  # a multiple of the batch: no batch discarded
    outcome = Outcome(name, config.seed, config.mining, config.augment, cal.images_per_second,
                      cal.loader_ms, cal.step_ms, epochs, train_size, load + step, load, step,
                      wall, images / max(load + step, 1e-9),
                      history[-1].val_map if history[-1].val_map is not None else float("nan"),
                      history[-1].loss)
    outcome.voc2010_map, outcome.coco_ap, outcome.full_recall = other_metrics(config.out)
    outcome.map_by_epoch = [r.val_map for r in history]
    print(f"[{label}] trained {load + step:.0f} s (budget {args.minutes * 60:.0f} s), "
          f"VOC07 mAP {outcome.val_map:.4f}, VOC2010 mAP {outcome.voc2010_map:.4f}, "
          f"COCO AP {outcome.coco_ap:.4f}, run folder {config.out}", flush=True)
    return outcome


def other_metrics(out: str):
    """VOC2010 mAP, COCO AP and the classes with full recall of the run's final weights, on the
    validation images training used (``gluon-ssd evaluate``'s defaults)."""
    from gluon_ssd.evaluation.run import evaluate_model
    from gluon_ssd.train import LAST

    evaluation, = evaluate_model(os.path.join(out, LAST), progress=False).evaluations.values()
    metrics = evaluation.headline()
    full = sum(curve.recall.max() >= 1.0 for curve in evaluation.curves.values())
    return metrics["VOC2010 mAP"], metrics["COCO AP"], f"{full}/{len(evaluation.curves)}"


def report(outcomes: List[Outcome], budget_s: float) -> str:
    """Side-by-side table of the outcomes, then the difference to the first."""
    rows = [
        ("VOC07 mAP@0.5 (val)", lambda o: f"{o.val_map:.4f}"),
        ("VOC2010 mAP@0.5 (all points)", lambda o: f"{o.voc2010_map:.4f}"),
        ("COCO AP@[.5:.95]", lambda o: f"{o.coco_ap:.4f}"),
        ("classes with full recall", lambda o: o.full_recall),
        ("hard negative mining", lambda o: "yes" if o.mining else "no"),
        ("augmentation", lambda o: "yes" if o.augment else "no"),
        ("calibrated images/s", lambda o: f"{o.calibration_ips:.1f}"),
        ("epochs x train_size", lambda o: f"{o.epochs} x {o.train_size}"),
        ("loader alone ms/image", lambda o: f"{o.loader_ms:.1f}"),
        ("step alone ms/image", lambda o: f"{o.step_ms:.1f}"),
        ("training s (budget)", lambda o: f"{o.train_seconds:.0f} ({budget_s:.0f})"),
        ("  log: load_seconds", lambda o: f"{o.load_seconds:.0f} ({_share(o.load_seconds, o)})"),
        ("  log: step_seconds", lambda o: f"{o.step_seconds:.0f} ({_share(o.step_seconds, o)})"),
        ("training images/s", lambda o: f"{o.images_per_second:.1f}"),
        ("train() wall s (+ eval, saving)", lambda o: f"{o.wall_seconds:.0f}"),
        ("final training loss", lambda o: f"{o.final_loss:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    cols = [max(len(o.name), 14) for o in outcomes]
    lines = ["".join([" " * width] + [f"  {o.name:>{c}}" for o, c in zip(outcomes, cols)])]
    for label, fmt in rows:
        lines.append("".join([f"{label:<{width}}"] +
                             [f"  {fmt(o):>{c}}" for o, c in zip(outcomes, cols)]))
    for epoch, maps in enumerate(zip(*(o.map_by_epoch for o in outcomes)), start=1):
        lines.append("".join([f"{f'  VOC07 after epoch {epoch}':<{width}}"] +
                             [f"  {m:>{c}.4f}" for m, c in zip(maps, cols)]))
    ref = outcomes[0]
    lines.append("")
    for o in outcomes[1:]:
        lines.append(f"difference {ref.name} - {o.name}: VOC07 {ref.val_map - o.val_map:+.4f}, "
                     f"VOC2010 {ref.voc2010_map - o.voc2010_map:+.4f}, "
                     f"COCO {ref.coco_ap - o.coco_ap:+.4f}")
    for o in outcomes:
        if o.loader_ms > o.step_ms:
            lines.append(f"WARNING [{o.name}]: the loader alone ({o.loader_ms:.0f} ms/image) is "
                         f"slower than the step alone ({o.step_ms:.0f} ms/image): the data "
                         "pipeline is the bottleneck (try --workers)")
        else:
            lines.append(f"[{o.name}] the data pipeline is not the bottleneck: loader "
                         f"{o.loader_ms:.0f} ms/image vs step {o.step_ms:.0f} ms/image")
    return "\n".join(lines)


def summary(runs: List[List[Outcome]]) -> str:
    """Over seeds (``runs[s]`` holds every configuration of one seed): each configuration's mean
    and sample standard deviation of the three metrics, and the first configuration's lead over
    each other one, per seed, as mean, spread and the number of seeds where it is ahead."""
    metrics = [("VOC07", "val_map"), ("VOC2010", "voc2010_map"), ("COCO AP", "coco_ap")]

    def spread(values) -> str:
        values = np.asarray(values, dtype=float)
        return f"{values.mean():.4f} +- {values.std(ddof=1):.4f}"

    lines = [f"over {len(runs)} seeds ({', '.join(str(r[0].seed) for r in runs)}): "
             "mean +- sample standard deviation"]
    names = [o.name for o in runs[0]]
    for i, name in enumerate(names):
        lines.append(f"  {name:<18}" + "".join(
            f"  {label} {spread([getattr(r[i], key) for r in runs])}" for label, key in metrics))
    for i, name in enumerate(names[1:], start=1):
        lines.append(f"  lead of {names[0]} over {name}:")
        for label, key in metrics:
            leads = [getattr(r[0], key) - getattr(r[i], key) for r in runs]
            ahead = sum(lead > 0 for lead in leads)
            lines.append(f"    {label:<8} {spread(leads)}  ahead in {ahead}/{len(leads)} seeds "
                         f"({', '.join(f'{lead:+.4f}' for lead in leads)})")
    return "\n".join(lines)


def plot_map_by_epoch(outcomes: List[Outcome], path: str) -> None:
    """Each configuration's VOC07 mAP after every epoch against the images trained so far, one
    colour per configuration and one line per seed."""
    from gluon_ssd.visualize import new_figure, save_figure

    fig, axes = new_figure(1, 1, panel_size=(6.0, 4.0))
    ax = axes[0][0]
    names = list(dict.fromkeys(o.name for o in outcomes))
    for o in outcomes:
        images = [o.train_size * (epoch + 1) for epoch in range(len(o.map_by_epoch))]
        ax.plot(images, o.map_by_epoch, marker="o", color=f"C{names.index(o.name)}", alpha=0.8,
                label=f"{o.name}, seed {o.seed} ({o.train_seconds:.0f} s training)")
    ax.set(xlabel="images trained", ylabel="VOC07 mAP@0.5 (validation)",
           title="demo preset: the paper's ablation, the same images each")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)


def _share(seconds: float, o: Outcome) -> str:
    return f"{100 * seconds / max(o.train_seconds, 1e-9):.0f}%"


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    import mxnet as mx  # after the thread settings

    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{os.cpu_count()} CPUs, budget {args.minutes:g} min per configuration", flush=True)
    from gluon_ssd.presets import get_preset

    recipe = get_preset("demo").train
    configs = [("demo-recipe", recipe.mining, recipe.augment), ("no-mining-no-aug", False, False)]
    if args.separate:
        configs += [("paper-recipe", True, True)]
    os.makedirs(args.out, exist_ok=True)
    bases = {seed: [base_config(name, mining, augment, seed, args, args.out)
                    for name, mining, augment in configs] for seed in args.seeds}
    # the speed of a configuration does not depend on the seed: calibrate the first seed's
    calibrations = calibrate_all(bases[args.seeds[0]], args)
    # one budget in images for every configuration: the reference's (the demo recipe's) speed
    train_size = plan(calibrations[0].images_per_second, args.minutes * 60, args.margin,
                      bases[args.seeds[0]][0].epochs, recipe.batch_size)
    runs = [[run_one(name, config, cal, train_size, args)
             for (name, _, _), config, cal in zip(configs, bases[seed], calibrations)]
            for seed in args.seeds]
    for outcomes in runs:
        print(f"\nseed {outcomes[0].seed}:")
        print(report(outcomes, args.minutes * 60))
    if len(runs) > 1:
        print()
        print(summary(runs))
    plot_map_by_epoch([o for outcomes in runs for o in outcomes],
                      os.path.join(args.out, "map_by_epoch.png"))
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump({"args": vars(args),
                   "results": [dataclasses.asdict(o) for outcomes in runs for o in outcomes]},
                  f, indent=2)
    print(f"\nwrote {path} and map_by_epoch.png")


if __name__ == "__main__":
    main()
