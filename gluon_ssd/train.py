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
import functools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon.utils import split_and_load
from tqdm import tqdm

from .anchor_fit import choose_anchors, coverage_note
from .checkpoint import (fine_tune_start, model_from_checkpoint, restore_optimizer,
                         save_checkpoint)
from .data.datasets import DataConfig, build_split
from .data.labels import check_classes, dataset_boxes
from .data.transforms import Batch, DetectionLoader, TrainTransform
from .devices import (Contexts, as_contexts, first_data, gpu_contexts, parallel_apply,
                      run_on_devices)
from .distributed.cluster import Cluster, WorkerRecord, connect
from .evaluation.run import evaluate, evaluation_loader
from .loss import LossParts, SSDLoss, sum_parts
from .model.head import DetectionNet
from .model.ssd import SSD
from .model.weights import load_base
from .model_zoo import resolve_model
from .precision import set_training_dtype
from .presets import SYNTHETIC_DATA, Preset, TrainSpec, get_preset
from .recipe import TrainConfig, choose_recipe, choose_schedule
from .run_folder import (BEST, LAST, fixed_settings, open_run_folder, start_run_folder,
                         write_log)
from .schedule import learning_rate, server_lr_scheduler
from .targets import multibox_targets

VALIDATION_METRIC = "voc07"  # what EpochRecord.val_map and the best checkpoint go by
LOGGED_LOSSES = ("loss", "confidence", "localization")  # EpochRecord's names, see logged_losses
COVERAGE_IMAGES = 1000  # synthetic images whose boxes estimate the coverage (rendering costs)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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
    # Only what has a gradient: BatchNorm's running statistics are no optimiser's business,
    # and a kvstore over several devices would overwrite them with its initial copy.
    trainable = {name: p for name, p in net.collect_params().items() if p.grad_req != "null"}
    return (cluster or Cluster()).trainer(trainable, spec.optimizer, params)


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

    def __init__(self, cfg: TrainConfig, ctx: Contexts = None):
        self.cfg = cfg
        # ctx, else --gpus, else the CPU: several devices split each batch between them
        self.contexts = as_contexts(ctx) if ctx is not None else gpu_contexts(cfg.gpus)
        set_training_dtype(cfg.dtype)  # before any network is traced
        self.cluster: Cluster = connect(cfg.kvstore)
        self.progress = cfg.progress and self.cluster.is_root
        self.preset: Preset = get_preset(cfg.preset)
        self._resolve_settings()
        self.settings = fixed_settings(dataclasses.asdict(cfg), self.preset,
                                       self.cluster.num_workers, resuming=cfg.resume)
        # rank 0 writes the run folder, so it alone checks it: the others start when it may
        # already have written there
        self._checkpoint = open_run_folder(cfg.out, cfg.resume, cfg.overwrite, self.settings,
                                           check_folder=self.cluster.is_root)
        self.resumed = self._checkpoint is not None
        self._build_data()
        self.epochs = self._schedule()
        self._build_loaders()
        self.loss = SSDLoss(mining=self.mining)
        self.history: List[EpochRecord] = []
        self.best_map = -1.0
        self.start_epoch = 0
        self.iteration = 0
        self._build_model()
        self._report_coverage()
        self.record = (WorkerRecord(cfg.out, self.cluster.rank, self.net)
                       if cfg.record_workers else None)

    def _resolve_settings(self) -> None:
        """The config's settings, ``None`` resolved (:func:`~gluon_ssd.recipe.choose_recipe`);
        the schedule waits for the data (:func:`~gluon_ssd.recipe.choose_schedule`)."""
        cfg = self.cfg
        self.recipe = recipe = choose_recipe(dataclasses.asdict(cfg), self.preset)
        self.batch_size, self.base_lr = recipe.batch_size, recipe.learning_rate
        self.mining = recipe.mining
        self.anchor_choice = recipe.anchors  # None: the initial model's (init)
        self.notes: List[str] = list(recipe.notes)  # what the recipe chose and why, for the log
        self.size, self.detect_size = recipe.image_size, recipe.detect_size
        if cfg.init and cfg.pretrained_base:
            raise ValueError("--init starts from a whole trained model; drop --pretrained-base")
        if self.batch_size % len(self.contexts):
            # SyncBatchNorm averages the devices' statistics: equal shares make them the batch's
            raise ValueError(f"argument --batch-size: {self.batch_size} images do not split "
                             f"evenly over {len(self.contexts)} devices")

    def _schedule(self) -> int:
        """The number of epochs; sets :attr:`eval_every`."""
        schedule = choose_schedule(dataclasses.asdict(self.cfg), self.preset,
                                   len(self.train_data))
        self.eval_every = schedule.eval_every
        self.notes += schedule.notes
        return schedule.epochs

    def _build_data(self) -> None:
        """Both splits (:func:`~gluon_ssd.data.datasets.build_split`) and this worker's equal
        share of the training split (equal shares: every worker takes the same steps)."""
        data = DataConfig.from_dict(dataclasses.asdict(self.cfg), ignore_unknown=True)
        self.train_data = build_split(data, "train", (self.size, self.size))
        self.val_data = build_split(data, "val", (self.detect_size, self.detect_size))
        if len(self.train_data) == 0:
            raise ValueError(f"the training split of {self.cfg.data!r} is empty")
        check_classes(self.train_data.classes, f"the training split of {self.cfg.data!r} has",
                      self.val_data.classes, "its validation split has")
        self.classes = tuple(self.train_data.classes)
        # for the anchors' coverage (and fitting); rendered synthetic data: a sample
        self.train_boxes, _ = dataset_boxes(
            self.train_data, f"the training split of {self.cfg.data!r}",
            max_images=COVERAGE_IMAGES if self.cfg.data.lower() == SYNTHETIC_DATA else None)
        self.train_shard = self.cluster.shard(self.train_data)
        if len(self.train_shard) < self.batch_size:
            raise ValueError(f"{len(self.train_shard)} training images per worker "
                             f"({len(self.train_data)} in all, {self.cluster.num_workers} "
                             f"workers) are fewer than one batch of {self.batch_size}")

    def _build_loaders(self) -> None:
        """The augmented training batches and the validation batches (evaluation's own)."""
        size, model = (self.size, self.size), self.preset.model
        self.train_loader = DetectionLoader(
            self.train_shard, TrainTransform(
                size, model.mean, model.std, augment=self.recipe.augment,
                max_expand=self.recipe.zoom_out, flip=self.recipe.flip,
                distort=self.recipe.distort, zoom_in=self.recipe.zoom_in),
            self.batch_size, shuffle=True, seed=self.cfg.seed, last_batch="discard",
            num_workers=self.cfg.num_workers)
        self.val_loader = evaluation_loader(self.val_data, (self.detect_size, self.detect_size),
                                            model.mean, model.std, self.batch_size,
                                            self.cfg.num_workers)

    def _build_model(self) -> None:
        """The SSD and its optimiser, resumed from ``out/checkpoint-last.params`` if asked and
        present, else new (:meth:`_new_model`); the detector validation runs and the anchors
        targets match."""
        if self._checkpoint is not None:
            self._resume(*self._checkpoint)
            self._checkpoint = None  # its arrays are in the network and trainer now
        else:
            mx.random.seed(self.cfg.seed)
            self.net = self._new_model()
            self.trainer = self._make_trainer(0)
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.detector = DetectionNet(self.net, self.preset.detect)
        self.detector.hybridize(static_alloc=True, static_shape=True)
        device = self.contexts[0]
        self.anchors = self.net(mx.nd.zeros((1, 3, self.size, self.size), ctx=device))[2]

    def _new_model(self) -> SSD:
        """A fresh SSD (with the ImageNet base if given) or, with ``init``, one fine-tuned from
        a trained model; its anchors as :attr:`anchor_choice` says."""
        cfg, base, choice = self.cfg, self.preset.model.anchors, self.anchor_choice
        anchors = None
        if choice is not None:
            anchors = choose_anchors(choice, base, self.train_boxes)
        if cfg.init:
            source = resolve_model(cfg.init)
            if choice == "extend":  # the initial model's anchors, extended
                anchors = functools.partial(choose_anchors, choice, boxes=self.train_boxes)
            net, kept, total = fine_tune_start(source, self.classes, self.preset.name, anchors,
                                               self.contexts)
            self.notes.append(f"started from {cfg.init} ({source}): {kept} of its {total} "
                              "backbone and box-predictor arrays kept, class predictors reset to "
                              "this dataset's classes (--init)")
            return net
        net = SSD(dataclasses.replace(self.preset.model, anchors=anchors or base), self.classes,
                  len(self.contexts))
        net.initialize(ctx=self.contexts)
        if cfg.pretrained_base:
            load_base(net, cfg.pretrained_base)
        return net

    def _report_coverage(self) -> None:
        """Print (rank 0) the recipe's choices and the coverage of the network's anchors on the
        training boxes, with a warning and the fix when it is low
        (:func:`~gluon_ssd.anchor_fit.coverage_note`)."""
        if not self.cluster.is_root:
            return
        base = (f"the initial model's, --init {self.cfg.init}" if self.cfg.init
                else f"{self.preset.name}'s")
        how = {"fit": "fitted to the training boxes", "preset": f"{self.preset.name}'s",
               "extend": f"{base}, and more for the training boxes they miss"}.get(
            self.anchor_choice, f"from {self.anchor_choice}")
        if self.resumed:
            how = "the resumed run's"
        elif self.anchor_choice is None:
            how = base
        note = coverage_note(self.train_boxes, self.net.spec.anchors, self.preset.model.anchors,
                             self.preset.name, how, self.cfg.data)
        print("\n".join([f"recipe: {n}" for n in self.notes] + [note]), flush=True)

    def _resume(self, arrays: Dict[str, mx.nd.NDArray], meta: Dict[str, Any]) -> None:
        """Model, optimiser state, position and history from ``out/checkpoint-last.params``; the
        run's anchors' choice and initial model, which the resume need not repeat, go on in
        the config this run records."""
        last = os.path.join(self.cfg.out, LAST)
        recorded = meta.get("config") or {}
        self.cfg = dataclasses.replace(self.cfg, **{
            k: recorded.get(k) for k in ("anchors", "init") if getattr(self.cfg, k) is None})
        self.net = model_from_checkpoint(arrays, meta, last, self.preset.name, self.classes,
                                         self.contexts, training=True)
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
                "detect_size": self.detect_size, "workers": self.cluster.num_workers,
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
        *stats, losses = self.cluster.average([first_data(p) for p in aux] + [mx.nd.array(mean)])
        for param, value in zip(aux, stats):
            param.set_data(value)
        return losses.asnumpy()

    def targets(self, labels: mx.nd.NDArray, size: Tuple[int, int]):
        """``(cls_target, loc_target, loc_mask)`` of batch ``labels (B, M, 6)`` (pixels of the
        ``size = (H, W)`` input), encoded with the model's own box coder."""
        return multibox_targets(self.anchors, labels.asnumpy(), size, self.net.spec.coder)

    def step(self, batch: mx.nd.NDArray, labels: mx.nd.NDArray) -> LossParts:
        """One optimisation step on a batch, split evenly over the devices (each computes its
        part's loss, divided by the whole batch's positives, and gradient, in a thread of its
        own: :func:`~gluon_ssd.devices.run_on_devices`; the trainer sums the gradients and
        steps once); returns the batch's :class:`~gluon_ssd.loss.LossParts`."""
        targets = self.targets(labels, batch.shape[2:])  # cls_target, loc_target, loc_mask
        num_positives = float((targets[0] > 0).sum().asscalar())

        def forward_backward(images, *share) -> LossParts:
            with autograd.record():
                parts = self.loss(*self.net(images)[:2], *share, num_positives=num_positives)
            parts.total.backward()
            return parts

        shares = zip(*[split_and_load(x, self.contexts) for x in (batch,) + tuple(targets)])
        parts = run_on_devices(forward_backward, list(shares))
        self.cluster.start_exchange(self.trainer)  # the first step only
        self.trainer.step(self.cluster.step_scale)  # losses are means over this worker's batch
        self.iteration += 1
        return parts[0] if len(parts) == 1 else sum_parts(parts)

    def evaluate(self) -> float:
        """The VOC07 mAP of the current weights on the validation split, boxes in original
        image pixels: the function and batches ``gluon-ssd evaluate`` uses
        (:mod:`gluon_ssd.evaluation.run`)."""
        return evaluate(lambda images: parallel_apply(self.detector, images, self.contexts),
                        self.val_loader.epoch(0), self.classes,
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


def train(cfg: TrainConfig, ctx: Contexts = None) -> TrainResult:
    """Train as ``cfg`` says (see :class:`TrainConfig`) on ``ctx``: one context or a list, over
    which each batch is split (default: ``cfg.gpus``, else the CPU)."""
    return Run(cfg, ctx).run()
