"""Checkpoints: one self-describing file per checkpoint, written atomically, read without pickle.

A checkpoint is an MXNet ``nd.save`` file holding

* ``model:<name>``: the SSD's parameters by structural name (``features.stages.0.0.weight``...),
* ``optimizer:<index>:<j>``: the optimizer's state arrays (e.g. Adam's mean and variance),
* ``meta``: a JSON document stored as a uint8 array: preset name, model spec, class names,
  epoch, iteration, the optimizer's update counts, the training history and anything else the
  trainer records (standard JSON: a NaN is stored as ``null``, :func:`~gluon_ssd.jsonfile.json_ready`).

It is written to a temporary file (``.tmp-*.params``) in the same folder and renamed over the
target, so a run killed while saving leaves the previous checkpoint intact; the next save in that
folder removes such leftovers. The file gets the permissions of any other output (the process
umask), not the private ones of a temporary file.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import tempfile
from typing import Any, Callable, Dict, Optional, Sequence, Set, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet import gluon

from .anchors import spec_priors
from .devices import Contexts, as_contexts, first_data
from .jsonfile import json_ready
from .model.ssd import SSD
from .model.weights import assign, load_arrays
from .presets import AnchorSpec, ModelSpec

META_KEY = "meta"
TEMPORARY = (".tmp-", ".params")  # prefix and suffix of a checkpoint being written


def _index_names(net: SSD, trainer: gluon.Trainer) -> Dict[int, str]:
    """Trainer index -> structural parameter name. The trainer numbers parameters by their
    global names, which differ between processes, so states are saved under structural names."""
    names = {id(p): n for n, p in net._collect_params_with_prefix().items()}
    return {i: names[id(p)] for i, p in enumerate(trainer._params)}


def optimizer_arrays(net: SSD, trainer: gluon.Trainer
                     ) -> Tuple[Dict[str, mx.nd.NDArray], Dict[str, Any]]:
    """The trainer's optimizer state as named arrays plus JSON-able counters."""
    names = _index_names(net, trainer)
    opt = trainer._optimizer
    arrays, layout = {}, {}
    for index, state in trainer._updaters[0].states.items():
        parts = state if isinstance(state, (tuple, list)) else (state,)
        layout[names[index]] = len(parts) if isinstance(state, (tuple, list)) else -1
        for j, part in enumerate(parts):
            if part is not None:
                arrays[f"optimizer:{names[index]}:{j}"] = part
    counters = {"num_update": opt.num_update, "state_layout": layout,
                "update_count": {names[i]: c for i, c in opt._index_update_count.items()}}
    return arrays, counters


def restore_optimizer(net: SSD, trainer: gluon.Trainer, arrays: Dict[str, mx.nd.NDArray],
                      counters: Dict[str, Any]) -> None:
    """Put a saved optimizer state back into ``trainer`` (the inverse of :func:`optimizer_arrays`)."""
    index = {n: i for i, n in _index_names(net, trainer).items()}
    opt = trainer._optimizer
    opt.num_update = counters["num_update"]
    opt._index_update_count.clear()
    opt._index_update_count.update({index[n]: c for n, c in counters["update_count"].items()})
    # one updater per device (every device runs the optimiser on the summed gradient)
    for ctx, updater in zip(trainer._contexts, trainer._updaters):
        for name, layout in counters["state_layout"].items():
            parts = [arrays.get(f"optimizer:{name}:{j}") for j in range(max(layout, 1))]
            parts = [None if p is None else p.copyto(ctx) for p in parts]
            updater.states[index[name]] = parts[0] if layout == -1 else tuple(parts)
            updater.states_synced[index[name]] = False


