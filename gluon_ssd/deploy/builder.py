"""An ONNX graph under construction: nodes in order, constants, names unique under a prefix."""
from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

# The ONNX operator set the graphs are written for (NonMaxSuppression, TopK with ``sorted``,
# ReduceSumSquare with an ``axes`` attribute): ONNX Runtime and OpenVINO both run it.
OPSET = 17


class GraphBuilder:
    """Collects ONNX nodes and initializers; every name it makes starts with ``prefix``.

    :meth:`op` adds a node and returns its output name (or names); :meth:`const` adds a constant
    and returns its name. Names are ``prefix + hint + "_" + n``, unique within the builder.
    """

    def __init__(self, prefix: str = ""):
        self.prefix = prefix
        self.nodes: List[NodeProto] = []
        self.initializers: List[TensorProto] = []
        self._counts: Dict[str, itertools.count] = {}

    def name(self, hint: str) -> str:
        """A new unique name ``prefix + hint + "_" + n``."""
        n = next(self._counts.setdefault(hint, itertools.count()))
        return f"{self.prefix}{hint}_{n}"

    def const(self, value, dtype=np.float32, hint: str = "const") -> str:
        """A constant tensor (an initializer) of ``value`` as ``dtype``; its name."""
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def add_initializer(self, name: str, value: np.ndarray) -> str:
        """A constant under exactly ``name`` (a network parameter, the anchors)."""
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], *, outputs: Union[int, Sequence[str]] = 1,
           hint: Optional[str] = None, **attrs) -> Union[str, List[str]]:
        """Add an ``op_type`` node on ``inputs`` (``""`` for an omitted optional input).

        ``outputs``: how many outputs to name, or their names. Returns the output name, or the
        list of names when there are several.
        """
        node_name = self.name(hint or op_type.lower())
        if isinstance(outputs, int):
            names = [node_name if i == 0 else f"{node_name}:{i}" for i in range(outputs)]
        else:
            names = list(outputs)
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=node_name, **attrs))
        return names[0] if len(names) == 1 else names

    def full(self, shape: str, value: float) -> str:
        """A float32 tensor of the (runtime) shape ``shape`` filled with ``value``."""
        return self.op("ConstantOfShape", [shape],
                       value=numpy_helper.from_array(np.array([value], np.float32)))
