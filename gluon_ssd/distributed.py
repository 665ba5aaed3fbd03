"""Distributed training: the set-up a training process needs, and the launcher that starts a job.

**In a training process** :func:`connect` (``--kvstore``) returns a :class:`Cluster`: this
worker's rank, the number of workers, a trainer that exchanges gradients, equal data shards and
averaging across workers.

* ``local`` / ``device``: one process (MXNet's single-machine kvstores; with one CPU context the
  trainer needs none).
* ``dist_sync`` / ``dist_async``: MXNet's parameter server (ps-lite). Every process takes its role
  from ``DMLC_ROLE`` (``scheduler``, ``server`` or ``worker``; servers and the scheduler serve
  inside ``import mxnet`` and never return), finds the scheduler at ``DMLC_PS_ROOT_URI`` /
  ``DMLC_PS_ROOT_PORT``, binds to ``DMLC_NODE_HOST`` and waits for ``DMLC_NUM_SERVER`` servers and
  ``DMLC_NUM_WORKER`` workers. The servers *sum* the workers' gradients. ``dist_sync`` trains with
  ``update_on_kvstore=False`` (every worker runs the optimiser on the summed gradient, so
  ``Trainer.set_learning_rate`` and the optimiser's state in checkpoints work; MXNet's default
  would update on the servers and ignore both). ``dist_async`` has to update on the servers, so
  the schedule travels to them as one of MXNet's own schedulers (the servers unpickle the
  optimiser inside ``import mxnet``, where only MXNet's classes load).
* ``horovod``: ``horovod.mxnet`` (allreduce; started by ``horovodrun``).

Every worker must make the same number of steps, or the others wait forever for its gradients:
:meth:`Cluster.shard` gives each worker ``len(dataset) // workers`` items.

**The launcher** (:func:`launch`, ``gluon-ssd launch``) starts the scheduler, the servers and the
workers with the ``DMLC_*`` environment, on this machine (``local``, every socket on the given
address, loopback by default) or on the hosts of a host file (``ssh``). It bounds every process
by ``timeout`` seconds and stops all of them as soon as one fails (a non-zero exit or a signal),
naming it, so a crash never leaves the others waiting for it. (MXNet's own ``dmlc_tracker`` does
not run on Python 3.11 and rewrites loopback addresses to the machine's.)
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Dict, List, Optional, Sequence, TextIO, Tuple

import mxnet as mx
import numpy as np
from mxnet import gluon

KVSTORES = ("local", "device", "dist_sync", "dist_async", "horovod")
LAUNCHERS = ("local", "ssh")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SSH_PORT = 9091
DEFAULT_TIMEOUT = 24 * 3600.0
# Keys of Cluster.average; the trainer's keys are 0 .. number of parameters - 1.
_AVERAGE_KEY = 1 << 20
# Environment variables the ssh launcher forwards besides DMLC_* (local processes inherit all).
_FORWARDED_PREFIXES = ("MXNET_", "OMP_", "PS_")


# ---------------------------------------------------------------------------------------------
# The training side

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
        update_on_kvstore = None if self.kvstore in ("local", "device") else self.updates_on_servers
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
        self._before = {n: p.data().copy() for n, p in self._params.items()
                        if p.grad_req != "null"}

    def after_step(self, **facts: Any) -> None:
        """Write one line: ``facts`` and the step's largest parameter change."""
        change = max(float((self._params[n].data() - old).abs().max().asscalar())
                     for n, old in self._before.items())
        digest = hashlib.sha1()
        for name in sorted(self._before):
            digest.update(self._params[name].data().asnumpy().tobytes())
        self._file.write(json.dumps(dict(facts, max_update=change, digest=digest.hexdigest()))
                         + "\n")
        self._file.flush()

    def finish(self) -> None:
        mx.nd.save(self.params_path, {n: p.data() for n, p in self._params.items()})
        self._file.close()


# ---------------------------------------------------------------------------------------------
# The launcher

