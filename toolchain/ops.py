"""Applying a synapse to a batch of activations or spikes with torch (float arithmetic)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from spikeport.toolchain.snn import ConvSynapse, Synapse


def apply_synapse(syn: Synapse, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` is (batch, *syn.in_shape); the result is (batch, *syn.out_shape). ``weight`` is the
    synapse's weight as a tensor (a sparse CSR tensor for a :class:`SparseSynapse`)."""
    if isinstance(syn, ConvSynapse):
        return F.conv2d(x, weight, None, syn.stride, syn.padding, syn.dilation, syn.groups)
    if weight.layout == torch.sparse_csr:
        return (weight @ x.reshape(len(x), -1).T).T.reshape(len(x), *syn.out_shape)
    return F.linear(x.reshape(len(x), -1), weight).reshape(len(x), *syn.out_shape)


def weight_tensor(w, dtype: torch.dtype, device: str | torch.device = "cpu") -> torch.Tensor:
    """A synapse's weight (numpy array or scipy sparse matrix) as a tensor: CSR stays CSR."""
    if sparse.issparse(w):
        w = sparse.csr_matrix(w)
        with warnings.catch_warnings():  # torch calls CSR support "beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.as_tensor(w.indptr, dtype=torch.int64),
                                           torch.as_tensor(w.indices, dtype=torch.int64),
                                           torch.as_tensor(w.data, dtype=dtype), w.shape, device=device)
    return torch.as_tensor(np.asarray(w), dtype=dtype, device=device)


def conv_as_matrix(syn: ConvSynapse, weight: np.ndarray) -> sparse.csr_matrix:
    """The convolution as a sparse (n_out, n_in) matrix on flattened (C, H, W) vectors."""
    co, cig, kh, kw = weight.shape
    ci, h, w = syn.in_shape
    _, oh, ow = syn.out_shape
    per_out = co // syn.groups
    oc, oy, ox = np.meshgrid(np.arange(co), np.arange(oh), np.arange(ow), indexing="ij")
    oc, oy, ox = oc.ravel(), oy.ravel(), ox.ravel()
    rows, cols, vals = [], [], []
    for c in range(cig):
        for i in range(kh):
            for j in range(kw):
                iy = oy * syn.stride[0] - syn.padding[0] + i * syn.dilation[0]
                ix = ox * syn.stride[1] - syn.padding[1] + j * syn.dilation[1]
                icn = (oc // per_out) * cig + c
                ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
                val = weight[oc, c, i, j]
                ok &= val != 0
                rows.append(((oc * oh + oy) * ow + ox)[ok])
                cols.append(((icn * h + iy) * w + ix)[ok])
                vals.append(val[ok])
    n_out, n_in = co * oh * ow, ci * h * w
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(n_out, n_in))


@dataclass(frozen=True)
class PooledConv:
    """A strided convolution whose kernel is constant on stride x stride blocks (what folding an
    average pool into the convolution after it makes): the same map as a sum-pool of ``pool`` x
    ``pool`` windows followed by the smaller ``weight`` at stride 1, with ``pool``² times fewer
    multiply-accumulates."""

    pool: int
    weight: np.ndarray  # (C_out, C_in / groups, kH / pool, kW / pool)
    padding: tuple[int, int]


def factor_pool(weight: np.ndarray, in_shape: tuple[int, ...], stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> PooledConv | None:
    """``weight`` at ``stride`` as a sum-pool then a stride-1 convolution, or None where that is
    not the same map. It is when the stride is square, the kernel's blocks are constant, and the
    kernel, the padding and the input's height and width are multiples of the stride: then
    output pixel (y, x) reads the padded input's blocks (y + i, x + j) whole, each through one
    weight, and zero padding pools to zero padding."""
    w = np.asarray(weight)
    s = stride[0]
    if (s < 2 or stride[1] != s or tuple(dilation) != (1, 1) or w.ndim != 4
            or any(v % s for v in (*w.shape[2:], *padding, *in_shape[1:]))):
        return None
    co, ci, kh, kw = w.shape
    blocks = w.reshape(co, ci, kh // s, s, kw // s, s)
    if not (blocks == blocks[:, :, :, :1, :, :1]).all():
        return None
    return PooledConv(s, np.ascontiguousarray(blocks[:, :, :, 0, :, 0]), (padding[0] // s, padding[1] // s))


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

