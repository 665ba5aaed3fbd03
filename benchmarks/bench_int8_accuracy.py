"""INT8 accuracy: the VOC07 mAP of a checkpoint next to its INT8 exports, on its validation set.

The checkpoint (default: the demo's, ``runs/demo/checkpoint-best.params`` from ``make demo``)
is evaluated as trained (:func:`gluon_ssd.evaluation.run.evaluate_model` takes the validation data,
its size, seed and batch size from the checkpoint's training config). Then, for each calibration
mode, it is quantized as ``gluon-ssd quantize`` does (:func:`gluon_ssd.quantize.quantize_model` on
``--calib-batches`` batches of the training split, :func:`~gluon_ssd.quantize.export_quantized`),
and the export is evaluated on the same validation images. The table gives each mAP and its
difference to float32 in mAP points (the goal: INT8 loses at most 0.5 points).

Examples::

    python benchmarks/bench_int8_accuracy.py --quick        # smoke run on a checkpoint
    python benchmarks/bench_int8_accuracy.py runs/demo/checkpoint-best.params --calib-batches 20
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Dict

GOAL_POINTS = 0.5  # the bound on the INT8 mAP loss, in mAP points (0.5 = 0.005 mAP)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/checkpoint-best.params",
                        help="a gluon-ssd checkpoint (default: the demo's)")
    parser.add_argument("--calib-data", help="calibration data (default: the training data)")
    parser.add_argument("--calib-batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="calibration batch size")
    parser.add_argument("--modes", nargs="+", default=["naive", "entropy"],
                        choices=["naive", "entropy"], help="calibration modes to compare")
    parser.add_argument("--val-size", type=int,
                        help="synthetic validation images (default: the training run's)")
    parser.add_argument("--out", help="folder for the INT8 exports (default: a temporary one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 calibration batch, naive only, 32 validation images")
    args = parser.parse_args(argv)
    if args.quick:
        args.calib_batches, args.modes, args.val_size = 1, ["naive"], 32
    return args


def voc07(path: str, config, val_size) -> float:
    """VOC07 mAP of a checkpoint or export on the validation split of the training config."""
    from gluon_ssd.evaluation.run import evaluate_model

    result = evaluate_model(path, data=config.data, data_root=config.data_root,
                            val_size=val_size or config.val_size, seed=config.seed,
                            batch_size=config.batch_size, metrics=("voc07",), progress=True)
    evaluation = next(iter(result.evaluations.values()))
    print(f"  {path}: {result.num_images} {result.data} {result.split} images")
    return evaluation.voc["voc07"].map


def training_config(checkpoint: str):
    """The :class:`~gluon_ssd.train.TrainConfig` recorded in a checkpoint."""
    from gluon_ssd.checkpoint import read_checkpoint
    from gluon_ssd.train import TrainConfig

    recorded = read_checkpoint(checkpoint)[1].get("config") or {}
    return TrainConfig.from_dict(recorded, checkpoint, ignore_unknown=True)


def quantize(checkpoint: str, prefix: str, mode: str, args, config) -> str:
    """``gluon-ssd quantize`` in-process; returns the export prefix."""
    from gluon_ssd.detect import load_detector
    from gluon_ssd.quantize import calibration_batches, export_quantized, quantize_model

    detector = load_detector(checkpoint)
    data = args.calib_data or config.data
    batches = calibration_batches(data, detector.image_size, detector.mean, detector.std,
                                  args.batch_size, root=config.data_root, seed=config.seed)
    int8 = quantize_model(detector.net, batches, args.calib_batches, mode,
                          source=f"{data} (train split)", progress=True)
    export_quantized(int8, prefix, detector.image_size, detector.preset)
    return prefix


def report(maps: Dict[str, float]) -> None:
    fp32 = maps["float32"]
    print(f"\n{'model':16s} {'VOC07 mAP':>10s} {'change (points)':>16s}")
    for name, value in maps.items():
        change = "" if name == "float32" else f"{100 * (value - fp32):+16.2f}"
        print(f"{name:16s} {value:10.4f} {change}")
    for name, value in maps.items():
        if name != "float32":
            verdict = "meets" if 100 * (fp32 - value) <= GOAL_POINTS else "misses"
            print(f"{name}: {verdict} the goal (loses at most {GOAL_POINTS} mAP points)")


def main(argv=None) -> None:
    args = parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"{args.checkpoint} does not exist; train one first (make demo)")
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    config = training_config(args.checkpoint)
    out = args.out or tempfile.mkdtemp(prefix="int8-")
    print(f"checkpoint {args.checkpoint}: data {config.data}, seed {config.seed}; "
          f"calibration {args.calib_batches} x {args.batch_size} training images; exports in {out}")
    maps = {"float32": voc07(args.checkpoint, config, args.val_size)}
    for mode in args.modes:
        prefix = quantize(args.checkpoint, os.path.join(out, f"int8-{mode}"), mode, args, config)
        maps[f"int8 {mode}"] = voc07(prefix, config, args.val_size)
    report(maps)


if __name__ == "__main__":
    main()
