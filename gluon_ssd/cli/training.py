"""``gluon-ssd train``, ``gluon-ssd demo`` and ``gluon-ssd launch`` (a parameter-server job)."""
from __future__ import annotations

import argparse
import os
from typing import Optional

from ..distributed.cluster import KVSTORES
from ..distributed.launch import DEFAULT_TIMEOUT, LAUNCHERS
from ..precision import DTYPES
from ..presets import list_presets
from . import options


def _add_sizes(p: argparse.ArgumentParser, train_size_help: str) -> None:
    """The size flags ``train`` and ``demo`` share (default: the preset's)."""
    p.add_argument("--epochs", type=options.epochs,
                   help=f"epochs, 1..{options.MAX_EPOCHS} (default: the preset's)")
    p.add_argument("--batch-size", type=options.batch_size,
                   help=f"images per batch, 1..{options.MAX_BATCH_SIZE} (default: the preset's)")
    p.add_argument("--image-size", type=options.image_side,
                   help=f"network input side in pixels, {options.MIN_IMAGE_SIDE}.."
                        f"{options.MAX_IMAGE_SIDE} (default: the preset's)")
    p.add_argument("--train-size", type=options.images, help=train_size_help)
    p.add_argument("--val-size", type=options.images, help="synthetic validation images")


def add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="demo", help=f"one of {list_presets()} (default: demo)")
    p.add_argument("--data", default="synthetic",
                   help="synthetic (default), voc, coco, or a dataset folder (VOC or COCO format)")
    p.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    p.add_argument("--out", default="runs/train", metavar="DIR", help="run folder")
    _add_sizes(p, "synthetic training images")
    p.add_argument("--detect-size", type=options.image_side,
                   help="network input side at which the trained model detects (validation, "
                        f"detect, evaluate, export), {options.MIN_IMAGE_SIDE}.."
                        f"{options.MAX_IMAGE_SIDE} (default: the training side, or with "
                        "--zoom-in its mean zoom times it, to a multiple of 32)")
    p.add_argument("--lr", type=options.learning_rate, dest="learning_rate",
                   help=f"base learning rate, in (0, {options.MAX_LEARNING_RATE:g}] (default: "
                        "the preset's)")
    p.add_argument("--eval-every", type=options.epochs, help="evaluate VOC07 mAP every N epochs")
    p.add_argument("--cache-mb", type=options.cache_mb, default=1024.0,
                   help="MiB per split kept of images once rendered (synthetic) or decoded, so "
                        "that later epochs skip that work (default 1024; 0: none)")
    p.add_argument("--seed", type=options.seed, default=0,
                   help=f"0..{options.MAX_SEED} (default 0)")
    p.add_argument("--workers", type=options.workers, default=0, dest="num_workers",
                   help="data loader processes (0: load in the training process)")
    p.add_argument("--pretrained-base", metavar="PARAMS", help="ImageNet VGG16 parameter file")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune from a trained gluon-ssd model of the same preset: a "
                        "checkpoint file or a shipped model (demo: trained on SyntheticShapes); "
                        "backbone and box predictors kept, class predictors reset to the data's "
                        "classes")
    p.add_argument("--anchors", metavar="preset|extend|fit|FILE",
                   help="the network's anchors: the preset's, extend (the preset's and more for "
                        "the training boxes they miss), fit (all fitted to the training boxes at "
                        "the start) or an anchor file from `gluon-ssd anchors --data "
                        "... --json FILE`. Default: the preset's, or with --init the initial "
                        "model's")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="bf16: bfloat16 mixed precision (AMP on oneDNN's BF16 kernels; weights "
                        "stay float32); default float32")
    for name, what in (("mining", "hard negative mining"), ("augment", "the paper's augmentation"),
                       ("flip", "horizontal flips of half the images without --augment"),
                       ("distort", "colour distortion of the images without --augment")):
        flag = p.add_mutually_exclusive_group()
        flag.add_argument(f"--{name}", dest=name, action="store_true", default=None,
                          help=f"use {what} (default: the preset's choice)")
        flag.add_argument(f"--no-{name}", dest=name, action="store_false",
                          help=f"do not use {what}")
    p.add_argument("--zoom-out", type=options.zoom_out, metavar="R",
                   help="the augmentation's largest zoom-out factor per side, "
                        f"1..{options.MAX_ZOOM_OUT:g} (1: none; default: the preset's, the "
                        "paper's 4)")
    p.add_argument("--zoom-in", type=options.zoom_in, metavar="R",
                   help="without --augment, crop each image around all its boxes, zooming in up "
                        f"to R times per side, 1..{options.MAX_ZOOM_IN:g} (1: none; default: the "
                        "preset's choice)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images, counted")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.params")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it or --resume, a folder "
                        "holding a run is refused)")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    options.add_gpus(p, "train on (with --kvstore dist_sync: this worker's)")
    p.add_argument("--kvstore", default="local", choices=KVSTORES,
                   help="gradient exchange: local (one process, the default), device, dist_sync "
                        "or dist_async (parameter server: run under `gluon-ssd launch`), horovod "
                        "(run under horovodrun); --batch-size is per worker")
    p.add_argument("--record-workers", action="store_true",
                   help="every worker writes worker-RANK.jsonl (learning rate, loss, sample "
                        "indices and a parameter digest per step) and worker-RANK.params (final "
                        "weights) into --out")


