"""The SSD network as ONNX nodes: its MXNet symbol, operator by operator.

The SSD block is traced on a symbolic input (the graph ``net.export`` would write) and its
operators up to the raw outputs are converted in order by :data:`CONVERTERS`, one small function
per MXNet operator the gluon-ssd networks use: ``Convolution``, ``BatchNorm``, ``Activation``
(ReLU), ``Pooling`` (max, MXNet's ``full`` rounding as ``ceil_mode``), ``L2Normalization``,
``broadcast_mul``, ``transpose``, ``Flatten``, ``Concat`` and ``Reshape``. Every preset (``demo``
with BatchNorm, the VGG16 presets, GluonCV's converted SSDs, fitted anchors) uses only these; an
operator without a converter is a ``ValueError`` naming it and its node.

The anchors are not converted: they depend only on the input size, so they are computed once by
the network's own :class:`~gluon_ssd.anchors.AnchorGenerator` for the export's size and stored as
a constant ``(1, N, 4)``.

Raw outputs (see :class:`~gluon_ssd.model.ssd.SSD`): ``cls_preds (B, N, C + 1)`` logits,
``box_preds (B, N * 4)`` encoded offsets, ``anchors (1, N, 4)`` normalised corners ``xmin, ymin,
xmax, ymax``, N anchors in row -> column -> anchor order, layers concatenated.
"""
from __future__ import annotations

import ast
import json
from typing import Callable, Dict, List, Tuple

import mxnet as mx
import numpy as np

from ..devices import block_contexts, first_data
from . import INPUT, RAW_OUTPUTS
from .builder import GraphBuilder


def _tuple(attrs: Dict[str, str], key: str, default: Tuple[int, ...] = ()) -> List[int]:
    """An MXNet tuple attribute such as ``"(3, 3)"`` as a list of ints."""
    return [int(v) for v in ast.literal_eval(attrs[key])] if key in attrs else list(default)


def _flag(attrs: Dict[str, str], key: str) -> bool:
    return attrs.get(key, "False") in ("True", "true", "1")


def _unsupported(node: dict, why: str) -> ValueError:
    return ValueError(f"cannot export operator {node['op']!r} (node {node['name']!r}) to ONNX: "
                      f"{why}")


# Each converter: (builder, MXNet node, input tensor names, parameters, output name) -> None,
# adding the node(s) whose last output is ``out``.
Converter = Callable[[GraphBuilder, dict, List[str], Dict[str, np.ndarray], str], None]


def _convolution(b, node, inputs, params, out):
    a = node.get("attrs", {})
    kernel = _tuple(a, "kernel")
    pad = _tuple(a, "pad", (0,) * len(kernel))
    if a.get("layout", "NCHW") != "NCHW":
        raise _unsupported(node, f"layout {a['layout']} (only NCHW)")
    b.op("Conv", inputs, outputs=[out], kernel_shape=kernel, pads=pad + pad,
         strides=_tuple(a, "stride", (1,) * len(kernel)),
         dilations=_tuple(a, "dilate", (1,) * len(kernel)), group=int(a.get("num_group", 1)))


def _batch_norm(b, node, inputs, params, out):
    a = node.get("attrs", {})
    if int(a.get("axis", 1)) != 1:
        raise _unsupported(node, f"axis {a['axis']} (only the channel axis 1)")
    data, gamma, beta, mean, var = inputs
    if _flag(a, "fix_gamma"):  # MXNet then ignores the stored gamma and scales by 1
        gamma = b.const(np.ones_like(params[gamma]), hint="gamma")
    b.op("BatchNormalization", [data, gamma, beta, mean, var], outputs=[out],
         epsilon=float(a.get("eps", 1e-3)))


def _activation(b, node, inputs, params, out):
    if node["attrs"]["act_type"] != "relu":
        raise _unsupported(node, f"act_type {node['attrs']['act_type']!r} (only relu)")
    b.op("Relu", inputs, outputs=[out])


def _pooling(b, node, inputs, params, out):
    a = node["attrs"]
    convention = a.get("pooling_convention", "valid")
    if a.get("pool_type") != "max" or _flag(a, "global_pool") or convention not in ("valid",
                                                                                    "full"):
        raise _unsupported(node, f"pool_type {a.get('pool_type')!r}, pooling_convention "
                                 f"{convention!r} (only max pooling, valid or full)")
    kernel = _tuple(a, "kernel")
    pad = _tuple(a, "pad", (0,) * len(kernel))
    # MXNet's "full" convention rounds the output size up, as ONNX's ceil_mode does.
    b.op("MaxPool", inputs, outputs=[out], kernel_shape=kernel, pads=pad + pad,
         strides=_tuple(a, "stride", (1,) * len(kernel)), ceil_mode=int(convention == "full"))


