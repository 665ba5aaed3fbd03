"""One SSD300 training step (targets, forward, loss, backward, update): gluon-ssd next to GluonCV.

Both sides train the same network size, SSD300-VGG16 (atrous fc6/fc7, L2Norm, extras) for the
5 SyntheticShapes classes at 300x300, on the same batch of ``--batch-size`` images and labels
(pixel rows ``xmin, ymin, xmax, ymax, class``, padded with -1), with SGD (lr 1e-3, momentum 0.9,
weight decay 5e-4) and hard negative mining at 3:1:

* gluon-ssd: :meth:`gluon_ssd.train.Run.step` of a ``ssd300_vgg16`` run, the step the training
  loop runs (``MultiBoxTarget`` matching, :class:`~gluon_ssd.loss.SSDLoss`, ``Trainer.step``);
* GluonCV: ``ssd_300_vgg16_atrous_custom`` with the loop of its ``train_ssd.py``: targets from
  ``SSDTargetGenerator`` (here on the whole batch inside the step, as gluon-ssd does),
  ``gluoncv.loss.SSDMultiBoxLoss``, ``autograd.backward``, ``Trainer.step(1)``;
* gluon-ssd BF16 (unless ``--no-bf16``): the same run with ``TrainConfig.dtype = "bf16"``
  (AMP bfloat16 mixed precision, see :mod:`gluon_ssd.precision`).

Each step ends with ``mx.nd.waitall()`` so the asynchronous backward pass and update are timed.
Both networks are hybridized with static allocation. After ``--warmup`` untimed steps each, the
timed steps take turns (the order flips every repeat), the median of ``--repeats`` is quoted as
images/s, with the ratios gluon-ssd / GluonCV and BF16 / FP32 (above 1: faster).

BF16 in the same process: ``amp.init`` patches MXNet's operator functions for the whole process,
so the float32 networks are built and traced first (their graphs stay float32), and the BF16
run is built after it. The imperative operators of both losses then pass AMP's wrappers, which
leave float32 inputs as they are (a few microseconds per call against seconds per step).

``--threads N`` fixes ``OMP_NUM_THREADS`` as in ``bench_inference.py``. ``--amx`` (experimental,
as in ``bench_inference.py``) lets oneDNN 2.4.4 use AMX; measured here it made SSD300's BF16 step
about 2x faster than float32 (without AMX, oneDNN's AVX512-BF16 convolutions are slower than its
float32 ones on this CPU), but BF16 training of the narrow ``demo`` preset with AMX aborts with
heap corruption, so the package never enables it.

Examples::

    python benchmarks/bench_train_step.py --quick
    python benchmarks/bench_train_step.py --batch-size 8 --repeats 5 --threads 2
"""
from __future__ import annotations

import argparse
import os
import tempfile
from typing import Callable, Dict, Sequence

from bench_inference import alternate, enable_amx, set_threads

IMAGE_SIZE = 300
PRESET = "ssd300_vgg16"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per network")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per network first")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for mxnet (set before importing it)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false",
                        help="leave out the gluon-ssd BF16 row")
    parser.add_argument("--amx", action="store_true",
                        help="experimental: let oneDNN use AMX (see bench_inference.py)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 2, 1 warm-up, 2 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.warmup, args.repeats = 2, 1, 2
    return args


def gluon_ssd_run(batch_size: int, out: str, dtype: str = "float32"):
    """A :class:`gluon_ssd.train.Run` of SSD300 on SyntheticShapes (network traced, no data
    rendered yet)."""
    from gluon_ssd.train import Run, TrainConfig

    return Run(TrainConfig(preset=PRESET, data="synthetic", out=out, image_size=IMAGE_SIZE,
                           batch_size=batch_size, train_size=batch_size, val_size=batch_size,
                           progress=False, dtype=dtype))


def gluon_ssd_step(run, images, labels) -> Callable[[], Sequence]:
    import mxnet as mx

    def step() -> Sequence:
        run.step(images, labels)
        mx.nd.waitall()
        return []

    return step


def gluoncv_step(classes: Sequence[str], images, labels) -> Callable[[], Sequence]:
    """GluonCV's SSD300 training step on ``images (B, 3, 300, 300)`` and ``labels (B, M, 6)``
    (the layout of :mod:`gluon_ssd.data.labels`)."""
    import mxnet as mx
    from gluoncv import model_zoo
    from gluoncv.loss import SSDMultiBoxLoss
    from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
    from mxnet import autograd, gluon

    from gluon_ssd.data.labels import BOX, CLASS

    net = model_zoo.get_model("ssd_300_vgg16_atrous_custom", classes=list(classes),
                              pretrained_base=False, transfer=None)
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE)))
    targets = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                 negative_mining_ratio=-1)  # mining happens in the loss
    loss = SSDMultiBoxLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 1e-3, "wd": 5e-4, "momentum": 0.9})
    gt_boxes, gt_ids = labels[:, :, BOX], labels[:, :, CLASS:CLASS + 1]

    def step() -> Sequence:
        cls_targets, box_targets, _ = targets(anchors, None, gt_boxes, gt_ids)
        with autograd.record():
            cls_preds, box_preds, _ = net(images)
            sum_loss, _, _ = loss(cls_preds, box_preds, cls_targets, box_targets)
            autograd.backward(sum_loss)
        trainer.step(1)
        mx.nd.waitall()
        return []

    return step


def report(batch: int, speeds: Dict[str, float]) -> None:
    for name, ips in speeds.items():
        print(f"batch {batch:3d}  {name:18s} {ips:8.3f} images/s {batch / ips:8.2f} s/step")
    for ours, theirs in (("gluon-ssd", "GluonCV"), ("gluon-ssd BF16", "gluon-ssd")):
        if {ours, theirs} <= set(speeds):
            label = f"ratio {ours} / {theirs}"
            print(f"batch {batch:3d}  {label:34s} {speeds[ours] / speeds[theirs]:8.3f}")


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)
    if args.amx:
        enable_amx()
    import mxnet as mx

    print(f"mxnet {mx.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"batch {args.batch_size}, warm-up {args.warmup}, repeats {args.repeats}"
          + (", oneDNN may use AMX" if args.amx else ""))
    with tempfile.TemporaryDirectory() as out:
        run = gluon_ssd_run(args.batch_size, out)
        images, labels, _ = next(iter(run.train_loader.epoch(0)))
        calls = {"gluon-ssd": gluon_ssd_step(run, images, labels),
                 "GluonCV": gluoncv_step(run.classes, images, labels)}
        if args.bf16:  # after the float32 graphs are traced: amp.init changes the process
            calls["gluon-ssd BF16"] = gluon_ssd_step(
                gluon_ssd_run(args.batch_size, out, "bf16"), images, labels)
        report(args.batch_size, alternate(calls, args.batch_size, args.warmup, args.repeats))


if __name__ == "__main__":
    main()
