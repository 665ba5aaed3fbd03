"""Regenerate the shipped ``demo`` weights (``gluon_ssd/weights/demo.params``) from a seed, by the
``make demo`` recipe (:func:`gluon_ssd.demo.demo_config`), and compare them with the shipped file.

    python tools/make_demo_weights.py -o new-demo.params [--threads 2]

Trains into a temporary run folder, copies its best checkpoint to ``-o`` (which must not exist:
to replace the shipped file, delete it first and pass its path), and prints the largest
difference of every weight against the shipped checkpoint. MKL-DNN's results can differ in the
last bits between thread counts, so the same file needs the same ``--threads`` (the shipped
one: 2, on a 2-core CPU).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", required=True, help="where the new checkpoint goes (new)")
    p.add_argument("--threads", type=int, default=2, help="OpenMP threads (default 2)")
    args = p.parse_args(argv)
    if os.path.exists(args.output):
        p.error(f"-o {args.output} exists; choose a new name")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before mxnet loads
    import numpy as np

    from gluon_ssd.checkpoint import read_checkpoint
    from gluon_ssd.demo import demo_config
    from gluon_ssd.model_zoo import pretrained_path
    from gluon_ssd.train import train

    with tempfile.TemporaryDirectory() as folder:
        result = train(demo_config(os.path.join(folder, "run")))
        shutil.copyfile(os.path.join(result.out, "checkpoint-best.params"), args.output)
    print(f"wrote {args.output}: VOC07 mAP {result.best_map:.4f}")
    new, _ = read_checkpoint(args.output)
    shipped, _ = read_checkpoint(pretrained_path("demo"))
    diffs = {k: float(np.abs(new[k].asnumpy() - shipped[k].asnumpy()).max())
             for k in shipped if k.startswith("model:")}
    worst = max(diffs, key=diffs.get)
    print(f"against the shipped weights: {sum(d == 0 for d in diffs.values())} of {len(diffs)} "
          f"arrays identical; largest difference {diffs[worst]:.3g} ({worst})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
