"""Models by name: :func:`get_model` builds a preset's network, fresh or with the weights shipped
inside the package (``gluon_ssd.get_model("demo", pretrained=True)``; also ``gluon-ssd detect demo
images/``, ``gluon-ssd train --init demo``).

``demo``: the demo preset trained on SyntheticShapes by the ``make demo`` recipe (seed 0, 2
threads), the best epoch's checkpoint (no optimiser state). ``tools/make_demo_weights.py``
regenerates it and compares the weights with the shipped ones; its metadata records the config,
so its validation split can be rebuilt (``tests/test_pretrained.py``).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple, Union


from .checkpoint import load_checkpoint
from .devices import Contexts, as_contexts
from .model.ssd import SSD
from .model.weights import load_base
from .presets import get_preset

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PRETRAINED = {"demo": "demo.params"}  # name -> file in WEIGHTS_DIR


def pretrained_names() -> Tuple[str, ...]:
    return tuple(PRETRAINED)


def pretrained_path(name: str) -> str:
    """The shipped checkpoint file of model ``name``; ``ValueError`` for an unknown name."""
    if name not in PRETRAINED:
        raise ValueError(f"no pretrained model {name!r}; shipped: {list(PRETRAINED)}")
    return os.path.join(WEIGHTS_DIR, PRETRAINED[name])


def resolve_model(path: Union[str, "os.PathLike[str]"]) -> str:
    """``path`` itself if a file is there or it names no shipped model, else the shipped
    checkpoint of that name (a file of the same name wins)."""
    path = os.fspath(path)
    return pretrained_path(path) if path in PRETRAINED and not os.path.exists(path) else path


def get_model(name: str, classes: Optional[Sequence[str]] = None, *, pretrained: bool = False,
              pretrained_base: Optional[str] = None, ctx: Contexts = None) -> SSD:
    """The SSD of preset ``name``, initialised.

    Args:
        name: a preset (see :func:`gluon_ssd.list_presets`), e.g. ``"ssd300_vgg16"``.
        classes: object class names (required unless ``pretrained``). With ``pretrained``,
            other classes than the shipped model's replace its class predictors
            (:meth:`~gluon_ssd.model.ssd.SSD.reset_classes`: classes of the same name keep their
            weights), for fine-tuning.
        pretrained: load the weights shipped for ``name`` (:data:`PRETRAINED`).
        pretrained_base: optional path to an ImageNet VGG16 parameter file (GluonCV's ``vgg16``
            or ``vgg16_atrous``); see :func:`gluon_ssd.model.weights.load_base`.
        ctx: the device(s): one context or a list (default the CPU).
    """
    ctx = as_contexts(ctx)
    if pretrained:
        if pretrained_base:
            raise ValueError("pretrained=True loads every weight; drop pretrained_base")
        net, _ = load_checkpoint(pretrained_path(name), get_preset(name).name, ctx=ctx)
        if classes is not None and tuple(classes) != net.classes:
            net.reset_classes(classes)
        return net
    if classes is None:
        raise ValueError(f"get_model({name!r}) needs classes (or pretrained=True)")
    net = SSD(get_preset(name).model, classes)
    net.initialize(ctx=ctx)
    if pretrained_base:
        load_base(net, pretrained_base)
    return net
