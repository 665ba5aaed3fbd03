"""Named SSD configurations as plain data.

A preset is a :class:`Preset`: the network (:class:`ModelSpec`: backbone and default boxes) and
how to train it (:class:`TrainSpec`). Nothing here computes anything; ``anchors.py`` turns an
:class:`AnchorSpec` into boxes and ``model/`` turns a :class:`ModelSpec` into a network.

Pixel units: every size and step in an :class:`AnchorSpec` is in pixels of the square training
image of side ``image_size``. Dividing by ``image_size`` gives MultiBoxPrior's normalised units.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass, field, replace
from typing import Any, Dict, Mapping, Optional, Tuple, Type, TypeVar

from .boxes import DEFAULT_VARIANCES, BoxCoder

Conv = Tuple[int, int, int, int]  # (channels, kernel, stride, padding)
S = TypeVar("S", bound="Spec")


def _tuples(value: Any) -> Any:
    """JSON lists (nested too) -> tuples, as the frozen specs hold them."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _spec_type(hint: Any) -> Optional[type]:
    """The :class:`Spec` subclass a field's type hint names (``X`` or ``Optional[X]``), if any."""
    for kind in typing.get_args(hint) or (hint,):
        if isinstance(kind, type) and issubclass(kind, Spec):
            return kind
    return None


class Spec:
    """Base of gluon-ssd's configuration dataclasses (the presets' specs, the data and training
    configs): :meth:`from_dict` is the one way back from a dict (``dataclasses.asdict``'s output,
    a checkpoint's or an export's JSON, parsed command-line arguments)."""

    @classmethod
    def from_dict(cls: Type[S], d: Mapping[str, Any], source: str = "", *,
                  ignore_unknown: bool = False) -> S:
        """The spec whose fields ``d`` holds: lists become tuples, nested specs are rebuilt,
        absent fields keep their defaults.

        Args:
            d: field name -> value.
            source: where ``d`` comes from (e.g. a file name), to start error messages.
            ignore_unknown: leave out keys that are not fields (a wider record, such as a
                training config for the data config it contains), instead of refusing them.

        Raises:
            ValueError: ``d`` is not a mapping, has a field ``cls`` does not know (unless
                ``ignore_unknown``), or lacks one without a default.
        """
        where = f"{source}: " if source else ""
        if not isinstance(d, Mapping):
            raise ValueError(f"{where}{cls.__name__} must be a JSON object, got {d!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if ignore_unknown:
            d = {k: v for k, v in d.items() if k in fields}
        elif unknown:
            raise ValueError(f"{where}unknown {cls.__name__} field(s) {unknown}; it has "
                             f"{sorted(fields)}")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in d.items():
            kind = _spec_type(hints.get(name))
            nested = kind is not None and isinstance(value, Mapping)
            values[name] = kind.from_dict(value, source) if nested else _tuples(value)
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}bad {cls.__name__} {dict(d)}: {err}") from None

# The aspect-ratio sets of the paper, written as MultiBoxPrior wants them: ratio 1 first.
RATIOS_3 = (1.0, 2.0, 0.5)
RATIOS_5 = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)


@dataclass(frozen=True)
class AnchorSpec(Spec):
    """Default boxes of an SSD, one entry per feature map (layer k = 0 .. m-1).

    Attributes:
        image_size: side in pixels of the square image the sizes and steps refer to.
        feature_maps: side of each (square) feature map at ``image_size``, e.g. 38,19,10,5,3,1.
        sizes: ``m + 1`` box sizes in pixels. Layer k gets two square boxes, ``sizes[k]`` and
            ``sqrt(sizes[k] * sizes[k+1])`` (the paper's s_k and s'_k), and the ratios in
            ``ratios[k][1:]`` at ``sizes[k]``.
        ratios: aspect ratios (width / height) per layer, ratio 1 first, e.g. ``(1, 2, 0.5)``.
        steps: distance in pixels between neighbouring anchor centres on each layer.
        offset: centre of cell i is ``(i + offset) * step``.
        extra_sizes: per layer, more box sizes in pixels beyond the paper's two, each with all of
            the layer's ratios (empty: the paper's anchors). Fitted anchors use them for boxes
            between two layers' sizes, elongated ones especially, which the paper's form can
            only give a square box (``gluon_ssd.anchor_fit.fit_anchors``).
    """

    image_size: int
    feature_maps: Tuple[int, ...]
    sizes: Tuple[float, ...]
    ratios: Tuple[Tuple[float, ...], ...]
    steps: Tuple[float, ...]
    offset: float = 0.5
    extra_sizes: Tuple[Tuple[float, ...], ...] = ()

    def __post_init__(self):
        m = len(self.feature_maps)
        counts = {"sizes": (len(self.sizes), m + 1), "ratios": (len(self.ratios), m),
                  "steps": (len(self.steps), m)}
        if self.extra_sizes:
            counts["extra_sizes"] = (len(self.extra_sizes), m)
        for name, (found, wanted) in counts.items():
            if found != wanted:
                raise ValueError(f"AnchorSpec.{name} needs {wanted} entries for {m} feature "
                                 f"maps, got {found}")
        values = {"sizes": [self.sizes], "steps": [self.steps], "ratios": self.ratios,
                  "extra_sizes": self.extra_sizes}
        for name, groups in values.items():
            for k, group in enumerate(groups):
                bad = [v for v in group if not (isinstance(v, numbers.Real) and 0 < v < math.inf)]
                if bad or (name == "ratios" and not group):
                    where = f"[{k}]" if name in ("ratios", "extra_sizes") else ""
                    raise ValueError(f"AnchorSpec.{name}{where} must be positive numbers, got "
                                     f"{list(group)}")


