"""SSD300-VGG16 inference throughput, FP32 and INT8: gluon-ssd next to GluonCV, in one process.

Both networks run end to end, image batch ``(B, 3, 300, 300)`` -> detections ``(ids, scores,
boxes)``: gluon-ssd's :class:`~gluon_ssd.model.head.DetectionNet` (SSD + softmax +
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
DetectionHead alone on fixed SSD outputs. End to end minus raw SSD is the post-processing.

INT8 rows (unless ``--no-int8``): both networks quantized by MXNet's ``quantize_net`` (oneDNN),
calibrated alike (``--calib-mode`` on ``--calib-batches`` batches of 8 synthetic images), with
the same operators kept float32 (:data:`gluon_ssd.quantize.FP32_OPERATORS`): gluon-ssd's through
:func:`gluon_ssd.quantize.quantize_model` (the SSD quantized, its detector head float32),
GluonCV's whole inference graph (its post-processing has no INT8 kernels and stays float32).
Every row gets its ratio to GluonCV FP32; gluon-ssd INT8 also to GluonCV INT8.

torchvision's ``ssd300_vgg16`` (random weights, 21 classes, eval mode, ``torch.set_num_threads``
from ``--threads``) is an optional row when torch and torchvision import; otherwise the reason
is printed and the row skipped. It takes a list of ``(3, 300, 300)`` tensors and runs its own
normalisation and post-processing (score threshold 0.01, NMS per class).

``--amx`` (experimental) lets oneDNN use the AMX tile instructions of CPUs that have them
(``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX``, and the ``arch_prctl`` permission Linux >= 5.16 wants
before a process may use AMX state), for every network in the process. MXNet 1.9.1 ships
oneDNN 2.4.4, where AMX is a preview: without the permission its AMX kernels die of SIGILL; with
it, INT8 inference ran and gave the same outputs as without AMX on the demo model, while BF16
training crashed (heap corruption), so the package never turns it on.

Examples::

    python benchmarks/bench_inference.py --quick
    python benchmarks/bench_inference.py --batch-sizes 1 8 --repeats 5 --threads 2 --breakdown
    python benchmarks/bench_inference.py --batch-sizes 1 8 --threads 2 --calib-mode entropy
"""
from __future__ import annotations

import argparse
import ctypes
import itertools
import os
import statistics
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence

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
                        help="also time gluon-ssd's raw SSD and DetectionHead separately")
    parser.add_argument("--no-int8", dest="int8", action="store_false",
                        help="leave out the INT8 rows")
    parser.add_argument("--calib-mode", choices=("naive", "entropy"), default="naive",
                        help="INT8 calibration (default naive)")
    parser.add_argument("--calib-batches", type=int, default=2,
                        help="INT8 calibration batches of 8 images (default 2)")
    parser.add_argument("--amx", action="store_true",
                        help="experimental: let oneDNN use AMX (see the module doc)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1, 1 warm-up, 2 repeats, 1 calibration batch")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.warmup, args.repeats, args.calib_batches = [1], 1, 2, 1
    return args


def set_threads(threads) -> None:
    """Fix mxnet's threading through the environment; must run before ``import mxnet``."""
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        os.environ["MXNET_CPU_WORKER_NTHREADS"] = "1"


def enable_amx() -> None:
    """Let oneDNN use AMX: raise its ISA limit and ask Linux for the AMX tile state (Linux >=
    5.16 kills a process using it without asking: ``arch_prctl(ARCH_REQ_XCOMP_PERM,
    XFEATURE_XTILEDATA)``). Must run before ``import mxnet``."""
    arch_prctl, req_xcomp_perm, xtiledata = 158, 0x1023, 18  # x86-64 syscall number, constants
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(arch_prctl, req_xcomp_perm, xtiledata) != 0:
        raise SystemExit(f"--amx: the kernel refused AMX (errno {ctypes.get_errno()}); "
                         "this CPU or kernel has no AMX")
    os.environ["DNNL_MAX_CPU_ISA"] = "AVX512_CORE_AMX"


def hybridized(net):
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def gluoncv_ssd():
    """GluonCV's SSD300-VGG16 for VOC, random weights, shapes fixed by one (imperative) forward."""
    import gluon_ssd  # noqa: F401  (first: it imports GluonCV so that torch 2 may sit beside it)
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
    """Raw SSD outputs of both networks, and gluon-ssd's DetectionHead alone on fixed SSD outputs."""
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
            "gluon-ssd head only": lambda: ours.head(*raw)}


