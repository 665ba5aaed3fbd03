"""GluonCV's trained SSDs (VGG16 atrous, VOC or COCO) as gluon-ssd models and checkpoints.

GluonCV publishes ``ssd_300_vgg16_atrous_voc``, ``ssd_512_vgg16_atrous_voc`` and the ``_coco``
variants (cached under ``~/.mxnet/models``). Their networks are gluon-ssd's ``ssd300_vgg16``,
``ssd300_vgg16_coco`` and ``ssd512_vgg16`` presets layer for layer; only the names differ:

============================================  =============================================
GluonCV file                                  gluon-ssd model
============================================  =============================================
``features.stages.{0-4}.*``                   ``features.stages.{0-4}.*``
``features.stages.5.0.*`` / ``5.2.*``         ``features.fc6.0.*`` / ``features.fc7.0.*``
``features.norm4.scale``                      ``features.conv4_3_norm.scale``
``features.init_scale`` (std * 255)           ``features.input_scale``
``features.extras.*``                         ``features.extras.*``
``class_predictors.{i}.predictor.*``          ``class_predictors.{i}.*``
``box_predictors.{i}.predictor.*``            ``box_predictors.{i}.*``
``anchor_generators.{i}.anchors``             (computed in-graph; checked, not loaded)
============================================  =============================================

Channel layouts agree: class channel ``a * (C + 1) + c`` and box channel ``4 * a + j`` of
anchor ``a`` at a cell, anchors in the order of MultiBoxPrior (both sizes at ratio 1, then the
other ratios at the first size). GluonCV stores constant anchor grids (centre x, centre y,
width, height in pixels of its 300 or 512 training image); gluon-ssd computes the same boxes in
the graph, and :func:`load_gluoncv_ssd` refuses a file whose grids differ from the preset's
(GluonCV's SSD300 for COCO has smaller boxes than for VOC: preset ``ssd300_vgg16_coco``).

Preprocessing is the same on both sides: RGB / 255, minus the ImageNet mean, divided by its std,
then, inside the network, times the constant ``std * 255`` (``input_scale``), which turns it
into the 0..255-minus-mean input of the Caffe-trained VGG16.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import mxnet as mx
import numpy as np
from gluoncv.data import COCODetection

from .anchors import preset_anchors, preset_layer_of_anchor
from .boxes import centre_to_corner, to_normalised
from .checkpoint import save_checkpoint
from .data.datasets import VOC_CLASSES
from .model.ssd import SSD
from .model.weights import assign, gluoncv_atrous_to_base, load_arrays
from .presets import AnchorSpec, get_preset, list_presets

# The class lists GluonCV's published SSDs were trained with, in their order.
GLUONCV_CLASSES: Dict[str, Tuple[str, ...]] = {
    "voc": tuple(VOC_CLASSES),
    "coco": tuple(COCODetection.CLASSES),
}
ANCHOR_TOLERANCE = 1e-4  # normalised units; a different grid is off by far more


def gluoncv_ssd_arrays(arrays: Mapping[str, mx.nd.NDArray], source: str
                       ) -> Tuple[Dict[str, mx.nd.NDArray], List[mx.nd.NDArray]]:
    """A GluonCV VGG16-atrous SSD's named arrays -> ``(gluon-ssd arrays, anchor grids)``.

    The gluon-ssd arrays are keyed by structural names (``features.fc6.0.weight``...); the
    anchor grids are GluonCV's constants ``(1, 1, A, A, 4k)`` per layer (empty if the file has
    none). ``ValueError`` names the file if it is not a GluonCV SSD, or one on another base.
    """
    if "class_predictors.0.predictor.weight" not in arrays:
        first = next(iter(arrays), None)
        raise ValueError(f"{source}: not a GluonCV SSD parameter file (no "
                         f"'class_predictors.0.predictor.weight'; first parameter {first!r})")
    if "features.stages.5.0.weight" not in arrays:
        base = next((k for k in arrays if k.startswith("features.")), None)
        raise ValueError(f"{source}: a GluonCV SSD on another base network (first base "
                         f"parameter {base!r}); only the VGG16-atrous SSDs convert")
    features, out, grids = {}, {}, {}
    for name, value in arrays.items():
        head, _, rest = name.partition(".")
        if head == "features":
            features[rest] = value
        elif head in ("class_predictors", "box_predictors"):
            out[name.replace(".predictor.", ".")] = value
        elif head == "anchor_generators":
            grids[int(rest.split(".")[0])] = value
        else:
            raise ValueError(f"{source}: unexpected parameter {name!r} in a GluonCV SSD file")
    try:
        base = gluoncv_atrous_to_base(features)
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None
    return {**base, **out}, [grids[i] for i in sorted(grids)]


def file_num_classes(arrays: Mapping[str, mx.nd.NDArray]) -> int:
    """C, the object classes of a GluonCV SSD file, from its first predictors' channels:
    ``4k`` box channels and ``k (C + 1)`` class channels for ``k`` anchors per cell."""
    box = arrays["box_predictors.0.predictor.weight"].shape[0]
    cls = arrays["class_predictors.0.predictor.weight"].shape[0]
    return cls * 4 // box - 1


def gluoncv_class_names(classes: Union[str, Sequence[str], None], num_classes: int
                        ) -> Tuple[str, ...]:
    """The class names for a GluonCV SSD with ``num_classes`` object classes.

    ``classes``: ``"voc"`` or ``"coco"`` (GluonCV's lists), explicit names (e.g. for a model
    GluonCV fine-tuned on other classes), or ``None``: VOC for 20 classes, COCO for 80.
    """
    if classes is None:
        found = [k for k, names in GLUONCV_CLASSES.items() if len(names) == num_classes]
        if not found:
            raise ValueError(f"the file's predictors have {num_classes} classes, neither VOC's "
                             f"20 nor COCO's 80: pass the class names")
        return GLUONCV_CLASSES[found[0]]
    if isinstance(classes, str):
        if classes not in GLUONCV_CLASSES:
            raise ValueError(f"unknown class list {classes!r}; choose one of "
                             f"{sorted(GLUONCV_CLASSES)} or pass the names")
        return GLUONCV_CLASSES[classes]
    return tuple(classes)


def gluoncv_anchors(grids: Sequence[mx.nd.NDArray], spec: AnchorSpec) -> np.ndarray:
    """GluonCV's anchor grids cropped to the preset's feature maps: ``(N, 4)`` normalised corners
    ``xmin, ymin, xmax, ymax`` in gluon-ssd's order (layer, row, column, anchor)."""
    layers = []
    for grid, size in zip(grids, spec.feature_maps):
        centre = grid.asnumpy()[0, 0, :size, :size].reshape(-1, 4)  # cx, cy, w, h in pixels
        layers.append(to_normalised(centre_to_corner(centre), (spec.image_size, spec.image_size)))
    return np.concatenate(layers).astype(np.float32)