@dataclass(frozen=True)
class BackboneSpec(Spec):
    """VGG16 as SSD uses it (atrous fc6/fc7, L2Norm on conv4_3) plus the extra feature layers.

    Attributes:
        layers: number of 3x3 convolutions in conv1 .. conv5.
        filters: their channels.
        fc_channels: channels of fc6 (3x3, dilation 6) and fc7 (1x1).
        extras: each extra feature layer as two convolutions ``(channels, kernel, stride, pad)``.
        width: channel multiplier applied to every convolution (keeps the topology).
        batch_norm: add BatchNorm after every convolution.
    """

    layers: Tuple[int, ...] = (2, 2, 3, 3, 3)
    filters: Tuple[int, ...] = (64, 128, 256, 512, 512)
    fc_channels: int = 1024
    extras: Tuple[Tuple[Conv, Conv], ...] = ()
    width: float = 1.0
    batch_norm: bool = False


@dataclass(frozen=True)
class DetectSpec(Spec):
    """Decoding and non-maximum suppression (MultiBoxDetection's settings).

    Attributes:
        nms_threshold: IoU above which the lower-scoring box of the same class is dropped.
        nms_topk: boxes kept (by score) before NMS.
        score_threshold: boxes under this class probability are dropped.
        max_detections: rows per image in the output.
        force_suppress: suppress across classes too (class-agnostic NMS).
        decoder: ``"multibox"`` (``contrib.MultiBoxDetection``: each anchor keeps only its
            most probable class) or ``"per_class"`` (every object class of every anchor above
            ``score_threshold`` is a candidate, NMS per class: the paper's Caffe
            ``DetectionOutput`` and GluonCV's SSD).
    """

    nms_threshold: float = 0.45
    nms_topk: int = 400
    score_threshold: float = 0.01
    max_detections: int = 100
    force_suppress: bool = False
    decoder: str = "multibox"


@dataclass(frozen=True)
class ModelSpec(Spec):
    """Everything that fixes the network's topology and its inputs.

    Attributes:
        backbone: the base network and extra layers.
        anchors: the default boxes (one layer per backbone output).
        mean, std: RGB normalisation applied to 0..1 images before the network.
        variances: the box coder's variances (x, y, w, h): the targets encode and the detection
            head decodes with :attr:`coder`, so the two always agree.
    """

    backbone: BackboneSpec
    anchors: AnchorSpec
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
    variances: Tuple[float, float, float, float] = DEFAULT_VARIANCES

    @property
    def coder(self) -> BoxCoder:
        """The box coder of this model (:class:`~gluon_ssd.boxes.BoxCoder`)."""
        return BoxCoder(self.variances)


@dataclass(frozen=True)
class TrainSpec(Spec):
    """Optimiser, schedule and recipe of a preset (used by ``train.py``).

    ``mining``: hard negative mining (3 negatives per positive) in the loss, else every
    background anchor counts; ``augment``: the paper's augmentation, else resize only;
    ``zoom_out``: the augmentation's largest zoom-out factor per side (the paper's 4; 1: none);
    ``flip``, ``distort``, ``zoom_in``: without the paper's augmentation (which does all three
    its own way), flip half the images horizontally, distort their colours, and crop them
    around all their boxes, zooming in up to ``zoom_in`` times per side (1: none; see
    :class:`~gluon_ssd.data.transforms.TrainTransform`).
    """

    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    epochs: int = 240
    warmup_epochs: float = 0.0
    schedule: str = "step"  # "step" or "cosine"
    lr_steps: Tuple[int, ...] = (160, 200)
    lr_factor: float = 0.1
    eval_every: int = 10
    mining: bool = True
    augment: bool = True
    zoom_out: float = 4.0
    flip: bool = False
    distort: bool = False
    zoom_in: float = 1.0


