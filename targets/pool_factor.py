"""An average pool folded into the convolution after it, factored back out: a sum-pool then a
smaller stride-1 convolution (what ``sim`` runs, and the benchmark peers are given too)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
