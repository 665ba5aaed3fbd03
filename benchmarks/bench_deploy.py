"""SSD out of MXNet: ONNX Runtime and OpenVINO next to MXNet, FP32 / INT8 / BF16, in one process.

**Speed.** SSD300-VGG16 end to end, preprocessed batch ``(B, 3, 300, 300)`` -> detections
``(ids, scores, boxes)`` (decoding and NMS included), 20 VOC classes, multibox decoding at the
preset's settings, at each ``--batch-sizes``:

* MXNet FP32: gluon-ssd's :class:`~gluon_ssd.model.head.DetectionNet`, hybridized with static
  allocation, as ``bench_inference.py``;
* MXNet INT8: the same through :func:`gluon_ssd.quantize.quantize_model` (oneDNN), detector head
  float32 (what ``gluon-ssd quantize`` writes);
* ONNX Runtime FP32 / INT8 and OpenVINO FP32 / INT8 / BF16: the ONNX files ``gluon-ssd export
  --format onnx [--precision int8]`` writes, one per batch size (a fixed batch), run through
  :func:`gluon_ssd.deploy.engines.open_session`. The INT8 file (ONNX Runtime's static
  quantization, QDQ) serves both engines; BF16 is OpenVINO's inference precision on the FP32 file,
  on CPUs that have it (else the row is skipped and the reason printed).

The weights are GluonCV's SSD300 for VOC with random weights, loaded into gluon-ssd as its
converter does (``bench_inference.py``'s ``build_networks``), the class and box predictors
scaled so that the probabilities spread over (0, 1) as a trained network's do. Every INT8 model
is calibrated on the same ``--calib-batches`` batches of 8 synthetic training images
(``--calib-mode``). Timing as ``bench_inference.py``: ``--warmup`` untimed calls each, then the
calls take turns (order reversed every repeat) and the median of ``--repeats`` is reported as
images/s, with the ratios the goals are stated in: the best FP32 engine against MXNet FP32
(>= 1.0), the best BF16 against MXNet FP32 (>= 2.0), the best INT8 against MXNet INT8 (>= 1.2).
``--threads N`` sets MXNet's OpenMP threads (before mxnet is imported) and each engine's threads
per inference; without it each library chooses.

**Accuracy.** (1) The trained demo model (``--checkpoint``, default the shipped ``demo``): VOC07
mAP of every model above (MXNet INT8 and the INT8 ONNX file calibrated on ``--calib-batches``
batches of its training data) on the validation split its recorded config rebuilds (as
``tests/test_model_zoo.py``), with the change in mAP points against MXNet FP32 (the goal:
reduced precision loses at most 0.5 points). (2) The SSD300 above on ``--agreement-images``
synthetic images: each model's detections against MXNet FP32's, the share of FP32's detections
with score >= 0.5 found again (same class, IoU >= 0.7, score >= 0.3), the share of the model's
own detections >= 0.5 that FP32 lacks, and the mean score change of the matched ones.

Examples::

    python benchmarks/bench_deploy.py --quick
    python benchmarks/bench_deploy.py --batch-sizes 1 8 --repeats 5 --threads 2
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile
from dataclasses import replace
from typing import Callable, Dict, List, Optional

import numpy as np

from bench_inference import (IMAGE_SIZE, VOC_CLASSES, alternate, gluoncv_ssd, gluoncv_weights,
                             hybridized, set_threads)

GOALS = (("FP32", "MXNet FP32", 1.0), ("BF16", "MXNet FP32", 2.0), ("INT8", "MXNet INT8", 1.2))
GOAL_POINTS = 0.5  # reduced precision may lose at most this many VOC07 mAP points
ENGINE_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per model first")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of MXNet (OMP_NUM_THREADS) and of each engine")
    parser.add_argument("--calib-batches", type=int, default=2,
                        help="INT8 calibration batches of 8 images (default 2)")
    parser.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive")
    parser.add_argument("--checkpoint", default="demo",
                        help="the trained model of the mAP rows (default: the shipped demo)")
    parser.add_argument("--val-size", type=int,
                        help="validation images of the mAP rows (default: the checkpoint's)")
    parser.add_argument("--agreement-images", type=int, default=8)
    parser.add_argument("--out", help="folder for the ONNX files (default: a temporary one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, 1 warm-up, 2 repeats, 1 calibration batch, "
                             "64 validation images, 2 agreement images")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.warmup, args.repeats, args.calib_batches = [1], 1, 2, 1
        args.val_size, args.agreement_images = 64, 2
    return args


# ---------------------------------------------------------------------------------------------
# Models

def ssd300_net(x):
    """gluon-ssd's SSD300 with GluonCV's random weights (as converted), its predictors scaled on
    the images ``x`` to class logits of std 2 and box offsets of std 1: a DetectionNet."""
    from gluon_ssd import DetectionNet, get_model
    from gluon_ssd.model.weights import assign

    ssd = get_model("ssd300_vgg16", VOC_CLASSES)
    assign(ssd, gluoncv_weights(gluoncv_ssd()), "GluonCV ssd_300_vgg16_atrous_voc")
    features = ssd.features(x)
    for predictors, target in ((ssd.class_predictors, 2.0), (ssd.box_predictors, 1.0)):
        for predictor, feature in zip(predictors, features):
            factor = target / predictor(feature).asnumpy().std()
            for param in (predictor.weight, predictor.bias):
                param.set_data(param.data() * factor)
    return DetectionNet(ssd)


def calibration(data: str, size, spec, num_batches: int, seed: int = 0,
                root: Optional[str] = None) -> List[np.ndarray]:
    """``num_batches`` preprocessed batches of 8 training images of ``data`` (normalised with
    ``spec.mean`` and ``spec.std``)."""
    from gluon_ssd.quantize import calibration_batches

    batches = calibration_batches(data, size, spec.mean, spec.std, 8, root=root, seed=seed)
    return [b.asnumpy() for b in itertools.islice(batches, num_batches)]


def mxnet_models(net, batches: List[np.ndarray], mode: str) -> Dict[str, Callable]:
    """MXNet FP32 and INT8 (oneDNN) of the detector ``net``, hybridized."""
    import mxnet as mx

    from gluon_ssd.quantize import quantize_model

    int8 = quantize_model(net, (mx.nd.array(b) for b in batches), len(batches), mode)
    return {"MXNet FP32": hybridized(net), "MXNet INT8": hybridized(int8)}


def onnx_models(net, folder: str, size, batch, batches: List[np.ndarray], mode: str,
                threads: Optional[int]) -> Dict[str, Callable]:
    """The FP32 and INT8 ONNX files of ``net`` (written into ``folder``) on both engines, and
    OpenVINO BF16 when the CPU has it."""
    from gluon_ssd.deploy.engines import bf16_missing, open_session
    from gluon_ssd.deploy.onnx_model import export_onnx

    files = {}
    for precision in ("fp32", "int8"):
        files[precision] = os.path.join(folder, f"ssd-{size[0]}x{size[1]}-b{batch}-"
                                                f"{precision}.onnx")
        if not os.path.exists(files[precision]):
            export_onnx(net, files[precision], size, batch=batch, precision=precision,
                        calibration=iter(batches), calib_batches=len(batches), calib_mode=mode)
    runs = [(e, p, p) for e in ENGINE_NAMES for p in ("fp32", "int8")]
    missing = bf16_missing()
    if missing:
        print(f"OpenVINO BF16: skipped ({missing})")
    else:
        runs.append(("openvino", "fp32", "bf16"))
    fixed = batch if isinstance(batch, int) else None
    return {f"{ENGINE_NAMES[e]} {p.upper()}": open_session(
                open(files[f], "rb").read(), e, p, file_precision=f, batch=fixed, threads=threads)
            for e, f, p in runs}


# ---------------------------------------------------------------------------------------------
# Speed

def speed(nets: Dict[str, Callable], x, batch: int, args) -> Dict[str, float]:
    """Images/s of every model on ``x``, interleaved; MXNet gets an NDArray, the engines numpy."""
    host = x.asnumpy()
    calls = {name: (lambda net=net, arg=(x if name.startswith("MXNet") else host): net(arg))
             for name, net in nets.items()}
    return alternate(calls, batch, args.warmup, args.repeats)


def report_speed(batch: int, speeds: Dict[str, float]) -> None:
    """Images/s, ms/image and the ratios to MXNet FP32 (and INT8 rows to MXNet INT8), then
    whether each goal is met."""
    for name, ips in speeds.items():
        ratios = f"{ips / speeds['MXNet FP32']:6.2f}x MXNet FP32"
        if name.endswith("INT8"):
            ratios += f"  {ips / speeds['MXNet INT8']:6.2f}x MXNet INT8"
        print(f"batch {batch:3d}  {name:20s} {ips:8.2f} images/s {1000 / ips:8.1f} ms/image  "
              f"{ratios}")
    for kind, base, goal in GOALS:
        rows = {n: v for n, v in speeds.items() if n.endswith(kind) and not n.startswith("MXNet")}
        if not rows:
            print(f"batch {batch:3d}  goal {kind}: no {kind} engine row")
            continue
        best = max(rows, key=rows.get)
        ratio = rows[best] / speeds[base]
        print(f"batch {batch:3d}  goal best {kind} >= {goal}x {base}: {best} {ratio:.2f}x, "
              f"{'meets' if ratio >= goal else 'misses'}")


# ---------------------------------------------------------------------------------------------
# Accuracy

def synthetic_images(count: int, size, spec, seed: int = 7):
    """``count`` SyntheticShapes validation images, preprocessed for ``size``: an NDArray."""
    import mxnet as mx

    from gluon_ssd.data.synthetic import SyntheticShapes
    from gluon_ssd.data.transforms import EvalTransform

    transform = EvalTransform(size, spec.mean, spec.std)
    shapes = SyntheticShapes(count, (240, 320), "val", seed=seed)
    return mx.nd.stack(*[transform(shapes[i][0], np.zeros((0, 4), np.float32))[0]
                         for i in range(count)])


def agreement(reference, found, top: int = 50) -> str:
    """How ``found``'s detections agree with ``reference``'s (both ``(ids, scores, boxes)``):
    of each image's ``top`` best rows with score >= 0.5 (half the rows, away from the cut at
    ``max_detections`` where near-equal scores decide), the share the other finds (same class,
    IoU >= 0.7, score >= 0.3), both ways, and the mean score change of the matches."""
    from gluoncv.utils.bbox import bbox_iou

    counts, changes = np.zeros((2, 2), int), []  # [found, asked] for reference, then found
    for r, f in zip(_rows(reference), _rows(found)):
        iou = bbox_iou(r[2], f[2]) if len(r[2]) and len(f[2]) else np.zeros((len(r[2]),
                                                                              len(f[2])))
        same = (r[0][:, None] == f[0][None, :]) & (iou >= 0.7)
        for side, (mine, theirs, match) in enumerate(((r, f, same), (f, r, same.T))):
            for i in np.flatnonzero(mine[1][:top] >= 0.5):
                hits = np.flatnonzero(match[i] & (theirs[1] >= 0.3))
                counts[side] += (len(hits) > 0, 1)
                if side == 0 and len(hits):
                    changes.append(abs(theirs[1][hits[0]] - mine[1][i]))
    share = counts[:, 0] / np.maximum(counts[:, 1], 1)
    return (f"finds {share[0]:7.2%} of FP32's {counts[0, 1]} best detections >= 0.5; "
            f"{1 - share[1]:6.2%} of its own are not FP32's; mean score change "
            f"{np.mean(changes) if changes else float('nan'):.4f}")


def _rows(outputs):
    ids, scores, boxes = (o.asnumpy() for o in outputs)
    keep = ids[..., 0] >= 0
    return [(ids[b, keep[b], 0], scores[b, keep[b], 0], boxes[b, keep[b]])
            for b in range(len(ids))]


def demo_maps(args, folder: str) -> None:
    """VOC07 mAP of the trained model's FP32, INT8 and BF16 versions on its validation split."""
    from gluon_ssd.checkpoint import read_checkpoint
    from gluon_ssd.data.datasets import DataConfig, build_split
    from gluon_ssd.detect import load_detector
    from gluon_ssd.evaluation.run import evaluate, evaluation_loader
    from gluon_ssd.model_zoo import resolve_model

    path = resolve_model(args.checkpoint)
    meta = read_checkpoint(path)[1]
    data = DataConfig.from_dict(meta["config"], path, ignore_unknown=True)
    data = replace(data, val_size=args.val_size or data.val_size)
    detector = load_detector(path)
    size = detector.image_size
    batches = calibration(data.data, size, detector, args.calib_batches, data.seed,
                          data.data_root)
    models = {**mxnet_models(detector.net, batches, args.calib_mode),
              **onnx_models(detector.net, folder, size, "dynamic", batches, args.calib_mode,
                            args.threads)}
    val = build_split(data, "val", size)
    loader = evaluation_loader(val, size, detector.mean, detector.std, 32)
    print(f"\n{path}: VOC07 mAP on {len(val)} {data.data} validation images")
    fp32 = None
    for name, net in models.items():
        value = evaluate(net, loader.epoch(0), detector.classes, metrics=("voc07",)) \
            .voc["voc07"].map
        fp32 = value if fp32 is None else fp32
        change = 100 * (value - fp32)
        verdict = "" if name.endswith("FP32") else \
            ("meets" if -change <= GOAL_POINTS else "misses") + f" the goal (<= {GOAL_POINTS})"
        print(f"  {name:20s} {value:.4f} {change:+6.2f} points  {verdict}")


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    import mxnet as mx

    from gluon_ssd import get_preset

    folder = args.out or tempfile.mkdtemp(prefix="deploy-")
    os.makedirs(folder, exist_ok=True)
    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
          f", engine threads {args.threads or 'their default'}, warm-up {args.warmup}, repeats "
          f"{args.repeats}; ONNX files in {folder}")
    spec, size = get_preset("ssd300_vgg16").model, (IMAGE_SIZE, IMAGE_SIZE)
    images = synthetic_images(max(args.agreement_images, max(args.batch_sizes)), size, spec)
    net = ssd300_net(images)
    batches = calibration("synthetic", size, spec, args.calib_batches)
    models = mxnet_models(net, batches, args.calib_mode)
    for batch in args.batch_sizes:
        models.update(onnx_models(net, folder, size, batch, batches, args.calib_mode,
                                  args.threads))
        report_speed(batch, speed(models, images[:batch], batch, args))
    print(f"\nSSD300, GluonCV's random weights, {args.agreement_images} images: each model "
          "against MXNet FP32")
    x = images[:args.agreement_images]
    reference = models["MXNet FP32"](x)
    for name, model in models.items():
        if name != "MXNet FP32":
            print(f"  {name:20s} {agreement(reference, model(x))}")
    demo_maps(args, folder)


if __name__ == "__main__":
    main()