def int8_networks(nets, mode: str, num_batches: int) -> Dict[str, object]:
    """gluon-ssd's and GluonCV's networks quantized alike, calibrated on the same ``num_batches``
    batches of 8 synthetic images; the float32 networks are hybridized again afterwards
    (``quantize_net`` re-hybridizes the network it is given without static allocation)."""
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_net_v2

    from gluon_ssd.data.transforms import DEFAULT_MEAN, DEFAULT_STD
    from gluon_ssd.quantize import FP32_OPERATORS, calibration_batches, quantize_model

    size = (IMAGE_SIZE, IMAGE_SIZE)
    batches = list(itertools.islice(
        calibration_batches("synthetic", size, DEFAULT_MEAN, DEFAULT_STD, 8), num_batches))
    ours = quantize_model(nets["gluon-ssd"], iter(batches), num_batches, mode)
    with warnings.catch_warnings():  # quantize_net's SymbolBlock has an untyped input: harmless
        warnings.filterwarnings("ignore", message="Cannot decide type")
        theirs = quantize_net_v2(nets["GluonCV"], quantized_dtype="auto", quantize_mode="full",
                                 exclude_operators=list(FP32_OPERATORS), calib_mode=mode,
                                 calib_data=mx.io.NDArrayIter(mx.nd.concat(*batches, dim=0),
                                                              batch_size=8))
    for net in nets.values():
        hybridized(net)
    return {"gluon-ssd INT8": hybridized(ours), "GluonCV INT8": hybridized(theirs)}


def torchvision_call(x, threads: Optional[int]) -> Optional[Callable[[], Sequence]]:
    """torchvision's ``ssd300_vgg16`` (random weights, 21 classes) on the images of ``x``, or
    ``None`` with the reason printed when torch or torchvision do not import."""
    try:
        import torch
        import torchvision
    except ImportError as err:
        print(f"torchvision ssd300_vgg16: skipped ({err}; installing torch and torchvision "
              "adds the row: benchmarks/README.md says how)")
        return None
    if threads is not None:
        torch.set_num_threads(threads)
    build = torchvision.models.detection.ssd300_vgg16
    try:
        model = build(weights=None, weights_backbone=None, num_classes=len(VOC_CLASSES) + 1)
    except TypeError:  # torchvision < 0.13 names them pretrained / pretrained_backbone
        model = build(pretrained=False, pretrained_backbone=False,
                      num_classes=len(VOC_CLASSES) + 1)
    model.eval()
    images = [torch.from_numpy(image) for image in x.asnumpy()]

    def run() -> Sequence:
        with torch.no_grad():
            model(images)
        return []  # torch on the CPU has finished when the call returns

    return run


def report(batch: int, speeds: Dict[str, float]) -> None:
    """Images/s of every row, then the ratios the goals are stated in (above 1: faster)."""
    for name, ips in speeds.items():
        print(f"batch {batch:3d}  {name:24s} {ips:8.2f} images/s {1000 / ips:8.1f} ms/image")
    pairs = [(name, "GluonCV") for name in speeds if name != "GluonCV" and "only" not in name]
    pairs += [("gluon-ssd INT8", "GluonCV INT8"), ("gluon-ssd", "torchvision")]
    for ours, theirs in pairs:
        if {ours, theirs} <= set(speeds):
            label = f"ratio {ours} / {theirs}"
            print(f"batch {batch:3d}  {label:40s} {speeds[ours] / speeds[theirs]:8.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.amx:
        enable_amx()
    import mxnet as mx

    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"warm-up {args.warmup}, repeats {args.repeats}"
          + (", oneDNN may use AMX" if args.amx else ""))
    nets = build_networks()
    int8 = int8_networks(nets, args.calib_mode, args.calib_batches) if args.int8 else {}
    for batch in args.batch_sizes:
        x = mx.nd.random.normal(shape=(batch, 3, IMAGE_SIZE, IMAGE_SIZE))
        calls = end_to_end_calls({**nets, **int8}, x)
        torchvision = torchvision_call(x, args.threads)
        if torchvision is not None:
            calls["torchvision"] = torchvision
        if args.breakdown:
            calls.update(breakdown_calls(nets, x))
        report(batch, alternate(calls, batch, args.warmup, args.repeats))


if __name__ == "__main__":
    main()
