"""INT8 quantization with oneDNN (MXNet's ``quantize_net``), exported in the float32 layout.

:func:`quantize_model` quantizes a detector's SSD, calibrated on training images
(:func:`calibration_batches`), and keeps the float32 detector head (softmax, decoding, NMS);
:func:`export_quantized` writes it in the three files of :func:`~gluon_ssd.export.export_model`
(the metadata adds ``"dtype": "int8"`` and how it was calibrated). The SSD's output nodes keep
their names, so an INT8 export can be re-decoded like a float32 one. Loading an export for
inference (:mod:`gluon_ssd.export`, :mod:`gluon_ssd.detect`) does not import this module.
"""
from __future__ import annotations

import dataclasses
import itertools
import warnings
from typing import Dict, Iterable, Optional, Sequence, Tuple

import mxnet as mx
from mxnet import gluon
from mxnet.contrib.quantization import quantize_net_v2
from tqdm import tqdm

from .data.datasets import get_dataset
from .data.transforms import DetectionLoader, EvalTransform
from .export import export_model
from .model.head import DetectionNet
from .presets import ModelSpec


CALIB_MODES = ("naive", "entropy")
# Operators kept in float32 in the INT8 graph. Flatten and Concat only lay the predictors' maps
# out as ``(B, N, C+1)`` / ``(B, N*4)``; quantized, they would requantize the class logits and
# box offsets of all layers to one common int8 scale, losing precision for no speed (their inputs
# are dequantized anyway after the float32 transposes). L2Normalization, the anchor generator
# and the detector (softmax, decoding, NMS) have no INT8 kernels and stay float32 by themselves.
FP32_OPERATORS = ("Flatten", "Concat")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """How an INT8 model was calibrated (recorded in its export's metadata).

    Attributes:
        mode: ``"naive"``: each quantized output's range is its min and max over the calibration
            images; ``"entropy"``: the range minimising the KL divergence between the float32
            and the int8 distribution of the output (clips rare outliers).
        batches, images: how many calibration batches and images were run.
        source: where the images came from, e.g. ``"synthetic (train split)"``.
        fp32_operators: operator types kept in float32.
    """

    mode: str
    batches: int
    images: int
    source: str = ""
    fp32_operators: Tuple[str, ...] = FP32_OPERATORS


class QuantizedSSD(gluon.HybridBlock):
    """An SSD whose convolutions, poolings and ReLUs run in INT8 (a ``SymbolBlock`` from
    ``quantize_net``), with the float32 SSD's ``spec`` and ``classes``, so that
    :class:`~gluon_ssd.model.head.DetectionNet` and :func:`export_model` take it as an SSD.

    Forward as :class:`~gluon_ssd.model.ssd.SSD`: ``x (B, 3, H, W)`` -> ``cls_preds (B, N, C+1)``,
    ``box_preds (B, N*4)``, ``anchors (1, N, 4)`` (normalised corners), all float32.
    """

    def __init__(self, graph: gluon.SymbolBlock, spec: ModelSpec, classes: Sequence[str],
                 calibration: Calibration, **kwargs):
        super().__init__(**kwargs)
        self.graph = graph
        self.spec = spec
        self.classes = tuple(classes)
        self.calibration = calibration

    def hybrid_forward(self, F, x):
        return self.graph(x)


class _CalibrationIter(mx.io.DataIter):
    """Image batches ``(B, 3, H, W)`` as the ``DataIter`` that ``quantize_net`` reads (input
    ``data``), ticking a progress bar per batch."""

    def __init__(self, batches: Sequence[mx.nd.NDArray], bar: tqdm):
        super().__init__(batches[0].shape[0])
        self.provide_data = [mx.io.DataDesc("data", batches[0].shape)]
        self.provide_label = []
        self._batches = batches
        self._bar = bar
        self._next = 0

    def reset(self) -> None:
        self._next = 0

    def next(self) -> mx.io.DataBatch:
        if self._next == len(self._batches):
            raise StopIteration
        batch = self._batches[self._next]
        self._next += 1
        self._bar.update(1)
        return mx.io.DataBatch([batch], pad=0)


def calibration_batches(data: str, image_size: Tuple[int, int], mean: Sequence[float],
                        std: Sequence[float], batch_size: int, *, root: Optional[str] = None,
                        seed: int = 0) -> Iterable[mx.nd.NDArray]:
    """Preprocessed images ``(batch_size, 3, H, W)`` from the training split of ``data``
    (``synthetic``, ``voc``, ``coco`` or a dataset folder, see
    :func:`~gluon_ssd.data.datasets.get_dataset`), resized to ``image_size`` without
    augmentation, in an order shuffled by ``seed``.

    Raises:
        ValueError: an unknown dataset or missing folder, or a split with fewer than
            ``batch_size`` images.
    """
    dataset = get_dataset(data, "train", root=root, size=tuple(image_size), seed=seed)
    if len(dataset) < batch_size:
        raise ValueError(f"the training split of {data!r} has {len(dataset)} images, fewer "
                         f"than one calibration batch of {batch_size}")
    loader = DetectionLoader(dataset, EvalTransform(tuple(image_size), mean, std), batch_size,
                             shuffle=True, seed=seed, last_batch="discard")
    return (batch.images.as_in_context(mx.cpu()) for batch in loader.epoch(0))


