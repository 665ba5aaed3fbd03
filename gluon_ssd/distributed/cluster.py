"""The set-up of one training process in a distributed job: :func:`connect` (``--kvstore``)
returns a :class:`Cluster`: this worker's rank, the number of workers, a trainer that exchanges
gradients, equal data shards and averaging across workers.

* ``local`` / ``device``: one process (MXNet's single-machine kvstores; with one CPU context the
  trainer needs none).
* ``dist_sync`` / ``dist_async``: MXNet's parameter server (ps-lite). Every process takes its role
  from ``DMLC_ROLE`` (``scheduler``, ``server`` or ``worker``; servers and the scheduler serve
  inside ``import mxnet`` and never return), finds the scheduler at ``DMLC_PS_ROOT_URI`` /
  ``DMLC_PS_ROOT_PORT``, binds to ``DMLC_NODE_HOST`` and waits for ``DMLC_NUM_SERVER`` servers and
  ``DMLC_NUM_WORKER`` workers (:mod:`gluon_ssd.distributed.launch` starts them). The servers
  *sum* the workers' gradients. ``dist_sync`` trains with ``update_on_kvstore=False`` (every
  worker runs the optimiser on the summed gradient, so ``Trainer.set_learning_rate`` and the
  optimiser's state in checkpoints work; MXNet's default would update on the servers and ignore
  both). ``dist_async`` has to update on the servers, so the schedule travels to them as one of
  MXNet's own schedulers (the servers unpickle the optimiser inside ``import mxnet``, where only
  MXNet's classes load).
* ``horovod``: ``horovod.mxnet`` (allreduce; started by ``horovodrun``).

Every worker must make the same number of steps, or the others wait forever for its gradients:
:meth:`Cluster.shard` gives each worker ``len(dataset) // workers`` items.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Sequence, TextIO

import mxnet as mx
import numpy as np
from mxnet import gluon

from ..devices import first_data

KVSTORES = ("local", "device", "dist_sync", "dist_async", "horovod")
# Keys of Cluster.average; the trainer's keys are 0 .. number of parameters - 1.
_AVERAGE_KEY = 1 << 20


class ShardDataset(gluon.data.Dataset):
    """The items ``rank, rank + workers, rank + 2 * workers, ...`` of ``dataset``, cut so that
    every worker gets ``len(dataset) // workers`` of them; ``indices`` holds their positions."""

    def __init__(self, dataset: gluon.data.Dataset, rank: int = 0, num_workers: int = 1):
        if not 0 <= rank < num_workers:
            raise ValueError(f"rank {rank} is not in 0..{num_workers - 1}")
        self._dataset = dataset
        per_worker = len(dataset) // num_workers
        self.indices: List[int] = list(range(rank, per_worker * num_workers, num_workers))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self._dataset[self.indices[index]]


@dataclass
class Cluster:
    """Where this training process stands in its job (see the module docstring).

    Attributes:
        kvstore: one of :data:`KVSTORES`.
        rank: this worker's number, 0 .. ``num_workers - 1``; rank 0 logs, evaluates and saves.
        num_workers: training processes in the job.
        store: the ps-lite ``KVStore`` (``dist_*``) or the ``horovod.mxnet`` module (``horovod``).
    """

    kvstore: str = "local"
    rank: int = 0
    num_workers: int = 1
    store: Any = None
    _keys: Dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def is_root(self) -> bool:
        """Rank 0: the worker that writes logs, checkpoints and pictures and evaluates."""
        return self.rank == 0

    @property
    def updates_on_servers(self) -> bool:
        """``dist_async``: the servers run the optimiser, following its ``lr_scheduler``."""
        return self.kvstore == "dist_async"

    @property
    def step_scale(self) -> int:
        """The normaliser to pass to ``Trainer.step``, given a loss that is a mean over this
        worker's batch: ``dist_sync`` servers sum the workers' gradients, so the mean over the
        global batch divides by the number of workers; Horovod's trainer averages by itself and
        ``dist_async`` applies each worker's gradient on its own."""
        return self.num_workers if self.kvstore == "dist_sync" else 1

    def trainer(self, params: gluon.ParameterDict, optimizer: str,
                optimizer_params: Dict[str, Any]) -> gluon.Trainer:
        """A trainer over ``params`` that exchanges gradients the way ``kvstore`` says.

        For ``horovod`` rank 0's parameters are broadcast first, so every worker starts from
        them (ps-lite trainers do the same when they first step).
        """
        if self.kvstore == "horovod":
            self.store.broadcast_parameters(params, root_rank=0)
            return self.store.DistributedTrainer(params, optimizer, optimizer_params)
        # Locally (one or several devices) every device runs the optimiser on the summed
        # gradient, so its state lives in the trainer's updaters, where checkpoints read it;
        # MXNet's default for several devices would keep it inside the kvstore.
        update_on_kvstore = False if self.kvstore in ("local", "device") else self.updates_on_servers
        kvstore = self.store if self.store is not None else self.kvstore
        return gluon.Trainer(params, optimizer, optimizer_params, kvstore=kvstore,
                             update_on_kvstore=update_on_kvstore)

    def start_exchange(self, trainer: gluon.Trainer) -> None:
        """Before ``trainer``'s first step (a no-op afterwards): give its parameters to the
        parameter servers and wait until this worker holds rank 0's values.

        Gluon's ``Trainer`` does this lazily inside its first ``step``: it pulls each parameter's
        initial value and then exchanges that parameter's gradient, two operations that MXNet
        1.9.1 may send to the servers in either order. When both workers' gradients of a key
        reach the servers before one worker's pull of it, that pull returns the summed gradient
        (without an optimiser the servers keep the last merged value) in place of the weights,
        and the two workers go on from different parameters (a race: here 2 of 18 two-worker
        jobs, fresh or resumed, ended with the workers' parameters apart). Waiting for the
        pulls before any gradient is sent closes it. Call it after the first backward pass, as
        the Trainer would: the pulls then queue behind the backward operations that read the
        weights (pulling on an idle engine, before any backward pass, made pulls overtake rank
        0's initial values at the servers).
        """
        if self.store is None or self.kvstore == "horovod" or trainer._kv_initialized:
            return  # one process, Horovod (broadcast in ``trainer``) or not the first step
        trainer._init_kvstore()  # what Trainer.step runs first; private in MXNet 1.9.1
        trainer._init_params()
        mx.nd.waitall()

    def shard(self, dataset: gluon.data.Dataset) -> ShardDataset:
        """This worker's equal share of ``dataset`` (all of it for a single process)."""
        return ShardDataset(dataset, self.rank, self.num_workers)

    def average(self, arrays: Sequence[mx.nd.NDArray]) -> List[mx.nd.NDArray]:
        """The element-wise mean of each array over all workers, the same on every worker.

        Every worker must call it at the same point with arrays of the same shapes. With one
        worker it returns the arrays; ``dist_async`` cannot average (its servers would apply
        the optimiser to whatever is pushed), so each worker keeps its own values.
        """
        if self.num_workers == 1 or self.updates_on_servers:
            return list(arrays)
        flat = mx.nd.concat(*[a.reshape(-1) for a in arrays], dim=0)
        if self.kvstore == "horovod":
            mean = self.store.allreduce(flat, op=self.store.Average,
                                        name=f"gluon_ssd.average.{flat.size}")
        else:
            key = self._keys.get(flat.size)
            if key is None:
                key = self._keys[flat.size] = _AVERAGE_KEY + len(self._keys)
                self.store.init(key, mx.nd.zeros_like(flat))
            mean = mx.nd.zeros_like(flat)
            self.store.pushpull(key, flat, out=mean)  # the servers sum
            mean /= self.num_workers
        ends = np.cumsum([a.size for a in arrays])
        return [mean[end - a.size:end].reshape(a.shape) for a, end in zip(arrays, ends)]


