"""Exact integer arithmetic in float types on the host: which type holds a synapse's sums exactly,
and the device settings that keep float convolutions of integers exact. Read by the oracle and by
``sim``, owned by neither."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from scipy import sparse


def exact_dtype(weight: np.ndarray, max_input: int = 1) -> torch.dtype:
    """The float type that sums an input of integers in [0, ``max_input``] (1: binary spikes; graded
    payloads: more) through integer ``weight`` exactly.

    Every partial sum is then an integer no larger than ``max_input`` times the largest per-output
    sum of |weight|; below 2**24 float32 holds all of them exactly, whatever the summation order
    (and float32 convolutions are several times faster than float64 ones on CPUs).
    """
    if sparse.issparse(weight):
        per_output = float(abs(weight).sum(axis=1).max()) if weight.shape[0] else 0.0
    else:
        w = np.abs(np.asarray(weight, dtype=np.float64))
        per_output = w.reshape(w.shape[0], -1).sum(axis=1).max() if w.size else 0.0
    return torch.float32 if per_output * max_input < (1 << 24) else torch.float64


@contextlib.contextmanager
def exact_arithmetic(device: str | torch.device) -> Iterator[None]:
    """Make float convolutions and matrix products of integers exact on ``device``.

    On CPUs they are (``exact_dtype``). On CUDA, TF32 rounds the inputs to 10-bit mantissas and
    cuDNN may choose Winograd or FFT convolutions, which round in between: both are turned off for
    the duration, leaving PyTorch's own im2col + GEMM convolution and full float32 products.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=False, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