SYNTHETIC_DATA = "synthetic"  # the one dataset without an end: every other is finite
ANCHOR_CHOICES = ("preset", "extend", "fit")  # TrainConfig.anchors, besides an anchor file


@dataclass(frozen=True)
class FiniteDataSpec(Spec):
    """How a preset whose :class:`TrainSpec` is tuned for endless synthetic data trains on a
    finite dataset (a folder of a user's images, VOC, COCO) where the config leaves it open.

    Attributes:
        images_seen: the schedule by images seen: ``epochs = ceil(images_seen / training
            images)``, so that a 600-image set is seen often enough and a large one not for days.
        augment: the paper's augmentation (photometric, zoom-out, min-IoU crop, flip): a finite
            set repeats, and without it a small network learns the training images by heart.
        zoom_out: its largest zoom-out factor (``None``: the :class:`TrainSpec`'s).
        flip, distort, zoom_in: without the paper's augmentation, its lighter kind that keeps
            every object whole (as in :class:`TrainSpec`): more images to learn from, none
            harder to find. A zoom-in also sets the side the network detects at
            (:func:`gluon_ssd.recipe.detect_side`).
        batch_size: images per step (``None``: the :class:`TrainSpec`'s); a few hundred images
            learn more from more, smaller steps.
        anchors: ``"preset"``; ``"extend"``: the preset's plus anchors for the training boxes
            they miss (:func:`gluon_ssd.anchor_fit.extend_anchors`); or ``"fit"``: all fitted
            to the training boxes (:func:`gluon_ssd.anchor_fit.fit_anchors`).
        evaluations: about how many times a run measures the validation mAP (every
            ``ceil(epochs / evaluations)`` epochs and after the last; each one is time not spent
            training); ``None``: every :class:`TrainSpec` ``eval_every`` epochs.
    """

    images_seen: int
    augment: bool = True
    zoom_out: Optional[float] = None
    flip: bool = True
    distort: bool = False
    zoom_in: float = 1.0
    batch_size: Optional[int] = None
    anchors: str = "preset"
    evaluations: Optional[int] = None


