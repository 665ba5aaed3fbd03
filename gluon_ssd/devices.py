"""Devices: which MXNet contexts a job runs on, and running a network over several of them.

Every job that runs a network takes ``ctx``: one ``mx.Context`` or a list of them (default: the
CPU), or on the command line ``--gpus 0,1`` (absent: the CPU). Several contexts mean data
parallelism: each batch is split along its first axis (``gluon.utils.split_and_load``), each
context runs its share, and training's trainer sums the parts' gradients before one step. MXNet
treats ``mx.cpu(0)`` and ``mx.cpu(1)`` as separate devices (each gets its own engine workers),
which is how the multi-device paths are tested on a machine without GPUs.

BatchNorm over several devices is MXNet's ``SyncBatchNorm`` (networks built for more than one
device get it in place of ``BatchNorm``, :func:`batch_norm_layer`): each device's share is
normalised with the whole batch's mean and variance, and every device updates the same running
statistics, those one device would compute on the whole batch. Its kernel waits for the other
devices inside the call that starts it, so the devices' training passes each run from their own
thread (:func:`run_on_devices`), as GluonCV's ``DataParallelModel`` does; one thread pushing
every device's pass in turn waits forever on the first.

Stored models are device-free: checkpoints and exports hold each parameter once (from the first
context, where every context holds the same values), and load onto any context list.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn
from mxnet.gluon.contrib.nn import SyncBatchNorm

Contexts = Union[mx.Context, Sequence[mx.Context], None]


def as_contexts(ctx: Contexts) -> List[mx.Context]:
    """``ctx`` as a non-empty list without repeats (``None``: ``[mx.cpu()]``)."""
    if ctx is None:
        return [mx.cpu()]
    contexts = [ctx] if isinstance(ctx, mx.Context) else list(ctx)
    if not contexts or not all(isinstance(c, mx.Context) for c in contexts):
        raise ValueError(f"ctx must be an mx.Context or a non-empty list of them, got {ctx!r}")
    if len(set(contexts)) != len(contexts):
        raise ValueError(f"ctx lists a device twice: {contexts}")
    return contexts


def gpu_contexts(gpus: Optional[Sequence[int]]) -> List[mx.Context]:
    """The contexts of ``--gpus`` (``None`` or empty: ``[mx.cpu()]``); ``ValueError`` naming the
    option when MXNet sees fewer GPUs than asked for (the CPU build sees none)."""
    if not gpus:
        return [mx.cpu()]
    available = mx.context.num_gpus()
    missing = [g for g in gpus if g >= available]
    if missing:
        have = (f"{available} GPU{'s' if available != 1 else ''}" if available else
                "no GPU (mx.context.num_gpus() is 0: this MXNet is the CPU build, or no CUDA "
                "device is visible; README, 'GPUs')")
        raise ValueError(f"argument --gpus: GPU {missing[0]} asked for, but MXNet sees {have}")
    return [mx.gpu(g) for g in gpus]


def parallel_apply(block: gluon.Block, batch: mx.nd.NDArray,
                   contexts: Sequence[mx.Context]) -> Tuple[mx.nd.NDArray, ...]:
    """``block``'s outputs for ``batch (B, ...)``, each context running its share of the batch
    (as many contexts as there are samples, at most); every output must have the batch first
    (a detector's ``ids, scores, boxes``), and they are concatenated along it on
    ``contexts[0]``. One context: ``block`` on the whole batch there."""
    contexts = list(contexts)[:batch.shape[0]]
    if len(contexts) == 1:
        outputs = block(batch.as_in_context(contexts[0]))
        return tuple(outputs) if isinstance(outputs, (list, tuple)) else (outputs,)
    parts = [block(p) for p in gluon.utils.split_and_load(batch, contexts, even_split=False)]
    parts = [tuple(p) if isinstance(p, (list, tuple)) else (p,) for p in parts]
    return tuple(mx.nd.concat(*[p[k].as_in_context(contexts[0]) for p in parts], dim=0)
                 for k in range(len(parts[0])))


def block_contexts(block: gluon.Block) -> List[mx.Context]:
    """The contexts a block's parameters live on (those of its first parameter)."""
    return next(iter(block.collect_params().values())).list_ctx()


def first_data(param: gluon.Parameter) -> mx.nd.NDArray:
    """A parameter's value on its first context (every context holds the same after a step)."""
    return param.list_data()[0]


def batch_norm_layer(channels: int, num_devices: int = 1) -> nn.BatchNorm:
    """BatchNorm over ``channels`` for a network on ``num_devices`` devices: more than one
    share one set of batch statistics (``SyncBatchNorm``, with the same parameters: checkpoints
    load into either)."""
    if num_devices > 1:
        return SyncBatchNorm(in_channels=channels, num_devices=num_devices)
    return nn.BatchNorm(in_channels=channels)


def run_on_devices(work: Callable[..., Any], shares: Sequence[Tuple]) -> List[Any]:
    """``[work(*share) for share in shares]``, each share (one device's arguments) in a thread of
    its own when there are several (see the module docstring: SyncBatchNorm's devices must
    run at once). ``autograd.record`` is per thread: ``work`` records its own pass. The first
    exception raised in any thread is raised here."""
    if len(shares) == 1:
        return [work(*shares[0])]
    results: List[Any] = [None] * len(shares)
    errors: List[BaseException] = []

    def run(k: int) -> None:
        try:
            results[k] = work(*shares[k])
        except BaseException as err:  # noqa: B036 -- handed to the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(shares))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
