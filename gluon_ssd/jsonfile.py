"""Writing JSON that any parser reads: the one place gluon-ssd writes its JSON documents
(checkpoint metadata, run logs, export metadata, metrics, detections, anchors)."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import numpy as np


def json_ready(value: Any) -> Any:
    """``value`` (nested dicts, lists, tuples) with every NaN or infinite number replaced by
    ``None`` and numpy scalars by Python numbers, so that the JSON written of it is standard
    (``json.dumps`` would write ``NaN``, which strict parsers refuse)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str, value: Any, indent: Optional[int] = 2, mode: str = "w") -> None:
    """``value`` as a JSON document at ``path`` (its folder created), non-finite numbers as
    ``null``. ``mode="x"`` refuses a file that exists (``FileExistsError``)."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, mode) as f:
        json.dump(json_ready(value), f, indent=indent, allow_nan=False)
