"""Argument types and checks of the ``gluon-ssd`` command line: the one home of "a finite number
in range", the size limits, and the flags several commands share.

Every type raises ``argparse.ArgumentTypeError``, which the parser prints as ONE line naming the
argument (``gluon-ssd CMD: error: argument --lr: ...``) with exit status 2, before any model,
dataset or image is loaded. The limits are stated in each message.
"""
from __future__ import annotations

import argparse
import math
import re
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

HW = Tuple[int, int]

# Network input sides (train, demo, export, quantize --image-size). The lower end is checked
# again against the model's own smallest input once the model is known
# (gluon_ssd.model.ssd.check_input_size); the upper end keeps one image's activations within a few
# GiB (VGG16's first layers hold 64 channels per pixel).
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 32, 2048
# Canvas sides and feature-map sides of `gluon-ssd anchors` (a canvas is H x W x 3 bytes).
MAX_CANVAS_SIDE = 4096
MAX_FEATURE_MAP_SIDE = 4096
# Anchors one feature map may have when they are computed (plot, --json): 1e6 anchors are 16 MB
# as float32 and about 80 MB of JSON; SSD512 has 24,564.
MAX_ANCHORS = 1_000_000
# Anchor shapes: sizes as fractions of the image height, ratios width / height, steps normalised.
MAX_ANCHOR_SIZE, MIN_RATIO, MAX_RATIO, MAX_STEP = 10.0, 1e-3, 1e3, 10.0

MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 1024
MAX_IMAGES = 10_000_000  # synthetic images per split
MAX_WORKERS = 256  # data loader processes, processes of a launched job
MAX_SEED = 2 ** 32 - 1  # numpy's seeds are 32-bit
MAX_CACHE_MB = 2.0 ** 20  # 1 TiB
MAX_LEARNING_RATE = 10.0
MAX_ZOOM_OUT = 16.0  # the augmentation's canvas: 16x each side is 256x the image's pixels
MAX_ZOOM_IN = 4.0  # a crop of a quarter of each side: more leaves too little of most images
MAX_TIMEOUT = 365 * 24 * 3600.0
MAX_TOPK = 100_000
MAX_BATCHES = 100_000  # calibration batches