def anchor_mismatch(grids: Sequence[mx.nd.NDArray], spec: AnchorSpec) -> Optional[str]:
    """How the file's anchor grids differ from the anchors of ``spec`` (beyond
    :data:`ANCHOR_TOLERANCE`), naming the first layer that differs; ``None`` if they agree."""
    if len(grids) != len(spec.feature_maps):
        return f"{len(grids)} anchor layers in the file, {len(spec.feature_maps)} in the preset"
    if any(g.shape[2] < f or g.shape[3] < f for g, f in zip(grids, spec.feature_maps)):
        return "the file's anchor grids are smaller than the preset's feature maps"
    ours, theirs = preset_anchors(spec), gluoncv_anchors(grids, spec)
    if ours.shape != theirs.shape:
        return f"the file has {theirs.shape[0]} anchors, the preset {ours.shape[0]}"
    error = np.abs(ours - theirs).max(axis=1)
    if error.max() <= ANCHOR_TOLERANCE:
        return None
    layer = preset_layer_of_anchor(spec)
    k = int(layer[np.argmax(error > ANCHOR_TOLERANCE)])
    return (f"the file's anchors of layer {k} differ from the preset's by up to "
            f"{error[layer == k].max():.4g} (normalised)")


def matching_presets(grids: Sequence[mx.nd.NDArray]) -> List[str]:
    """The presets whose anchors equal the file's anchor grids."""
    return [name for name in list_presets()
            if anchor_mismatch(grids, get_preset(name).model.anchors) is None]


