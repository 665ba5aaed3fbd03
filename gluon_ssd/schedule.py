"""The learning-rate schedule of a preset's :class:`~gluon_ssd.presets.TrainSpec`: a pure function
of the (fractional) epoch, and the same as one of MXNet's schedulers for an optimiser that runs
on parameter servers."""
from __future__ import annotations

import math

import mxnet as mx

from .presets import TrainSpec


def learning_rate(spec: TrainSpec, base_lr: float, epoch: float, total_epochs: int) -> float:
    """The learning rate at (fractional) ``epoch``: linear warm-up, then cosine or step decay."""
    if epoch < spec.warmup_epochs:
        return base_lr * (epoch + 1e-3) / spec.warmup_epochs
    if spec.schedule == "cosine":
        span = max(total_epochs - spec.warmup_epochs, 1e-9)
        return base_lr * 0.5 * (1 + math.cos(math.pi * min((epoch - spec.warmup_epochs) / span, 1)))
    if spec.schedule == "step":
        return base_lr * spec.lr_factor ** sum(epoch >= s for s in spec.lr_steps)
    raise ValueError(f"unknown schedule {spec.schedule!r} (use 'cosine' or 'step')")


def server_lr_scheduler(spec: TrainSpec, base_lr: float, total_epochs: int,
                        updates_per_epoch: int) -> mx.lr_scheduler.LRScheduler:
    """:func:`learning_rate` as one of MXNet's schedulers of the update count, for an optimiser
    that runs on parameter servers (``dist_async``, ``updates_per_epoch`` = workers x steps per
    worker): the servers unpickle it inside ``import mxnet``, where only MXNet's classes load."""
    warmup = int(round(spec.warmup_epochs * updates_per_epoch))
    start = base_lr * 1e-3 / spec.warmup_epochs if warmup else 0.0  # learning_rate at epoch 0
    if spec.schedule == "cosine":
        return mx.lr_scheduler.CosineScheduler(max(total_epochs * updates_per_epoch, warmup + 1),
                                               base_lr, 0.0, warmup, start)
    if spec.schedule == "step":
        if not spec.lr_steps:
            return mx.lr_scheduler.FactorScheduler(1 << 62, 1.0, base_lr=base_lr,
                                                   warmup_steps=warmup, warmup_begin_lr=start)
        # MXNet decays once the update count passes a step: step s epochs -> s * updates - 1
        steps = [max(int(round(s * updates_per_epoch)) - 1, 1) for s in spec.lr_steps]
        return mx.lr_scheduler.MultiFactorScheduler(steps, spec.lr_factor, base_lr, warmup, start)
    raise ValueError(f"unknown schedule {spec.schedule!r} (use 'cosine' or 'step')")
