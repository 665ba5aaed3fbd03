"""Training precision: float32, or bfloat16 mixed precision on the CPU (``mxnet.contrib.amp``).

With ``bf16``, AMP rewrites the graph as it is traced: convolutions (and the fully connected
layers) take bfloat16 inputs and weights and run on oneDNN's BF16 kernels (``avx512_core_bf16``
on CPUs with AVX512-BF16); batch normalisation, ReLU, pooling and concatenation follow the
dtype of their input; everything else (reshapes, softmax, the loss, the MultiBox operators)
stays float32. The weights, gradients and optimiser state stay float32 (the "master" copy):
AMP casts the weights to bfloat16 inside the graph on every forward pass, so checkpoints are the
same files as in float32 training, and bfloat16's float32-sized exponent needs no loss scaling.

``amp.init`` patches MXNet's operator functions for the whole process and cannot be undone: call
:func:`set_training_dtype` before the first network is traced (``Run`` does it first thing), and
run float32 work that must stay float32 in another process.

Two adjustments to MXNet 1.9.1's bfloat16 lists make AMP trace an SSD:

* AMP wraps every operator of its float32 list to cast the operator's inputs, and for an
  operator without inputs (``_zeros``, ``_ones``, the random samplers) the wrapper fails with
  ``TypeError: 'NoneType' object is not iterable`` (``Symbol.get_children()`` is ``None``):
  these are dropped from the list (they have nothing to cast).
* ``_contrib_MultiBoxPrior`` (the anchor generator reads the feature maps' shapes) is in no list,
  so it receives the bfloat16 output of a convolution and fails with ``Unsupported data type 12``:
  it is added to the float32 list.
"""
from __future__ import annotations

import os
from typing import List

import mxnet as mx

DTYPES = ("float32", "bf16")
# Operators that create arrays from nothing: AMP 1.9.1 cannot wrap them (see the module doc).
_NO_INPUT_OPERATORS = ("_NoGradient", "_ones", "_set_value", "_zeros", "_zeros_without_dtype",
                       "normal", "uniform")
# Operators that must see float32 inputs although AMP's lists do not say so.
_EXTRA_FP32_OPERATORS = ("_contrib_MultiBoxPrior",)


def cpu_flags() -> List[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo``; empty where it does not exist)."""
    if not os.path.exists("/proc/cpuinfo"):
        return []
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return line.split(":", 1)[1].split()
    return []


def bf16_fp32_operators() -> List[str]:
    """AMP's float32 operator list for bfloat16, adjusted so that an SSD traces (module doc)."""
    from mxnet.contrib.amp import amp

    default = amp.list_fp32_ops(amp.bfloat16)
    kept = [op for op in default if op not in _NO_INPUT_OPERATORS and "random" not in op]
    return kept + [op for op in _EXTRA_FP32_OPERATORS if op not in kept]


def enable_bf16() -> None:
    """Switch this process to bfloat16 mixed precision (irreversible; see the module doc).

    Raises:
        ValueError: MXNet was built without oneDNN (MKLDNN), which has the CPU's BF16 kernels, or
            the CPU lacks AVX512-BF16, without which oneDNN 2.4.4 cannot create them.
    """
    from mxnet.contrib import amp

    if not mx.runtime.Features().is_enabled("MKLDNN"):
        raise ValueError("--dtype bf16 needs an MXNet built with oneDNN (MKLDNN): its CPU "
                         "bfloat16 kernels are oneDNN's; this build has none")
    if "avx512_bf16" not in cpu_flags():
        raise ValueError("--dtype bf16 needs a CPU with AVX512-BF16: oneDNN 2.4.4 (MXNet 1.9.1) "
                         "has no bfloat16 convolutions for this one; train in float32")
    amp.init(target_dtype="bfloat16", fp32_ops=bf16_fp32_operators())


def set_training_dtype(dtype: str) -> None:
    """Prepare the process to train in ``dtype`` (one of :data:`DTYPES`).

    Raises:
        ValueError: an unknown ``dtype``, or ``bf16`` without oneDNN.
    """
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}")
    if dtype == "bf16":
        enable_bf16()