@dataclass
class LaunchConfig:
    """A ps-lite job for :func:`launch`.

    Attributes:
        command: what every process runs (servers and the scheduler serve inside
            ``import mxnet``), e.g. ``["gluon-ssd", "train", "--kvstore", "dist_sync", ...]``.
        num_workers, num_servers: processes of each role (one scheduler besides).
        launcher: ``local`` (every process on this machine) or ``ssh`` (on ``hosts``).
        hosts: ssh: the machines; the scheduler runs on the first, server ``i`` and worker ``i``
            on host ``i mod len(hosts)``; each binds to its host's name as given.
        host: the scheduler's address (default: ``127.0.0.1`` locally, the first host by ssh).
        port: the scheduler's port (default: a free one locally, 9091 by ssh).
        timeout: seconds any process may run before the whole job is stopped.
        workdir: the folder commands run in (by ssh it must exist on every host).
    """

    command: Sequence[str]
    num_workers: int
    num_servers: int = 1
    launcher: str = "local"
    hosts: Sequence[str] = ()
    host: Optional[str] = None
    port: Optional[int] = None
    timeout: float = DEFAULT_TIMEOUT
    workdir: str = field(default_factory=os.getcwd)

    def check(self) -> None:
        """``ValueError`` naming the first bad setting."""
        if not self.command:
            raise ValueError("no command to launch: give it after --, e.g. "
                             "gluon-ssd launch -n 2 -- gluon-ssd train --kvstore dist_sync")
        if self.num_workers < 1 or self.num_servers < 1:
            raise ValueError(f"a job needs at least 1 worker and 1 server, got "
                             f"{self.num_workers} workers and {self.num_servers} servers")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"unknown launcher {self.launcher!r}; choose one of {LAUNCHERS}")
        if self.launcher == "ssh" and not self.hosts:
            raise ValueError("--launcher ssh needs a host file (-H FILE)")
        if self.launcher == "local" and self.hosts:
            raise ValueError("a host file is for --launcher ssh; the local launcher runs every "
                             "process on this machine")
        if not self.timeout > 0:
            raise ValueError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        if self.port is not None and not 0 < self.port < 65536:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")


@dataclass(frozen=True)
class Node:
    """One process of a job: its role, its number within the role and the host it runs on."""

    role: str
    index: int
    host: str

    @property
    def name(self) -> str:
        return self.role if self.role == "scheduler" else f"{self.role} {self.index}"


def read_hostfile(path: str) -> List[str]:
    """Host names or addresses, one per line; blank lines and ``#`` comments are skipped."""
    with open(path) as f:
        hosts = [line.split("#", 1)[0].strip() for line in f]
    hosts = [h for h in hosts if h]
    if not hosts:
        raise ValueError(f"host file {path} lists no host")
    return hosts


def plan_nodes(cfg: LaunchConfig) -> List[Node]:
    """The scheduler, then the servers, then the workers, each with its host."""
    hosts = list(cfg.hosts) if cfg.launcher == "ssh" else [cfg.host or DEFAULT_HOST]
    return ([Node("scheduler", 0, hosts[0])]
            + [Node("server", i, hosts[i % len(hosts)]) for i in range(cfg.num_servers)]
            + [Node("worker", i, hosts[i % len(hosts)]) for i in range(cfg.num_workers)])


def dmlc_env(cfg: LaunchConfig, node: Node, root: str, port: int) -> Dict[str, str]:
    """The ``DMLC_*`` variables that give ``node`` its role and find the scheduler."""
    return {"DMLC_ROLE": node.role, "DMLC_PS_ROOT_URI": root, "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": str(cfg.num_servers), "DMLC_NUM_WORKER": str(cfg.num_workers),
            "DMLC_NODE_HOST": node.host}


def local_threads(cfg: LaunchConfig, node: Node) -> Dict[str, str]:
    """``OMP_NUM_THREADS`` for a process of a local job, unless the user set it: the workers
    share this machine's cores, the scheduler and servers (no heavy compute) take one each.
    Without it every process would take all cores (see ``gluon_ssd/__init__.py``)."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    share = len(os.sched_getaffinity(0)) // cfg.num_workers if node.role == "worker" else 1
    return {"OMP_NUM_THREADS": str(max(1, share))}


def ssh_command(host: str, env: Dict[str, str], command: Sequence[str], workdir: str
                ) -> List[str]:
    """``ssh host 'cd WORKDIR && env K=V ... COMMAND'``, every part shell-quoted.

    ``-tt`` gives the remote command a terminal, so stopping the local ssh hangs it up;
    ``BatchMode`` makes a host that would ask for a password fail instead of waiting.
    """
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    remote = f"cd {shlex.quote(workdir)} && env {assignments} {shlex.join(command)}"
    return ["ssh", "-o", "BatchMode=yes", "-tt", host, remote]


def free_port(host: str) -> int:
    """A TCP port nobody listens on at ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def describe_exit(status: int) -> str:
    """``exited with status 3`` or ``was killed by SIGKILL`` for a ``Popen.returncode``."""
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


