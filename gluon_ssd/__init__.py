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


def _import_gluoncv() -> None:
    """Import GluonCV, also beside PyTorch 2. GluonCV 0.10 checks at import that an installed
    torch is older than 2.0 and raises RuntimeError otherwise, although only its own PyTorch
    models need that; with ``torch`` hidden from it for the import, it skips that part."""
    if "gluoncv" in _sys.modules:
        return
    torch = _sys.modules.get("torch")
    _sys.modules["torch"] = None  # "import torch" raises ImportError while this is in place
    try:
        import gluoncv  # noqa: F401
    finally:
        if torch is None:
            del _sys.modules["torch"]
        else:
            _sys.modules["torch"] = torch


_import_gluoncv()

from .model import SSD, DetectionNet, Detector, get_model  # noqa: E402
from .presets import get_preset, list_presets  # noqa: E402

__version__ = "0.1.0"
__all__ = ["SSD", "Detector", "DetectionNet", "get_model", "get_preset", "list_presets"]
