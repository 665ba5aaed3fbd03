"""Export a detector as an MXNet symbol graph (JSON + params) and import it back.

``export_model`` writes ``PREFIX-symbol.json``, ``PREFIX-0000.params`` and ``PREFIX-meta.json``
(classes, input size, the preprocessing the graph expects, the decoding settings). ``import_model``
gives a ``gluon.SymbolBlock`` that maps ``data (B, 3, H, W)`` to ``(ids, scores, boxes)`` exactly
as :class:`~gluon_ssd.model.head.DetectionNet` does.

Decoding settings: the graph holds the detector with the :class:`~gluon_ssd.presets.DetectSpec`
it was exported with (recorded in the metadata under ``detect``). The metadata also names the
graph nodes of the SSD's raw outputs (``ssd_outputs``), so ``import_model(prefix, spec=...)`` can
cut the graph there and put a new :class:`~gluon_ssd.model.head.DetectionHead` with other
settings on top. A graph that cannot be cut (no ``ssd_outputs``, or a rewritten graph whose nodes
were renamed) keeps its settings, and asking for others is a ``ValueError``.

INT8 exports (:mod:`gluon_ssd.quantize`) are the same three files; importing one needs nothing
but this module.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import mxnet as mx
from mxnet import gluon

from .boxes import DEFAULT_VARIANCES, BoxCoder
from .checkpoint import check_meta
from .devices import Contexts, as_contexts, block_contexts
from .jsonfile import write_json
from .model.head import DetectionNet
from .model.weights import mxnet_reason
from .presets import DetectSpec

# The files of the export at PREFIX, named PREFIX + suffix; "symbol" first (it marks an export).
EXPORT_SUFFIXES: Dict[str, str] = {"symbol": "-symbol.json", "params": "-0000.params",
                                   "meta": "-meta.json"}


def export_model(net: DetectionNet, prefix: str, image_size: Tuple[int, int],
                 preset: Optional[str] = None, *, extra_meta: Optional[Mapping[str, Any]] = None
                 ) -> Dict[str, str]:
    """Write the graph, weights and preprocessing metadata of ``net``; return the three paths
    (:func:`export_paths`).

    Args:
        net: the detector (SSD + DetectionHead).
        prefix: output path prefix, e.g. ``out/ssd300``; its folder is created.
        image_size: ``(H, W)`` traced for the export (the input size detection resizes images
            to); the graph itself accepts other sizes.
        preset: the preset name recorded in the metadata (``None``: not known).
        extra_meta: more top-level metadata entries (an INT8 export's ``dtype``, ...).
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    net.hybridize()
    net(mx.nd.zeros((1, 3) + tuple(image_size), ctx=block_contexts(net)[0]))
    net.export(prefix, epoch=0)  # each parameter once, whatever the devices: device-free
    # Calling a block on a symbol names its nodes exactly as in the exported trace.
    ssd_outputs = [out.list_outputs()[0] for out in net.ssd(mx.sym.var("data"))]
    meta = export_meta(net, image_size, preset, ssd_outputs, extra_meta)
    paths = export_paths(prefix)
    write_json(paths["meta"], meta)
    return paths


def export_meta(net: DetectionNet, image_size: Tuple[int, int], preset: Optional[str],
                ssd_outputs: Sequence[str], extra_meta: Optional[Mapping[str, Any]] = None
                ) -> Dict[str, Any]:
    """The metadata of an exported detector (MXNet's ``PREFIX-meta.json``, an ONNX file's
    ``metadata_props``): preset, classes, the input and its preprocessing, the outputs, the
    decoding settings and variances, the names of the SSD's raw outputs in the graph
    (``ssd_outputs``: cls_preds, box_preds, anchors), then ``extra_meta``."""
    spec = net.ssd.spec
    return {
        "preset": preset,
        "classes": list(net.ssd.classes),
        "input": {"name": "data", "layout": "NCHW", "image_size": list(image_size),
                  "preprocessing": "RGB, resized to image_size (H, W) (aspect ratio not kept), "
                                   "scaled to [0, 1], minus mean, divided by std",
                  "mean": list(spec.mean), "std": list(spec.std)},
        "outputs": ["ids (B, K, 1)", "scores (B, K, 1)",
                    "boxes (B, K, 4) normalised xmin, ymin, xmax, ymax"],
        "detect": dataclasses.asdict(net.head.spec),
        "variances": list(net.head.coder.variances),
        "ssd_outputs": list(ssd_outputs),
        **(extra_meta or {}),
    }


def export_paths(prefix: str) -> Dict[str, str]:
    """The three files of the export at ``prefix``: ``symbol``, ``params``, ``meta``."""
    return {kind: prefix + suffix for kind, suffix in EXPORT_SUFFIXES.items()}


def export_prefix(path: str) -> Optional[str]:
    """The prefix of the export ``path`` names (the prefix itself or one of its three files);
    ``None`` when no export's symbol file is there."""
    for suffix in ("",) + tuple(EXPORT_SUFFIXES.values()):
        if path.endswith(suffix):
            prefix = path[:len(path) - len(suffix)] if suffix else path
            if os.path.isfile(export_paths(prefix)["symbol"]):
                return prefix
    return None


def exported_spec(meta: Dict[str, Any], source: str) -> Optional[DetectSpec]:
    """The :class:`DetectSpec` an export's graph decodes with (``None`` if not recorded)."""
    if "detect" not in meta:
        return None
    settings = {k: v for k, v in meta["detect"].items() if k != "variances"}  # see exported_coder
    return DetectSpec.from_dict(settings, source)


def exported_coder(meta: Dict[str, Any]) -> BoxCoder:
    """The box coder an export's graph decodes with: its ``variances`` (exports written before
    they moved into the model spec kept them among the decoding settings)."""
    legacy = meta.get("detect", {}).get("variances", DEFAULT_VARIANCES)
    return BoxCoder(tuple(meta.get("variances", legacy)))


def read_export_meta(prefix: str) -> Dict[str, Any]:
    """The metadata of the export at ``prefix``, checked (:func:`check_export_meta`);
    ``ValueError`` naming the file if one of the three is missing or the metadata is not JSON
    or not an export's."""
    paths = export_paths(prefix)
    for path in paths.values():
        if not os.path.isfile(path):
            raise ValueError(f"export {prefix!r} is incomplete: {path} does not exist")
    try:
        with open(paths["meta"], "rb") as f:
            meta = json.loads(f.read())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{paths['meta']}: its metadata is not JSON ({err})") from None
    check_export_meta(meta, paths["meta"])
    return meta


def check_export_meta(meta: Any, source: str) -> None:
    """``ValueError`` naming ``source`` unless ``meta`` is an export's metadata: the class names
    (:func:`~gluon_ssd.checkpoint.check_meta`) and an ``input`` object with ``image_size``
    ``[H, W]`` (positive integers) and three-channel ``mean`` and ``std`` (``std`` not 0);
    decoding settings (``detect``), where recorded, an object."""
    check_meta(meta, source, model_key="input")
    info = meta["input"]
    size = info.get("image_size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"{source}: 'input' has no image_size [H, W] of positive integers "
                         f"(got {size!r})")
    for key in ("mean", "std"):
        values = info.get(key)
        if not (isinstance(values, list) and len(values) == 3
                and all(_is_number(v) and (key == "mean" or v != 0) for v in values)):
            raise ValueError(f"{source}: 'input' has no {key} of 3 numbers"
                             f"{' (none 0)' if key == 'std' else ''} (got {values!r})")
    if not isinstance(meta.get("detect", {}), dict):
        raise ValueError(f"{source}: its decoding settings ('detect') are not a JSON object")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def import_model(prefix: str, ctx: Contexts = None, spec: Optional[DetectSpec] = None
                 ) -> Tuple[gluon.HybridBlock, dict]:
    """Load an exported detector onto ``ctx`` (one context or a list; default the CPU):
    ``(block, metadata dict)``, ``block``: ``data (B, 3, H, W)`` -> ``(ids, scores, boxes)``.

    With ``spec`` (decoding settings) other than the exported ones, the graph is cut at the
    SSD's raw outputs and decoded by a new detector: the block is then a
    :class:`~gluon_ssd.model.head.DetectionNet` around a ``SymbolBlock`` of the SSD, and
    ``meta["detect"]`` states the new settings. Otherwise it is the plain ``SymbolBlock``.

    Raises:
        ValueError: a file of the export is missing, corrupt or incomplete (named), or ``spec``
            asks for other settings than a graph that cannot be cut was exported with.
    """
    paths = export_paths(prefix)
    meta = read_export_meta(prefix)
    ctx = as_contexts(ctx)
    embedded = exported_spec(meta, paths["meta"])
    graph = _load_graph(paths["symbol"])
    if spec is None or spec == embedded:
        return _symbol_block(graph, paths["params"], ctx), meta
    internals = graph.get_internals()
    names = meta.get("ssd_outputs") or []
    if not names or not set(names) <= set(internals.list_outputs()):
        raise ValueError(
            f"export {prefix!r} decodes with fixed settings ({embedded or 'not recorded'}) and "
            f"its graph cannot be cut at the SSD's outputs to decode with {spec}; export the "
            "checkpoint again with the settings wanted (gluon-ssd export --nms ...)")
    ssd = _symbol_block(mx.sym.Group([internals[n] for n in names]), paths["params"], ctx)
    block = DetectionNet(ssd, spec, exported_coder(meta))
    block.hybridize()
    return block, dict(meta, detect=dataclasses.asdict(spec))


def _load_graph(path: str) -> mx.sym.Symbol:
    """The symbol graph in ``path``; ``ValueError`` naming it with the reason: the JSON parser's
    (with line and column) or MXNet's (its reason line, not its source location)."""
    try:
        with open(path, "rb") as f:
            json.loads(f.read())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not an MXNet symbol file (not JSON: {err})") from None
    try:
        return mx.sym.load(path)
    except (mx.base.MXNetError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not an MXNet symbol file ({mxnet_reason(err)})") from None


def _symbol_block(outputs: mx.sym.Symbol, params: str,
                  ctx: List[mx.Context]) -> gluon.SymbolBlock:
    """``gluon.SymbolBlock.imports`` for a graph already loaded (or cut), with a float32 input
    (which spares the warning that the input's type cannot be inferred); ``ValueError`` naming
    ``params`` if it is not a parameter file or lacks a parameter of the graph."""
    block = gluon.SymbolBlock(outputs, mx.sym.var("data", dtype="float32"))
    try:
        block.collect_params().load(params, ctx=ctx, ignore_extra=True, cast_dtype=True,
                                    dtype_source="saved")
    except (mx.base.MXNetError, UnicodeDecodeError) as err:
        raise ValueError(f"{params}: not an MXNet parameter file ({mxnet_reason(err)})") from None
    except TypeError:  # nd.save of a list: arrays without names
        raise ValueError(f"{params}: holds unnamed arrays, not a parameter file") from None
    except AssertionError as err:  # MXNet's check that the file has every parameter
        missing = re.search(r"Parameter '([^']+)' is missing", str(err))
        what = f"parameter {missing.group(1)!r}" if missing else "a parameter"
        raise ValueError(f"{params}: lacks {what} of the graph it belongs to") from None
    return block
