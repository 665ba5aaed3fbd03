"""The ``gluon-ssd`` command line: one subcommand per stage, a thin argparse layer over the package.

Adding a subcommand ``x``: write ``_add_x(parser)`` (declares its arguments) and
``cmd_x(args) -> int`` (does the work, returns the exit status), and add a row to
:data:`COMMANDS`. Bad input is reported as ONE line on stderr with exit status 2: argparse does it
for malformed arguments (argument types raise ``argparse.ArgumentTypeError``), and :func:`main`
does it for any ``ValueError`` a command raises, so commands validate by raising ``ValueError``
with a message naming the argument and the value.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .anchors import (anchor_document, check_prior_args, feature_map_anchors, format_anchor_table,
                      layer_meta, num_anchors, preset_document, preset_table, shapes_on_image)
from .data.io import collect_truncated, list_images, read_image
from .distributed.cluster import KVSTORES
from .distributed.launch import DEFAULT_TIMEOUT, LAUNCHERS
from .model.head import DECODERS
from .precision import DTYPES
from .presets import Preset, get_preset, list_presets
from .quantize import CALIB_MODES
from .visualize import (blank_canvas, check_cell, default_canvas_size, plot_boxes,
                        plot_feature_map_anchors, plot_preset_anchors)

HW = Tuple[int, int]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: message`` on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------------------------------------
# Argument types (each raises ArgumentTypeError, which argparse prints with the argument's name).

def _hw(text: str) -> HW:
    """``HxW`` (e.g. ``38x38``) -> ``(H, W)``, both >= 1."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HxW such as 38x38, got {text!r}")
    h, w = int(match[1]), int(match[2])
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1x1, got {text!r}")
    return h, w


def _row_col(text: str) -> HW:
    """``ROW,COL`` -> ``(row, col)``, both >= 0."""
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected ROW,COL such as 150,150, got {text!r}")
    return int(match[1]), int(match[2])


