"""Distributed training: real parameter-server jobs on 127.0.0.1 (1 scheduler, 1 server, 2 workers
through ``gluon-ssd launch``), a killed worker, failures and time bounds of the launcher, the ssh
launcher through a stand-in ``ssh``, and Horovod when it is installed.

The training jobs are tiny (64x64 images, 64 training images, batch 8 per worker: 4 steps per
worker and epoch); each takes some 20 s, most of it starting four MXNet processes.
"""
import json
import math
import os
import re
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from gluon_ssd.checkpoint import read_checkpoint
from gluon_ssd.cli import main
from gluon_ssd.distributed.cluster import ShardDataset
from gluon_ssd.distributed.launch import (LaunchConfig, dmlc_env, free_port, plan_nodes,
                                          read_hostfile, ssh_command)
from gluon_ssd.presets import TrainSpec
from gluon_ssd.schedule import learning_rate, server_lr_scheduler

CLI = [sys.executable, "-m", "gluon_ssd.cli"]
TRAIN_SIZE, BATCH, WORKERS = 64, 8, 2
STEPS = TRAIN_SIZE // WORKERS // BATCH  # steps per worker and epoch
TRAIN = [*CLI, "train", "--image-size", "64", "--train-size", str(TRAIN_SIZE), "--val-size", "8",
         "--batch-size", str(BATCH), "--eval-every", "2", "--quiet", "--record-workers"]
JOB = 300  # seconds: the bound given to every job here (they take some 20 s)


def launch(out, *train_args, kvstore="dist_sync", launch_args=(), command=None):
    """``gluon-ssd launch -n 2 -s 1 -- gluon-ssd train --kvstore KVSTORE ...`` (or ``command``)
    to the end."""
    command = command or [*TRAIN, "--kvstore", kvstore, "--out", str(out), *train_args]
    argv = [*CLI, "launch", "-n", str(WORKERS), "-s", "1", "--timeout", str(JOB), *launch_args,
            "--", *command]
    # Without OMP_NUM_THREADS (tests/conftest.py sets it) the launcher shares the cores among the
    # workers, as a user's local job gets them: 2 workers x 1 thread on a 2-core machine.
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=JOB + 60, env=env)


def steps(out, rank):
    """The per-step records of worker ``rank``."""
    with open(Path(out) / f"worker-{rank}.jsonl") as f:
        return [json.loads(line) for line in f]


def final_params(out, rank):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(Path(out) / f"worker-{rank}.params")).items()}


def demo_lr(epoch, total_epochs):
    """The demo preset's schedule, written out: 0.2 epochs of linear warm-up to 2e-3, then a
    cosine to 0 at the end."""
    if epoch < 0.2:
        return 2e-3 * (epoch + 1e-3) / 0.2
    return 2e-3 * 0.5 * (1 + math.cos(math.pi * (epoch - 0.2) / (total_epochs - 0.2)))


def check_job(out, epochs, first_epoch=0):
    """What every synchronous job must show (see the tests that call it)."""
    records = [steps(out, rank) for rank in range(WORKERS)]
    new = [[r for r in rec if r["epoch"] >= first_epoch] for rec in records]
    # the same number of steps on every worker
    assert [len(rec) for rec in new] == [(epochs - first_epoch) * STEPS] * WORKERS
    # the same trainable parameters after every step (the first step where they differ is where
    # to look), and bitwise-identical final parameters, BatchNorm statistics included
    digests = [[r["digest"] for r in rec] for rec in new]
    differ = [r["iteration"] for r, d0, d1 in zip(new[0], *digests) if d0 != d1]
    assert not differ, f"the workers' parameters differ after the steps {differ}"
    p0, p1 = final_params(out, 0), final_params(out, 1)
    assert sorted(p0) == sorted(p1) and any("running_mean" in k for k in p0)
    differ = {name: float(np.abs(p0[name] - p1[name]).max()) for name in p0
              if p0[name].tobytes() != p1[name].tobytes()}
    assert not differ, f"{len(differ)} of {len(p0)} arrays differ (max |difference|): {differ}"
    # each worker trained on its own half: rank r takes the items r, r + 2, r + 4, ...
    for epoch in range(first_epoch, epochs):
        seen = [[i for r in rec if r["epoch"] == epoch for i in r["indices"]] for rec in new]
        for rank in range(WORKERS):
            assert sorted(seen[rank]) == list(range(rank, TRAIN_SIZE, WORKERS))
    # the optimiser's learning rate follows the schedule, step by step
    for rec in new:
        for i, r in enumerate(rec):
            epoch = first_epoch + i / STEPS
            assert r["optimizer_lr"] == pytest.approx(demo_lr(epoch, epochs), rel=1e-9)
    return new


