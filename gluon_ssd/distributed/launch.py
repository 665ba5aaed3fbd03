"""The launcher of a parameter-server job (:func:`launch`, ``gluon-ssd launch``).

It starts the scheduler, the servers and the workers with the ``DMLC_*`` environment that
:func:`gluon_ssd.distributed.cluster.connect` reads, on this machine (``local``, every socket on
the given address, loopback by default) or on the hosts of a host file (``ssh``). It bounds every
process by ``timeout`` seconds and stops all of them as soon as one fails (a non-zero exit or a
signal), naming it, so a crash never leaves the others waiting for it. (MXNet's own
``dmlc_tracker`` does not run on Python 3.11 and rewrites loopback addresses to the machine's.)

This module needs no MXNet: the launcher only starts processes.
"""
from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Dict, List, Optional, Sequence, Tuple

LAUNCHERS = ("local", "ssh")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SSH_PORT = 9091
DEFAULT_TIMEOUT = 24 * 3600.0
# Environment variables the ssh launcher forwards besides DMLC_* (local processes inherit all).
_FORWARDED_PREFIXES = ("MXNET_", "OMP_", "PS_")


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


__all__ = ["LAUNCHERS", "DEFAULT_TIMEOUT", "LaunchConfig", "Node", "read_hostfile", "plan_nodes",
           "dmlc_env", "local_threads", "ssh_command", "free_port", "describe_exit", "launch"]