def _positive(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _option_image(path: Optional[str]) -> Optional[np.ndarray]:
    """The ``--image`` file as ``(H, W, 3)`` uint8 (``None`` if not given); a ``ValueError``
    naming the option and the file if it cannot be read."""
    if path is None:
        return None
    try:
        return read_image(path)
    except ValueError as err:
        raise ValueError(f"argument --image: {err}") from None


def _preset(name: str) -> Preset:
    try:
        return get_preset(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---------------------------------------------------------------------------------------------
# gluon-ssd anchors

def _add_anchors(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", type=_preset, metavar="NAME",
                   help=f"all anchors of a preset: ssd300, ssd512 or one of {list_presets()}")
    p.add_argument("--feature-map", type=_hw, metavar="HxW",
                   help="feature map (default: the image's pixel grid, one cell per pixel)")
    p.add_argument("--sizes", type=_positive, nargs="+", metavar="S",
                   help="box sizes as fractions of the image height, e.g. 0.2 0.5")
    p.add_argument("--ratios", type=_positive, nargs="+", metavar="R",
                   help="aspect ratios width/height (default 1); ratios[0] applies to every size")
    p.add_argument("--steps", type=float, nargs=2, metavar=("Y", "X"),
                   help="distance between cell centres, normalised (default -1: 1 / map size)")
    p.add_argument("--offsets", type=float, nargs=2, metavar=("Y", "X"),
                   help="centre of a cell inside it, in cells (default 0.5 0.5)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--image", metavar="PATH", help="draw on this image")
    source.add_argument("--image-size", type=_hw, metavar="HxW",
                        help="draw on a blank canvas (default 300 high with the map's aspect, "
                             "or the preset's image size)")
    p.add_argument("--at", type=_row_col, metavar="ROW,COL",
                   help="the cell whose anchors are drawn (a pixel when the map is the pixel "
                        "grid); with --preset, a pixel of the image: each layer draws the cell "
                        "holding it. Default: the centre")
    p.add_argument("-o", "--output", metavar="PNG", help="write the plot here")
    p.add_argument("--json", metavar="PATH",
                   help="write the anchors (normalised corners, MultiBoxPrior's order) here")


# The arguments that describe one feature map's anchors (a preset fixes them all).
_MAP_ARGS = ("feature_map", "sizes", "ratios", "steps", "offsets")


def cmd_anchors(args: argparse.Namespace) -> int:
    """Print the anchor-shape table; optionally plot the anchors and write them as JSON."""
    if args.preset is not None:
        given = ["--" + k.replace("_", "-") for k in _MAP_ARGS if getattr(args, k) is not None]
        if given:
            raise ValueError(f"--preset fixes the anchors; drop {' '.join(given)}")
        return _preset_anchors(args)
    if args.sizes is None:
        raise ValueError("--sizes (or --preset) is required")
    return _map_anchors(args)


def _write_json(path: str, document: Any, indent: Optional[int] = None) -> None:
    """Write ``document`` as JSON to ``path``, creating its folder."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(document, f, indent=indent)


def _map_anchors(args: argparse.Namespace) -> int:
    sizes, ratios = args.sizes, args.ratios or [1.0]
    steps, offsets = args.steps or (-1.0, -1.0), args.offsets or (0.5, 0.5)
    check_prior_args(sizes, ratios, steps, offsets)
    image = _option_image(args.image)
    if image is None:
        image = blank_canvas(args.image_size or default_canvas_size(args.feature_map or (300, 300)))
    feature_map = args.feature_map or image.shape[:2]
    at = check_cell(args.at, feature_map, "--at") if args.at else None
    per_cell = num_anchors(sizes, ratios)
    print(format_anchor_table(shapes_on_image(sizes, ratios, feature_map, image.shape[:2])))
    print(f"{feature_map[0]}x{feature_map[1]} cells x {per_cell} anchors "
          f"= {feature_map[0] * feature_map[1] * per_cell} anchors")
    if args.output:
        plot_feature_map_anchors(feature_map, sizes, ratios, cells=[at] if at else None,
                                 steps=steps, offsets=offsets, image=image, path=args.output)
        print(f"wrote {args.output}")
    if args.json:
        anchors = feature_map_anchors(feature_map, sizes, ratios, steps, offsets)
        layer = layer_meta(feature_map, sizes, ratios, steps, offsets)
        _write_json(args.json, anchor_document(anchors, image.shape[:2], [layer]))
        print(f"wrote {len(anchors)} anchors to {args.json}")
    return 0


def _preset_anchors(args: argparse.Namespace) -> int:
    preset = args.preset
    spec = preset.model.anchors
    image = _option_image(args.image)
    if image is None:
        image = blank_canvas(args.image_size or (spec.image_size, spec.image_size))
    at = check_cell(args.at, image.shape[:2], "--at") if args.at else None
    print(preset_table(spec))
    if args.output:
        plot_preset_anchors(spec, image=image, at=at, title=preset.name, path=args.output)
        print(f"wrote {args.output}")
    if args.json:
        document = preset_document(spec, preset.name)
        _write_json(args.json, document)
        print(f"wrote {document['num_anchors']} anchors to {args.json}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd train

def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="demo", help=f"one of {list_presets()} (default: demo)")
    p.add_argument("--data", default="synthetic",
                   help="synthetic (default), voc, coco, or a dataset folder (VOC or COCO format)")
    p.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    p.add_argument("--out", default="runs/train", metavar="DIR", help="run folder")
    p.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    p.add_argument("--batch-size", type=int, help="images per batch (default: the preset's)")
    p.add_argument("--lr", type=float, dest="learning_rate", help="base learning rate")
    p.add_argument("--eval-every", type=int, help="evaluate VOC07 mAP every N epochs")
    p.add_argument("--image-size", type=int, help="network input side in pixels")
    p.add_argument("--train-size", type=int, help="synthetic training images")
    p.add_argument("--val-size", type=int, help="synthetic validation images")
    p.add_argument("--cache-mb", type=float, default=1024.0,
                   help="MiB per split kept of rendered synthetic images, so that later epochs "
                        "skip rendering (default 1024; 0: render every time)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, dest="num_workers",
                   help="data loader processes (0: load in the training process)")
    p.add_argument("--pretrained-base", metavar="PARAMS", help="ImageNet VGG16 parameter file")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="bf16: bfloat16 mixed precision (AMP on oneDNN's BF16 kernels; weights "
                        "stay float32); default float32")
    for name, what in (("mining", "hard negative mining"), ("augment", "the paper's augmentation")):
        flag = p.add_mutually_exclusive_group()
        flag.add_argument(f"--{name}", dest=name, action="store_true", default=None,
                          help=f"use {what} (default: the preset's choice)")
        flag.add_argument(f"--no-{name}", dest=name, action="store_false",
                          help=f"do not use {what}")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images, counted")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint-last.params")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--kvstore", default="local", choices=KVSTORES,
                   help="gradient exchange: local (one process, the default), device, dist_sync "
                        "or dist_async (parameter server: run under `gluon-ssd launch`), horovod "
                        "(run under horovodrun); --batch-size is per worker")
    p.add_argument("--record-workers", action="store_true",
                   help="every worker writes worker-RANK.jsonl (learning rate, loss, sample "
                        "indices and a parameter digest per step) and worker-RANK.params (final "
                        "weights) into --out")


def _train_config(args: argparse.Namespace):
    from .train import TrainConfig

    return TrainConfig.from_dict(vars(args), ignore_unknown=True)  # argparse adds command, run


def _positive_ints(args: argparse.Namespace, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def cmd_train(args: argparse.Namespace) -> int:
    """Train a preset; writes checkpoints, logs, the curve and detection pictures to --out."""
    from .report import write_run_pictures
    from .train import train

    _positive_ints(args, ["epochs", "batch_size", "eval_every", "image_size", "train_size",
                          "val_size"])
    result = train(_train_config(args))
    if result.rank == 0:  # the worker that evaluates and writes the run folder
        write_run_pictures(result.out)
        print(f"best VOC07 mAP {result.best_map:.4f}; run folder {result.out}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd launch

def _add_launch(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--num-workers", type=int, required=True, metavar="WORKERS",
                   help="training processes")
    p.add_argument("-s", "--num-servers", type=int, default=1, metavar="SERVERS",
                   help="parameter servers (default 1)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="local",
                   help="local: every process on this machine (default); ssh: on the hosts of -H")
    p.add_argument("-H", "--hostfile", metavar="FILE",
                   help="ssh: one host per line; the scheduler runs on the first, servers and "
                        "workers take the hosts in turn")
    p.add_argument("--host", metavar="ADDRESS",
                   help="the scheduler's address (default: 127.0.0.1 for local, the first host "
                        "for ssh)")
    p.add_argument("--port", type=int, help="the scheduler's port (default: a free one for "
                                            "local, 9091 for ssh)")
    p.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"stop the whole job when any process runs longer (default "
                        f"{DEFAULT_TIMEOUT:g})")
    p.add_argument("--workdir", metavar="DIR",
                   help="folder the command runs in (default: this one; by ssh it must exist on "
                        "every host)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="after --: the command every process runs, e.g. gluon-ssd train "
                        "--kvstore dist_sync ...")


def cmd_launch(args: argparse.Namespace) -> int:
    """Start a parameter-server job (scheduler, servers, workers); stop it all if one fails."""
    from .distributed.launch import LaunchConfig, launch, read_hostfile

    command = args.job[1:] if args.job[:1] == ["--"] else args.job
    cfg = LaunchConfig(command, args.num_workers, args.num_servers, args.launcher,
                       read_hostfile(args.hostfile) if args.hostfile else (), args.host,
                       args.port, args.timeout, args.workdir or os.getcwd())
    return launch(cfg)


# ---------------------------------------------------------------------------------------------
# gluon-ssd demo

def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="run folder")
    p.add_argument("--epochs", type=int, help="override the demo preset's epochs")
    p.add_argument("--train-size", type=int, help="synthetic training images per epoch")
    p.add_argument("--val-size", type=int, help="synthetic validation images")
    p.add_argument("--image-size", type=int, help="network input side in pixels")
    p.add_argument("--batch-size", type=int, help="images per batch")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: train the demo preset on SyntheticShapes, then plot SSD300's anchors."""
    from .demo import DEMO_PICTURES, run_demo

    _positive_ints(args, ["epochs", "train_size", "val_size", "image_size", "batch_size"])
    run_demo(args.out, epochs=args.epochs, train_size=args.train_size, val_size=args.val_size,
             image_size=args.image_size, batch_size=args.batch_size, progress=args.progress)
    print(f"wrote {args.out}: checkpoint-best.params, checkpoint-last.params, log.csv, curve.png, "
          f"detections.png, {', '.join(DEMO_PICTURES)}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd detect, gluon-ssd export

def _fraction(text: str) -> float:
    """A number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def _count(text: str) -> int:
    """An integer >= 1."""
    if not re.fullmatch(r"\s*\d+\s*", text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


# The DetectSpec fields the decoding flags override (flags left out keep the model's settings).
_DECODING = ("nms_threshold", "nms_topk", "max_detections", "force_suppress", "decoder")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    """The decoding flags of ``detect`` and ``export`` (default: the model's settings)."""
    p.add_argument("--nms", type=_fraction, dest="nms_threshold", metavar="IOU",
                   help="NMS: of two boxes overlapping more than this IoU, the lower-scoring one "
                        "is dropped (default: the model's, 0.45)")
    p.add_argument("--topk", type=_count, dest="nms_topk", metavar="K",
                   help="best-scoring candidates that enter NMS (default: the model's, 400)")
    p.add_argument("--max-detections", type=_count, metavar="K",
                   help="detections kept per image after NMS (default: the model's, 100)")
    p.add_argument("--force-suppress", action="store_true", default=None,
                   help="suppress overlapping boxes across classes too (class-agnostic NMS)")
    p.add_argument("--decoder", choices=DECODERS,
                   help="multibox: each anchor's most probable class only; per_class: every "
                        "class above the score threshold (default: the model's, multibox)")


def _decoding(args: argparse.Namespace) -> Dict[str, object]:
    """The DetectSpec fields given on the command line."""
    return {k: getattr(args, k) for k in _DECODING if getattr(args, k) is not None}


def _add_detect(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a checkpoint file (.params) or an export prefix")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files and folders of images (.jpg .jpeg .png .bmp)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for one annotated PNG per image and detections.json")
    p.add_argument("--threshold", type=_fraction, default=0.5,
                   help="lowest score kept, drawn and written (default 0.5)")
    _add_decoding(p)
    p.add_argument("--batch-size", type=_count, default=8, help="images per network call")
    p.add_argument("--preset", type=_preset, metavar="NAME",
                   help="stop unless the model is of this preset")
    p.add_argument("--classes", nargs="+", metavar="NAME",
                   help="stop unless the model has exactly these classes, in this order")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def _png_names(paths: Sequence[str]) -> List[str]:
    """One distinct file name ``STEM.png`` per input (``STEM-2.png``... for repeated stems)."""
    used, names = set(), []
    for path in paths:
        stem = Path(path).stem or "image"
        name, k = f"{stem}.png", 1
        while name in used:
            k += 1
            name = f"{stem}-{k}.png"
        used.add(name)
        names.append(name)
    return names


def cmd_detect(args: argparse.Namespace) -> int:
    """Detect objects in images and folders: an annotated PNG per image and one JSON (COCO
    results layout, boxes in each image's pixels) in --output. Unreadable images are named and
    counted, truncated JPEGs (detected on what could be decoded) named and counted, non-image
    files in folders counted; exit status 2 when no image could be read."""
    from .detect import coco_document, iter_detections, load_detector

    detector = load_detector(args.checkpoint, _decoding(args) or None,
                             preset=args.preset.name if args.preset else None,
                             classes=args.classes)
    paths, skipped = list_images(args.inputs)
    names = _png_names(paths)
    out = Path(args.output)
    failed, results = [], []
    with collect_truncated() as truncated:
        for image, found in iter_detections(detector, paths, args.threshold,
                                            batch_size=args.batch_size, progress=args.progress,
                                            on_error=failed.append):
            plot_boxes(image, found.boxes, class_ids=found.class_ids, scores=found.scores,
                       class_names=detector.classes, thresh=0.0, pixels=True,
                       title=f"{Path(found.source).name}\n{len(found)} detections "
                             f"(score >= {args.threshold:g})",
                       path=out / names[found.index])
            results.append(found)
    for err in failed:
        print(f"gluon-ssd detect: skipped: {err}", file=sys.stderr)
    for path in truncated:
        print(f"gluon-ssd detect: warning: truncated image {path} (detected on what could be "
              "decoded)", file=sys.stderr)
    counts = (f"{len(failed)} unreadable image(s), {len(skipped)} non-image folder "
              f"entries skipped, {len(truncated)} truncated image(s)")
    if not results:
        raise ValueError(f"no image could be processed ({counts})")
    document = dict(coco_document(results, detector.classes), model=detector.source,
                    threshold=args.threshold,
                    failed=[{"file_name": err.path, "error": str(err)} for err in failed],
                    skipped=skipped, truncated=truncated)
    _write_json(str(out / "detections.json"), document, indent=1)
    total = sum(len(r) for r in results)
    print(f"{len(results)} image(s), {total} detections with score >= {args.threshold:g}; "
          f"{counts}")
    print(f"wrote {len(results)} annotated PNG(s) and {out / 'detections.json'}")
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file (.params)")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX",
                   help="writes PREFIX-symbol.json, PREFIX-0000.params and PREFIX-meta.json")
    p.add_argument("--image-size", nargs="+", metavar="SIZE",
                   help="input size the graph is traced at and detection resizes to: H W, HxW "
                        "or one side (default: the checkpoint's training size)")
    p.add_argument("--threshold", type=_fraction, dest="score_threshold",
                   help="score threshold built into the graph (default: the model's, 0.01)")
    _add_decoding(p)


def _image_size(tokens: Sequence[str]) -> HW:
    """``--image-size`` as ``(H, W)``: ``H W``, ``HxW`` or one side ``S``."""
    text = "x".join(tokens) if len(tokens) == 2 else tokens[0] if len(tokens) == 1 else ""
    if re.fullmatch(r"\s*\d+\s*", text):
        text = f"{text}x{text}"
    try:
        return _hw(text)
    except argparse.ArgumentTypeError:
        raise ValueError(f"--image-size: expected H W, HxW or one side, got "
                         f"{' '.join(tokens)!r}") from None


def _checkpoint_model(args: argparse.Namespace, spec: Optional[Dict[str, object]] = None):
    """``(model, (H, W))``: the model of ``args.checkpoint`` (a checkpoint file, not an export)
    and the input size to export it at (``--image-size``, else its training size)."""
    from .detect import load_detector
    from .model import SSD, DetectionNet

    model = load_detector(args.checkpoint, spec)
    if not (isinstance(model.net, DetectionNet) and isinstance(model.net.ssd, SSD)):
        raise ValueError(f"{args.checkpoint} is an export; {args.command} takes a checkpoint file")
    return model, _image_size(args.image_size) if args.image_size else model.image_size


def cmd_export(args: argparse.Namespace) -> int:
    """Export a checkpoint as symbol JSON + params + metadata (preprocessing, classes, decoding)."""
    from .export import export_model

    overrides = _decoding(args)
    if args.score_threshold is not None:
        overrides["score_threshold"] = args.score_threshold
    detector, size = _checkpoint_model(args, overrides or None)
    paths = export_model(detector.net, args.output, size, preset=detector.preset)
    print(f"exported {detector.source} ({detector.preset or 'no preset'}, "
          f"{len(detector.classes)} classes, input {size[0]}x{size[1]}, {detector.spec})")
    print("wrote " + ", ".join(paths.values()))
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd evaluate

def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="CHECKPOINT_OR_EXPORT",
                   help="a checkpoint file (.params) or an export prefix")
    p.add_argument("--data", help="synthetic, voc, coco or a dataset folder (VOC or COCO "
                                  "format); default: the data the checkpoint was trained on")
    p.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    p.add_argument("--split", default="val", help="split to evaluate (default: val)")
    p.add_argument("--metric", choices=("voc07", "voc2010", "coco", "all"), default="all",
                   help="VOC07 11-point / VOC2010+ area mAP at IoU 0.5, COCO AP (default: all)")
    p.add_argument("--decoder", choices=DECODERS + ("both",),
                   help="decode with this decoder, or compare both on the same network "
                        "outputs (default: the model's own)")
    p.add_argument("--batch-size", type=_count, help="images per batch (default: training's)")
    p.add_argument("--val-size", type=_count,
                   help="synthetic images to evaluate (default: training's validation size)")
    p.add_argument("--seed", type=int, help="seed of the synthetic images (default: training's)")
    p.add_argument("--workers", type=int, default=0, dest="num_workers",
                   help="data loader processes (0: load in this process)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write metrics.json and the precision-recall plots here")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a checkpoint or export: print the per-class AP table and the mAPs; with
    --output, write metrics.json, pr_curves.png and one PR curve per class."""
    from .evaluation.metrics import METRICS
    from .evaluation.report import format_report, write_evaluation
    from .evaluation.run import evaluate_model

    result = evaluate_model(
        args.model, data=args.data, data_root=args.data_root, split=args.split,
        val_size=args.val_size, seed=args.seed, batch_size=args.batch_size,
        metrics=METRICS if args.metric == "all" else (args.metric,),
        decoders=DECODERS if args.decoder == "both" else args.decoder and (args.decoder,),
        num_workers=args.num_workers, progress=args.progress)
    print(format_report(result))
    if args.output:
        paths = write_evaluation(result, args.output)
        print(f"wrote {paths[0]} and {len(paths) - 1} precision-recall plots to {args.output}")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd convert

def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from-gluoncv", required=True, metavar="FILE",
                   help="a GluonCV VGG16 SSD parameter file, e.g. ~/.mxnet/models/"
                        "ssd_300_vgg16_atrous_voc-0e169fbb.params")
    p.add_argument("--preset", type=_preset, metavar="NAME",
                   help="ssd300_vgg16, ssd300_vgg16_coco (GluonCV's SSD300 for COCO) or "
                        "ssd512_vgg16 (default: the preset whose anchors the file has)")
    p.add_argument("--classes", nargs="+", metavar="NAME",
                   help="voc, coco, or the class names in order (default: VOC for 20 classes, "
                        "COCO for 80)")
    p.add_argument("-o", "--output", required=True, metavar="CHECKPOINT",
                   help="the gluon-ssd checkpoint to write (.params)")


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert a GluonCV SSD parameter file into a gluon-ssd checkpoint."""
    from .convert import GLUONCV_CLASSES, convert_gluoncv_ssd

    classes = args.classes
    if classes and len(classes) == 1 and classes[0] in GLUONCV_CLASSES:
        classes = classes[0]
    net, preset = convert_gluoncv_ssd(args.from_gluoncv, args.output,
                                      args.preset.name if args.preset else None, classes)
    size = net.spec.anchors.image_size
    print(f"converted {args.from_gluoncv}: preset {preset}, {net.num_classes} classes "
          f"({', '.join(net.classes[:3])}, ...)")
    print(f"wrote {args.output}; feed it RGB images resized to {size}x{size}; "
          "detect/evaluate --decoder per_class decode as GluonCV does")
    return 0


# ---------------------------------------------------------------------------------------------
# gluon-ssd quantize

def _add_quantize(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file (.params)")
    p.add_argument("--calib-data", required=True, metavar="DATA",
                   help="synthetic, voc, coco or a dataset folder (VOC or COCO format): its "
                        "training images calibrate the INT8 ranges")
    p.add_argument("--data-root", metavar="DIR", help="root folder of voc/coco")
    p.add_argument("--calib-batches", type=_count, default=10, metavar="N",
                   help="calibration batches (default 10)")
    p.add_argument("--batch-size", type=_count, default=8, help="images per batch (default 8)")
    p.add_argument("--calib-mode", choices=CALIB_MODES, default="naive",
                   help="naive: min/max of each output; entropy: KL-optimal ranges, slower "
                        "(default: naive)")
    p.add_argument("--image-size", nargs="+", metavar="SIZE",
                   help="input size: H W, HxW or one side (default: the checkpoint's training "
                        "size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration image order")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX",
                   help="writes PREFIX-symbol.json, PREFIX-0000.params and PREFIX-meta.json")
    p.add_argument("--quiet", dest="progress", action="store_false", help="no progress bar")


def cmd_quantize(args: argparse.Namespace) -> int:
    """Quantize a checkpoint to INT8 (oneDNN), calibrated on training images, and export it in
    the layout of ``gluon-ssd export`` (``detect`` and ``evaluate`` take the prefix)."""
    from .quantize import calibration_batches, export_quantized, quantize_model

    detector, size = _checkpoint_model(args)
    try:
        batches = calibration_batches(args.calib_data, size, detector.mean, detector.std,
                                      args.batch_size, root=args.data_root, seed=args.seed)
    except ValueError as err:
        raise ValueError(f"--calib-data {args.calib_data}: {err}") from None
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no oneDNN log lines between the bars
    int8 = quantize_model(detector.net, batches, args.calib_batches, args.calib_mode,
                          source=f"{args.calib_data} (train split)", progress=args.progress)
    paths = export_quantized(int8, args.output, size, preset=detector.preset)
    c = int8.ssd.calibration
    print(f"quantized {detector.source} to INT8 ({detector.preset or 'no preset'}, input "
          f"{size[0]}x{size[1]}): {c.mode} calibration on {c.images} images of {c.source}, "
          f"{', '.join(c.fp32_operators)} kept float32")
    print("wrote " + ", ".join(paths.values()))
    return 0


# ---------------------------------------------------------------------------------------------

Command = Tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
# name -> (help, add its arguments, run it)
COMMANDS: Dict[str, Command] = {
    "anchors": ("print, plot and export default boxes", _add_anchors, cmd_anchors),
    "train": ("train an SSD preset on a dataset", _add_train, cmd_train),
    "launch": ("run a command (gluon-ssd train --kvstore dist_sync ...) as a parameter-server "
               "job: scheduler, servers, workers", _add_launch, cmd_launch),
    "demo": ("train the demo preset on SyntheticShapes and plot anchors into --out",
             _add_demo, cmd_demo),
    "detect": ("detect objects in images: annotated PNGs and one JSON", _add_detect, cmd_detect),
    "export": ("export a checkpoint as symbol JSON + params + preprocessing metadata",
               _add_export, cmd_export),
    "evaluate": ("VOC07/VOC2010 mAP and COCO AP of a model on a dataset, PR curves",
                 _add_evaluate, cmd_evaluate),
    "convert": ("convert a GluonCV SSD parameter file into a gluon-ssd checkpoint",
                _add_convert, cmd_convert),
    "quantize": ("quantize a checkpoint to INT8 (oneDNN) and export it like `export`",
                 _add_quantize, cmd_quantize),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``gluon-ssd`` parser with one subparser per entry of :data:`COMMANDS`."""
    parser = _Parser(prog="gluon-ssd", description="SSD object detection in MXNet Gluon.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``gluon-ssd`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed as one line
        return int(exit_.code or 0)
    try:
        return args.run(args)
    except (ValueError, OSError) as err:  # bad input: a wrong value, a missing or corrupt file
        print(f"gluon-ssd {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
