"""The detector as one ONNX file: assembled, checked and written with its metadata; read back;
re-decoded with other settings.

The file maps the preprocessed input ``data (B, 3, H, W)`` float32 (RGB / 255, minus ``mean``,
divided by ``std``, at the export's ``(H, W)``) to ``ids (B, K, 1)``, ``scores (B, K, 1)``,
``boxes (B, K, 4)`` (normalised corners ``xmin, ymin, xmax, ymax``; rows of -1 empty), the
outputs of the MXNet detector (:class:`~gluon_ssd.model.head.DetectionNet`): the network
(:mod:`.graph`), the anchors as a constant of the export's size and the head
(:mod:`.postprocess`) in one graph of opset :data:`~.builder.OPSET`. ``B`` is fixed or dynamic.

Metadata (``metadata_props``): one entry per key of :func:`gluon_ssd.export.export_meta`
(``classes``, ``input`` with ``image_size``, ``mean``, ``std`` and the preprocessing,
``detect``, ``variances``, ``preset``, ...) plus ``format``, ``opset``, ``batch`` and
``precision`` (``fp32`` or ``int8`` with its ``calibration``); every value is JSON text.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import numpy as np
import onnx
from onnx import ModelProto, TensorProto, helper

from ..export import check_export_meta, export_meta, exported_coder, exported_spec
from ..model.head import DetectionNet
from ..presets import DetectSpec
from . import INPUT, OUTPUTS, RAW_OUTPUTS
from .builder import OPSET, GraphBuilder
from .graph import add_ssd, export_anchors
from .postprocess import HEAD_PREFIX, add_head

BATCH = "batch"  # the name of a dynamic batch dimension
Batch = Union[int, str]  # a batch size, or "dynamic"


def _value_info(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def ssd_model(net: DetectionNet, image_size: Tuple[int, int], num_anchors: int) -> ModelProto:
    """The SSD alone, dynamic batch: ``data (B, 3, H, W)`` -> ``cls_preds (B, N, C + 1)``,
    ``box_preds (B, N * 4)`` (what quantization calibrates), N = ``num_anchors``."""
    b = GraphBuilder()
    add_ssd(b, net.ssd)
    n, c = num_anchors, net.ssd.num_classes
    graph = helper.make_graph(
        b.nodes, "ssd", [_value_info(INPUT, [BATCH, 3, *image_size])],
        [_value_info(RAW_OUTPUTS[0], [BATCH, n, c + 1]), _value_info(RAW_OUTPUTS[1],
                                                                     [BATCH, 4 * n])],
        b.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                             producer_name="gluon-ssd")


def with_head(ssd: ModelProto, anchors: np.ndarray, spec: DetectSpec, meta: Dict[str, Any],
              batch: Batch = "dynamic") -> ModelProto:
    """``ssd`` (cut at its raw outputs) with ``anchors (1, N, 4)`` and a head decoding with
    ``spec`` and ``meta``'s variances: the detector, its metadata set, its batch fixed unless
    ``"dynamic"``, checked by ONNX's checker (full check, shapes included)."""
    model = ModelProto()
    model.CopyFrom(ssd)
    graph = model.graph
    head = GraphBuilder(HEAD_PREFIX)
    if not any(init.name == RAW_OUTPUTS[2] for init in graph.initializer):
        head.add_initializer(RAW_OUTPUTS[2], anchors)
    num_classes, num_anchors = len(meta["classes"]), anchors.shape[1]
    add_head(head, RAW_OUTPUTS, spec, exported_coder(meta), num_anchors, num_classes)
    graph.node.extend(head.nodes)
    graph.initializer.extend(head.initializers)
    rows, k = BATCH if batch == "dynamic" else int(batch), spec.max_detections
    del graph.output[:]
    graph.output.extend(_value_info(name, [rows, k, width])
                        for name, width in zip(OUTPUTS, (1, 1, 4)))
    first = graph.input[0].type.tensor_type.shape.dim[0]
    first.Clear()
    if isinstance(rows, int):
        first.dim_value = rows
    else:
        first.dim_param = rows
    graph.name = "gluon-ssd detector"
    del model.metadata_props[:]
    helper.set_model_props(model, {key: json.dumps(value) for key, value in meta.items()})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_onnx(net: DetectionNet, path: str, image_size: Tuple[int, int], *,
                batch: Batch = "dynamic", preset: Optional[str] = None,
                precision: str = "fp32", calibration: Optional[Iterable[np.ndarray]] = None,
                calib_batches: int = 10, calib_mode: str = "naive",
                calib_source: str = "") -> Dict[str, Any]:
    """Write the detector ``net`` as the ONNX file ``path`` for inputs of ``image_size (H,
    W)``; returns its metadata.

    Args:
        net: the detector (an SSD and its head; the head's decoding settings go in the graph).
        path: the file to create; an existing file is never replaced (``ValueError``).
        batch: the batch size the file takes, or ``"dynamic"`` (any).
        preset: the preset's name, recorded.
        precision: ``"fp32"``, or ``"int8"``: the network quantized by
            :func:`~gluon_ssd.deploy.quantize.quantize_ssd` (QDQ), calibrated on
            ``calib_batches`` of the ``calibration`` batches ``(B, 3, H, W)`` float32
            (preprocessed images; ``calib_mode`` ``naive`` or ``entropy``, ``calib_source``
            recorded); the head stays float32.

    Raises:
        ValueError: ``path`` exists, a bad ``precision`` / missing calibration, or a layer
            without an ONNX converter (named).
    """
    if os.path.exists(path):
        raise ValueError(f"{path} exists; choose another name (export never replaces a file)")
    extra = {"format": "onnx", "opset": OPSET, "batch": batch, "precision": precision}
    anchors = export_anchors(net.ssd, image_size)
    model = ssd_model(net, image_size, anchors.shape[1])
    if precision == "int8":
        if calibration is None:
            raise ValueError("precision int8 needs calibration images (--calib-data)")
        from .quantize import quantize_ssd  # onnxruntime's quantization only when asked

        model, record = quantize_ssd(model, calibration, calib_batches, calib_mode)
        extra["calibration"] = dict(record, source=calib_source)
    elif precision != "fp32":
        raise ValueError(f"--precision {precision}: an export is fp32 or int8 (bf16 is chosen "
                         "when the model is loaded, --engine openvino --precision bf16)")
    meta = export_meta(net, image_size, preset, RAW_OUTPUTS, extra)
    model = with_head(model, anchors, net.head.spec, meta, batch)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "xb") as f:  # created exclusively: a file that appeared meanwhile stays
        f.write(model.SerializeToString())
    return meta


