"""The network in sight: each layer's output shape, receptive field and parameters.

Read from a :class:`~gluon_ssd.model.backbone.VGG16` (built from a
:class:`~gluon_ssd.presets.BackboneSpec`; nothing is initialised or allocated): its
convolutions as they are in the network's blocks, the pools where its forward puts them
(:data:`~gluon_ssd.model.backbone.POOLS`), the L2Norm on conv4_3.

Receptive field arithmetic, per spatial axis, in **input pixels** (continuous coordinates: pixel
``c`` covers ``[c, c + 1)``, so its centre is ``c + 0.5``). A layer with kernel ``k``, stride
``s``, padding ``p`` and dilation ``d`` spans ``k_eff = d (k - 1) + 1`` of its input's cells, so

* ``size_out = size_in + (k_eff - 1) * jump_in``: the input pixels one output cell depends on,
* ``jump_out = jump_in * s``: the distance in input pixels between neighbouring output cells,
* ``centre_out = centre_in + ((k_eff - 1) / 2 - p) * jump_in``: the centre of output cell 0,

starting from ``size 1, jump 1, centre 0.5`` on the input. This is the *theoretical* receptive
field: every pixel in it can change the cell's value, though those near its border count far
less (the effective receptive field is much smaller).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple, Union

import mxnet as mx
from mxnet.gluon import nn

from ..anchors import spec_priors
from ..presets import BackboneSpec, ModelSpec
from .backbone import POOLS, L2Norm, VGG16

HW = Tuple[int, int]

# The detection feature maps of the backbone, in order: conv4_3 (after its L2Norm), fc7, extras.
CONV4_3_NORM = "conv4_3_norm"


@dataclass(frozen=True)
class Layer:
    """One layer of the backbone that changes where a cell looks (a convolution or a pool), or
    the L2Norm (which changes nothing spatially).

    Attributes:
        name: the paper's name, e.g. ``conv4_3``, ``pool5``, ``fc6``, ``extra1_2``.
        block: the group it belongs to (``conv4``, ``pool4``, ``fc6``, ``extra1``).
        kind: ``conv``, ``pool`` or ``norm``.
        kernel, stride, padding, dilation: its geometry (square; ``dilation`` 6 for fc6).
        round_up: the output size rounds up (pools with MXNet's ``full`` convention).
        channels: output channels (``None`` for a pool: those of its input).
        params: learnable parameters (convolution weight and bias, BatchNorm's gamma and beta,
            L2Norm's scale; BatchNorm's running statistics are not learned and not counted).
        feature: index of the detection feature map this layer's output is, else ``None``.
    """

    name: str
    block: str
    kind: str
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    round_up: bool = False
    channels: Optional[int] = None
    params: int = 0
    feature: Optional[int] = None

    @property
    def effective_kernel(self) -> int:
        """Input cells one output cell spans: ``dilation * (kernel - 1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1


@dataclass(frozen=True)
class Field:
    """Where the cells of a layer's output look, in input pixels (one axis; square inputs).

    Attributes:
        cells: output side in cells (``None`` without an input size).
        size: receptive field side: the input pixels one cell depends on.
        jump: input pixels between neighbouring cells.
        centre: centre of cell 0's receptive field (continuous coordinates; may be < size / 2,
            the field then reaches outside the image into the padding).
    """

    cells: Optional[int]
    size: int
    jump: int
    centre: float

    def span(self, cell: int) -> Tuple[float, float]:
        """``(start, end)`` in input pixels of the receptive field of cell ``cell``."""
        c = self.centre + cell * self.jump
        return c - self.size / 2, c + self.size / 2


def learnable_params(*blocks) -> int:
    """Number of learnable values (parameters whose ``grad_req`` is not ``null``) of ``blocks``."""
    return sum(math.prod(p.shape) for b in blocks for p in b.collect_params().values()
               if p.grad_req != "null")


def _conv_layers(seq: nn.HybridSequential, names: Sequence[str], block: str) -> List[Layer]:
    """The convolutions of a ``conv_block`` sequence (Conv2D, maybe BatchNorm, ReLU, ...)."""
    convs: List[Tuple[nn.Conv2D, list]] = []
    for child in seq:
        if isinstance(child, nn.Conv2D):
            convs.append((child, [child]))
        elif isinstance(child, nn.BatchNorm):
            convs[-1][1].append(child)
    if len(convs) != len(names):
        raise ValueError(f"{block}: expected {len(names)} convolutions, found {len(convs)}")
    layers = []
    for name, (conv, parts) in zip(names, convs):
        kw = conv._kwargs  # the geometry the Conv2D was built with
        layers.append(Layer(name, block, "conv", kw["kernel"][0], kw["stride"][0], kw["pad"][0],
                            kw["dilate"][0], channels=kw["num_filter"],
                            params=learnable_params(*parts)))
    return layers


def _pool(index: int) -> Layer:
    kernel, stride, padding, round_up = POOLS[index]
    name = f"pool{index + 1}"
    return Layer(name, name, "pool", kernel, stride, padding, round_up=round_up)


def backbone_layers(backbone: Union[VGG16, BackboneSpec]) -> List[Layer]:
    """The layers of SSD's VGG16 (+ extras) in forward order, with the detection maps marked.

    ``backbone``: a :class:`VGG16` (its blocks are read) or a :class:`BackboneSpec` (a VGG16 is
    built from it, uninitialised: nothing is allocated).
    """
    net = VGG16(backbone) if isinstance(backbone, BackboneSpec) else backbone
    layers: List[Layer] = []
    for s, stage in enumerate(net.stages):
        block = f"conv{s + 1}"
        n = sum(isinstance(c, nn.Conv2D) for c in stage)
        layers += _conv_layers(stage, [f"{block}_{i + 1}" for i in range(n)], block)
        if s == 3:  # conv4_3 -> L2Norm: the first detection map, then pool4
            norm: L2Norm = net.conv4_3_norm
            layers.append(Layer(CONV4_3_NORM, block, "norm", channels=layers[-1].channels,
                                params=learnable_params(norm), feature=0))
        layers.append(_pool(s))
    layers += _conv_layers(net.fc6, ["fc6"], "fc6") + _conv_layers(net.fc7, ["fc7"], "fc7")
    layers[-1] = replace(layers[-1], feature=1)
    for e, extra in enumerate(net.extras):
        block = f"extra{e + 1}"
        layers += _conv_layers(extra, [f"{block}_1", f"{block}_2"], block)
        layers[-1] = replace(layers[-1], feature=2 + e)
    return layers


def receptive_fields(layers: Sequence[Layer], image_side: Optional[int] = None) -> List[Field]:
    """The :class:`Field` after each of ``layers`` (the module docstring has the arithmetic).

    ``image_side``: the input's side in pixels, to count each output's cells too (a square
    input; the network treats height and width alike).
    """
    fields, size, jump, centre, cells = [], 1, 1, 0.5, image_side
    for layer in layers:
        k = layer.effective_kernel
        centre += ((k - 1) / 2 - layer.padding) * jump
        size += (k - 1) * jump
        jump *= layer.stride
        if cells is not None:
            rounding = math.ceil if layer.round_up else math.floor
            cells = rounding((cells + 2 * layer.padding - k) / layer.stride) + 1
        fields.append(Field(cells, size, jump, centre))
    return fields


def feature_layers(backbone: Union[VGG16, BackboneSpec],
                   image_side: Optional[int] = None) -> List[Tuple[Layer, Field]]:
    """The layer and :class:`Field` of each detection feature map, in the network's order."""
    layers = backbone_layers(backbone)
    pairs = zip(layers, receptive_fields(layers, image_side))
    return [(layer, field) for layer, field in pairs if layer.feature is not None]


@dataclass(frozen=True)
class FeatureMapField:
    """A detection feature map's cells beside its default boxes (pixels of the square input).

    Attributes:
        name: the layer (``conv4_3_norm``, ``fc7``, ``extra1_2`` ...).
        cells: the map's side in cells (from the network's arithmetic).
        jump: input pixels between neighbouring cells of the network.
        step: the anchors' step (``AnchorSpec.steps``): distance between anchor centres.
        rf_size: the theoretical receptive field's side.
        rf_in_image: the part of the centre cell's receptive field inside the image (pixels).
        rf_centre: centre of cell 0's receptive field; ``anchor_centre``: of its anchors.
        anchor_sizes: the layer's square boxes ``s_k`` and ``sqrt(s_k s_k+1)`` in pixels.
        anchor_extent: the widest side of any of the layer's anchors in pixels.
    """

    name: str
    cells: int
    jump: int
    step: float
    rf_size: int
    rf_in_image: float
    rf_centre: float
    anchor_centre: float
    anchor_sizes: Tuple[float, ...]
    anchor_extent: float


def feature_map_fields(spec: ModelSpec) -> List[FeatureMapField]:
    """Receptive field and anchors of each detection map of ``spec`` at its ``image_size``.

    ``ValueError`` if the network's maps differ in number or size from ``spec.anchors``.
    """
    anchors = spec.anchors
    side = anchors.image_size
    found = feature_layers(spec.backbone, side)
    if [f.cells for _, f in found] != list(anchors.feature_maps):
        raise ValueError(f"the network makes maps of {[f.cells for _, f in found]} cells at "
                         f"{side} px, the anchors expect {list(anchors.feature_maps)}")
    rows = []
    for (layer, field), prior, step in zip(found, spec_priors(anchors), anchors.steps):
        start, end = field.span(field.cells // 2)
        shapes = prior.shapes((side, side))
        rows.append(FeatureMapField(
            layer.name, field.cells, field.jump, step, field.size,
            min(end, side) - max(start, 0.0), field.centre, anchors.offset * step,
            tuple(s * side for s in prior.sizes),
            max(max(a.width_px, a.height_px) for a in shapes)))
    return rows


@dataclass(frozen=True)
class LayerSummary:
    """One row of :func:`layer_summary`.

    Attributes:
        name, block, kind: as :class:`Layer` (``kind`` ``predictor`` for the SSD's predictors).
        output: output shape ``(C, H, W)`` from MXNet's shape inference on the network.
        kernel: ``"3x3 s1 p1"`` style (``d6`` for a dilation), empty for the L2Norm.
        rf_size, jump: the output cells' receptive field side and spacing in input pixels.
        params: learnable parameters.
        feature: detection feature map index, else ``None``.
    """

    name: str
    block: str
    kind: str
    output: Tuple[int, int, int]
    kernel: str
    rf_size: int
    jump: int
    params: int
    feature: Optional[int] = None


def _geometry(layer: Layer) -> str:
    if layer.kind == "norm":
        return ""
    text = f"{layer.kernel}x{layer.kernel} s{layer.stride} p{layer.padding}"
    return text + (f" d{layer.dilation}" if layer.dilation > 1 else "")


def _inferred_shapes(net, image_size: HW) -> Dict[str, Tuple[int, ...]]:
    """Output shapes ``(1, C, H, W)`` of the backbone's layers by MXNet's shape inference on the
    symbolic network (nothing allocated): conv outputs by their block's name, pools in order as
    ``pool1`` .., the L2Norm output as :data:`CONV4_3_NORM`."""
    features = net.features
    internals = mx.sym.Group(list(features(mx.sym.var("data")))).get_internals()
    _, shapes, _ = internals.infer_shape(data=(1, 3) + tuple(image_size))
    by_name = dict(zip(internals.list_outputs(), shapes))
    out = {}
    pools = [n for n in internals.list_outputs() if "_pooling" in n and n.endswith("_output")]
    for i, name in enumerate(pools):
        out[f"pool{i + 1}"] = by_name[name]
    out[CONV4_3_NORM] = by_name[f"{features.conv4_3_norm.name}_broadcast_mul0_output"]
    for child in _all_convs(features):
        out[child.name] = by_name[f"{child.name}_fwd_output"]
    return out


def _all_convs(features: VGG16) -> List[nn.Conv2D]:
    seqs = list(features.stages) + [features.fc6, features.fc7] + list(features.extras)
    return [c for seq in seqs for c in seq if isinstance(c, nn.Conv2D)]


def layer_summary(net, image_size: Optional[HW] = None) -> List[LayerSummary]:
    """Every layer of an SSD (``gluon_ssd.model.SSD``, initialised or not): the backbone's
    convolutions, pools and L2Norm, then each feature map's class and box predictors.

    ``image_size``: ``(H, W)`` of the input (default: the anchors' square ``image_size``).
    Output shapes come from MXNet's shape inference, so nothing of the input size is
    allocated; receptive fields assume a square input (they do not depend on its size).
    """
    size = tuple(image_size or (net.spec.anchors.image_size,) * 2)
    layers = backbone_layers(net.features)
    shapes = _inferred_shapes(net, size)
    conv_names = iter(c.name for c in _all_convs(net.features))
    keys = [next(conv_names) if layer.kind == "conv" else layer.name for layer in layers]
    rows, feature_fields = [], {}
    for layer, field, key in zip(layers, receptive_fields(layers), keys):
        rows.append(LayerSummary(layer.name, layer.block, layer.kind, tuple(shapes[key][1:]),
                                 _geometry(layer), field.size, field.jump, layer.params,
                                 layer.feature))
        if layer.feature is not None:
            feature_fields[layer.feature] = rows[-1]
    for k, (cls, box) in enumerate(zip(net.class_predictors, net.box_predictors)):
        fmap = feature_fields[k]
        for kind, pred in (("class", cls), ("box", box)):
            kw = pred._kwargs
            k_eff = kw["kernel"][0]
            rows.append(LayerSummary(
                f"{kind}_pred{k + 1}", "predictors", "predictor",
                (kw["num_filter"],) + fmap.output[1:], f"{k_eff}x{k_eff} s1 p{kw['pad'][0]}",
                fmap.rf_size + (k_eff - 1) * fmap.jump, fmap.jump, learnable_params(pred), k))
    return rows


__all__ = ["POOLS", "Layer", "Field", "FeatureMapField", "LayerSummary", "backbone_layers",
           "receptive_fields", "feature_layers", "feature_map_fields", "layer_summary",
           "learnable_params"]