def load_gluoncv_ssd(path: str, preset: Optional[str] = None,
                     classes: Union[str, Sequence[str], None] = None,
                     ctx: Optional[mx.Context] = None) -> Tuple[SSD, str]:
    """A GluonCV VGG16-atrous SSD parameter file as a gluon-ssd :class:`SSD`: ``(net, preset
    name)``.

    Args:
        path: e.g. ``~/.mxnet/models/ssd_300_vgg16_atrous_voc-0e169fbb.params``.
        preset: ``ssd300_vgg16`` for ``ssd_300_vgg16_atrous_voc``, ``ssd300_vgg16_coco`` for
            ``ssd_300_vgg16_atrous_coco`` (smaller anchors), ``ssd512_vgg16`` for both
            ``ssd_512_*`` files; ``None``: the preset whose anchors equal the file's.
        classes: see :func:`gluoncv_class_names` (default: VOC or COCO by the class count).
        ctx: device (default CPU).

    Raises ``ValueError`` if the file is not a GluonCV VGG16 SSD, or is one of another preset or
    class count (naming the first mismatched parameter, checked in the model's order, with both
    shapes), or if its anchors differ from the preset's (naming the preset they match).
    """
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    arrays = load_arrays(path)
    mapped, grids = gluoncv_ssd_arrays(arrays, path)
    names = gluoncv_class_names(classes, file_num_classes(arrays))
    if preset is None:
        found = matching_presets(grids) if grids else []
        if not found:
            raise ValueError(f"{path}: no preset has this file's anchors; pass the preset")
        preset = found[0]
    preset = get_preset(preset).name
    spec = get_preset(preset).model
    net = SSD(spec, names)
    for param in net.collect_params().values():  # all set from the file: no random draws
        param.initialize(init=mx.init.Zero(), ctx=ctx or mx.cpu())
    # In the model's order, so that the first reported problem is a shape mismatch when there
    # is one (a file of the other preset has extra layers too, but those come later).
    params = net._collect_params_with_prefix()
    ordered = {name: mapped[name] for name in params if name in mapped}
    ordered.update(mapped)
    assign(net, ordered, path)
    mismatch = anchor_mismatch(grids, spec.anchors) if grids else None
    if mismatch:
        found = matching_presets(grids)
        hint = f"; they match preset {found[0]!r}" if found else ""
        raise ValueError(f"{path}: not a model of preset {preset!r}: {mismatch}{hint}")
    return net, preset


def convert_gluoncv_ssd(path: str, out: str, preset: Optional[str] = None,
                        classes: Union[str, Sequence[str], None] = None) -> Tuple[SSD, str]:
    """Convert a GluonCV SSD parameter file (see :func:`load_gluoncv_ssd`) into a gluon-ssd
    checkpoint at ``out`` (read by :func:`gluon_ssd.checkpoint.load_checkpoint`); returns the
    network and its preset name. The checkpoint's metadata records the preset, the input size
    and the source file.
    """
    net, preset = load_gluoncv_ssd(path, preset, classes)
    save_checkpoint(out, net, {"preset": preset, "image_size": net.spec.anchors.image_size,
                               "source": {"gluoncv_file": os.path.basename(path)}})
    return net, preset


__all__ = ["GLUONCV_CLASSES", "gluoncv_ssd_arrays", "gluoncv_class_names", "gluoncv_anchors",
           "anchor_mismatch", "matching_presets", "load_gluoncv_ssd", "convert_gluoncv_ssd"]