def _l2_normalization(b, node, inputs, params, out):
    a = node.get("attrs", {})
    if a.get("mode", "instance") != "channel":
        raise _unsupported(node, f"mode {a.get('mode', 'instance')!r} (only channel)")
    # x / sqrt(sum over channels of x^2 + eps), MXNet's formula (ONNX's LpNormalization has no
    # eps).
    squares = b.op("ReduceSumSquare", [inputs[0]], axes=[1], keepdims=1)
    norm = b.op("Sqrt", [b.op("Add", [squares, b.const(float(a.get("eps", 1e-10)))])])
    b.op("Div", [inputs[0], norm], outputs=[out])


def _reshape(b, node, inputs, params, out):
    shape = _tuple(node["attrs"], "shape")
    if any(s < -1 for s in shape) or _flag(node["attrs"], "reverse"):
        raise _unsupported(node, f"shape {tuple(shape)} (only 0, -1 and sizes)")
    b.op("Reshape", [inputs[0], b.const(shape, np.int64, "shape")], outputs=[out])


CONVERTERS: Dict[str, Converter] = {
    "Convolution": _convolution,
    "BatchNorm": _batch_norm,
    "Activation": _activation,
    "Pooling": _pooling,
    "L2Normalization": _l2_normalization,
    "Reshape": _reshape,
    "broadcast_mul": lambda b, node, inputs, params, out: b.op("Mul", inputs, outputs=[out]),
    "transpose": lambda b, node, inputs, params, out: b.op(
        "Transpose", inputs, outputs=[out], perm=_tuple(node["attrs"], "axes")),
    "Flatten": lambda b, node, inputs, params, out: b.op("Flatten", inputs, outputs=[out],
                                                         axis=1),
    "Concat": lambda b, node, inputs, params, out: b.op(
        "Concat", inputs, outputs=[out], axis=int(node["attrs"].get("dim", 1))),
}


def ssd_symbol_nodes(ssd: mx.gluon.HybridBlock) -> Tuple[List[dict], List[int]]:
    """The SSD's traced symbol up to ``cls_preds`` and ``box_preds``: ``(nodes, heads)``, nodes
    in topological order as in MXNet's symbol JSON, heads the node ids of the two outputs."""
    cls_preds, box_preds, _ = ssd(mx.sym.var(INPUT))
    graph = json.loads(mx.sym.Group([cls_preds, box_preds]).tojson())
    return graph["nodes"], [head[0] for head in graph["heads"]]


def add_ssd(b: GraphBuilder, ssd: mx.gluon.HybridBlock) -> None:
    """Add the SSD's nodes to ``b``: input ``data (B, 3, H, W)`` -> ``cls_preds (B, N, C + 1)``,
    ``box_preds (B, N * 4)`` (the anchors: :func:`export_anchors`). Parameters become
    initializers under their MXNet names.

    Raises:
        ValueError: an operator without a converter, or a converter's unsupported setting
            (named with its node).
    """
    params = {p.name: first_data(p).asnumpy() for p in ssd.collect_params().values()}
    nodes, heads = ssd_symbol_nodes(ssd)
    out_names = dict(zip(heads, RAW_OUTPUTS[:2]))
    names: List[str] = []
    for index, node in enumerate(nodes):
        if node["op"] == "null":
            if node["name"] != INPUT:
                if node["name"] not in params:
                    raise _unsupported(node, "an input that is neither data nor a parameter")
                b.add_initializer(node["name"], params[node["name"]])
            names.append(node["name"])
            continue
        convert = CONVERTERS.get(node["op"])
        if convert is None:
            raise _unsupported(node, f"no converter; gluon-ssd converts {sorted(CONVERTERS)}")
        out = out_names.get(index, node["name"])
        convert(b, node, [names[i] for i, _, _ in node["inputs"]], params, out)
        names.append(out)


def export_anchors(ssd: mx.gluon.HybridBlock, image_size: Tuple[int, int]) -> np.ndarray:
    """The anchors ``(1, N, 4)`` float32 the network makes for an ``(H, W)`` input (normalised
    corners), by running it once on zeros."""
    image = mx.nd.zeros((1, 3) + tuple(image_size), ctx=block_contexts(ssd)[0])
    return ssd(image)[2].asnumpy().astype(np.float32)

