"""gluon-ssd: the SSD object detector (Liu et al., ECCV 2016) in MXNet Gluon.

Stages, one module each: ``anchors`` (default boxes), ``model`` (network, detection),
``targets`` (matching), ``loss`` (hard negative mining), ``data``, ``train``, ``evaluate``,
``detect``, ``export``, ``convert`` (GluonCV's trained SSDs), ``visualize``, ``cli``.
"""
import os as _os
import sys as _sys

# MXNet sizes its OpenMP pool once, when it is imported, and with OMP_NUM_THREADS unset it takes
# half the cores (it assumes hyper-threads): one thread on a 2-core machine, 1.6x slower training
# (benchmarks/README.md). Unless the user chose, use every core this process may run on.
if "mxnet" not in _sys.modules:
    _os.environ.setdefault("OMP_NUM_THREADS", str(len(_os.sched_getaffinity(0))))

from .model import SSD, DetectionNet, Detector, get_model
from .presets import get_preset, list_presets

__version__ = "0.1.0"
__all__ = ["SSD", "Detector", "DetectionNet", "get_model", "get_preset", "list_presets"]
