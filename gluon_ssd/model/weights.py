"""Loading weights from files: ImageNet VGG16 bases and checked parameter assignment.

Every loader maps the file's names to the network's structural names (those of
``Block.collect_params`` with prefixes, e.g. ``features.stages.0.0.weight``), then assigns them
through :func:`assign`, which refuses a file of another model with the first mismatched
parameter and both shapes.
"""
from __future__ import annotations

import re
from typing import Dict, Mapping

import mxnet as mx
import numpy as np
from mxnet import gluon

# GluonCV's vgg16_atrous was converted from Caffe: it expects 0..255 RGB minus the mean, which
# is ImageNet-normalised input times std * 255. gluon-ssd feeds normalised input, so the base
# carries this factor as its constant ``input_scale``.
CAFFE_INPUT_SCALE = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1) * 255


# Lines of an MXNet error message that locate it in MXNet's C++ sources, not say what is wrong.
_MXNET_LOCATION = ("Traceback (most recent call last)", 'File "', "[bt]", "Stack trace")


def mxnet_reason(err: BaseException) -> str:
    """What an MXNet error says is wrong, on one line: its message without the lines locating
    it in MXNet's sources (``Traceback (most recent call last):``, ``File "...", line N``, stack
    frames) and without the ``MXNetError:`` prefix; the error's type if nothing is left."""
    lines = (line.strip() for line in str(err).splitlines())
    reason = " ".join(line for line in lines if line and not line.startswith(_MXNET_LOCATION))
    reason = re.sub(r"^MXNetError: ", "", reason) or type(err).__name__
    return reason if len(reason) <= 300 else reason[:297] + "..."


def load_arrays(path: str) -> Dict[str, mx.nd.NDArray]:
    """The named arrays of an MXNet parameter file (``nd.save`` format), with a clear error."""
    try:
        arrays = mx.nd.load(path)
    except Exception as err:  # MXNetError for a corrupt or foreign file
        raise ValueError(f"{path}: not an MXNet parameter file ({mxnet_reason(err)})") from None
    if not isinstance(arrays, dict):
        raise ValueError(f"{path}: holds unnamed arrays, not a parameter file")
    # Files from Block.save_parameters may prefix names with "arg:"/"aux:" (symbol export).
    return {k[4:] if k.startswith(("arg:", "aux:")) else k: v for k, v in arrays.items()}


def assign(net: gluon.Block, arrays: Mapping[str, mx.nd.NDArray], source: str,
           allow_missing: bool = False) -> None:
    """Set ``net``'s parameters from ``arrays`` (structural name -> array), checking every shape.

    Raises ``ValueError`` naming the first parameter whose shape differs (with both shapes), a
    name the network does not have, or (unless ``allow_missing``) a parameter the file lacks.
    """
    params = net._collect_params_with_prefix()
    for name, value in arrays.items():
        if name not in params:
            raise ValueError(f"{source}: parameter {name!r} is not in this model "
                             f"(is the file from another model?)")
        expected = params[name].shape
        if tuple(value.shape) != tuple(expected):
            raise ValueError(f"{source}: parameter {name!r} has shape {tuple(value.shape)} in the "
                             f"file but {tuple(expected)} in this model")
    missing = [n for n in params if n not in arrays]
    if missing and not allow_missing:
        raise ValueError(f"{source}: missing {len(missing)} parameters, first {missing[0]!r}")
    for name, value in arrays.items():
        params[name].set_data(value)


