"""INT8 without MXNet: ONNX Runtime's static quantization of the SSD graph, in QDQ form.

:func:`quantize_ssd` takes the SSD alone (``data -> cls_preds, box_preds``, see
:func:`~gluon_ssd.deploy.onnx_model.ssd_model`), folds its BatchNorm layers into the convolutions
(``quant_pre_process``), and quantizes the convolutions and max pools: weights int8 per output
channel, activations uint8 with ranges calibrated on preprocessed images (``naive``: the min and
max seen, ``entropy``: the range minimising the KL divergence). The quantized graph is QDQ
(``QuantizeLinear`` / ``DequantizeLinear`` pairs around float operators), which ONNX Runtime runs
with its int8 kernels and OpenVINO reads as its own low-precision graph: one INT8 file for both
engines. As with MXNet's INT8 (:mod:`gluon_ssd.quantize`), the layout operators (``Transpose``,
``Flatten``, ``Concat``, ``Reshape``), the L2Norm and the detection head stay float32.
"""
from __future__ import annotations

import itertools
import os
import tempfile
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import numpy as np
import onnx
from onnx import ModelProto

from . import INPUT, not_installed

# gluon-ssd's calibration modes (as ``gluon-ssd quantize``) -> ONNX Runtime's CalibrationMethod.
CALIBRATION_METHODS = {"naive": "MinMax", "entropy": "Entropy"}
QUANTIZED_OPERATORS = ("Conv", "MaxPool")


def _reader(batches: Iterator[np.ndarray]):
    """An ONNX Runtime ``CalibrationDataReader`` over ``batches``, counting the images."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.images = 0
            self.batches = 0

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            batch = next(batches, None)
            if batch is None:
                return None
            self.batches += 1
            self.images += len(batch)
            return {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}

    return Reader()


def quantize_ssd(model: ModelProto, batches: Iterable[np.ndarray], num_batches: int,
                 mode: str = "naive") -> Tuple[ModelProto, Dict[str, Any]]:
    """The SSD graph ``model`` in INT8 (QDQ), calibrated on the first ``num_batches`` of
    ``batches`` (preprocessed images ``(B, 3, H, W)`` float32, e.g. training images through
    :func:`gluon_ssd.quantize.calibration_batches`).

    Returns:
        ``(quantized model, record)``, record: ``mode``, ``batches``, ``images``, ``operators``
        quantized and the quantizer (``onnxruntime.quantization``, QDQ, uint8 activations, int8
        per-channel weights).

    Raises:
        ValueError: an unknown ``mode``, ``num_batches < 1`` or no batch.
    """
    try:
        from onnxruntime import __version__ as ort_version
        from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as err:
        raise not_installed(err, "--precision int8") from None

    if mode not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration mode {mode!r}; choose from "
                         f"{list(CALIBRATION_METHODS)}")
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    iterator = itertools.islice(iter(batches), num_batches)
    first = next(iterator, None)
    if first is None:
        raise ValueError("no calibration images: the calibration data gave no batch")
    reader = _reader(itertools.chain([first], iterator))
    with tempfile.TemporaryDirectory(prefix="gluon-ssd-int8-") as tmp:
        paths = [os.path.join(tmp, name) for name in ("ssd.onnx", "folded.onnx", "int8.onnx")]
        onnx.save(model, paths[0])
        # ONNX Runtime's own graph optimisation folds BatchNorm into the convolutions first.
        quant_pre_process(paths[0], paths[1], skip_symbolic_shape=True)
        quantize_static(paths[1], paths[2], reader, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPERATORS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CALIBRATION_METHODS[mode]))
        quantized = onnx.load(paths[2])
    record = {"mode": mode, "batches": reader.batches, "images": reader.images,
              "operators": list(QUANTIZED_OPERATORS),
              "quantizer": f"onnxruntime {ort_version} quantize_static, QDQ, uint8 activations, "
                           "int8 weights per channel"}
    return quantized, record
