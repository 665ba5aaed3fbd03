"""gluon-ssd: the SSD object detector (Liu et al., ECCV 2016) in MXNet Gluon.

Stages, one module each: ``anchors`` (default boxes), ``model`` (network, detection),
``targets`` (matching), ``loss`` (hard negative mining), ``data``, ``train``, ``evaluation``,
``distributed`` (cluster set-up, job launcher), ``detect``, ``export``, ``quantize`` (INT8),
``convert`` (GluonCV's trained SSDs), ``report`` (a run's pictures), ``visualize``, ``cli`` and
``demo``.
"""
import ctypes as _ctypes
import os as _os
import platform as _platform
import sys as _sys

import numpy as _np


def _flush_denormals() -> bool:
    """Make this thread's x86-64 SSE/AVX arithmetic flush denormal (subnormal) floats to zero:
    the MXCSR register's flush-to-zero (bit 15) and denormals-are-zero (bit 6) flags, as
    TensorFlow sets them on CPUs. Threads started afterwards inherit the setting (POSIX copies
    the floating-point environment to a new thread), so it must come before MXNet starts its
    engine and OpenMP threads. Returns whether the flags were set (x86-64 Linux/glibc only).

    Why: some weights get no gradient but weight decay, which drives them, and Adam's first
    moments, to ever smaller values: the taps of 3x3 convolutions that only ever see the zero
    padding of the 1x1 and 3x3 feature maps, and the box regressors of anchor shapes that no
    object matches. Late in a run a few percent of the weights and first moments are below
    float32's smallest normal number (about 1.2e-38), and the CPU computes with such numbers
    in slow microcode, so training steps get slower (measured: benchmarks/README.md,
    ``bench_denormals.py``). Nothing of value is lost: 1e-38 is zero to any detector.
    """
    if _platform.machine() != "x86_64" or not _sys.platform.startswith("linux"):
        return False
    # numpy works out each float type's limits on first use and would find the smallest
    # subnormal to be zero (with a warning) once the flags are on: let it do so now
    for dtype in (_np.float16, _np.float32, _np.float64, _np.longdouble):
        _np.finfo(dtype)
    try:
        libm = _ctypes.CDLL("libm.so.6")
    except OSError:
        return False
    env = (_ctypes.c_char * 32)()  # glibc's fenv_t: the x87 environment (28 bytes), then MXCSR
    if libm.fegetenv(env) != 0:
        return False
    mxcsr = int.from_bytes(env[28:32], "little") | 0x8040
    env[28:32] = mxcsr.to_bytes(4, "little")
    return libm.fesetenv(env) == 0


# MXNet sizes its OpenMP pool once, when it is imported, and with OMP_NUM_THREADS unset it takes
# half the cores (it assumes hyper-threads): a single thread on a 2-core machine, which trains
# far slower (benchmarks/README.md). Unless the user chose, use every core this process may run
# on. And unless GLUON_SSD_FLUSH_DENORMALS=0, flush denormals to zero (see _flush_denormals),
# also before MXNet starts its threads.
if "mxnet" not in _sys.modules:
    _os.environ.setdefault("OMP_NUM_THREADS", str(len(_os.sched_getaffinity(0))))
    if _os.environ.get("GLUON_SSD_FLUSH_DENORMALS", "1") != "0":
        _flush_denormals()


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

from .model import SSD, DetectionNet, DetectionHead  # noqa: E402
from .model_zoo import get_model  # noqa: E402
from .presets import get_preset, list_presets  # noqa: E402

__version__ = "0.1.0"
__all__ = ["SSD", "DetectionHead", "DetectionNet", "get_model", "get_preset", "list_presets"]
