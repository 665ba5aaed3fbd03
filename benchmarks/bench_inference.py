"""SSD300-VGG16 FP32 inference throughput: gluon-ssd next to GluonCV, in one process.

Both networks run end to end, image batch ``(B, 3, 300, 300)`` -> detections ``(ids, scores,
boxes)``: gluon-ssd's :class:`~gluon_ssd.model.detector.DetectionNet` (SSD + softmax +
MultiBoxDetection) and GluonCV's ``ssd_300_vgg16_atrous_voc`` in inference mode (decoder + per
class ``box_nms``), 20 VOC classes, each at its default thresholds. Weights are random (no
downloads) and shared: gluon-ssd loads GluonCV's, so both make the same raw predictions and their
post-processing, whose cost depends on how many boxes pass the score threshold, starts from the
same candidates. (Random weights make almost every anchor a candidate: a heavy case.)

Both are hybridized with ``static_alloc=True, static_shape=True``. After ``--warmup`` calls each,
the timed calls take turns (the order flips every repeat) so that drifts of the machine hit all
alike; the median over ``--repeats`` timed calls is reported as images/s and ms per image.

``--threads N`` sets ``OMP_NUM_THREADS=N`` (the threads each operator, MKL-DNN convolutions
included, may use) and ``MXNET_CPU_WORKER_NTHREADS=1`` (one engine worker, so operators do not
compete for the cores) in the environment *before* mxnet is imported: setting them later has no
effect. Without ``--threads`` the environment is left as it is.

``--breakdown`` also times, in the same rotation, each network's raw SSD (features, predictors,
anchors; GluonCV's traced in training mode, which returns exactly these) and gluon-ssd's
Detector alone on fixed SSD outputs. End to end minus raw SSD is the post-processing.

Examples::

    python benchmarks/bench_inference.py --quick
    python benchmarks/bench_inference.py --batch-sizes 1 8 --repeats 5 --threads 2 --breakdown
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, Dict, List, Sequence

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
IMAGE_SIZE = 300


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per network")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per network first")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for mxnet (set before importing it)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time gluon-ssd's raw SSD and Detector separately")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, 1 warm-up, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.warmup, args.repeats = [1], 1, 2
    return args


def set_threads(threads) -> None:
    """Fix mxnet's threading through the environment; must run before ``import mxnet``."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MXNET_CPU_WORKER_NTHREADS"] = "1"


def hybridized(net):
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def gluoncv_ssd():
    """GluonCV's SSD300-VGG16 for VOC, random weights, shapes fixed by one (imperative) forward."""
    import gluoncv
    import mxnet as mx

    net = gluoncv.model_zoo.get_model("ssd_300_vgg16_atrous_voc", pretrained=False,
                                      pretrained_base=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE)))
    return net


def gluoncv_weights(theirs):
    """A GluonCV SSD300's parameters under gluon-ssd's names ``{structural name: array}``."""
    from gluon_ssd.model.weights import gluoncv_atrous_to_base

    arrays = {k: p.data() for k, p in theirs._collect_params_with_prefix().items()}
    features = gluoncv_atrous_to_base({k[len("features."):]: v for k, v in arrays.items()
                                       if k.startswith("features.")})
    predictors = {k.replace(".predictor.", "."): v for k, v in arrays.items()
                  if "_predictors." in k}
    return {**features, **predictors}


def build_networks():
    """``{name: hybridized block image -> detections}`` for gluon-ssd and GluonCV.

    gluon-ssd gets GluonCV's random weights, so both compute the same raw predictions and their
    post-processing starts from the same candidate boxes.
    """
    from gluon_ssd import DetectionNet, get_model
    from gluon_ssd.model.weights import assign

    theirs = gluoncv_ssd()
    ours = get_model("ssd300_vgg16", VOC_CLASSES)
    assign(ours, gluoncv_weights(theirs), "GluonCV ssd_300_vgg16_atrous_voc")
    return {"gluon-ssd": hybridized(DetectionNet(ours)), "GluonCV": hybridized(theirs)}


def timed(fn: Callable[[], Sequence]) -> float:
    """Seconds for one call of ``fn``, waiting for every output."""
    start = time.perf_counter()
    outputs = fn()
    for out in outputs:
        out.wait_to_read()
    return time.perf_counter() - start


def alternate(calls: Dict[str, Callable[[], Sequence]], batch: int, warmup: int,
              repeats: int) -> Dict[str, float]:
    """Median images/s of each call, timed in turns (order reversed every repeat) after
    ``warmup`` untimed calls each."""
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            timed(calls[name])
    seconds: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            seconds[name].append(timed(calls[name]))
    return {name: batch / statistics.median(s) for name, s in seconds.items()}


def end_to_end_calls(nets, x) -> Dict[str, Callable[[], Sequence]]:
    return {name: (lambda net=net: net(x)) for name, net in nets.items()}


def breakdown_calls(nets, x) -> Dict[str, Callable[[], Sequence]]:
    """Raw SSD outputs of both networks, and gluon-ssd's Detector alone on fixed SSD outputs."""
    from mxnet import autograd

    ours = nets["gluon-ssd"]
    theirs = gluoncv_ssd()  # a second instance: its hybridized graph is traced in training mode
    weights = nets["GluonCV"]._collect_params_with_prefix()
    for name, param in theirs._collect_params_with_prefix().items():
        param.set_data(weights[name].data())
    hybridized(theirs)

    def theirs_raw():
        with autograd.train_mode():  # GluonCV's SSD returns its raw outputs when training
            return theirs(x)

    raw = ours.ssd(x)
    return {"gluon-ssd SSD only": lambda: ours.ssd(x), "GluonCV SSD only": theirs_raw,
            "gluon-ssd Detector only": lambda: ours.detector(*raw)}


def report(batch: int, speeds: Dict[str, float]) -> None:
    for name, ips in speeds.items():
        print(f"batch {batch:3d}  {name:24s} {ips:8.2f} images/s {1000 / ips:8.1f} ms/image")
    if {"gluon-ssd", "GluonCV"} <= set(speeds):
        ratio = speeds["gluon-ssd"] / speeds["GluonCV"]
        print(f"batch {batch:3d}  ratio gluon-ssd / GluonCV  {ratio:8.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    import mxnet as mx

    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"warm-up {args.warmup}, repeats {args.repeats}")
    nets = build_networks()
    for batch in args.batch_sizes:
        x = mx.nd.random.normal(shape=(batch, 3, IMAGE_SIZE, IMAGE_SIZE))
        calls = end_to_end_calls(nets, x)
        if args.breakdown:
            calls.update(breakdown_calls(nets, x))
        report(batch, alternate(calls, batch, args.warmup, args.repeats))


if __name__ == "__main__":
    main()
