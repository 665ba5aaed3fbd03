"""Running detectors over a dataset split and scoring them: the one evaluation path that
training's validation and ``gluon-ssd evaluate`` share.

Both build their batches with :func:`evaluation_loader` (the evaluation transform: resize to the
network input and normalise) and score them with :func:`evaluate_many`, which takes every box
back to the **original image's pixels** (the batch's ``image_sizes``) before the metrics of
:mod:`gluon_ssd.evaluation.metrics` see it, so training logs the number ``gluon-ssd evaluate``
prints for the same checkpoint and split, to the last digit.

A detector here is a callable ``images (B, 3, H, W) -> (ids (B, K, 1), scores (B, K, 1), boxes
(B, K, 4))``, boxes normalised corners (what :class:`~gluon_ssd.model.head.DetectionNet` and an
exported graph return), rows with id -1 empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon
from tqdm import tqdm

from ..data.datasets import DataConfig, build_split
from ..data.labels import BOX, CLASS, PAD, check_classes
from ..data.transforms import Batch, DetectionLoader, EvalTransform
from ..detect import LoadedModel, load_detector
from ..devices import Contexts, parallel_apply
from ..model.head import DECODERS, DetectionHead, DetectionNet
from ..presets import get_preset
from .metrics import METRICS, DetectionEvaluator, Evaluation

# ids (B, K, 1), scores (B, K, 1), boxes (B, K, 4) normalised corners.
Detections = Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]
Predictor = Callable[[mx.nd.NDArray], Mapping[str, Detections]]

DEFAULT_BATCH_SIZE = 16  # for a model that records neither its training batch size nor a preset


def evaluation_loader(dataset: gluon.data.Dataset, image_size: Tuple[int, int],
                      mean: Sequence[float], std: Sequence[float], batch_size: int,
                      num_workers: int = 0) -> DetectionLoader:
    """The batches evaluation runs on: ``dataset`` in order, resized to ``image_size = (H, W)``
    and normalised with ``mean`` / ``std``, the last batch kept."""
    return DetectionLoader(dataset, EvalTransform(image_size, mean, std), batch_size,
                           shuffle=False, num_workers=num_workers)


def to_original_pixels(batch: Batch, boxes) -> Tuple[np.ndarray, np.ndarray]:
    """A batch's labels and a detector's boxes in pixels of each original image.

    Args:
        batch: labels ``(B, M, 6)`` in pixels of the network input ``(H, W)``, ``image_sizes``.
        boxes: ``(B, K, 4)`` normalised detection corners.

    Returns:
        ``boxes (B, K, 4)`` and ``labels (B, M, 6)`` float64, boxes in original pixels.
    """
    labels = _numpy(batch.labels).astype(np.float64)
    h, w = batch.images.shape[2:]
    heights, widths = np.asarray(batch.image_sizes, np.float64).T
    scale = np.stack([widths, heights, widths, heights], axis=1)[:, None, :]  # (B, 1, 4)
    labels[:, :, BOX] = labels[:, :, BOX] * scale / np.array([w, h, w, h])
    labels[labels[:, :, CLASS] < 0] = PAD  # padding rows stay -1 everywhere
    return _numpy(boxes).astype(np.float64) * scale, labels


def _numpy(a) -> np.ndarray:
    return a.asnumpy() if isinstance(a, mx.nd.NDArray) else np.asarray(a)


def evaluate_many(predict: Predictor, batches: Iterable[Batch], classes: Sequence[str], *,
                  metrics: Sequence[str] = METRICS, progress: bool = False,
                  total: Optional[int] = None) -> Dict[str, Evaluation]:
    """Evaluate several detectors (e.g. decoders) in one pass over ``batches``.

    Args:
        predict: ``images (B, 3, H, W)`` -> name -> ``(ids, scores, boxes)`` (see the module
            docstring); called once per batch.
        batches: :class:`~gluon_ssd.data.transforms.Batch` es, e.g. an
            :func:`evaluation_loader` epoch.
        classes: class names.
        metrics: any of :data:`~gluon_ssd.evaluation.metrics.METRICS`.
        progress: show a tqdm bar (``total``: the number of batches, for the bar).

    Returns:
        name -> :class:`~gluon_ssd.evaluation.metrics.Evaluation`, boxes scored in original
        image pixels. ``ValueError`` if there was no batch.
    """
    evaluators: Dict[str, DetectionEvaluator] = {}
    for batch in tqdm(batches, total=total, desc="evaluate", unit="batch",
                      disable=not progress, leave=False):
        images = batch.images.as_in_context(mx.cpu())  # loader workers hand over shared memory
        for name, (ids, scores, boxes) in predict(images).items():
            if name not in evaluators:
                evaluators[name] = DetectionEvaluator(classes, metrics)
            det_boxes, labels = to_original_pixels(batch, boxes)
            evaluators[name].update(_numpy(ids), _numpy(scores), det_boxes, labels,
                                    batch.image_sizes)
    if not evaluators:
        raise ValueError("nothing to evaluate: the data has no images")
    return {name: e.result() for name, e in evaluators.items()}


def evaluate(det_net: Callable[[mx.nd.NDArray], Detections], batches: Iterable[Batch],
             classes: Sequence[str], *, metrics: Sequence[str] = METRICS,
             progress: bool = False, total: Optional[int] = None) -> Evaluation:
    """:func:`evaluate_many` for one detector ``det_net``: images -> ``(ids, scores, boxes)``."""
    return evaluate_many(lambda images: {"": det_net(images)}, batches, classes,
                         metrics=metrics, progress=progress, total=total)[""]


def decoder_predictor(model: LoadedModel, decoders: Sequence[str]) -> Predictor:
    """``images -> {decoder: (ids, scores, boxes)}`` for each of ``decoders``, with the other
    decoding settings of ``model``.

    A model whose network is an SSD plus a detection head (a checkpoint, or an export decoded
    anew) runs its SSD once per batch and each decoder on the same raw outputs; an export that
    decodes in its own graph is loaded once per decoder.
    """
    unknown = [d for d in decoders if d not in DECODERS]
    if unknown:
        raise ValueError(f"unknown decoder(s) {unknown}; choose from {list(DECODERS)}")
    if model.spec is None:
        raise ValueError(f"{model.source} does not record its decoding settings, so its "
                         "decoder cannot be chosen; evaluate it without --decoder")
    specs = {d: replace(model.spec, decoder=d) for d in decoders}
    if isinstance(model.net, DetectionNet):
        ssd = model.net.ssd
        heads = {d: DetectionHead(s, model.net.head.coder) for d, s in specs.items()}
        for head in heads.values():
            head.hybridize()

        def all_heads(images: mx.nd.NDArray) -> Tuple[mx.nd.NDArray, ...]:
            raw = ssd(images)  # once, for every decoder
            return tuple(out for head in heads.values() for out in head(*raw))

        def predict(images: mx.nd.NDArray) -> Dict[str, Detections]:
            outputs = parallel_apply(all_heads, images, model.contexts)
            return {d: outputs[3 * k:3 * k + 3] for k, d in enumerate(heads)}
        return predict
    models = {d: load_detector(model.source, s, ctx=model.contexts, engine=model.engine,
                               precision=model.precision) for d, s in specs.items()}
    return lambda images: {d: m.predict(images) for d, m in models.items()}


# ---------------------------------------------------------------------------------------------
# A stored model on a dataset split.

@dataclass
class ModelEvaluation:
    """:func:`evaluate_model`'s result: the setting and one ``Evaluation`` per decoder.

    Attributes:
        source: the checkpoint file or export prefix.
        data, split: the dataset (name or folder) and split evaluated.
        num_images: images in the split.
        image_size: ``(H, W)`` network input.
        batch_size: images per batch.
        evaluations: decoder name (``"multibox"``, ``"per_class"``; ``"model"`` for an export
            that does not record its decoder) -> :class:`~gluon_ssd.evaluation.metrics.Evaluation`.
        unreadable: images of the split left out because they cannot be decoded or are
            truncated (``skip_bad``; not counted in ``num_images``).
    """

    source: str
    data: str
    split: str
    num_images: int
    image_size: Tuple[int, int]
    batch_size: int
    evaluations: Dict[str, Evaluation]
    unreadable: List[str] = field(default_factory=list)


def _data_config(model: LoadedModel, data: Optional[str], data_root: Optional[str],
                 val_size: Optional[int], seed: Optional[int],
                 skip_bad: Optional[bool]) -> DataConfig:
    """The data a checkpoint was trained on (its recorded training config; the defaults for an
    export or a converted checkpoint), with the given settings replaced."""
    config = DataConfig.from_dict(model.training_config, model.source, ignore_unknown=True)
    if data is not None and data != config.data:
        config = replace(config, data=data, data_root=data_root)
    elif data_root is not None:
        config = replace(config, data_root=data_root)
    given = (("val_size", val_size), ("seed", seed), ("skip_bad", skip_bad))
    return replace(config, **{k: v for k, v in given if v is not None})


def _batch_size(model: LoadedModel, batch_size: Optional[int]) -> int:
    """``batch_size``, else training's, else the preset's, else :data:`DEFAULT_BATCH_SIZE`."""
    return (batch_size or model.training_config.get("batch_size")
            or (get_preset(model.preset).train.batch_size if model.preset
                else DEFAULT_BATCH_SIZE))


def evaluate_model(path: str, *, data: Optional[str] = None, data_root: Optional[str] = None,
                   split: str = "val", val_size: Optional[int] = None,
                   seed: Optional[int] = None, batch_size: Optional[int] = None,
                   metrics: Sequence[str] = METRICS, decoders: Optional[Sequence[str]] = None,
                   num_workers: int = 0, progress: bool = True,
                   skip_bad: Optional[bool] = None, ctx: Contexts = None,
                   engine: Optional[str] = None, precision: Optional[str] = None
                   ) -> ModelEvaluation:
    """Evaluate a checkpoint or export on a dataset split (what ``gluon-ssd evaluate`` runs).

    Every setting left ``None`` takes the value the model was trained with (a checkpoint's
    recorded training config), so a checkpoint written by training is evaluated on exactly its
    validation images, batched as in training: the VOC07 mAP equals the one training logged.
    For an export, the defaults are ``synthetic`` data with seed 0.

    Args:
        path: a checkpoint file, an export prefix or an ONNX file
            (:func:`gluon_ssd.detect.load_detector`).
        data: ``synthetic``, ``voc``, ``coco`` or a dataset folder (VOC or COCO format).
        data_root: root folder of ``voc`` / ``coco``.
        split: the split (``val``; ``train``; VOC names such as ``2007_test``).
        val_size, seed: number of synthetic images and their seed.
        batch_size: images per batch.
        metrics: any of :data:`~gluon_ssd.evaluation.metrics.METRICS`.
        decoders: evaluate each of these decoders (:data:`~gluon_ssd.model.head.DECODERS`)
            on the same SSD outputs; ``None``: the model's own decoding.
        num_workers: data loader processes.
        progress: show a tqdm bar.
        skip_bad: leave out (and list in ``unreadable``) images that cannot be decoded or are
            truncated, instead of stopping at the first; ``None``: as in training.
        ctx: the device(s) to run on: one context or a list, over which each batch is split
            (default: the CPU).
        engine, precision: how an ONNX file runs (see :func:`~gluon_ssd.detect.load_detector`).

    Raises:
        ValueError: a missing or unreadable model or dataset, or a dataset whose classes are not
            the model's (both named).
        BadImageError: an image that cannot be decoded or is truncated (named), unless
            ``skip_bad``.
    """
    model = load_detector(path, ctx=ctx, engine=engine, precision=precision)
    config = _data_config(model, data, data_root, val_size, seed, skip_bad)
    dataset = build_split(config, split, model.image_size)
    check_classes(model.classes, f"{model.source} detects", dataset.classes,
                  f"{config.data!r} ({split}) has")
    batch_size = _batch_size(model, batch_size)
    loader = evaluation_loader(dataset, model.image_size, model.mean, model.std, batch_size,
                               num_workers)
    if decoders is None:
        name = model.spec.decoder if model.spec is not None else "model"
        predict: Predictor = lambda images: {name: model.predict(images)}  # noqa: E731
    else:
        predict = decoder_predictor(model, decoders)
    evaluations = evaluate_many(predict, loader.epoch(0), model.classes, metrics=metrics,
                                progress=progress, total=len(loader))
    return ModelEvaluation(model.source, config.data, split, len(dataset),
                           tuple(model.image_size), batch_size, evaluations,
                           list(dataset.stats.unreadable))


__all__ = ["Detections", "Predictor", "DEFAULT_BATCH_SIZE", "evaluation_loader",
           "to_original_pixels", "evaluate_many", "evaluate", "decoder_predictor",
           "ModelEvaluation", "evaluate_model"]