def _fmt(value: float) -> str:
    """A limit as written in messages: ``10``, ``0.001``, ``31536000`` (no exponent for whole
    numbers)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def integer(low: int, high: int) -> Callable[[str], int]:
    """An argument type: a whole number in ``low..high``."""

    def parse(text: str) -> int:
        value = int(text) if re.fullmatch(r"\s*[+-]?\d+\s*", text) else None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer in {low}..{high}, got {text!r}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float, high: float, *, open_low: bool = False) -> Callable[[str], float]:
    """An argument type: a finite number in ``[low, high]`` (``(low, high]`` if ``open_low``);
    NaN, infinities and non-numbers are refused."""
    interval = f"{'(' if open_low else '['}{_fmt(low)}, {_fmt(high)}]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > low if open_low else value >= low
        if not (math.isfinite(value) and above and value <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number in {interval}, "
                                             f"got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def count(high: int) -> Callable[[str], int]:
    """An argument type: a whole number in ``1..high``."""
    return integer(1, high)


fraction = number(0.0, 1.0)  # thresholds, IoUs
seed = integer(0, MAX_SEED)
workers = integer(0, MAX_WORKERS)
learning_rate = number(0.0, MAX_LEARNING_RATE, open_low=True)
cache_mb = number(0.0, MAX_CACHE_MB)
timeout = number(0.0, MAX_TIMEOUT, open_low=True)
port = integer(1, 65535)
epochs = count(MAX_EPOCHS)
batch_size = count(MAX_BATCH_SIZE)
images = count(MAX_IMAGES)
topk = count(MAX_TOPK)
batches = count(MAX_BATCHES)
anchor_size = number(0.0, MAX_ANCHOR_SIZE, open_low=True)
ratio = number(MIN_RATIO, MAX_RATIO)
offset = number(0.0, 1.0)
zoom_out = number(1.0, MAX_ZOOM_OUT)
zoom_in = number(1.0, MAX_ZOOM_IN)


def export_batch(text: str):
    """``--batch`` of an ONNX export: ``dynamic`` or a batch size in ``1..MAX_BATCH_SIZE``."""
    if text.strip() == "dynamic":
        return "dynamic"
    try:
        return batch_size(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'dynamic' or an integer in "
                                         f"1..{MAX_BATCH_SIZE}, got {text!r}") from None


def step(text: str) -> float:
    """A step between anchor centres: ``-1`` (1 / the map's size) or a number in (0, 10]."""
    if re.fullmatch(r"\s*-1(\.0*)?\s*", text):
        return -1.0
    try:
        return number(0.0, MAX_STEP, open_low=True)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be -1 or a finite number in (0, "
                                         f"{_fmt(MAX_STEP)}], got {text!r}") from None


image_side = integer(MIN_IMAGE_SIDE, MAX_IMAGE_SIDE)  # a network input side in pixels


def _pair(text: str, pattern: str, example: str) -> HW:
    match = re.fullmatch(pattern, text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected {example}, got {text!r}")
    return int(match[1]), int(match[2])


def hw(text: str, high: int) -> HW:
    """``HxW`` (e.g. ``38x38``) -> ``(H, W)``, both in ``1..high``."""
    h, w = _pair(text, r"\s*(\d+)\s*[xX]\s*(\d+)\s*", "HxW such as 38x38")
    if not (1 <= h <= high and 1 <= w <= high):
        raise argparse.ArgumentTypeError(f"each side must be in 1..{high}, got {text!r}")
    return h, w


def feature_map(text: str) -> HW:
    """A feature map ``HxW``, sides ``1..MAX_FEATURE_MAP_SIDE``."""
    return hw(text, MAX_FEATURE_MAP_SIDE)


def canvas(text: str) -> HW:
    """A canvas ``HxW``, sides ``1..MAX_CANVAS_SIDE``."""
    return hw(text, MAX_CANVAS_SIDE)


def row_col(text: str) -> HW:
    """``ROW,COL`` -> ``(row, col)``, both >= 0 (checked against the grid later)."""
    return _pair(text, r"\s*(\d+)\s*,\s*(\d+)\s*", "ROW,COL such as 150,150")


def image_size(tokens: Sequence[str]) -> HW:
    """``--image-size`` of export / quantize as ``(H, W)``: ``H W``, ``HxW`` or one side ``S``,
    each side ``MIN_IMAGE_SIDE..MAX_IMAGE_SIDE``; ``ValueError`` otherwise."""
    text = "x".join(tokens) if len(tokens) == 2 else tokens[0] if len(tokens) == 1 else ""
    if re.fullmatch(r"\s*\d+\s*", text):
        text = f"{text}x{text}"
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"expected H W, HxW or one side, got {' '.join(tokens)!r}")
    h, w = int(match[1]), int(match[2])
    if not (MIN_IMAGE_SIDE <= h <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= w <= MAX_IMAGE_SIDE):
        raise ValueError(f"each side must be in {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE}, got "
                         f"{' '.join(tokens)!r}")
    return h, w


class ImageSize(argparse.Action):
    """``--image-size H W | HxW | S`` (``nargs="+"``) checked while parsing (:func:`image_size`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            setattr(namespace, self.dest, image_size(values))
        except ValueError as err:
            raise argparse.ArgumentError(self, str(err)) from None


def check_anchor_count(feature_map: HW, per_cell: int, why: str) -> None:
    """``ValueError`` if a map's anchors (computed for ``why``) exceed :data:`MAX_ANCHORS`."""
    total = feature_map[0] * feature_map[1] * per_cell
    if total > MAX_ANCHORS:
        raise ValueError(f"{why} computes all {feature_map[0]}x{feature_map[1]} x {per_cell} = "
                         f"{total} anchors, over the limit of {MAX_ANCHORS}; give a smaller "
                         "--feature-map (or --image-size, whose pixel grid is the default map)")


MAX_GPUS = 64


def gpus(text: str) -> Tuple[int, ...]:
    """``--gpus 0,1``: distinct GPU indices 0..MAX_GPUS - 1 (whether they exist is checked when
    the command starts, :func:`gluon_ssd.devices.gpu_contexts`)."""
    try:
        ids = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected GPU indices separated by commas, e.g. 0,1, got {text!r}") from None
    if any(not 0 <= i < MAX_GPUS for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"expected distinct GPU indices in 0..{MAX_GPUS - 1}, "
                                         f"got {text!r}")
    return ids


def add_gpus(p: argparse.ArgumentParser, what: str = "run on") -> None:
    """The ``--gpus`` flag of every command that runs a network."""
    p.add_argument("--gpus", type=gpus, metavar="0,1",
                   help=f"the GPUs to {what}, each batch split over them (default: the CPU; "
                        "needs MXNet's CUDA build: README, 'GPUs')")


def contexts(args: argparse.Namespace):
    """The devices of ``--gpus`` (``ValueError`` naming it when MXNet does not see them)."""
    from ..devices import gpu_contexts

    return gpu_contexts(args.gpus)


def preset(name: str):
    """A preset name (short names such as ``ssd300`` accepted) -> the :class:`Preset`."""
    from ..presets import get_preset

    try:
        return get_preset(name)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---------------------------------------------------------------------------------------------
# The decoding flags of detect and export (flags left out keep the model's settings).

DECODING = ("nms_threshold", "nms_topk", "max_detections", "force_suppress", "decoder")


def add_decoding(p: argparse.ArgumentParser, decoders: Sequence[str]) -> None:
    """The decoding flags of ``detect`` and ``export`` (default: the model's settings)."""
    p.add_argument("--nms", type=fraction, dest="nms_threshold", metavar="IOU",
                   help="NMS: of two boxes overlapping more than this IoU, the lower-scoring one "
                        "is dropped (default: the model's, 0.45)")
    p.add_argument("--topk", type=topk, dest="nms_topk", metavar="K",
                   help="best-scoring candidates that enter NMS (default: the model's, 400)")
    p.add_argument("--max-detections", type=topk, metavar="K",
                   help="detections kept per image after NMS (default: the model's, 100)")
    p.add_argument("--force-suppress", action="store_true", default=None,
                   help="suppress overlapping boxes across classes too (class-agnostic NMS)")
    p.add_argument("--decoder", choices=decoders,
                   help="multibox: each anchor's most probable class only; per_class: every "
                        "class above the score threshold (default: the model's, multibox)")


def decoding(args: argparse.Namespace) -> Dict[str, object]:
    """The DetectSpec fields given on the command line."""
    return {k: getattr(args, k) for k in DECODING if getattr(args, k) is not None}


def option_image(path: Optional[str]) -> Optional[np.ndarray]:
    """The ``--image`` file as ``(H, W, 3)`` uint8 (``None`` if not given); a ``ValueError``
    naming the option and the file if it cannot be read."""
    from ..data.io import read_image

    if path is None:
        return None
    try:
        return read_image(path)
    except ValueError as err:
        raise ValueError(f"argument --image: {err}") from None