def gluoncv_vgg16_to_base(arrays: Mapping[str, mx.nd.NDArray]) -> Dict[str, mx.nd.NDArray]:
    """GluonCV's ImageNet ``vgg16`` classifier -> SSD's base (``features.*`` names).

    The 13 convolutions map in order; fc6 ``(4096, 512*7*7)`` and fc7 ``(4096, 4096)`` become the
    atrous convolutions by subsampling as in the paper: every 4th output channel, every 3rd
    spatial tap of fc6 (7x7 -> 3x3, dilation 6 covers the same span), every 4th input of fc7.
    """
    if any(k.endswith(("gamma", "running_mean")) for k in arrays):
        raise ValueError("a VGG16 with BatchNorm (vgg16_bn) cannot be loaded into SSD's VGG16 "
                         "base, which has no BatchNorm at full width")
    convs = sorted({int(k.split(".")[1]) for k, v in arrays.items()
                    if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4})
    dense = sorted({int(k.split(".")[1]) for k, v in arrays.items()
                    if k.startswith("features.") and k.endswith(".weight") and v.ndim == 2})
    if len(convs) != 13 or len(dense) != 2:
        raise ValueError(f"expected GluonCV's vgg16 (13 convolutions, 2 dense layers), found "
                         f"{len(convs)} convolutions and {len(dense)} dense layers")
    out = {}
    layers = [2, 2, 3, 3, 3]
    slots = [(s, 2 * i) for s, n in enumerate(layers) for i in range(n)]
    for index, (stage, pos) in zip(convs, slots):
        for kind in ("weight", "bias"):
            out[f"features.stages.{stage}.{pos}.{kind}"] = arrays[f"features.{index}.{kind}"]
    fc6_w = arrays[f"features.{dense[0]}.weight"]
    fc7_w = arrays[f"features.{dense[1]}.weight"]
    if fc6_w.shape != (4096, 512 * 7 * 7) or fc7_w.shape != (4096, 4096):
        raise ValueError(f"fc6/fc7 have shapes {fc6_w.shape}, {fc7_w.shape}; "
                         "expected (4096, 25088) and (4096, 4096)")
    out["features.fc6.0.weight"] = fc6_w.reshape((4096, 512, 7, 7))[::4, :, ::3, ::3]
    out["features.fc6.0.bias"] = arrays[f"features.{dense[0]}.bias"][::4]
    out["features.fc7.0.weight"] = fc7_w[::4, ::4].reshape((1024, 1024, 1, 1))
    out["features.fc7.0.bias"] = arrays[f"features.{dense[1]}.bias"][::4]
    out["features.input_scale"] = mx.nd.ones((1, 3, 1, 1))
    return out


def gluoncv_atrous_to_base(arrays: Mapping[str, mx.nd.NDArray]) -> Dict[str, mx.nd.NDArray]:
    """GluonCV's ``vgg16_atrous`` (Caffe-converted, SSD-ready) -> SSD's base (``features.*``)."""
    out = {}
    for name, value in arrays.items():
        parts = name.split(".")
        if parts[0] == "stages" and parts[1] == "5":
            new = f"fc6.0.{parts[3]}" if parts[2] == "0" else f"fc7.0.{parts[3]}"
        elif parts[0] == "norm4":
            new = "conv4_3_norm.scale"
        elif parts[0] == "init_scale":
            new = "input_scale"
        elif parts[0] in ("stages", "extras"):
            new = name
        else:
            raise ValueError(f"unexpected parameter {name!r} in a vgg16_atrous file")
        out["features." + new] = value
    out.setdefault("features.input_scale", mx.nd.array(CAFFE_INPUT_SCALE))
    return out


def load_base(net: gluon.Block, path: str) -> None:
    """Load an ImageNet VGG16 base into ``net`` (an :class:`~gluon_ssd.model.ssd.SSD`).

    Accepts GluonCV's ``vgg16`` classifier file (fc6/fc7 subsampled to atrous convolutions),
    GluonCV's ``vgg16_atrous`` file, or a gluon-ssd checkpoint (its ``features.*`` part). The
    predictors (and any extra layer the file lacks) keep their initialisation.
    """
    spec = net.spec.backbone
    if spec.width != 1.0 or spec.batch_norm:
        raise ValueError(f"a pretrained VGG16 base needs width 1 and no BatchNorm; this preset has "
                         f"width={spec.width}, batch_norm={spec.batch_norm}")
    arrays = load_arrays(path)
    if any(k.startswith("features.stages.") for k in arrays):
        base = {k: v for k, v in arrays.items() if k.startswith("features.")}
    elif "features.0.weight" in arrays:
        base = gluoncv_vgg16_to_base(arrays)
    elif "stages.0.0.weight" in arrays:
        base = gluoncv_atrous_to_base(arrays)
    else:
        raise ValueError(f"{path}: not a VGG16 parameter file (first parameter "
                         f"{next(iter(arrays), None)!r})")
    assign(net, base, path, allow_missing=True)
