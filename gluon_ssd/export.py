"""Export a detector as an MXNet symbol graph (JSON + params) and import it back.

``export_model`` writes ``PREFIX-symbol.json``, ``PREFIX-0000.params`` and ``PREFIX-meta.json``
(classes, input size, the preprocessing the graph expects). ``import_model`` gives a
``gluon.SymbolBlock`` that maps ``data (B, 3, H, W)`` to ``(ids, scores, boxes)`` exactly as
:class:`~gluon_ssd.model.detector.DetectionNet` does.
"""
from __future__ import annotations

import json
from typing import Dict, Tuple

import mxnet as mx
from mxnet import gluon

from .model.detector import DetectionNet


def export_model(net: DetectionNet, prefix: str, image_size: Tuple[int, int]) -> Dict[str, str]:
    """Write the graph, weights and preprocessing metadata of ``net``; return the three paths.

    Args:
        net: the detector (SSD + Detector).
        prefix: output path prefix, e.g. ``out/ssd300``.
        image_size: ``(H, W)`` traced for the export; the graph itself accepts other sizes.
    """
    spec = net.ssd.spec
    net.hybridize()
    net(mx.nd.zeros((1, 3) + tuple(image_size)))
    net.export(prefix, epoch=0)
    meta = {
        "classes": list(net.ssd.classes),
        "input": {"name": "data", "layout": "NCHW", "image_size": list(image_size),
                  "preprocessing": "RGB scaled to [0, 1], minus mean, divided by std",
                  "mean": list(spec.mean), "std": list(spec.std)},
        "outputs": ["ids (B, K, 1)", "scores (B, K, 1)",
                    "boxes (B, K, 4) normalised xmin, ymin, xmax, ymax"],
    }
    paths = {"symbol": f"{prefix}-symbol.json", "params": f"{prefix}-0000.params",
             "meta": f"{prefix}-meta.json"}
    with open(paths["meta"], "w") as f:
        json.dump(meta, f, indent=2)
    return paths


def import_model(prefix: str, ctx: mx.Context = mx.cpu()) -> Tuple[gluon.SymbolBlock, dict]:
    """Load an exported detector: ``(SymbolBlock, metadata dict)``."""
    block = gluon.SymbolBlock.imports(f"{prefix}-symbol.json", ["data"],
                                      f"{prefix}-0000.params", ctx=ctx)
    with open(f"{prefix}-meta.json") as f:
        return block, json.load(f)