def connect(kvstore: str = "local") -> Cluster:
    """Join the job ``kvstore`` names (one of :data:`KVSTORES`); blocks until every ps-lite
    process has started. ``ValueError`` if the name is unknown, ``dist_*`` runs outside a
    launched job, or Horovod is not installed."""
    if kvstore not in KVSTORES:
        raise ValueError(f"unknown kvstore {kvstore!r}; choose one of {', '.join(KVSTORES)}")
    if kvstore in ("local", "device"):
        return Cluster(kvstore)
    if kvstore == "horovod":
        try:
            import horovod.mxnet as hvd
        except ImportError as err:
            raise ValueError(f"--kvstore horovod needs horovod.mxnet ({err}); install horovod "
                             "with HOROVOD_WITH_MXNET=1 and start training with horovodrun"
                             ) from None
        hvd.init()
        return Cluster(kvstore, hvd.rank(), hvd.size(), hvd)
    if os.environ.get("DMLC_ROLE") != "worker":
        raise ValueError(f"--kvstore {kvstore} runs inside a job started by `gluon-ssd launch`, "
                         "which sets DMLC_ROLE and the scheduler's address, e.g. "
                         f"gluon-ssd launch -n 2 -s 1 -- gluon-ssd train --kvstore {kvstore} ...")
    store = mx.kv.create(kvstore)
    return Cluster(kvstore, store.rank, store.num_workers, store)


class WorkerRecord:
    """What one worker did, for checking a distributed run (``gluon-ssd train --record-workers``).

    ``worker-<rank>.jsonl`` in the run folder gets one JSON object per step, written at once:
    ``epoch`` (from 0), ``iteration`` (after the step), ``learning_rate`` (the schedule's),
    ``optimizer_lr`` (the worker optimiser's; with ``dist_async`` the servers' is the one used),
    ``loss`` (this worker's batch), ``indices`` (the dataset items of the batch),
    ``max_update`` (the largest absolute change of any trainable parameter in the step) and
    ``digest`` (a SHA-1 of every trainable parameter's bytes after the step: synchronous workers
    must agree on it step by step, so the first step where they differ is the one to look at).
    :meth:`finish` writes the final parameters to ``worker-<rank>.params`` (structural names).
    """

    def __init__(self, folder: str, rank: int, net: gluon.Block):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"worker-{rank}.jsonl")
        self.params_path = os.path.join(folder, f"worker-{rank}.params")
        self._params = net._collect_params_with_prefix()
        self._file: TextIO = open(self.path, "a")
        self._before: Dict[str, mx.nd.NDArray] = {}

    def before_step(self) -> None:
        """Remember the trainable parameters before a step."""
        self._before = {n: first_data(p).copy() for n, p in self._params.items()
                        if p.grad_req != "null"}

    def after_step(self, **facts: Any) -> None:
        """Write one line: ``facts`` and the step's largest parameter change."""
        change = max(float((first_data(self._params[n]) - old).abs().max().asscalar())
                     for n, old in self._before.items())
        digest = hashlib.sha1()
        for name in sorted(self._before):
            digest.update(first_data(self._params[name]).asnumpy().tobytes())
        self._file.write(json.dumps(dict(facts, max_update=change, digest=digest.hexdigest()))
                         + "\n")
        self._file.flush()

    def finish(self) -> None:
        mx.nd.save(self.params_path, {n: first_data(p) for n, p in self._params.items()})
        self._file.close()


__all__ = ["KVSTORES", "Cluster", "ShardDataset", "WorkerRecord", "connect"]
