"""Deploying without MXNet: the detector as one ONNX file, run by ONNX Runtime or OpenVINO.

* :mod:`.builder`: a small ONNX graph builder (unique names, constants).
* :mod:`.graph`: the SSD's MXNet symbol, operator by operator, as ONNX nodes (up to the raw
  outputs ``cls_preds``, ``box_preds``; the anchors a constant of the export's input size).
* :mod:`.postprocess`: the detection head as ONNX nodes: softmax, box decoding,
  ``NonMaxSuppression``, top-k, the ``ids, scores, boxes`` rows of the MXNet detector.
* :mod:`.onnx_model`: the ONNX file: assembled, checked, written with its metadata, read back,
  re-decoded with other settings.
* :mod:`.quantize`: INT8 (QDQ) by ONNX Runtime's static quantization, calibrated on images.
* :mod:`.engines`: ONNX Runtime and OpenVINO sessions behind one callable, FP32 / BF16 / INT8.

Nothing here imports ``onnx``, ``onnxruntime`` or ``openvino`` when the package is imported: each
module imports what it needs, and only :mod:`gluon_ssd.detect` (lazily, for a ``.onnx`` file) and
the command line reach them.
"""

# The ONNX file's interface, here so that modules which must not import onnx can name it.
ONNX_SUFFIX = ".onnx"  # a model path ending so is an ONNX file
INPUT = "data"  # (B, 3, H, W) float32, preprocessed
RAW_OUTPUTS = ("cls_preds", "box_preds", "anchors")  # the SSD's, where re-decoding cuts
OUTPUTS = ("ids", "scores", "boxes")  # the detector's (B, K, 1), (B, K, 1), (B, K, 4)
INSTALL = "pip install -c constraints.txt 'gluon-ssd[onnx]'"


def not_installed(err: ImportError, what: str) -> ValueError:
    """The one-line error for ``what`` (an option or a file) when a package of the ONNX path is
    missing."""
    return ValueError(f"{what}: {err.name or err} is not installed; {INSTALL}")