def _check_image_size(preset: str, image_size: Optional[int],
                      flag: str = "--image-size") -> None:
    """``ValueError`` if ``flag``'s side is under the smallest input the preset's network takes
    (checked before any data is built)."""
    from ..model.ssd import check_input_size
    from ..presets import get_preset

    if image_size is not None:
        check_input_size(get_preset(preset).model, (image_size, image_size), flag)


def cmd_train(args: argparse.Namespace) -> int:
    """Train a preset; writes checkpoints, logs, the curve and detection pictures to --out."""
    from ..report import write_run_pictures
    from ..train import TrainConfig, train

    _check_image_size(args.preset, args.image_size)
    _check_image_size(args.preset, args.detect_size, "--detect-size")
    # argparse adds command and run, which are no TrainConfig fields
    result = train(TrainConfig.from_dict(vars(args), ignore_unknown=True))
    if result.rank == 0:  # the worker that evaluates and writes the run folder
        write_run_pictures(result.out)
        print(f"best VOC07 mAP {result.best_map:.4f}; run folder {result.out}")
    return 0


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, a folder holding a run "
                        "is refused)")
    _add_sizes(p, "synthetic training images per epoch")
    options.add_gpus(p, "train on")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: train the demo preset on SyntheticShapes, then plot SSD300's anchors."""
    from ..demo import DEMO_PICTURES, run_demo

    _check_image_size("demo", args.image_size)
    run_demo(args.out, epochs=args.epochs, train_size=args.train_size, val_size=args.val_size,
             image_size=args.image_size, batch_size=args.batch_size, progress=args.progress,
             overwrite=args.overwrite, gpus=args.gpus)
    print(f"wrote {args.out}: checkpoint-best.params, checkpoint-last.params, log.csv, curve.png, "
          f"detections.png, {', '.join(DEMO_PICTURES)}")
    return 0


def add_launch(p: argparse.ArgumentParser) -> None:
    processes = options.count(options.MAX_WORKERS)
    p.add_argument("-n", "--num-workers", type=processes, required=True, metavar="WORKERS",
                   help=f"training processes, 1..{options.MAX_WORKERS}")
    p.add_argument("-s", "--num-servers", type=processes, default=1, metavar="SERVERS",
                   help=f"parameter servers, 1..{options.MAX_WORKERS} (default 1)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: every process on this machine (default); ssh: on the hosts of -H")
    p.add_argument("-H", "--hostfile", metavar="FILE",
                   help="ssh: one host per line; the scheduler runs on the first, servers and "
                        "workers take the hosts in turn")
    p.add_argument("--host", metavar="ADDRESS",
                   help="the scheduler's address (default: 127.0.0.1 for local, the first host "
                        "for ssh)")
    p.add_argument("--port", type=options.port,
                   help="the scheduler's port, 1..65535 (default: a free one for local, 9091 for "
                        "ssh)")
    p.add_argument("--timeout", type=options.timeout, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"stop the whole job when any process runs longer (default "
                        f"{DEFAULT_TIMEOUT:g}, at most {options.MAX_TIMEOUT:g})")
    p.add_argument("--workdir", metavar="DIR",
                   help="folder the command runs in (default: this one; by ssh it must exist on "
                        "every host)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="after --: the command every process runs, e.g. gluon-ssd train "
                        "--kvstore dist_sync ...")


def cmd_launch(args: argparse.Namespace) -> int:
    """Start a parameter-server job (scheduler, servers, workers); stop it all if one fails."""
    from ..distributed.launch import LaunchConfig, launch, read_hostfile

    command = args.job[1:] if args.job[:1] == ["--"] else args.job
    cfg = LaunchConfig(command, args.num_workers, args.num_servers, args.launcher,
                       read_hostfile(args.hostfile) if args.hostfile else (), args.host,
                       args.port, args.timeout, args.workdir or os.getcwd())
    return launch(cfg)
