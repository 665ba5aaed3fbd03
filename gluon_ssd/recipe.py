"""The training recipe: what a run does where its config leaves the choice to the preset.

A config (``dataclasses.asdict`` of a :class:`TrainConfig`, or the one a checkpoint records) names what the user chose; ``None`` takes the preset's value. On a finite
dataset (anything but SyntheticShapes) a preset with a
:class:`~gluon_ssd.presets.FiniteDataSpec` trains by that recipe instead: epochs by images seen,
its augmentation and anchors. Each choice made for the data is explained in ``notes``, for the
log. Training and the resume check (:func:`gluon_ssd.run_folder.fixed_settings`) both resolve a
config here, so they cannot disagree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .presets import Preset, Spec


@dataclass
class TrainConfig(Spec):
    """What ``gluon-ssd train`` runs. ``None`` fields are resolved by :func:`choose_recipe` /
    :func:`choose_schedule`: the preset's value, or its recipe's on a finite dataset.

    Attributes:
        preset: preset name (``demo``, ``ssd300_vgg16``, ...).
        data: ``synthetic``, ``voc``, ``coco`` or a dataset folder.
        out: run folder (checkpoints, logs, pictures).
        data_root: root folder for ``voc``/``coco``.
        image_size: network input side in pixels while training (default: the preset's).
        detect_size: network input side at which the trained model detects: the validation
            during training, and ``detect``, ``evaluate`` and ``export`` of its checkpoints
            (default: :func:`detect_side`, ``image_size`` unless the images are zoomed in).
        train_size, val_size: number of synthetic images per split.
        cache_mb: memory per split for images once rendered (synthetic) or decoded, so that
            later epochs skip that work (:class:`~gluon_ssd.data.cache.ImageCache`); per loader
            process with ``num_workers`` > 0. 0: none.
        mining, augment: hard negative mining / the paper's augmentation on or off (default:
            the preset's; on a finite dataset its :class:`~gluon_ssd.presets.FiniteDataSpec`'s).
        flip, distort, zoom_in: without the paper's augmentation, flip half the images
            horizontally, distort their colours, crop around all their boxes up to ``zoom_in``
            times per side (1: no crop); defaults as ``augment``'s.
        anchors: ``"preset"``, ``"extend"`` (the preset's, or with ``init`` the initial
            model's, and more for the training boxes they miss), ``"fit"`` (all fitted to the
            training boxes before the network is built) or an anchor file (``gluon-ssd anchors
            --data ... --json``); default: the preset's choice for a finite dataset, else the
            preset's or with ``init`` the initial model's. The network's anchors are stored in
            its checkpoints.
        init: fine-tune from a trained gluon-ssd checkpoint (a path, or a shipped model's name
            such as ``demo``): backbone and box predictors kept, class predictors reset to this
            dataset's classes (:func:`~gluon_ssd.checkpoint.fine_tune_start`).
        resume: continue from ``out/checkpoint-last.params`` (which must exist), with the
            settings the run was trained with (:mod:`gluon_ssd.run_folder`); ``epochs`` may grow.
        overwrite: replace a run already in ``out`` (without it, and without ``resume``, a
            folder holding a run is refused).
        pretrained_base: ImageNet VGG16 parameter file for the base network.
        dtype: ``float32``, or ``bf16`` for bfloat16 mixed precision (``mxnet.contrib.amp`` on
            oneDNN; switches the whole process, see :mod:`gluon_ssd.precision`).
        gpus: the GPUs to train on, each batch split over them (``None``: the CPU; ``train``'s
            ``ctx`` argument takes any contexts). Not a setting of the run: a resume may use
            other devices.
        kvstore: ``local``, ``device``, ``dist_sync``, ``dist_async`` or ``horovod`` (see
            :mod:`gluon_ssd.distributed.cluster`); ``batch_size`` is per worker, rank 0 logs,
            evaluates and writes the checkpoints and logs (and its caller the pictures).
        record_workers: every worker writes ``worker-<rank>.jsonl`` / ``.params`` (see
            :class:`~gluon_ssd.distributed.cluster.WorkerRecord`), to check a distributed run.
    """

    preset: str = "demo"
    data: str = "synthetic"
    out: str = "runs/train"
    data_root: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    eval_every: Optional[int] = None
    image_size: Optional[int] = None
    detect_size: Optional[int] = None
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    cache_mb: float = 1024.0
    seed: int = 0
    num_workers: int = 0
    mining: Optional[bool] = None
    augment: Optional[bool] = None
    zoom_out: Optional[float] = None
    flip: Optional[bool] = None
    distort: Optional[bool] = None
    zoom_in: Optional[float] = None
    anchors: Optional[str] = None
    init: Optional[str] = None
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False
    pretrained_base: Optional[str] = None
    dtype: str = "float32"
    gpus: Optional[Tuple[int, ...]] = None
    progress: bool = True
    kvstore: str = "local"
    record_workers: bool = False


@dataclass(frozen=True)
class Recipe:
    """A config's settings, resolved.

    Attributes:
        batch_size, learning_rate, mining, augment, zoom_out, flip, distort, zoom_in: as in
            the preset's :class:`~gluon_ssd.presets.TrainSpec`.
        anchors: ``"preset"``, ``"extend"``, ``"fit"``, an anchor file, or ``None``: the
            initial model's (fine-tuning, ``init``).
        image_size, detect_size: the network input side while training and while detecting.
        notes: one line per choice made for the data, saying what and why.
    """

    batch_size: int
    learning_rate: float
    mining: bool
    augment: bool
    zoom_out: float
    flip: bool
    distort: bool
    zoom_in: float
    anchors: Optional[str]
    image_size: int
    detect_size: int
    notes: Tuple[str, ...] = ()


def choose_recipe(config: Mapping[str, Any], preset: Preset) -> Recipe:
    """The settings ``config`` trains ``preset`` with (every one but the schedule of epochs and
    evaluations, which depends on the dataset's size: :func:`choose_schedule`)."""
    spec = preset.train
    finite = preset.finite_recipe(str(config.get("data") or "synthetic"))
    notes = []
    augment = config.get("augment")
    if augment is None:
        augment = finite.augment if finite else spec.augment
        if finite:
            notes.append(f"augmentation {'on' if augment else 'off'}: {preset.name}'s recipe "
                         f"for a finite dataset (--{'no-' if augment else ''}augment overrides)")
    zoom_out = config.get("zoom_out")
    if zoom_out is None:
        zoom_out = finite.zoom_out if finite and finite.zoom_out else spec.zoom_out
        if finite and finite.zoom_out and augment:
            notes.append(f"zoom-out up to {zoom_out:g}x (the paper's {spec.zoom_out:g}x shrinks "
                         "small objects below the smallest anchors; --zoom-out overrides)")
    light = _light_augmentation(config, preset, augment, notes)
    anchors = config.get("anchors")
    if anchors is None and (finite or not config.get("init")):  # else the initial model's
        anchors = finite.anchors if finite else "preset"
        if finite and anchors != "preset":
            notes.append(f"anchors {anchors}: {preset.name}'s recipe for a finite dataset "
                         "(--anchors preset overrides)")
    batch_size = config.get("batch_size")
    if batch_size is None:
        batch_size = finite.batch_size if finite and finite.batch_size else spec.batch_size
        if finite and finite.batch_size:
            notes.append(f"batch size {batch_size}: {preset.name}'s recipe for a finite dataset, "
                         f"more steps than its {spec.batch_size} for endless data "
                         "(--batch-size overrides)")
    mining = config.get("mining")
    image_size = config.get("image_size") or preset.model.anchors.image_size
    zoom_in = 1.0 if augment else light["zoom_in"]
    detect_size = config.get("detect_size")
    if not detect_size:
        detect_size = detect_side(image_size, zoom_in)
        if detect_size != image_size:
            notes.append(f"detection at {detect_size} px: the zoom-in crops (up to {zoom_in:g}x, "
                         f"{(1 + zoom_in) / 2:g}x on average) show the network objects larger than "
                         f"whole images at {image_size} px do; whole images at {detect_size} px "
                         "show them about as large (--detect-size overrides)")
    return Recipe(batch_size=batch_size,
                  learning_rate=config.get("learning_rate") or spec.learning_rate,
                  mining=spec.mining if mining is None else mining, augment=augment,
                  zoom_out=zoom_out, **light, anchors=anchors, image_size=image_size,
                  detect_size=detect_size, notes=tuple(notes))


# Detection sides are multiples of this: at other sides the stride-16 and stride-32 feature maps
# round up, and their anchors, spread evenly over the image, drift off their cells
# (benchmarks/README.md measures the loss in COCO AP).
DETECT_ALIGN = 32


def detect_side(image_size: int, zoom_in: float) -> int:
    """The input side at which a network trained on ``image_size`` px images zoomed in up to
    ``zoom_in`` times per side (:func:`~gluon_ssd.data.transforms.zoom_in`; 1: none) detects:
    ``image_size`` times the crops' mean zoom ``(1 + zoom_in) / 2``, to the nearest multiple of
    :data:`DETECT_ALIGN` (``image_size`` itself without zoom-in).

    A crop resized to ``image_size`` shows each object larger than the whole image would, so
    the network learns objects at that size; a whole image at the larger side shows them so,
    with their detail (train on crops, detect on the whole image at a higher resolution: Touvron
    et al., "Fixing the train-test resolution discrepancy", NeurIPS 2019).
    """
    if zoom_in <= 1:
        return image_size
    return max(DETECT_ALIGN, DETECT_ALIGN * round(image_size * (1 + zoom_in) / 2 / DETECT_ALIGN))


# The augmentation without the paper's: each setting, its value when off, how the log names it
# and the flag that turns it off.
_LIGHT = (("flip", False, "horizontal flips", "--no-flip"),
          ("distort", False, "colour distortion", "--no-distort"),
          ("zoom_in", 1.0, "zoom-in up to {:g}x by crops that keep every box", "--zoom-in 1"))


def _light_augmentation(config: Mapping[str, Any], preset: Preset, augment: bool,
                        notes: List[str]) -> Dict[str, Any]:
    """``flip``, ``distort`` and ``zoom_in`` as ``config`` chooses, or as the preset's recipe
    for the data does (then said in ``notes`` if on; the paper's augmentation replaces them)."""
    finite = preset.finite_recipe(str(config.get("data") or "synthetic"))
    chosen = {}
    for name, off, what, flag in _LIGHT:
        value = config.get(name)
        if value is None:
            value = getattr(finite or preset.train, name)
            if finite and value != off and not augment:
                notes.append(f"{what.format(value)}: {preset.name}'s recipe for a finite "
                             f"dataset ({flag} overrides)")
        chosen[name] = value
    return chosen


@dataclass(frozen=True)
class Schedule:
    """How long a run trains and how often it evaluates.

    Attributes:
        epochs: passes over the training split.
        eval_every: the validation split's mAP after every ``eval_every``-th epoch and the last.
        notes: one line per choice the recipe made for the data, saying what and why.
    """

    epochs: int
    eval_every: int
    notes: Tuple[str, ...] = ()


def choose_schedule(config: Mapping[str, Any], preset: Preset, train_images: int) -> Schedule:
    """The config's epochs and ``eval_every``, else on a finite dataset the preset's recipe's:
    ``ceil(images_seen / train_images)`` epochs (the preset's own are for endless synthetic
    data) and about ``evaluations`` evaluations; else the preset's."""
    finite = preset.finite_recipe(str(config.get("data") or "synthetic"))
    spec, notes = preset.train, []
    epochs = config.get("epochs")
    if not epochs:
        epochs = max(1, math.ceil(finite.images_seen / train_images)) if finite else spec.epochs
        if finite:
            notes.append(f"{epochs} epochs: {finite.images_seen} images seen in all over "
                         f"{train_images} training images ({preset.name}'s own {spec.epochs} are "
                         "for endless synthetic data; --epochs overrides)")
    eval_every = config.get("eval_every")
    if not eval_every:
        eval_every = (math.ceil(epochs / finite.evaluations) if finite and finite.evaluations
                      else spec.eval_every)
        if finite and finite.evaluations and eval_every > 1:
            notes.append(f"validation every {eval_every} epochs and after the last: "
                         f"{preset.name}'s recipe for a finite dataset evaluates about "
                         f"{finite.evaluations} times, each one time not spent training "
                         "(--eval-every overrides)")
    return Schedule(epochs, eval_every, tuple(notes))
