"""Shared test set-up, before any test module imports mxnet: a headless matplotlib backend, and
``import gluon_ssd``, which puts its OpenMP thread count into the environment, so that this
process and every subprocess a test starts (they inherit it) compute with the same number of
threads: MKL-DNN's results can differ in the last bits between thread counts, and exact-resume
tests compare runs bit for bit."""
import os

os.environ["MPLBACKEND"] = "Agg"

import gluon_ssd  # noqa: E402,F401  (sets OMP_NUM_THREADS unless it is set)
