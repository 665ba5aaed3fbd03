"""Shared test set-up, before any test module imports mxnet: a headless matplotlib backend, and
the OpenMP thread count ``import gluon_ssd`` would choose, fixed in the environment so that this
process and every subprocess a test starts (they inherit it) compute with the same number of
threads: MKL-DNN's results can differ in the last bits between thread counts, and exact-resume
tests compare runs bit for bit."""
import os

os.environ["MPLBACKEND"] = "Agg"
os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))