class _Job:
    """The started processes of a job, stopped together."""

    def __init__(self, log: IO[str]):
        self.log = log
        self.procs: List[Tuple[Node, subprocess.Popen]] = []

    def start(self, node: Node, argv: Sequence[str], env: Dict[str, str], cwd: str) -> None:
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # its own group: stopped with children
        self.procs.append((node, proc))
        self.say(f"started {node.name} (pid {proc.pid}) on {node.host}")

    def say(self, message: str) -> None:
        print(f"gluon-ssd launch: {message}", file=self.log, flush=True)

    def running(self) -> List[Tuple[Node, subprocess.Popen]]:
        return [(n, p) for n, p in self.procs if p.poll() is None]

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every running process group, SIGKILL what is left after ``grace`` seconds."""
        running = self.running()
        stopped = [n.name for n, _ in running]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for _, proc in running:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + grace
            while time.monotonic() < end and any(p.poll() is None for _, p in running):
                time.sleep(0.05)
            running = [(n, p) for n, p in running if p.poll() is None]
        for _, proc in self.procs:
            proc.wait()
        if stopped:
            self.say("stopped " + ", ".join(stopped))

    def supervise(self, timeout: float, poll: float = 0.1, linger: float = 30.0) -> int:
        """Wait for the job; 0 when every worker exits 0, else 1 after naming the reason.

        Scheduler and servers exit by themselves once the workers are done; any still running
        ``linger`` seconds later are stopped (the work is done: still 0).
        """
        deadline = time.monotonic() + timeout
        workers_done = False
        while True:
            for node, proc in self.procs:
                if proc.poll() not in (None, 0):
                    self.say(f"{node.name} (pid {proc.pid} on {node.host}) "
                             f"{describe_exit(proc.returncode)}; stopping the job")
                    return 1
            running = self.running()
            if not running:
                return 0
            if not workers_done and not any(n.role == "worker" for n, _ in running):
                workers_done = True
                deadline = min(deadline, time.monotonic() + linger)
            if time.monotonic() > deadline:
                names = ", ".join(n.name for n, _ in running)
                if workers_done:
                    self.say(f"every worker finished; {names} still running {linger:g} s later")
                    return 0
                self.say(f"{names} still running after --timeout {timeout:g} s; stopping the job")
                return 1
            time.sleep(poll)


def launch(cfg: LaunchConfig, log: Optional[IO[str]] = None) -> int:
    """Run the job ``cfg`` describes; returns 0 when every worker succeeded, else non-zero.

    Whatever happens (a failed process, the time bound, Ctrl-C or SIGTERM to the launcher), no
    process of the job outlives this call; ``log`` (default: stderr) gets one line per start,
    failure and stop.
    """
    cfg.check()
    ssh = cfg.launcher == "ssh"
    root = cfg.host or (cfg.hosts[0] if ssh else DEFAULT_HOST)
    port = cfg.port or (DEFAULT_SSH_PORT if ssh else free_port(root))
    forwarded = {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIXES)}
    job = _Job(log or sys.stderr)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        for node in plan_nodes(cfg):
            env = dmlc_env(cfg, node, root, port)
            if ssh:
                job.start(node, ssh_command(node.host, {**forwarded, **env}, cfg.command,
                                            cfg.workdir), os.environ, os.getcwd())
            else:
                job.start(node, cfg.command, {**os.environ, **local_threads(cfg, node), **env},
                          cfg.workdir)
        return job.supervise(cfg.timeout)
    except KeyboardInterrupt:
        job.say("interrupted; stopping the job")
        return 130
    finally:
        job.stop()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


__all__ = [
    "KVSTORES", "LAUNCHERS", "Cluster", "ShardDataset", "WorkerRecord",
    "connect", "LaunchConfig", "Node", "read_hostfile", "plan_nodes", "dmlc_env", "ssh_command",
    "launch", "describe_exit",
]