def save_checkpoint(path: str, net: SSD, meta: Dict[str, Any],
                    trainer: Optional[gluon.Trainer] = None) -> None:
    """Write ``net`` (+ ``trainer``'s state) and ``meta`` to ``path`` atomically."""
    # from the first device: the same on every one; stored without a device
    arrays = {f"model:{k}": first_data(p) for k, p in net._collect_params_with_prefix().items()}
    meta = dict(meta, classes=list(net.classes), model_spec=dataclasses.asdict(net.spec))
    if trainer is not None:
        opt_arrays, meta["optimizer"] = optimizer_arrays(net, trainer)
        arrays.update(opt_arrays)
    document = json.dumps(json_ready(meta), allow_nan=False).encode()
    arrays[META_KEY] = mx.nd.array(np.frombuffer(document, dtype=np.uint8), dtype="uint8")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_leftovers(folder)
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY[0], suffix=TEMPORARY[1], dir=folder)
    os.close(fd)
    try:
        mx.nd.save(tmp, arrays)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_leftovers(folder: str) -> None:
    """Delete the temporary files of saves that were killed before their rename (one process
    saves into a run folder, so any such file there is a leftover)."""
    for path in glob.glob(os.path.join(glob.escape(folder), "*".join(TEMPORARY))):
        os.remove(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_checkpoint(path: str) -> Tuple[Dict[str, mx.nd.NDArray], Dict[str, Any]]:
    """``(arrays, meta)`` of a checkpoint file; ``ValueError`` if it is not one."""
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path!r} does not exist")
    arrays = load_arrays(path)
    if META_KEY not in arrays:
        raise ValueError(f"{path}: not a gluon-ssd checkpoint (no {META_KEY!r} entry)")
    try:
        meta = json.loads(arrays.pop(META_KEY).asnumpy().tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: its metadata is not JSON ({err})") from None
    check_meta(meta, path)
    return arrays, meta


def check_meta(meta: Any, source: str, model_key: str = "model_spec") -> None:
    """``ValueError`` naming ``source`` unless ``meta`` describes a model: a JSON object with a
    non-empty ``classes`` list of names and a ``model_key`` object (a checkpoint's
    ``model_spec``; an export's ``input``)."""
    if not isinstance(meta, dict):
        raise ValueError(f"{source}: its metadata is not a JSON object")
    classes = meta.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{source}: its metadata has no list of class names ('classes')")
    if not isinstance(meta.get(model_key), dict):
        what = {"model_spec": "model", "input": "input"}.get(model_key, model_key)
        raise ValueError(f"{source}: its metadata has no {what} description ({model_key!r})")


def check_identity(source: str, found_preset: Optional[str], found_classes: Sequence[str],
                   preset: Optional[str] = None, classes: Optional[Sequence[str]] = None) -> None:
    """``ValueError`` naming ``source`` and both values if the preset or the class list of a
    stored model (checkpoint or export) differs from the expected one (``None``: not checked)."""
    if preset is not None and found_preset != preset:
        raise ValueError(f"{source} is a model of preset {found_preset!r}, not {preset!r}")
    if classes is not None and list(classes) != list(found_classes):
        raise ValueError(f"{source} has {len(found_classes)} classes {list(found_classes)}, "
                         f"expected {len(classes)} {list(classes)}")


def model_from_checkpoint(arrays: Dict[str, mx.nd.NDArray], meta: Dict[str, Any], source: str,
                          preset: Optional[str] = None, classes: Optional[Sequence[str]] = None,
                          ctx: Contexts = None, training: bool = False) -> SSD:
    """The SSD that a checkpoint's ``(arrays, meta)`` describe, with its weights, on ``ctx``
    (one context or a list; default the CPU). ``training`` over several contexts shares
    BatchNorm's batch statistics between them (``SyncBatchNorm``, :mod:`gluon_ssd.devices`);
    inference needs no sharing, and keeps the one-device layers an export writes.

    ``preset``/``classes``, when given, must match the checkpoint's; a mismatch names both.
    """
    check_identity(source, meta.get("preset"), meta["classes"], preset, classes)
    contexts = as_contexts(ctx)
    net = SSD(ModelSpec.from_dict(meta["model_spec"], source), meta["classes"],
              len(contexts) if training else 1)
    net.initialize(ctx=contexts)
    assign(net, {k[len("model:"):]: v for k, v in arrays.items() if k.startswith("model:")},
           source)
    return net


def load_checkpoint(path: str, preset: Optional[str] = None,
                    classes: Optional[Sequence[str]] = None,
                    ctx: Contexts = None) -> Tuple[SSD, Dict[str, Any]]:
    """Build the SSD a checkpoint file describes and load its weights onto ``ctx`` (one context
    or a list; default the CPU): ``(net, meta)``."""
    arrays, meta = read_checkpoint(path)
    return model_from_checkpoint(arrays, meta, path, preset, classes, ctx), meta


def fine_tune_start(path: str, classes: Sequence[str], preset: Optional[str] = None,
                    anchors: Union[AnchorSpec, Callable[[AnchorSpec], AnchorSpec], None] = None,
                    ctx: Contexts = None) -> Tuple[SSD, int, int]:
    """An SSD for ``classes`` starting from a trained checkpoint (fine-tuning): its backbone and
    box predictors, and the class predictors' rows of the background and of every class in
    both lists (:meth:`~gluon_ssd.model.ssd.SSD.reset_classes`); other classes start fresh.

    ``anchors``, when given, replace the checkpoint's (a function: its value for the
    checkpoint's anchors, e.g. them extended to a dataset,
    :func:`~gluon_ssd.anchor_fit.extend_anchors`): the box and class predictors of every layer
    whose anchors change start fresh (kept rows measured no better: a layer the initial data
    hardly used has learnt little but background). The net lives on ``ctx`` (one context or a
    list). Returns ``(net, arrays kept, arrays)``, both counted without the class predictors.
    ``ValueError`` naming ``path`` if the checkpoint is of another preset than ``preset``.
    """
    arrays, meta = read_checkpoint(path)
    check_identity(path, meta.get("preset"), meta["classes"], preset)
    spec = stored_spec = ModelSpec.from_dict(meta["model_spec"], path)
    if anchors is not None:
        spec = dataclasses.replace(spec, anchors=anchors(spec.anchors) if callable(anchors)
                                   else anchors)
    contexts = as_contexts(ctx)
    net = SSD(spec, meta["classes"], len(contexts))
    net.initialize(ctx=contexts)
    params = net._collect_params_with_prefix()
    stored = {k[len("model:"):]: v for k, v in arrays.items() if k.startswith("model:")}
    fresh = _changed_predictors(stored_spec.anchors, spec.anchors)
    fits = {k: v for k, v in stored.items() if k not in fresh
            and k in params and tuple(v.shape) == tuple(params[k].shape)}
    assign(net, fits, path, allow_missing=True)
    net.reset_classes(classes)
    others = [k for k in params if not k.startswith("class_predictors.")]
    return net, sum(k in fits for k in others), len(others)


def _changed_predictors(before: AnchorSpec, after: AnchorSpec) -> Set[str]:
    """The box and class predictors' weights and biases of the layers whose anchors differ
    between ``before`` and ``after`` (their rows are per anchor: ``a * D + d``)."""
    return {f"{head}.{layer}.{part}"
            for layer, (old, new) in enumerate(zip(spec_priors(before), spec_priors(after)))
            if old.shapes() != new.shapes()
            for head in ("box_predictors", "class_predictors") for part in ("weight", "bias")}
