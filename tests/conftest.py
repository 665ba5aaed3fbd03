"""Shared test set-up: a headless matplotlib backend for the tests and the notebook kernels."""
import os

os.environ["MPLBACKEND"] = "Agg"