def quantize_model(net: DetectionNet, batches: Iterable[mx.nd.NDArray], num_batches: int,
                   mode: str = "naive", source: str = "", progress: bool = False) -> DetectionNet:
    """An INT8 copy of a float32 detector, calibrated on ``num_batches`` image batches.

    The SSD goes through ``mxnet.contrib.quantization.quantize_net`` (oneDNN): batch
    normalisation folded into the convolutions, which run in INT8 with ReLU and pooling
    (``uint8``/``int8`` chosen per output by its calibrated range); :data:`FP32_OPERATORS`, and
    every operator without an INT8 kernel, stay float32. The detector head on top (softmax,
    decoding, NMS) is ``net``'s own, in float32, with the same :class:`DetectSpec`.

    Args:
        net: the float32 detector (an SSD in a :class:`DetectionNet`); its weights are left
            unchanged (``quantize_net`` hybridizes its SSD again, without static allocation).
        batches: preprocessed images ``(B, 3, H, W)`` (see :func:`calibration_batches`); the
            first ``num_batches`` are used.
        num_batches: calibration batches to run (>= 1).
        mode: one of :data:`CALIB_MODES`.
        source: a description of the images, recorded in :class:`Calibration`.
        progress: show tqdm bars (loading, then the calibration passes).

    Returns:
        A :class:`DetectionNet` around a :class:`QuantizedSSD` (``net.ssd.calibration`` says how
        it was calibrated): ``x (B, 3, H, W)`` -> ``(ids, scores, boxes)`` as ``net``.

    Raises:
        ValueError: an unknown ``mode``, ``num_batches < 1``, no images in ``batches``, or a
            detector that is already quantized.
    """
    if mode not in CALIB_MODES:
        raise ValueError(f"unknown calibration mode {mode!r}; choose one of {CALIB_MODES}")
    if num_batches < 1:
        raise ValueError(f"at least one calibration batch is needed, got {num_batches}")
    if isinstance(net.ssd, QuantizedSSD):
        raise ValueError("the detector is already quantized")
    images = list(tqdm(itertools.islice(batches, num_batches), total=num_batches,
                       desc="calibration images", disable=not progress, leave=False))
    if not images:
        raise ValueError(f"no calibration images in {source or 'the calibration data'}")
    ssd = net.ssd
    with tqdm(total=len(images), desc=f"calibrate ({mode})", disable=not progress,
              leave=False) as bar, warnings.catch_warnings():
        # quantize_net builds its SymbolBlock without the input's dtype: a harmless warning.
        # (quantize_net_v2 is what quantize_net calls, minus its deprecation warning.)
        warnings.filterwarnings("ignore", message="Cannot decide type")
        graph = quantize_net_v2(ssd, quantized_dtype="auto", quantize_mode="full",
                                exclude_operators=list(FP32_OPERATORS),
                                calib_data=_CalibrationIter(images, bar), calib_mode=mode,
                                ctx=mx.cpu())
    calibration = Calibration(mode, len(images), sum(b.shape[0] for b in images), source)
    int8 = DetectionNet(QuantizedSSD(graph, ssd.spec, ssd.classes, calibration),
                        net.head.spec, net.head.coder)
    int8.hybridize()
    return int8


def export_quantized(net: DetectionNet, prefix: str, image_size: Tuple[int, int],
                     preset: Optional[str] = None) -> Dict[str, str]:
    """:func:`export_model` for a detector from :func:`quantize_model`: the same three files
    (``load_detector``, ``gluon-ssd detect`` and ``evaluate`` take them as any export), the
    metadata adding ``"dtype": "int8"`` and ``"quantization"`` (:class:`Calibration`'s fields).
    The graph needs an MXNet built with oneDNN (MKLDNN) to run."""
    if not isinstance(net.ssd, QuantizedSSD):
        raise ValueError("export_quantized takes a detector made by quantize_model; "
                         "use export_model for a float32 one")
    quantization = dict(dataclasses.asdict(net.ssd.calibration),
                        tool="mxnet.contrib.quantization.quantize_net (oneDNN)")
    return export_model(net, prefix, image_size, preset,
                        extra_meta={"dtype": "int8", "quantization": quantization})
