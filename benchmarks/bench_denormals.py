"""Training steps late in a run, with and without flushing denormal floats to zero.

``import gluon_ssd`` sets the CPU's flush-to-zero and denormals-are-zero flags before MXNet
starts its threads (see ``gluon_ssd._flush_denormals``; ``GLUON_SSD_FLUSH_DENORMALS=0`` keeps
IEEE denormals). Fresh weights have no denormals, so the difference shows only late in training:
this benchmark takes the last checkpoint of a run trained with the flags off (``--run``; a run
trained with them on holds no denormals: they were flushed as they arose), counts the weights and optimizer moments below float32's smallest normal number
(1.2e-38), and times its training steps in child processes that take turns, flags on and off:
each child resumes the checkpoint (the run's own settings), takes the first ``--batches`` batches
of the next epoch, trains one untimed pass over them (graph construction), then ``--passes``
timed ones. The median ms/image of each setting is
printed with their ratio (above 1: flushing is faster).

Examples::

    GLUON_SSD_FLUSH_DENORMALS=0 make demo OUT=runs/demo-ieee
    python benchmarks/bench_denormals.py --run runs/demo-ieee --threads 2
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_inference import set_threads


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="run folder with checkpoint-last.params")
    parser.add_argument("--batches", type=int, default=40, help="batches per timed pass")
    parser.add_argument("--passes", type=int, default=3, help="timed passes per child")
    parser.add_argument("--repeats", type=int, default=2, help="children per setting, in turn")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a child's scratch folder
    return parser.parse_args(argv)


def count_denormals(path: str) -> dict:
    """Float32 arrays of a checkpoint by kind (``model``, ``optimizer``): denormals and size."""
    import mxnet as mx

    tiny = np.finfo(np.float32).tiny
    counts = {}
    for name, array in mx.nd.load(path).items():
        if array.dtype == np.float32:
            x = array.asnumpy()
            count = counts.setdefault(name.split(":")[0], [0, 0])
            count[0] += int(((x != 0) & (np.abs(x) < tiny)).sum())
            count[1] += x.size
    return counts


def child(args) -> None:
    """Resume the checkpoint copied into ``args.child`` and print the passes' ms/image as JSON."""
    import gluon_ssd  # noqa: F401  (sets the flags, or not, before mxnet is imported)
    import mxnet as mx
    from gluon_ssd.checkpoint import read_checkpoint
    from gluon_ssd.train import LAST, Run, TrainConfig

    _, meta = read_checkpoint(os.path.join(args.child, LAST))
    config = dict(meta["config"], out=args.child, resume=True, progress=False, num_workers=0)
    run = Run(TrainConfig.from_dict(config, ignore_unknown=True))
    batches = list(itertools.islice(run.train_loader.epoch(meta["epoch"] + 1), args.batches))
    images = sum(b.images.shape[0] for b in batches)

    def one_pass() -> float:
        mx.nd.waitall()
        start = time.perf_counter()
        for b in batches:
            run.step(b.images, b.labels)
        mx.nd.waitall()
        return time.perf_counter() - start

    one_pass()
    print(json.dumps([1000 * one_pass() / images for _ in range(args.passes)]))


def timed(args, flush: bool) -> float:
    """Median ms/image of one child process with the flags on (``flush``) or off."""
    env = dict(os.environ, GLUON_SSD_FLUSH_DENORMALS="1" if flush else "0")
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copy(os.path.join(args.run, "checkpoint-last.params"), scratch)
        out = subprocess.run([sys.executable, __file__, "--run", args.run, "--child", scratch,
                              "--batches", str(args.batches), "--passes", str(args.passes)],
                             env=env, capture_output=True, text=True, check=True).stdout
    return float(np.median(json.loads(out.strip().splitlines()[-1])))


def main(argv=None) -> None:
    args = parse_args(argv)
    set_threads(args.threads)  # this process's and, through the environment, every child's
    if args.child:
        return child(args)
    counts = count_denormals(os.path.join(args.run, "checkpoint-last.params"))
    for kind, (denormal, size) in counts.items():
        print(f"{kind}: {denormal} of {size} float32 values are denormal "
              f"({100 * denormal / max(size, 1):.1f}%)")
    results = {True: [], False: []}
    for repeat in range(args.repeats):
        for flush in ((True, False) if repeat % 2 == 0 else (False, True)):
            results[flush].append(timed(args, flush))
            print(f"flush {'on ' if flush else 'off'}: {results[flush][-1]:.2f} ms/image",
                  flush=True)
    on, off = (float(np.median(results[f])) for f in (True, False))
    print(f"median ms/image of a training step: flush on {on:.2f}, off {off:.2f}; "
          f"ratio off/on {off / on:.3f}")


if __name__ == "__main__":
    main()
