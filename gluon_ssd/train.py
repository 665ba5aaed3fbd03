"""Training: the loop, optimiser and schedule, evaluation, logging, checkpoints and exact resume.

One epoch: for each batch, the anchors (fixed for a fixed input size) are matched to the labels
(``targets.py``), the SSD's raw outputs are scored by :class:`~gluon_ssd.loss.SSDLoss` and the
optimiser steps. The learning rate is a pure function of the iteration (warm-up, then cosine or
step decay), the data order and the augmentation of epoch ``e`` are pure functions of
``(seed, e)``, and every epoch ends with an atomic checkpoint of the model, the optimiser state
and the history: a run killed and resumed ends with the same weights as one never stopped.
The run folder is checked before anything is built (:mod:`gluon_ssd.run_folder`): a new run
never clobbers an earlier one, and a resumed run keeps the settings it was trained with.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm import tqdm

from .checkpoint import model_from_checkpoint, restore_optimizer, save_checkpoint
from .data.datasets import DataConfig, build_split
from .data.labels import check_classes
from .data.transforms import Batch, DetectionLoader, TrainTransform
from .distributed.cluster import Cluster, WorkerRecord, connect
from .evaluation.run import evaluate, evaluation_loader
from .loss import LossParts, SSDLoss
from .model.head import DetectionNet
from .model.ssd import SSD
from .model.weights import load_base
from .precision import set_training_dtype
from .presets import Preset, Spec, TrainSpec, get_preset
from .run_folder import (BEST, LAST, fixed_settings, open_run_folder, start_run_folder,
                         write_log)
from .targets import multibox_targets

VALIDATION_METRIC = "voc07"  # what EpochRecord.val_map and the best checkpoint go by
LOGGED_LOSSES = ("loss", "confidence", "localization")  # EpochRecord's names, see logged_losses


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig(Spec):
    """What ``gluon-ssd train`` runs. ``None`` fields take the preset's value.

    Attributes:
        preset: preset name (``demo``, ``ssd300_vgg16``, ...).
        data: ``synthetic``, ``voc``, ``coco`` or a dataset folder.
        out: run folder (checkpoints, logs, pictures).
        data_root: root folder for ``voc``/``coco``.
        image_size: network input side in pixels (default: the preset's).
        train_size, val_size: number of synthetic images per split.
        cache_mb: memory per split for synthetic images once rendered, so that later epochs
            skip rendering (:class:`~gluon_ssd.data.synthetic.SyntheticShapes`); per loader
            process with ``num_workers`` > 0. 0 renders every time.
        mining, augment: hard negative mining / the paper's augmentation on or off (default:
            the preset's).
        resume: continue from ``out/checkpoint-last.params`` (which must exist), with the
            settings the run was trained with (:mod:`gluon_ssd.run_folder`); ``epochs`` may grow.
        overwrite: replace a run already in ``out`` (without it, and without ``resume``, a
            folder holding a run is refused).
        pretrained_base: ImageNet VGG16 parameter file for the base network.
        dtype: ``float32``, or ``bf16`` for bfloat16 mixed precision (``mxnet.contrib.amp`` on
            oneDNN; switches the whole process, see :mod:`gluon_ssd.precision`).
        kvstore: ``local``, ``device``, ``dist_sync``, ``dist_async`` or ``horovod`` (see
            :mod:`gluon_ssd.distributed.cluster`); ``batch_size`` is per worker, rank 0 logs,
            evaluates and writes the checkpoints and logs (and its caller the pictures).
        record_workers: every worker writes ``worker-<rank>.jsonl`` / ``.params`` (see
            :class:`~gluon_ssd.distributed.cluster.WorkerRecord`), to check a distributed run.
    """

    preset: str = "demo"
    data: str = "synthetic"
    out: str = "runs/train"
    data_root: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    eval_every: Optional[int] = None
    image_size: Optional[int] = None
    train_size: Optional[int] = None
    val_size: Optional[int] = None
    cache_mb: float = 1024.0
    seed: int = 0
    num_workers: int = 0
    mining: Optional[bool] = None
    augment: Optional[bool] = None
    skip_bad: bool = False
    resume: bool = False
    overwrite: bool = False
    pretrained_base: Optional[str] = None
    dtype: str = "float32"
    progress: bool = True
    kvstore: str = "local"
    record_workers: bool = False


@dataclass
class EpochRecord:
    """One line of the training log."""

    epoch: int
    iteration: int
    learning_rate: float
    loss: float
    confidence: float
    localization: float
    images_per_second: float
    load_seconds: float
    step_seconds: float
    val_map: Optional[float] = None


@dataclass
class TrainResult:
    """What a finished run returns."""

    out: str
    history: List[EpochRecord] = field(default_factory=list)
    best_map: float = float("nan")
    rank: int = 0  # the worker that returns it: only rank 0 evaluates
    unreadable: List[str] = field(default_factory=list)  # images left out (skip_bad)

    @property
    def last_map(self) -> Optional[float]:
        maps = [r.val_map for r in self.history if r.val_map is not None]
        return maps[-1] if maps else None


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


def make_trainer(net: SSD, spec: TrainSpec, lr: float, cluster: Optional[Cluster] = None,
                 lr_scheduler: Optional[mx.lr_scheduler.LRScheduler] = None,
                 done_updates: int = 0) -> gluon.Trainer:
    """The preset's optimiser over the trainable parameters, exchanging gradients as
    ``cluster`` says (default: one process). An optimiser on parameter servers follows
    ``lr_scheduler`` instead of ``lr``, from update ``done_updates`` on."""
    params = {"learning_rate": lr, "wd": spec.weight_decay}
    if spec.optimizer == "sgd":
        params["momentum"] = spec.momentum
    if lr_scheduler is not None:
        params.update(lr_scheduler=lr_scheduler, begin_num_update=done_updates)
    return (cluster or Cluster()).trainer(net.collect_params(), spec.optimizer, params)


def logged_losses(parts: LossParts) -> Dict[str, np.float32]:
    """A step's losses under the names of :data:`LOGGED_LOSSES` (``EpochRecord``'s fields):
    ``loss`` is the total, ``confidence`` and ``localization`` its parts."""
    return {"loss": parts.total.asscalar(), "confidence": parts.confidence.asscalar(),
            "localization": parts.localization.asscalar()}


class Run:
    """State of one training run: the network, data, optimiser and history.

    Built in order: the process set-up (dtype, cluster), the settings (config or preset),
    the data and this worker's shard, the loaders, then the model and optimiser (fresh or
    resumed), each by one method below.
    """

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        set_training_dtype(cfg.dtype)  # before any network is traced
        self.cluster: Cluster = connect(cfg.kvstore)
        self.progress = cfg.progress and self.cluster.is_root
        self.preset: Preset = get_preset(cfg.preset)
        self._resolve_settings()
        self.settings = fixed_settings(dataclasses.asdict(cfg), self.preset,
                                       self.cluster.num_workers)
        # rank 0 writes the run folder, so it alone checks it: the others start when it may
        # already have written there
        self._checkpoint = open_run_folder(cfg.out, cfg.resume, cfg.overwrite, self.settings,
                                           check_folder=self.cluster.is_root)
        self.resumed = self._checkpoint is not None
        self._build_data()
        self._build_loaders()
        self.loss = SSDLoss(mining=self.mining)
        self.history: List[EpochRecord] = []
        self.best_map = -1.0
        self.start_epoch = 0
        self.iteration = 0
        self._build_model()
        self.record = (WorkerRecord(cfg.out, self.cluster.rank, self.net)
                       if cfg.record_workers else None)

    def _resolve_settings(self) -> None:
        """Every ``None`` of the config takes the preset's value."""
        cfg, spec = self.cfg, self.preset.train
        self.epochs = cfg.epochs or spec.epochs
        self.batch_size = cfg.batch_size or spec.batch_size
        self.base_lr = cfg.learning_rate or spec.learning_rate
        self.eval_every = cfg.eval_every or spec.eval_every
        self.mining = spec.mining if cfg.mining is None else cfg.mining
        self.augment = spec.augment if cfg.augment is None else cfg.augment
        self.size = cfg.image_size or self.preset.model.anchors.image_size

    def _build_data(self) -> None:
        """Both splits (:func:`~gluon_ssd.data.datasets.build_split`) and this worker's equal
        share of the training split (equal shares: every worker takes the same steps)."""
        data = DataConfig.from_dict(dataclasses.asdict(self.cfg), ignore_unknown=True)
        self.train_data = build_split(data, "train", (self.size, self.size))
        self.val_data = build_split(data, "val", (self.size, self.size))
        if len(self.train_data) == 0:
            raise ValueError(f"the training split of {self.cfg.data!r} is empty")
        check_classes(self.train_data.classes, f"the training split of {self.cfg.data!r} has",
                      self.val_data.classes, "its validation split has")
        self.classes = tuple(self.train_data.classes)
        self.train_shard = self.cluster.shard(self.train_data)
        if len(self.train_shard) < self.batch_size:
            raise ValueError(f"{len(self.train_shard)} training images per worker "
                             f"({len(self.train_data)} in all, {self.cluster.num_workers} "
                             f"workers) are fewer than one batch of {self.batch_size}")

    def _build_loaders(self) -> None:
        """The augmented training batches and the validation batches (evaluation's own)."""
        size, model = (self.size, self.size), self.preset.model
        self.train_loader = DetectionLoader(
            self.train_shard, TrainTransform(size, model.mean, model.std, augment=self.augment),
            self.batch_size, shuffle=True, seed=self.cfg.seed, last_batch="discard",
            num_workers=self.cfg.num_workers)
        self.val_loader = evaluation_loader(self.val_data, size, model.mean, model.std,
                                            self.batch_size, self.cfg.num_workers)

    def _build_model(self) -> None:
        """The SSD and its optimiser, resumed from ``out/checkpoint-last.params`` if asked and
        present, else fresh; the detector validation runs and the anchors targets match."""
        if self._checkpoint is not None:
            self._resume(*self._checkpoint)
            self._checkpoint = None  # its arrays are in the network and trainer now
        else:
            mx.random.seed(self.cfg.seed)
            self.net = SSD(self.preset.model, self.classes)
            self.net.initialize(ctx=mx.cpu())
            if self.cfg.pretrained_base:
                load_base(self.net, self.cfg.pretrained_base)
            self.trainer = self._make_trainer(0)
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.detector = DetectionNet(self.net, self.preset.detect)
        self.detector.hybridize(static_alloc=True, static_shape=True)
        self.anchors = self.net(mx.nd.zeros((1, 3, self.size, self.size)))[2]

    def _resume(self, arrays: Dict[str, mx.nd.NDArray], meta: Dict[str, Any]) -> None:
        """Model, optimiser state, position and history from ``out/checkpoint-last.params``."""
        last = os.path.join(self.cfg.out, LAST)
        self.net = model_from_checkpoint(arrays, meta, last, self.preset.name, self.classes)
        self.trainer = self._make_trainer(meta["iteration"])
        restore_optimizer(self.net, self.trainer, arrays, meta["optimizer"])
        self.start_epoch = meta["epoch"] + 1
        self.iteration = meta["iteration"]
        self.best_map = meta["best_map"]
        self.history = [EpochRecord(**r) for r in meta["history"]]

    def _make_trainer(self, iteration: int) -> gluon.Trainer:
        """The trainer; with ``dist_async`` the servers' optimiser gets the schedule, resumed at
        ``iteration`` (its moments start afresh: they live on the servers, not in checkpoints)."""
        spec, workers = self.preset.train, self.cluster.num_workers
        if not self.cluster.updates_on_servers:
            return make_trainer(self.net, spec, self.base_lr, self.cluster)
        schedule = server_lr_scheduler(spec, self.base_lr, self.epochs,
                                       workers * len(self.train_loader))
        return make_trainer(self.net, spec, self.base_lr, self.cluster, schedule,
                            workers * iteration)

    def meta(self, epoch: int) -> Dict[str, Any]:
        return {"preset": self.preset.name, "epoch": epoch, "iteration": self.iteration,
                "best_map": self.best_map, "image_size": self.size,
                "workers": self.cluster.num_workers,
                "history": [dataclasses.asdict(r) for r in self.history],
                "config": dataclasses.asdict(self.cfg)}

    def train_epoch(self, epoch: int) -> EpochRecord:
        """One pass over this worker's training shard; the epoch's log line (mean losses over
        every worker, timing of this one)."""
        loader = self.train_loader
        sums = dict.fromkeys(LOGGED_LOSSES, 0.0)
        images, load_time, step_time = 0, 0.0, 0.0
        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.progress, leave=False)
        indices = loader.batch_indices(epoch) if self.record else None
        tick = time.perf_counter()
        for i, batch in enumerate(loader.epoch(epoch)):
            start = time.perf_counter()
            load_time += start - tick
            lr = learning_rate(self.preset.train, self.base_lr, epoch + i / len(loader),
                               self.epochs)
            losses = self._logged_step(batch, epoch, lr,
                                       indices[i] if indices is not None else None)
            count = batch.images.shape[0]
            for name, value in losses.items():  # float32 products, as the log always had
                sums[name] += np.float32(value) * np.float32(count)
            images += count
            tick = time.perf_counter()
            step_time += tick - start
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.3f}", conf=f"{losses['confidence']:.3f}",
                            loc=f"{losses['localization']:.3f}",
                            ips=f"{images / max(step_time + load_time, 1e-9):.1f}")
        bar.close()
        mean = {name: total / max(images, 1) for name, total in sums.items()}
        if self.cluster.num_workers > 1 and not self.cluster.updates_on_servers:
            mean = dict(zip(mean, self._average_over_workers(np.array(list(mean.values())))))
        return EpochRecord(epoch + 1, self.iteration, lr,
                           **{name: float(value) for name, value in mean.items()},
                           images_per_second=images / max(step_time + load_time, 1e-9),
                           load_seconds=load_time, step_seconds=step_time)

    def _logged_step(self, batch: Batch, epoch: int, lr: float,
                     indices: Optional[List[int]]) -> Dict[str, float]:
        """:meth:`step` at learning rate ``lr``, recorded for a worker check if asked
        (``indices``: the batch's shard indices); the logged losses (:func:`logged_losses`).
        ``TrainingDiverged`` if a loss is not finite."""
        images = batch.images.as_in_context(mx.cpu())  # workers hand over shared-memory arrays
        if not self.cluster.updates_on_servers:  # there the servers' schedule applies
            self.trainer.set_learning_rate(lr)
        if self.record:
            self.record.before_step()
        parts = self.step(images, batch.labels)
        mx.nd.waitall()  # the backward pass and update run asynchronously: time them here
        losses = logged_losses(parts)
        if not all(np.isfinite(v) for v in losses.values()):
            last = os.path.join(self.cfg.out, LAST)
            kept = (f"the last good checkpoint is {last}" if os.path.exists(last)
                    else "no checkpoint was written yet")
            raise TrainingDiverged(f"loss became {losses['loss']} at epoch {epoch + 1}, "
                                   f"iteration {self.iteration}; {kept}")
        if self.record:
            self.record.after_step(
                epoch=epoch, iteration=self.iteration, learning_rate=lr,
                optimizer_lr=self.trainer.learning_rate, loss=float(losses["loss"]),
                indices=[self.train_shard.indices[k] for k in indices])
        return losses

    def _average_over_workers(self, mean: np.ndarray) -> np.ndarray:
        """Give every worker the same BatchNorm statistics (no gradient syncs them, and rank 0
        saves its own) and return the epoch's mean loss parts ``mean`` over all workers."""
        aux = [p for p in self.net.collect_params().values() if p.grad_req == "null"]
        *stats, losses = self.cluster.average([p.data() for p in aux] + [mx.nd.array(mean)])
        for param, value in zip(aux, stats):
            param.set_data(value)
        return losses.asnumpy()

    def targets(self, labels: mx.nd.NDArray, size: Tuple[int, int]):
        """``(cls_target, loc_target, loc_mask)`` of batch ``labels (B, M, 6)`` (pixels of the
        ``size = (H, W)`` input), encoded with the model's own box coder."""
        return multibox_targets(self.anchors, labels.asnumpy(), size, self.net.spec.coder)

    def step(self, batch: mx.nd.NDArray, labels: mx.nd.NDArray):
        """One optimisation step on a batch; returns the :class:`~gluon_ssd.loss.LossParts`."""
        cls_target, loc_target, loc_mask = self.targets(labels, batch.shape[2:])
        with autograd.record():
            cls_preds, box_preds, _ = self.net(batch)
            parts = self.loss(cls_preds, box_preds, cls_target, loc_target, loc_mask)
        parts.total.backward()
        self.cluster.start_exchange(self.trainer)  # the first step only
        self.trainer.step(self.cluster.step_scale)  # losses are means over this worker's batch
        self.iteration += 1
        return parts

    def evaluate(self) -> float:
        """The VOC07 mAP of the current weights on the validation split, boxes in original
        image pixels: the function and batches ``gluon-ssd evaluate`` uses
        (:mod:`gluon_ssd.evaluation.run`)."""
        return evaluate(self.detector, self.val_loader.epoch(0), self.classes,
                        metrics=(VALIDATION_METRIC,)).voc[VALIDATION_METRIC].map

    def run(self) -> TrainResult:
        """Train the remaining epochs. Only rank 0 evaluates and writes the run folder; the
        other workers go on (their next gradient exchange waits for rank 0) or, after the last
        epoch, wait for it in the kvstore's exit barrier. The pictures of the run are the
        caller's (:func:`gluon_ssd.report.write_run_pictures`)."""
        os.makedirs(self.cfg.out, exist_ok=True)
        root = self.cluster.is_root
        if root:
            start_run_folder(self.cfg.out, dataclasses.asdict(self.cfg),
                             self.start_epoch if self.resumed else None)
        for epoch in range(self.start_epoch, self.epochs):
            record = self.train_epoch(epoch)
            if root and ((epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs):
                record.val_map = self.evaluate()
            self.history.append(record)
            if root:
                self.save(epoch, record)
        if self.record:
            self.record.finish()
        return TrainResult(self.cfg.out, self.history, self.best_map, self.cluster.rank,
                           self.train_data.stats.unreadable + self.val_data.stats.unreadable)

    def save(self, epoch: int, record: EpochRecord) -> None:
        """The checkpoints (``best`` when mAP improved), the log and the epoch's summary."""
        if record.val_map is not None and record.val_map > self.best_map:
            self.best_map = record.val_map
            save_checkpoint(os.path.join(self.cfg.out, BEST), self.net, self.meta(epoch))
        save_checkpoint(os.path.join(self.cfg.out, LAST), self.net, self.meta(epoch),
                        self.trainer)
        self.write_log()
        if self.progress:
            tqdm.write(_describe(record))

    def write_log(self) -> None:
        write_log(self.cfg.out, [dataclasses.asdict(r) for r in self.history])


def _describe(r: EpochRecord) -> str:
    text = (f"epoch {r.epoch}: loss {r.loss:.3f} (conf {r.confidence:.3f}, loc {r.localization:.3f})"
            f", lr {r.learning_rate:.2e}, {r.images_per_second:.1f} img/s"
            f" (loading {r.load_seconds:.1f}s, steps {r.step_seconds:.1f}s)")
    return text + (f", val mAP {r.val_map:.4f}" if r.val_map is not None else "")


def train(cfg: TrainConfig) -> TrainResult:
    """Train as ``cfg`` says; see :class:`TrainConfig`."""
    return Run(cfg).run()
