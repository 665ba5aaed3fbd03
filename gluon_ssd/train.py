"""Training: the loop, optimiser and schedule, evaluation, logging, checkpoints and exact resume.

One epoch: for each batch, the anchors (fixed for a fixed input size) are matched to the labels
(``targets.py``), the SSD's raw outputs are scored by :class:`~gluon_ssd.loss.SSDLoss` and the
optimiser steps. The learning rate is a pure function of the iteration (warm-up, then cosine or
step decay), the data order and the augmentation of epoch ``e`` are pure functions of
``(seed, e)``, and every epoch ends with an atomic checkpoint of the model, the optimiser state
and the history: a run killed and resumed ends with the same weights as one never stopped.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from tqdm import tqdm

from .checkpoint import (model_from_checkpoint, read_checkpoint, restore_optimizer,
                         save_checkpoint)
from .data import DetectionLoader, EvalTransform, TrainTransform, get_dataset
from .evaluate import evaluate_voc
from .loss import SSDLoss
from .model.detector import DetectionNet
from .model.ssd import SSD
from .model.weights import load_base
from .presets import Preset, TrainSpec, get_preset
from .targets import multibox_targets
from .visualize import plot_detection_grid, plot_training_curves

LAST, BEST = "checkpoint-last.params", "checkpoint-best.params"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """What ``gluon-ssd train`` runs. ``None`` fields take the preset's value.

    Attributes:
        preset: preset name (``demo``, ``ssd300_vgg16``, ...).
        data: ``synthetic``, ``voc``, ``coco`` or a dataset folder.
        out: run folder (checkpoints, logs, pictures).
        data_root: root folder for ``voc``/``coco``.
        image_size: network input side in pixels (default: the preset's).
        train_size, val_size: number of synthetic images per split.
        mining, augment: hard negative mining / the paper's augmentation on or off (default:
            the preset's).
        resume: continue from ``out/checkpoint-last.params``.
        pretrained_base: ImageNet VGG16 parameter file for the base network.
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
    seed: int = 0
    num_workers: int = 0
    mining: Optional[bool] = None
    augment: Optional[bool] = None
    skip_bad: bool = False
    resume: bool = False
    pretrained_base: Optional[str] = None
    progress: bool = True


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


def make_trainer(net: SSD, spec: TrainSpec, lr: float) -> gluon.Trainer:
    """The preset's optimiser over the trainable parameters."""
    params = {"learning_rate": lr, "wd": spec.weight_decay}
    if spec.optimizer == "sgd":
        params["momentum"] = spec.momentum
    return gluon.Trainer(net.collect_params(), spec.optimizer, params)


class Run:
    """State of one training run: the network, data, optimiser and history."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.preset: Preset = get_preset(cfg.preset)
        spec = self.preset.train
        self.epochs = cfg.epochs or spec.epochs
        self.batch_size = cfg.batch_size or spec.batch_size
        self.base_lr = cfg.learning_rate or spec.learning_rate
        self.eval_every = cfg.eval_every or spec.eval_every
        self.mining = spec.mining if cfg.mining is None else cfg.mining
        self.augment = spec.augment if cfg.augment is None else cfg.augment
        self.size = cfg.image_size or self.preset.model.anchors.image_size
        mean, std = self.preset.model.mean, self.preset.model.std
        self.train_data = get_dataset(cfg.data, "train", root=cfg.data_root,
                                      size=(self.size, self.size), length=cfg.train_size,
                                      seed=cfg.seed, skip_bad=cfg.skip_bad)
        self.val_data = get_dataset(cfg.data, "val", root=cfg.data_root,
                                    size=(self.size, self.size), length=cfg.val_size,
                                    seed=cfg.seed, skip_bad=cfg.skip_bad)
        if len(self.train_data) == 0:
            raise ValueError(f"the training split of {cfg.data!r} is empty")
        self.classes = tuple(self.train_data.classes)
        size = (self.size, self.size)
        self.train_loader = DetectionLoader(
            self.train_data, TrainTransform(size, mean, std, augment=self.augment),
            self.batch_size, shuffle=True, seed=cfg.seed, last_batch="discard",
            num_workers=cfg.num_workers)
        self.val_loader = DetectionLoader(self.val_data, EvalTransform(size, mean, std),
                                          self.batch_size, shuffle=False,
                                          num_workers=cfg.num_workers)
        self.loss = SSDLoss(mining=self.mining)
        self.history: List[EpochRecord] = []
        self.best_map = -1.0
        self.start_epoch = 0
        self.iteration = 0
        self._build(cfg)

    def _build(self, cfg: TrainConfig) -> None:
        last = os.path.join(cfg.out, LAST)
        if cfg.resume and os.path.exists(last):
            arrays, meta = read_checkpoint(last)
            self.net = model_from_checkpoint(arrays, meta, last, self.preset.name, self.classes)
            self.trainer = make_trainer(self.net, self.preset.train, self.base_lr)
            restore_optimizer(self.net, self.trainer, arrays, meta["optimizer"])
            self.start_epoch = meta["epoch"] + 1
            self.iteration = meta["iteration"]
            self.best_map = meta["best_map"]
            self.history = [EpochRecord(**r) for r in meta["history"]]
        else:
            mx.random.seed(cfg.seed)
            self.net = SSD(self.preset.model, self.classes)
            self.net.initialize(ctx=mx.cpu())
            if cfg.pretrained_base:
                load_base(self.net, cfg.pretrained_base)
            self.trainer = make_trainer(self.net, self.preset.train, self.base_lr)
        self.net.hybridize(static_alloc=True, static_shape=True)
        self.detector = DetectionNet(self.net, self.preset.detect)
        self.detector.hybridize(static_alloc=True, static_shape=True)
        self.anchors = self.net(mx.nd.zeros((1, 3, self.size, self.size)))[2]

    def meta(self, epoch: int) -> Dict[str, Any]:
        return {"preset": self.preset.name, "epoch": epoch, "iteration": self.iteration,
                "best_map": self.best_map, "image_size": self.size,
                "history": [dataclasses.asdict(r) for r in self.history],
                "config": dataclasses.asdict(self.cfg)}

    def train_epoch(self, epoch: int) -> EpochRecord:
        loader = self.train_loader
        sums = np.zeros(3)
        images, load_time, step_time = 0, 0.0, 0.0
        bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.cfg.progress, leave=False)
        tick = time.perf_counter()
        for i, (batch, labels) in enumerate(loader.epoch(epoch)):
            batch = batch.as_in_context(mx.cpu())  # workers hand over shared-memory arrays
            start = time.perf_counter()
            load_time += start - tick
            lr = learning_rate(self.preset.train, self.base_lr, epoch + i / len(loader),
                               self.epochs)
            self.trainer.set_learning_rate(lr)
            parts = self.step(batch, labels)
            mx.nd.waitall()  # the backward pass and update run asynchronously: time them here
            values = np.array([parts.total.asscalar(), parts.confidence.asscalar(),
                               parts.localization.asscalar()])
            if not np.isfinite(values).all():
                last = os.path.join(self.cfg.out, LAST)
                kept = (f"the last good checkpoint is {last}" if os.path.exists(last)
                        else "no checkpoint was written yet")
                raise TrainingDiverged(f"loss became {values[0]} at epoch {epoch + 1}, "
                                       f"iteration {self.iteration}; {kept}")
            sums += values * batch.shape[0]
            images += batch.shape[0]
            tick = time.perf_counter()
            step_time += tick - start
            bar.update(1)
            bar.set_postfix(loss=f"{values[0]:.3f}", conf=f"{values[1]:.3f}",
                            loc=f"{values[2]:.3f}", ips=f"{images / max(step_time + load_time, 1e-9):.1f}")
        bar.close()
        mean = sums / max(images, 1)
        return EpochRecord(epoch + 1, self.iteration, lr, *map(float, mean),
                           images / max(step_time + load_time, 1e-9), load_time, step_time)

    def step(self, batch: mx.nd.NDArray, labels: mx.nd.NDArray):
        """One optimisation step on a batch; returns the :class:`~gluon_ssd.loss.LossParts`."""
        cls_target, loc_target, loc_mask = multibox_targets(self.anchors, labels.asnumpy(),
                                                            batch.shape[2:])
        with autograd.record():
            cls_preds, box_preds, _ = self.net(batch)
            parts = self.loss(cls_preds, box_preds, cls_target, loc_target, loc_mask)
        parts.total.backward()
        self.trainer.step(1)
        self.iteration += 1
        return parts

    def evaluate(self) -> float:
        return evaluate_voc(self.detector, self.val_loader.epoch(0), self.classes).map

    def run(self) -> TrainResult:
        os.makedirs(self.cfg.out, exist_ok=True)
        with open(os.path.join(self.cfg.out, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(self.cfg), f, indent=2)
        for epoch in range(self.start_epoch, self.epochs):
            record = self.train_epoch(epoch)
            if (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs:
                record.val_map = self.evaluate()
            self.history.append(record)
            if record.val_map is not None and record.val_map > self.best_map:
                self.best_map = record.val_map
                save_checkpoint(os.path.join(self.cfg.out, BEST), self.net, self.meta(epoch))
            save_checkpoint(os.path.join(self.cfg.out, LAST), self.net, self.meta(epoch),
                            self.trainer)
            self.write_log()
            if self.cfg.progress:
                tqdm.write(_describe(record))
        self.write_pictures()
        return TrainResult(self.cfg.out, self.history, self.best_map)

    def write_pictures(self, count: int = 8) -> None:
        """The training curve and the detections on the first ``count`` validation images."""
        rows = [dataclasses.asdict(r) for r in self.history]
        plot_training_curves(rows, path=os.path.join(self.cfg.out, "curve.png"))
        batch, _ = next(iter(self.val_loader.epoch(0)))
        count = min(count, batch.shape[0])
        images = [self.val_data[i][0].asnumpy() for i in range(count)]
        ids, scores, boxes = (a.asnumpy() for a in self.detector(batch[:count].as_in_context(mx.cpu())))
        detections = [(ids[i, :, 0], scores[i, :, 0], boxes[i]) for i in range(count)]
        plot_detection_grid(images, detections, class_names=self.classes,
                            title=f"{self.preset.name}: validation detections (score >= 0.5)",
                            path=os.path.join(self.cfg.out, "detections.png"))

    def write_log(self) -> None:
        rows = [dataclasses.asdict(r) for r in self.history]
        with open(os.path.join(self.cfg.out, "log.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        with open(os.path.join(self.cfg.out, "log.json"), "w") as f:
            json.dump(rows, f, indent=2)


def _describe(r: EpochRecord) -> str:
    text = (f"epoch {r.epoch}: loss {r.loss:.3f} (conf {r.confidence:.3f}, loc {r.localization:.3f})"
            f", lr {r.learning_rate:.2e}, {r.images_per_second:.1f} img/s"
            f" (loading {r.load_seconds:.1f}s, steps {r.step_seconds:.1f}s)")
    return text + (f", val mAP {r.val_map:.4f}" if r.val_map is not None else "")


def train(cfg: TrainConfig) -> TrainResult:
    """Train as ``cfg`` says; see :class:`TrainConfig`."""
    return Run(cfg).run()