def read_onnx(path: str) -> Tuple[ModelProto, Dict[str, Any]]:
    """The model in ``path`` and its metadata, checked; ``ValueError`` naming ``path`` when it
    is missing, not ONNX, or not a gluon-ssd detector (no or bad metadata)."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(path)
    except Exception as err:  # protobuf's DecodeError and friends: the file is not ONNX
        raise ValueError(f"{path}: not an ONNX model ({type(err).__name__}: {err})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if not model.graph.node or "classes" not in props or "input" not in props:
        raise ValueError(f"{path}: not a gluon-ssd ONNX detector (its metadata_props have no "
                         "classes and input); write one with gluon-ssd export --format onnx")
    try:
        meta = {key: json.loads(value) for key, value in props.items()}
    except ValueError as err:
        raise ValueError(f"{path}: its metadata_props are not JSON ({err})") from None
    check_export_meta(meta, path)
    return model, meta


def redecode(model: ModelProto, meta: Dict[str, Any], spec: Optional[DetectSpec],
             source: str) -> Tuple[ModelProto, Dict[str, Any]]:
    """``(model, meta)`` decoding with ``spec``: unchanged for ``None`` or the settings it was
    exported with; else its head replaced by one with ``spec`` (the network and its anchors
    kept, the batch too). ``ValueError`` naming ``source`` if the graph has no raw outputs to
    cut at."""
    embedded = exported_spec(meta, source)
    if spec is None or spec == embedded:
        return model, meta
    inits = {init.name: init for init in model.graph.initializer}
    if list(meta.get("ssd_outputs") or []) != list(RAW_OUTPUTS) or RAW_OUTPUTS[2] not in inits:
        raise ValueError(f"{source} decodes with fixed settings ({embedded}) and cannot be cut "
                         f"at the SSD's outputs to decode with {spec}; export it again")
    cut = ModelProto()
    cut.CopyFrom(model)
    graph = cut.graph
    kept_nodes = [n for n in graph.node if not n.name.startswith(HEAD_PREFIX)]
    kept_inits = [i for i in graph.initializer if not i.name.startswith(HEAD_PREFIX)]
    del graph.node[:], graph.initializer[:]
    graph.node.extend(kept_nodes)
    graph.initializer.extend(kept_inits)
    anchors = onnx.numpy_helper.to_array(inits[RAW_OUTPUTS[2]])
    new_meta = dict(meta, detect=dataclasses.asdict(spec))
    return with_head(cut, anchors, spec, new_meta, meta.get("batch", "dynamic")), new_meta
