"""Detection on images: load a trained detector, run it on files or arrays of any size, and get
the boxes back in each image's own pixels.

Pipeline for one image: decode (:func:`~gluon_ssd.data.io.read_image`: EXIF orientation applied,
grayscale and RGBA made RGB, a truncated JPEG reported) -> resize to the detector's input size
``(H, W)`` and normalise (the evaluation transform,
:class:`~gluon_ssd.data.transforms.EvalTransform`) -> network -> rows with id -1 or a score under
the threshold dropped -> normalised corners multiplied by the ORIGINAL image's width and height.
The resize stretches the image (as in training), so a normalised box maps back to the original
pixels with that one multiplication, whatever the aspect ratio.

Boxes of a :class:`Detections` are corners ``xmin, ymin, xmax, ymax`` in continuous pixel
coordinates of the decoded image (pixel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)``); class ids
start at 0 (``classes[id]`` is the name).

A detector is a gluon-ssd checkpoint file or an export prefix (:func:`load_detector`). Its
decoding settings (a :class:`~gluon_ssd.presets.DetectSpec`: NMS threshold, top-k, class-agnostic
suppression, decoder) default to the preset's (checkpoint) or to those exported with the graph
(export) and can be overridden when loading; see :mod:`gluon_ssd.export` for how an exported
graph is re-decoded.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import mxnet as mx
import numpy as np
from PIL import Image
from tqdm import tqdm

from .boxes import corner_to_xywh, to_pixels
from .checkpoint import check_identity, load_checkpoint
from .data.io import BadImageError, read_image
from .data.transforms import EvalTransform
from .deploy import ONNX_SUFFIX, not_installed
from .devices import Contexts, as_contexts, parallel_apply
from .export import export_paths, export_prefix, exported_spec, import_model, read_export_meta
from .model.head import DetectionNet
from .presets import DetectSpec, get_preset
from .model_zoo import pretrained_names, resolve_model

HW = Tuple[int, int]
ImageInput = Union[str, "os.PathLike[str]", np.ndarray, mx.nd.NDArray, Image.Image]
SpecLike = Union[DetectSpec, Mapping[str, Any], None]
Outputs = Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]


@dataclass
class LoadedModel:
    """A detector ready to run, and what its input must look like.

    Attributes:
        net: ``(B, 3, H, W)`` float32 preprocessed images -> ``(ids (B, K, 1), scores (B, K, 1),
            boxes (B, K, 4))``, boxes normalised corners, rows with id -1 empty.
        classes: class names; id ``k`` is ``classes[k]``.
        image_size: ``(H, W)`` the images are resized to (a checkpoint's detection size,
            ``detect_size``, else its training size; an export's traced size).
        mean, std: preprocessing: RGB / 255, minus ``mean``, divided by ``std``.
        preset: the preset's name, ``None`` if not recorded.
        source: the checkpoint file, export prefix or ONNX file it was loaded from.
        spec: the decoding settings in effect (``None``: an export that did not record them).
        contexts: the devices ``net`` runs on (:meth:`predict` splits a batch over them).
        training_config: the ``TrainConfig`` fields a checkpoint recorded (data, seed, sizes);
            empty for an export or a converted checkpoint.
        engine, precision: what runs an ONNX file (``onnxruntime`` or ``openvino``; ``fp32``,
            ``bf16`` or ``int8``); ``None`` for MXNet.
    """

    net: Callable[[mx.nd.NDArray], Outputs]
    classes: Tuple[str, ...]
    image_size: HW
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    preset: Optional[str]
    source: str
    spec: Optional[DetectSpec] = None
    contexts: Tuple[mx.Context, ...] = (mx.cpu(),)
    training_config: Dict[str, Any] = field(default_factory=dict)
    engine: Optional[str] = None
    precision: Optional[str] = None

    def predict(self, images: mx.nd.NDArray) -> Outputs:
        """:attr:`net` on preprocessed ``images (B, 3, H, W)`` (on any device), the batch split
        over :attr:`contexts`: ``ids, scores, boxes`` on the first of them."""
        return parallel_apply(self.net, images, self.contexts)

    def preprocess(self, image: np.ndarray) -> mx.nd.NDArray:
        """``(h, w, 3)`` uint8 RGB -> ``(3, H, W)`` float32 network input (resized, normalised)."""
        transform = EvalTransform(self.image_size, self.mean, self.std)
        return transform(mx.nd.array(image, dtype="uint8"), np.zeros((0, 4), np.float32))[0]


@dataclass
class Detections:
    """The detections of one image, sorted by score (highest first).

    Attributes:
        source: the image's path, or ``<array i>`` / ``<image i>`` for an in-memory image.
        index: the image's position in the input sequence.
        image_size: ``(H, W)`` of the decoded image (after EXIF rotation): the pixels the boxes
            refer to.
        class_ids: ``(K,)`` int class ids (from 0).
        scores: ``(K,)`` float32 class probabilities.
        boxes: ``(K, 4)`` float32 corners ``xmin, ymin, xmax, ymax`` in pixels of the image.
        classes: the detector's class names.
    """

    source: str
    index: int
    image_size: HW
    class_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    classes: Tuple[str, ...]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def class_names(self) -> List[str]:
        """The class name of each detection."""
        return [self.classes[c] for c in self.class_ids]


# ---------------------------------------------------------------------------------------------
# Loading a detector.

def _resolve_spec(default: Optional[DetectSpec], spec: SpecLike, source: str
                  ) -> Optional[DetectSpec]:
    """``spec`` itself, or ``default`` with the fields of a mapping ``spec`` replaced."""
    if spec is None or isinstance(spec, DetectSpec):
        return spec or default
    if default is None:
        raise ValueError(f"{source} does not record its decoding settings, so they cannot be "
                         "partly overridden; pass a complete DetectSpec")
    return DetectSpec.from_dict({**dataclasses.asdict(default), **spec}, "decoding settings")


def preset_spec(preset: Optional[str]) -> DetectSpec:
    """The decoding settings of a preset (the defaults for a name that is not a preset)."""
    try:
        return get_preset(preset).detect if preset else DetectSpec()
    except ValueError:
        return DetectSpec()


def load_detector(path: Union[str, "os.PathLike[str]"], spec: SpecLike = None, *,
                  preset: Optional[str] = None, classes: Optional[Sequence[str]] = None,
                  ctx: Contexts = None, engine: Optional[str] = None,
                  precision: Optional[str] = None) -> LoadedModel:
    """Load a checkpoint file (``*.params`` from training or conversion), an export prefix or
    an ONNX file.

    Args:
        path: a checkpoint file, or an export prefix ``PREFIX`` (with ``PREFIX-symbol.json``,
            ``PREFIX-0000.params``, ``PREFIX-meta.json``; naming one of these files works too),
            or an ONNX file (``*.onnx``, ``gluon-ssd export --format onnx``: run by ONNX
            Runtime or OpenVINO, see :mod:`gluon_ssd.deploy.engines`), or the name of a shipped
            model (``"demo"``, see :mod:`gluon_ssd.model_zoo`).
        spec: decoding settings: a :class:`DetectSpec` replaces the model's, a mapping such as
            ``{"nms_threshold": 0.3}`` overrides only the fields it names. Default: the preset's
            settings (checkpoint) or the exported ones (export).
        preset, classes: when given, the model must be of this preset (short names such as
            ``ssd300`` accepted) / have these classes.
        ctx: the device(s) to run on: one context or a list, over which each batch is split
            (default: the CPU; an ONNX file runs on the CPU).
        engine, precision: an ONNX file's engine (``onnxruntime``, the default, or
            ``openvino``) and precision (``fp32``, ``bf16``, ``int8``; default: the file's).

    Raises:
        ValueError: ``path`` is neither, or is of another preset / class list (both named), or
            the settings cannot apply (see :func:`gluon_ssd.export.import_model`), or an
            engine or precision is asked of a model that is not ONNX or cannot give it.
    """
    path = os.fspath(path)
    preset = get_preset(preset).name if preset is not None else None
    ctx = tuple(as_contexts(ctx))
    if path.endswith(ONNX_SUFFIX):
        if ctx != (mx.cpu(),):
            raise ValueError(f"--gpus: {path} is an ONNX file, which its engines run on the CPU")
        return _load_onnx(path, spec, preset, classes, engine, precision)
    if engine is not None or precision is not None:
        raise ValueError(f"--engine and --precision apply to ONNX files (*{ONNX_SUFFIX}), not "
                         f"to {path}")
    prefix = export_prefix(path)
    if prefix is not None:
        return _load_export(prefix, spec, preset, classes, ctx)
    path = resolve_model(path)
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such checkpoint file, export prefix (no "
                         f"{export_paths(path)['symbol']} either) or shipped model "
                         f"{list(pretrained_names())}")
    ssd, meta = load_checkpoint(path, preset, classes, ctx)
    detect_spec = _resolve_spec(preset_spec(meta.get("preset")), spec, path)
    net = DetectionNet(ssd, detect_spec)
    net.hybridize()
    side = meta.get("detect_size") or meta.get("image_size") or ssd.spec.anchors.image_size
    return LoadedModel(net, tuple(ssd.classes), (int(side), int(side)), tuple(ssd.spec.mean),
                          tuple(ssd.spec.std), meta.get("preset"), path, detect_spec, ctx,
                          meta.get("config") or {})


def _load_export(prefix: str, spec: SpecLike, preset: Optional[str],
                 classes: Optional[Sequence[str]], ctx: Tuple[mx.Context, ...]) -> LoadedModel:
    """:func:`load_detector` for an export prefix."""
    meta = read_export_meta(prefix)
    check_identity(prefix, meta.get("preset"), meta["classes"], preset, classes)
    detect_spec = _resolve_spec(exported_spec(meta, prefix), spec, prefix)
    block, meta = import_model(prefix, ctx, detect_spec)
    block.hybridize()
    return _exported(block, meta, prefix, detect_spec, ctx)


def _exported(net: Callable[[mx.nd.NDArray], Outputs], meta: Dict[str, Any], source: str,
              spec: Optional[DetectSpec], ctx: Tuple[mx.Context, ...], **runtime
              ) -> LoadedModel:
    """The :class:`LoadedModel` of an exported ``net`` (MXNet export or ONNX file) from its
    metadata (classes, input size, preprocessing)."""
    info = meta["input"]
    return LoadedModel(net, tuple(meta["classes"]), tuple(info["image_size"]),
                       tuple(info["mean"]), tuple(info["std"]), meta.get("preset"), source,
                       spec, ctx, **runtime)


def _load_onnx(path: str, spec: SpecLike, preset: Optional[str],
               classes: Optional[Sequence[str]], engine: Optional[str],
               precision: Optional[str]) -> LoadedModel:
    """:func:`load_detector` for an ONNX file, on ``engine`` at ``precision``."""
    from .deploy.engines import open_session

    try:  # imported here: onnx, onnxruntime and openvino load only when an ONNX file is
        from .deploy.onnx_model import read_onnx, redecode
    except ImportError as err:
        raise not_installed(err, path) from None

    model, meta = read_onnx(path)
    check_identity(path, meta.get("preset"), meta["classes"], preset, classes)
    detect_spec = _resolve_spec(exported_spec(meta, path), spec, path)
    model, meta = redecode(model, meta, detect_spec, path)
    batch = meta.get("batch")
    session = open_session(model.SerializeToString(), engine, precision,
                           file_precision=meta.get("precision", "fp32"),
                           batch=batch if isinstance(batch, int) else None)
    return _exported(session, meta, path, detect_spec, (mx.cpu(),), engine=session.engine,
                     precision=session.precision)


# ---------------------------------------------------------------------------------------------
# Images.

def _source(image: ImageInput, index: int) -> str:
    if isinstance(image, Image.Image):
        return f"<image {index}>"
    if isinstance(image, (np.ndarray, mx.nd.NDArray)):
        return f"<array {index}>"
    return os.fspath(image)


def _as_sequence(images: Union[ImageInput, Sequence[ImageInput]]) -> List[ImageInput]:
    """One image (path, PIL image, 2-D/3-D array) as a list of one; a sequence as a list."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, mx.nd.NDArray)) and images.ndim in (2, 3):
        return [images]
    return list(images)


# ---------------------------------------------------------------------------------------------
# Detection.

def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")


def iter_detections(detector: LoadedModel, images: Union[ImageInput, Sequence[ImageInput]],
                    threshold: float = 0.5, *, batch_size: int = 8, progress: bool = False,
                    on_error: Optional[Callable[[BadImageError], None]] = None
                    ) -> Iterator[Tuple[np.ndarray, Detections]]:
    """Detect in ``images`` batch by batch, yielding ``(image (H, W, 3) uint8, Detections)``.

    Detections with a score under ``threshold`` are dropped. An image that cannot be read raises
    its :class:`BadImageError`, or with ``on_error`` is passed to it and skipped. A tqdm bar
    counts images when ``progress``.
    """
    _check_threshold(threshold)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    items = _as_sequence(images)
    with tqdm(total=len(items), desc="detect", unit="image", disable=not progress) as bar:
        for start in range(0, len(items), batch_size):
            loaded = []
            for index in range(start, min(start + batch_size, len(items))):
                try:
                    loaded.append((index, read_image(items[index])))
                except BadImageError as err:
                    bar.update(1)
                    if on_error is None:
                        raise
                    on_error(err)
            if not loaded:
                continue
            batch = mx.nd.stack(*[detector.preprocess(image) for _, image in loaded])
            outputs = detector.predict(batch)
            ids, scores, boxes = (o.asnumpy() for o in outputs)
            for row, (index, image) in enumerate(loaded):
                keep = (ids[row, :, 0] >= 0) & (scores[row, :, 0] >= threshold)
                yield image, Detections(
                    _source(items[index], index), index, image.shape[:2],
                    ids[row, keep, 0].astype(np.int64), scores[row, keep, 0].astype(np.float32),
                    to_pixels(boxes[row, keep], image.shape[:2]).astype(np.float32),
                    detector.classes)
                bar.update(1)


def detect(model: Union[LoadedModel, str, "os.PathLike[str]"],
           images: Union[ImageInput, Sequence[ImageInput]], threshold: float = 0.5, *,
           spec: SpecLike = None, batch_size: int = 8, progress: bool = False,
           on_error: Optional[Callable[[BadImageError], None]] = None,
           ctx: Contexts = None) -> List[Detections]:
    """Detect objects in one image or a sequence of images.

    Args:
        model: a :class:`LoadedModel`, or a checkpoint file / export prefix to load (with
            ``spec``, see :func:`load_detector`).
        images: paths, PIL images or uint8 arrays (any size, aspect ratio, grayscale / RGB /
            RGBA; EXIF orientation applied), or one of them.
        threshold: the lowest score kept.
        batch_size: images per network call.
        progress: show a tqdm bar.
        on_error: called with the :class:`BadImageError` of each unreadable file, which is then
            skipped (default: raise it).
        ctx: the device(s) a model loaded here runs on (see :func:`load_detector`).

    Returns:
        One :class:`Detections` per image read, boxes in that image's pixels.

    Example::

        from gluon_ssd.detect import detect
        for d in detect("runs/demo/checkpoint-best.params", ["a.jpg", "b.png"], threshold=0.4):
            print(d.source, list(zip(d.class_names, d.scores, d.boxes.round())))
    """
    if isinstance(model, LoadedModel):
        if spec is not None or ctx is not None:
            raise ValueError("spec and ctx apply when a detector is loaded: pass them to "
                             "load_detector")
        detector = model
    else:
        detector = load_detector(model, spec, ctx=ctx)
    return [d for _, d in iter_detections(detector, images, threshold, batch_size=batch_size,
                                          progress=progress, on_error=on_error)]


# ---------------------------------------------------------------------------------------------
# Output.

def coco_results(results: Sequence[Detections]) -> List[Dict[str, Any]]:
    """Detections in COCO's results layout, one dict per box: ``image_id`` (the image's
    ``index``), ``file_name``, ``category_id`` (class id, from 0), ``bbox`` ``[x, y, width,
    height]`` in pixels of the image, ``score``."""
    rows = []
    for d in results:
        for c, s, box in zip(d.class_ids, d.scores, corner_to_xywh(d.boxes)):
            rows.append({"image_id": d.index, "file_name": d.source, "category_id": int(c),
                         "bbox": [round(float(v), 2) for v in box],
                         "score": round(float(s), 5)})
    return rows


def coco_document(results: Sequence[Detections], classes: Sequence[str]) -> Dict[str, Any]:
    """One JSON-able document: ``categories`` (``id`` = class id, ``name``), ``images`` (``id``,
    ``file_name``, ``height``, ``width``) and ``detections`` (:func:`coco_results`), so that
    ``pycocotools.coco.COCO`` can load the first two and ``loadRes`` the third."""
    return {"categories": [{"id": i, "name": name} for i, name in enumerate(classes)],
            "images": [{"id": d.index, "file_name": d.source, "height": int(d.image_size[0]),
                        "width": int(d.image_size[1])} for d in results],
            "detections": coco_results(results)}
