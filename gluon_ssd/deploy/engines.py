"""ONNX Runtime and OpenVINO behind one callable: preprocessed images in, detections out.

:func:`open_session` compiles a gluon-ssd ONNX detector on the CPU with one of :data:`ENGINES`
at one of :data:`PRECISIONS`:

* ``fp32``: float32 throughout (OpenVINO is told so: on CPUs with BF16 it would otherwise
  choose bfloat16 by itself);
* ``bf16``: OpenVINO only, on CPUs whose instructions it lists as ``BF16`` (AVX512-BF16, AMX):
  its float layers compute in bfloat16;
* ``int8``: an INT8 (QDQ) file (``gluon-ssd export --format onnx --precision int8``), run by
  either engine with its int8 kernels; a file's precision is fixed when it is written.

The :class:`Session` maps ``images (B, 3, H, W)`` (NDArray or numpy float32) to ``(ids (B, K, 1),
scores (B, K, 1), boxes (B, K, 4))`` NDArrays, the outputs of the MXNet detector (boxes
normalised corners, rows of -1 empty), so everything that runs a loaded detector runs it
unchanged. A file exported for a fixed batch takes any number of images: they are run in
chunks of that size, the last one padded.

Every error a user can cause (an engine that is not installed, a precision the file, the engine
or the CPU cannot give) is a ``ValueError`` naming the argument.
"""
from __future__ import annotations

import io
from typing import Callable, List, Optional, Tuple

import mxnet as mx
import numpy as np

from . import INPUT, OUTPUTS, not_installed

ENGINES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT_ENGINE = "onnxruntime"

Run = Callable[[np.ndarray], List[np.ndarray]]


class Session:
    """A compiled ONNX detector: ``images (B, 3, H, W)`` -> ``(ids, scores, boxes)`` NDArrays.

    Attributes:
        engine, precision: what runs it (:data:`ENGINES`, :data:`PRECISIONS`).
        batch: the batch size the file was exported for, ``None`` when dynamic.
    """

    def __init__(self, run: Run, engine: str, precision: str, batch: Optional[int]):
        self._run = run
        self.engine, self.precision, self.batch = engine, precision, batch

    def __call__(self, images) -> Tuple[mx.nd.NDArray, mx.nd.NDArray, mx.nd.NDArray]:
        x = images.asnumpy() if isinstance(images, mx.nd.NDArray) else np.asarray(images)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.batch is None or len(x) == self.batch:
            outputs = self._run(x)
        else:
            chunks = [self._padded(x[i:i + self.batch]) for i in range(0, len(x), self.batch)]
            outputs = [np.concatenate(parts) for parts in zip(*chunks)]
        return tuple(mx.nd.array(o, dtype=np.float32) for o in outputs)

    def _padded(self, x: np.ndarray) -> List[np.ndarray]:
        """Run up to ``batch`` images, padded with zeros to the file's batch size."""
        pad = np.zeros((self.batch - len(x),) + x.shape[1:], np.float32)
        return [o[:len(x)] for o in self._run(np.concatenate([x, pad]))]


def bf16_missing() -> Optional[str]:
    """Why OpenVINO cannot run BF16 on this CPU (``None``: it can): its CPU plugin's
    ``OPTIMIZATION_CAPABILITIES`` lack ``BF16``."""
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" in capabilities:
        return None
    return f"this CPU has no BF16 instructions (OpenVINO's CPU capabilities: " \
           f"{', '.join(capabilities)})"


def choose_precision(engine: str, precision: Optional[str], file_precision: str) -> str:
    """The precision to run a ``file_precision`` file at (``precision`` ``None``: the file's);
    ``ValueError`` naming ``--precision`` when the file, ``engine`` or this CPU cannot."""
    precision = precision or file_precision
    if precision not in PRECISIONS:
        raise ValueError(f"--precision {precision}: unknown; choose from {', '.join(PRECISIONS)}")
    if file_precision == "int8" and precision != "int8":
        raise ValueError(f"--precision {precision}: the file is quantized to INT8 (it runs at "
                         "int8); export the float32 model for fp32 or bf16")
    if precision == "int8" and file_precision != "int8":
        raise ValueError("--precision int8: the file is float32; write an INT8 one with "
                         "gluon-ssd export --format onnx --precision int8 --calib-data DATA")
    if precision == "bf16":
        if engine != "openvino":
            raise ValueError(f"--precision bf16: runs on OpenVINO only (--engine openvino), "
                             f"not on {engine}")
        reason = bf16_missing()
        if reason:
            raise ValueError(f"--precision bf16: {reason}")
    return precision


def _onnxruntime(model: bytes, precision: str, threads: Optional[int]) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(list(OUTPUTS), {INPUT: x})


def _openvino(model: bytes, precision: str, threads: Optional[int]) -> Run:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
              "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(io.BytesIO(model)), "CPU", config)
    request = compiled.create_infer_request()
    outputs = [compiled.output(name) for name in OUTPUTS]

    def run(x: np.ndarray) -> List[np.ndarray]:
        result = request.infer({INPUT: x})
        return [np.array(result[o]) for o in outputs]
    return run


_RUNNERS = {"onnxruntime": _onnxruntime, "openvino": _openvino}


def open_session(model: bytes, engine: Optional[str] = None, precision: Optional[str] = None,
                 *, file_precision: str = "fp32", batch: Optional[int] = None,
                 threads: Optional[int] = None) -> Session:
    """Compile the serialized ONNX detector ``model`` on the CPU.

    Args:
        model: the ONNX file's bytes.
        engine: one of :data:`ENGINES` (default :data:`DEFAULT_ENGINE`).
        precision: one of :data:`PRECISIONS` (default: ``file_precision``).
        file_precision: the file's own, ``fp32`` or ``int8`` (its metadata's ``precision``).
        batch: the file's fixed batch size, ``None`` when dynamic.
        threads: the engine's threads per inference (default: the engine's choice).

    Raises:
        ValueError: an unknown or uninstalled ``engine`` (``--engine``), or a precision that
            cannot run (``--precision``, see :func:`choose_precision`).
    """
    engine = engine or DEFAULT_ENGINE
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine}: unknown; choose from {', '.join(ENGINES)}")
    try:
        __import__(engine)
    except ImportError as err:
        raise not_installed(err, f"--engine {engine}") from None
    precision = choose_precision(engine, precision, file_precision)
    return Session(_RUNNERS[engine](model, precision, threads), engine, precision, batch)