@dataclass(frozen=True)
class Preset(Spec):
    """A named configuration: network, decoding and training (``finite``: the training recipe on
    finite datasets, when ``train`` is for synthetic data; ``None``: ``train`` for every dataset).
    """

    name: str
    model: ModelSpec
    detect: DetectSpec = field(default_factory=DetectSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    finite: Optional[FiniteDataSpec] = None

    def finite_recipe(self, data: str) -> Optional[FiniteDataSpec]:
        """The recipe for a finite dataset if ``data`` is one and this preset has one."""
        return None if data.lower() == SYNTHETIC_DATA else self.finite


SSD300_EXTRAS: Tuple[Tuple[Conv, Conv], ...] = (
    ((256, 1, 1, 0), (512, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 1, 0)),
    ((128, 1, 1, 0), (256, 3, 1, 0)),
)
SSD512_EXTRAS: Tuple[Tuple[Conv, Conv], ...] = (
    ((256, 1, 1, 0), (512, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 3, 2, 1)),
    ((128, 1, 1, 0), (256, 4, 1, 1)),
)
# Four stride-2 extras: every map halves (rounding up), so any input size down to 1x1 works.
HALVING_EXTRAS: Tuple[Tuple[Conv, Conv], ...] = SSD512_EXTRAS[:4]

SSD300_ANCHORS = AnchorSpec(
    image_size=300,
    feature_maps=(38, 19, 10, 5, 3, 1),
    sizes=(30, 60, 111, 162, 213, 264, 315),
    ratios=(RATIOS_3, RATIOS_5, RATIOS_5, RATIOS_5, RATIOS_3, RATIOS_3),
    steps=(8, 16, 32, 64, 100, 300),
)
# The paper's SSD300 for COCO (its Caffe model, and GluonCV's ssd_300_vgg16_atrous_coco): smaller
# boxes, 21 px (0.07) on conv4_3 and 45 px (0.15) on fc7.
SSD300_COCO_ANCHORS = replace(SSD300_ANCHORS, sizes=(21, 45, 99, 153, 207, 261, 315))
SSD512_ANCHORS = AnchorSpec(
    image_size=512,
    feature_maps=(64, 32, 16, 8, 4, 2, 1),
    sizes=(51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
    ratios=(RATIOS_3, RATIOS_5, RATIOS_5, RATIOS_5, RATIOS_5, RATIOS_3, RATIOS_3),
    steps=(8, 16, 32, 64, 128, 256, 512),
)
# The CPU demo: SSD300's topology at 1/8 width with BatchNorm on 192x192 images. Sizes are the
# paper's scales s_k = 0.2 ... 0.9 (Sec. 2.2, s_min = 0.2, s_max = 0.9) plus s_7 = 1.04 for the
# last layer's extra box, times 192 px. SSD300's Caffe/VOC sizes start at 0.1 for small objects;
# SyntheticShapes has none under 0.22 of the side, and with the paper's scales every object
# matches several times more anchors at IoU > 0.5, which trains faster (benchmarks/README.md
# has the measurement).
DEMO_ANCHORS = replace(SSD300_ANCHORS, image_size=192, feature_maps=(24, 12, 6, 3, 2, 1),
                       sizes=(38.4, 65.28, 92.16, 119.04, 145.92, 172.8, 199.68),
                       steps=(8, 16, 32, 64, 96, 192))  # SSD300's ratios

PRESETS: Dict[str, Preset] = {
    "ssd300_vgg16": Preset(
        "ssd300_vgg16",
        ModelSpec(BackboneSpec(extras=SSD300_EXTRAS), SSD300_ANCHORS),
    ),
    "ssd300_vgg16_coco": Preset(
        "ssd300_vgg16_coco",
        ModelSpec(BackboneSpec(extras=SSD300_EXTRAS), SSD300_COCO_ANCHORS),
    ),
    "ssd512_vgg16": Preset(
        "ssd512_vgg16",
        ModelSpec(BackboneSpec(extras=SSD512_EXTRAS), SSD512_ANCHORS),
    ),
    "demo": Preset(
        "demo",
        ModelSpec(BackboneSpec(extras=HALVING_EXTRAS, width=0.125, batch_norm=True), DEMO_ANCHORS),
        # The paper's decoding (Caffe's DetectionOutput): every class of every anchor is a
        # candidate, so an anchor unsure between two shapes still finds the object as its second
        # class, which MultiBoxDetection's one-class-per-anchor rule loses (benchmarks/README.md).
        detect=DetectSpec(decoder="per_class"),
        train=TrainSpec(
            optimizer="adam", learning_rate=2e-3, weight_decay=1e-4, batch_size=16, epochs=6,
            warmup_epochs=0.2, schedule="cosine", lr_steps=(), eval_every=1,
            # Hard negative mining as in the paper, but no augmentation: the synthetic data are
            # endless, so the paper's zoom-out/crop only make the images harder in a short CPU
            # budget (benchmarks/bench_demo_accuracy.py measures both).
            mining=True, augment=False,
        ),
        # A dataset of a few hundred images: a schedule by images seen (12,000: 20 epochs of 600
        # train in under 10 minutes on 2 slow cores, and reached the mAP of 15,000), in
        # batches of 4 (more steps), evaluated about 8 times (each evaluation is time not spent
        # training). An augmentation that keeps every object whole (colours, zoom-in crops
        # around all boxes, flips), not the paper's: in a CPU budget of minutes its zoom-out and
        # crops slowed learning far more than they regularised; the zoom-in also moves
        # detection to 256 px (recipe.detect_side), which measured the largest gain of all. The
        # preset's anchors extended for the boxes they miss (the small ones), not refitted: a
        # full refit raised the coverage more but not the mAP (benchmarks/bench_own_data.py
        # measures each choice on data unlike SyntheticShapes).
        finite=FiniteDataSpec(images_seen=12_000, augment=False, flip=True, distort=True,
                              zoom_in=1.6, batch_size=4, anchors="extend", evaluations=8),
    ),
}
ALIASES = {"ssd300": "ssd300_vgg16", "ssd512": "ssd512_vgg16"}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (``ssd300`` and ``ssd512`` are accepted as short names)."""
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {list_presets()}")
    return PRESETS[key]


def list_presets():
    """Names of all presets."""
    return sorted(PRESETS)


__all__ = [
    "AnchorSpec", "BackboneSpec", "DetectSpec", "ModelSpec", "TrainSpec", "Preset",
    "PRESETS", "get_preset", "list_presets",
]