# ----------------------------------------------------------------------------- dist_sync

@pytest.fixture(scope="module")
def sync_job(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist_sync")
    proc = launch(out, "--epochs", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_two_workers_end_with_identical_parameters_on_their_own_halves(sync_job):
    out, _ = sync_job
    check_job(out, epochs=2)
    # rank 0's checkpoint holds the same weights
    arrays, meta = read_checkpoint(str(out / "checkpoint-last.params"))
    p0 = final_params(out, 0)
    for name, value in arrays.items():
        if name.startswith("model:"):
            assert value.asnumpy().tobytes() == p0[name[len("model:"):]].tobytes(), name
    assert meta["iteration"] == 2 * STEPS and meta["config"]["kvstore"] == "dist_sync"


def test_the_loss_goes_down(sync_job):
    out, _ = sync_job
    records = [steps(out, rank) for rank in range(WORKERS)]
    loss = np.mean([[r["loss"] for r in rec] for rec in records], axis=0)  # the global batch
    assert loss[-2:].mean() < 0.85 * loss[:2].mean(), loss
    with open(out / "log.json") as f:
        log = json.load(f)
    assert log[1]["loss"] < log[0]["loss"]


def test_a_learning_rate_change_takes_effect(sync_job):
    out, _ = sync_job
    rec = steps(out, 0)
    lr = np.array([r["optimizer_lr"] for r in rec])
    update = np.array([r["max_update"] for r in rec])
    # Adam's first step moves every weight by lr * sign(gradient): the warm-up's 1e-5, not the
    # base rate 2e-3 the optimiser was created with
    assert lr[0] == pytest.approx(1e-5) and update[0] == pytest.approx(lr[0], rel=2e-2)
    # the steps grow with the warm-up and shrink with the cosine
    peak = int(np.argmax(lr))
    assert update[peak] > 50 * update[0] and update[-1] < update[peak] / 5


def test_rank_0_alone_writes_the_run_folder(sync_job):
    out, proc = sync_job
    assert proc.stdout.count("best VOC07 mAP") == 1  # rank 0's summary only
    for name in ("checkpoint-best.params", "checkpoint-last.params", "log.csv", "log.json",
                 "config.json", "curve.png", "detections.png"):
        assert (out / name).is_file(), name
    with open(out / "log.json") as f:
        log = json.load(f)
    assert [r["iteration"] for r in log] == [STEPS, 2 * STEPS]
    assert log[0]["val_map"] is None and 0 <= log[1]["val_map"] <= 1  # --eval-every 2
    started = re.findall(r"started (\w+ ?\d*) \(pid \d+\) on 127\.0\.0\.1", proc.stderr)
    assert started == ["scheduler", "server 0", "worker 0", "worker 1"]


def test_resume_continues_the_job(sync_job, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(sync_job[0], out)
    proc = launch(out, "--epochs", "3", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = check_job(out, epochs=3, first_epoch=2)
    assert [r["iteration"] for r in new[0]] == list(range(2 * STEPS + 1, 3 * STEPS + 1))
    _, meta = read_checkpoint(str(out / "checkpoint-last.params"))
    assert meta["epoch"] == 2 and len(meta["history"]) == 3


# The job of sync_job, but every worker splits its batches over two CPU contexts.
TWO_DEVICE_WORKER = """
import sys
import mxnet as mx
from gluon_ssd.train import TrainConfig, train
train(TrainConfig(image_size=64, train_size={train}, val_size=8, batch_size={batch}, epochs=2,
                  eval_every=2, progress=False, record_workers=True, kvstore="dist_sync",
                  out=sys.argv[1]), ctx=[mx.cpu(0), mx.cpu(1)])
"""


def test_workers_with_two_devices_each_train_as_with_one(sync_job, tmp_path):
    """dist_sync workers holding two contexts each: identical to each other on every step, and
    training as the same job with one context per worker does (same losses, close weights)."""
    script = tmp_path / "worker.py"
    script.write_text(TWO_DEVICE_WORKER.format(train=TRAIN_SIZE, batch=BATCH))
    out = tmp_path / "two_devices"
    proc = launch(out, command=[sys.executable, str(script), str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_job(out, epochs=2)
    # The same losses step by step. Float differences of the summed gradients flip the sign of
    # Adam's step for gradients near zero (each step moves a weight by about lr, whatever the
    # gradient's size), so after the first epoch the two jobs drift apart by some steps' worth.
    loss = [[r["loss"] for r in steps(job, 0)] for job in (sync_job[0], out)]
    np.testing.assert_allclose(loss[1][:STEPS], loss[0][:STEPS], rtol=1e-4)
    np.testing.assert_allclose(loss[1], loss[0], rtol=1e-2)
    one, two = final_params(sync_job[0], 0), final_params(out, 0)
    assert sorted(one) == sorted(two)
    weights = [np.concatenate([p[k].ravel() for k in sorted(one) if "running" not in k])
               for p in (one, two)]
    assert np.linalg.norm(weights[1] - weights[0]) < 1e-2 * np.linalg.norm(weights[0])


# ----------------------------------------------------------------------------- failures

def _pids(text):
    return {name: int(pid) for name, pid in re.findall(r"started (\w+ ?\d*) \(pid (\d+)\)", text)}


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_killed_worker_ends_the_whole_job(tmp_path):
    out, log_path = tmp_path / "run", tmp_path / "launch.log"
    argv = [*CLI, "launch", "-n", "2", "-s", "1", "--timeout", str(JOB), "--", *TRAIN,
            "--kvstore", "dist_sync", "--epochs", "100", "--out", str(out)]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + JOB
        while time.monotonic() < end:  # until worker 1 is training
            record = out / "worker-1.jsonl"
            if record.exists() and len(record.read_text().splitlines()) >= 2:
                break
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        pids = _pids(log_path.read_text())
        os.kill(pids["worker 1"], signal.SIGKILL)
        status = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert status != 0
    assert (f"worker 1 (pid {pids['worker 1']} on 127.0.0.1) was killed by SIGKILL; "
            "stopping the job") in text
    assert re.search(r"stopped .*worker 0", text)  # it was waiting for worker 1's gradients
    assert all(_gone(pid) for pid in pids.values())


def run(capsys, *argv):
    """``gluon-ssd ARGV`` in this process -> (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_failing_process_is_named_with_its_status(capsys):
    script = ("import os, sys, time; time.sleep(0.3)\n"
              "sys.exit(3 if os.environ['DMLC_ROLE'] == 'worker' else time.sleep(60))")
    status, _, err = run(capsys, "launch", "-n", "1", "-s", "2", "--", sys.executable, "-c",
                         script)
    assert status == 1
    assert re.search(r"worker 0 \(pid \d+ on 127\.0\.0\.1\) exited with status 3; stopping the "
                     "job", err)
    assert "stopped scheduler, server 0, server 1" in err
    assert len(_pids(err)) == 4 and all(_gone(pid) for pid in _pids(err).values())


def test_the_time_bound_stops_every_process(capsys):
    status, _, err = run(capsys, "launch", "-n", "2", "--timeout", "1", "--", sys.executable,
                         "-c", "import time; time.sleep(60)")
    assert status == 1
    assert ("scheduler, server 0, worker 0, worker 1 still running after --timeout 1 s; "
            "stopping the job") in err
    assert len(_pids(err)) == 4 and all(_gone(pid) for pid in _pids(err).values())


@pytest.mark.parametrize("args, message", [
    (["-n", "2"], "no command to launch"),
    (["-n", "0", "--", "true"], "--num-workers: must be an integer in 1..256, got '0'"),
    (["-n", "2", "-s", "0", "--", "true"], "--num-servers: must be an integer in 1..256"),
    (["-n", "2", "--launcher", "ssh", "--", "true"], "--launcher ssh needs a host file"),
    (["-n", "2", "-H", "HOSTS", "--", "true"], "a host file is for --launcher ssh"),
    (["-n", "2", "--launcher", "ssh", "-H", "MISSING", "--", "true"], "MISSING"),
    (["-n", "2", "--launcher", "ssh", "-H", "EMPTY", "--", "true"], "lists no host"),
    (["-n", "2", "--timeout", "0", "--", "true"], "--timeout: must be a finite number in (0, "),
    (["-n", "2", "--port", "70000", "--", "true"], "--port: must be an integer in 1..65535"),
])
def test_bad_launch_arguments_are_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "hosts").write_text("127.0.0.1\n")
    (tmp_path / "empty").write_text("# nothing\n\n")
    files = {"HOSTS": tmp_path / "hosts", "MISSING": tmp_path / "missing",
             "EMPTY": tmp_path / "empty"}
    args = [str(files.get(a, a)) for a in args]
    message = str(files.get(message, message))
    status, out, err = run(capsys, "launch", *args)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert err.startswith("gluon-ssd launch: error: ")


@pytest.mark.parametrize("kvstore", ["dist_sync", "dist_async"])
def test_train_refuses_a_dist_kvstore_outside_a_job(tmp_path, capsys, monkeypatch, kvstore):
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    status, _, err = run(capsys, *TRAIN[len(CLI):], "--kvstore", kvstore, "--out", tmp_path)
    assert status == 2
    assert err == (f"gluon-ssd train: error: --kvstore {kvstore} runs inside a job started by "
                   "`gluon-ssd launch`, which sets DMLC_ROLE and the scheduler's address, e.g. "
                   f"gluon-ssd launch -n 2 -s 1 -- gluon-ssd train --kvstore {kvstore} ...\n")
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- dist_async

def test_dist_async_trains_each_worker_on_its_half(tmp_path):
    out = tmp_path / "async"
    proc = launch(out, "--epochs", "1", kvstore="dist_async")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in range(WORKERS):
        rec = steps(out, rank)
        assert len(rec) == STEPS and all(math.isfinite(r["loss"]) for r in rec)
        assert sorted(i for r in rec for i in r["indices"]) == list(range(rank, TRAIN_SIZE, 2))
    assert (out / "checkpoint-last.params").is_file()


@pytest.mark.parametrize("spec", [
    TrainSpec(schedule="cosine", warmup_epochs=0.5),
    TrainSpec(schedule="step", warmup_epochs=0.0, lr_steps=(2, 3), lr_factor=0.1),
])
def test_the_servers_schedule_matches_the_workers(spec):
    # dist_async: the optimiser runs on the servers with MXNet's scheduler of the update count
    updates_per_epoch, epochs = 40, 4  # e.g. 2 workers x 20 steps
    scheduler = server_lr_scheduler(spec, 0.1, epochs, updates_per_epoch)
    for update in range(1, epochs * updates_per_epoch):
        expected = learning_rate(spec, 0.1, update / updates_per_epoch, epochs)
        assert scheduler(update) == pytest.approx(expected, rel=1e-2, abs=1e-9), update


# ----------------------------------------------------------------------------- the ssh launcher

def test_ssh_command_quotes_the_remote_command():
    argv = ssh_command("node-1", {"DMLC_ROLE": "worker", "NOTE": "a b"},
                       ["python", "train.py", "--out", "my runs/x"], "/srv/my project")
    assert argv == ["ssh", "-o", "BatchMode=yes", "-tt", "node-1",
                    "cd '/srv/my project' && env DMLC_ROLE=worker NOTE='a b' "
                    "python train.py --out 'my runs/x'"]


def test_ssh_plan_spreads_the_processes_over_the_hosts(tmp_path):
    (tmp_path / "hosts").write_text("# cluster\nalpha\n\nbeta  # the second\n")
    hosts = read_hostfile(str(tmp_path / "hosts"))
    assert hosts == ["alpha", "beta"]
    cfg = LaunchConfig(["true"], num_workers=3, num_servers=2, launcher="ssh", hosts=hosts)
    nodes = plan_nodes(cfg)
    assert [(n.name, n.host) for n in nodes] == [
        ("scheduler", "alpha"), ("server 0", "alpha"), ("server 1", "beta"),
        ("worker 0", "alpha"), ("worker 1", "beta"), ("worker 2", "alpha")]
    assert dmlc_env(cfg, nodes[4], "alpha", 9091) == {
        "DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "alpha", "DMLC_PS_ROOT_PORT": "9091",
        "DMLC_NUM_SERVER": "2", "DMLC_NUM_WORKER": "3", "DMLC_NODE_HOST": "beta"}


# Sums each worker's rank + 1 on the parameter server and writes the sum to OUT/worker-RANK.
KV_SUM = """
import sys, mxnet as mx
kv = mx.kv.create("dist_sync")
kv.init(0, mx.nd.zeros(1))
total = mx.nd.zeros(1)
kv.pushpull(0, mx.nd.array([kv.rank + 1]), out=total)
open(f"{sys.argv[1]}/worker-{kv.rank}", "w").write(str(total.asscalar()))
"""

# Stands in for ssh: logs the host, drops the options and runs the remote command here.
FAKE_SSH = """#!/bin/bash
while [ "${1#-}" != "$1" ]; do [ "$1" = "-o" ] && shift; shift; done
echo "$1" >> "$FAKE_SSH_LOG"
exec bash -c "$2"
"""


def test_ssh_launcher_runs_a_job_through_ssh(tmp_path):
    bin_dir, out = tmp_path / "bin", tmp_path / "out dir"
    bin_dir.mkdir()
    out.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    (tmp_path / "hosts").write_text("127.0.0.1\n127.0.0.1\n")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               FAKE_SSH_LOG=str(tmp_path / "ssh.log"))
    port = str(free_port("127.0.0.1"))
    proc = subprocess.run(
        [*CLI, "launch", "-n", "2", "--launcher", "ssh", "-H", str(tmp_path / "hosts"),
         "--port", port, "--timeout", "120", "--workdir", str(tmp_path), "--",
         sys.executable, "-c", KV_SUM, str(out)],
        capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "ssh.log").read_text().split() == ["127.0.0.1"] * 4
    assert [(out / f"worker-{r}").read_text() for r in range(2)] == ["3.0", "3.0"]


# ----------------------------------------------------------------------------- sharding

def test_shards_are_equal_disjoint_and_interleaved():
    data = list(range(10))
    shards = [ShardDataset(data, rank, 3) for rank in range(3)]
    assert [s.indices for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert [[s[i] for i in range(len(s))] for s in shards] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert ShardDataset(data).indices == data  # one process: everything, in order
    with pytest.raises(ValueError, match="rank 3 is not in 0..2"):
        ShardDataset(data, 3, 3)


# ----------------------------------------------------------------------------- Horovod

def _horovodrun():
    try:
        import horovod.mxnet  # noqa: F401
    except ImportError as err:
        pytest.skip(f"horovod.mxnet is not installed ({err})")
    runner = shutil.which("horovodrun", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                             f"{os.environ.get('PATH', '')}")
    if runner is None:
        pytest.skip("horovodrun is not on PATH")
    return runner


def test_horovod_job_matches_the_parameter_server_checks(tmp_path):
    runner = _horovodrun()
    out = tmp_path / "horovod"
    proc = subprocess.run(
        [runner, "-np", "2", "-H", "localhost:2", "--gloo", "--network-interface", "lo",
         *TRAIN, "--kvstore", "horovod", "--epochs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=JOB)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    check_job(out, epochs=2)
    rec = steps(out, 0)
    assert rec[0]["max_update"] == pytest.approx(rec[0]["optimizer_lr"], rel=2e-2)
    assert (out / "checkpoint-last.params").is_file() and (out / "curve.png").is_file()
