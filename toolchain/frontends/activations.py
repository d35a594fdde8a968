"""Recognises an element-wise activation by probing it: ReLU, a QCFS staircase, a clipped ReLU or
the identity, with one threshold or one per channel. Both importers use it, so a user's own QCFS
module (torch) or the Mul/Add/Floor/Clip chain it exports to (ONNX) is found by what it computes,
not by how it is written."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.ann import qcfs

ScalarFn = Callable[[np.ndarray], np.ndarray]
ArrayFn = Callable[[np.ndarray], np.ndarray]  # float64 (rows, *shape) -> the same shape


def _off_edges(grid: np.ndarray, lam: float, levels: int) -> np.ndarray:
    """The grid points away from the staircase's steps at (k - 1/2) lam / L (float rounding there)."""
    if levels <= 0:
        return np.ones(grid.shape, dtype=bool)
    edges = (np.arange(1, levels + 1) - 0.5) * lam / levels
    idx = np.searchsorted(edges, grid)
    lo, hi = edges[np.clip(idx - 1, 0, levels - 1)], edges[np.clip(idx, 0, levels - 1)]
    return np.minimum(np.abs(grid - lo), np.abs(grid - hi)) >= 1e-6 * lam


def classify(fn: ScalarFn) -> ann.ReLU | ann.QCFS | ann.Identity | None:
    """Return the IR op that ``fn`` computes element-wise, or None if it is none of them."""
    big = np.array([1e6, 3e6], dtype=np.float64)
    top = fn(big)
    if np.allclose(top, big, rtol=1e-4):
        grid = np.linspace(-50.0, 50.0, 100_001)
        y = fn(grid)
        if np.allclose(y, np.maximum(grid, 0.0), atol=1e-5):
            return ann.ReLU()
        if np.allclose(y, grid, atol=1e-5):
            return ann.Identity()
        return None
    lam = float(top[0])
    if not np.isfinite(lam) or lam <= 0 or not np.isclose(top[0], top[1]):
        return None
    grid = np.linspace(-1.5 * lam, 2.5 * lam, 400_001)
    y = fn(grid)
    levels_seen = np.unique(np.round(y / lam, 6))
    if len(levels_seen) > 1000:  # continuous: a clipped ReLU
        levels = 0
    else:
        levels = len(levels_seen) - 1
    keep = _off_edges(grid, lam, levels)
    grid, y = grid[keep], y[keep]
    if np.allclose(y, qcfs(grid, lam, levels), atol=1e-5 * lam):
        return ann.QCFS(lam=lam, levels=levels)
    return None


def classify_channels(fn: ScalarFn, channels: int) -> ann.QCFS | None:
    """A QCFS staircase or clipped ReLU with one threshold per channel: ``fn`` maps (channels, n)
    inputs to channel c's activation of row c. Every channel must have the same level count."""
    top = fn(np.tile(np.array([[1e6, 3e6]]), (channels, 1)))
    lam = top[:, 0].astype(np.float64)
    if not (np.all(np.isfinite(lam)) and np.all(lam > 0) and np.allclose(top[:, 0], top[:, 1])):
        return None
    n = int(np.clip(8_000_000 // channels, 2001, 40_001))  # grid points per channel
    grid = np.linspace(-1.5, 2.5, n)  # in units of each channel's lam
    y = fn(lam[:, None] * grid[None, :]) / lam[:, None]
    inside = (grid > 0) & (grid < 1)
    seen = {len(np.unique(np.round(row[inside], 6))) for row in y}
    if len(seen) != 1:
        return None
    (count,) = seen
    levels = 0 if count > inside.sum() // 4 else count - 1
    keep = _off_edges(grid, 1.0, levels)
    if np.allclose(y[:, keep], qcfs(grid[keep], 1.0, levels)[None, :], atol=1e-5):
        return ann.QCFS(lam=lam, levels=levels)
    return None


def probe(fn: ArrayFn, shape: tuple[int, ...]) -> ann.ReLU | ann.QCFS | ann.Identity | None:
    """Classify an element-wise function of activations shaped ``shape`` (without the batch axis)
    by evaluating it on values laid out in that shape: one function for all elements, else one
    threshold per channel (the first axis)."""
    per = int(np.prod(shape))

    def scalar_fn(z: np.ndarray) -> np.ndarray:
        n = len(z)
        buf = np.zeros(-(-n // per) * per)
        buf[:n] = z
        return fn(buf.reshape(-1, *shape)).reshape(-1)[:n]

    op = classify(scalar_fn)
    if op is not None or not shape or shape[0] < 2:
        return op
    channels, inner = shape[0], int(np.prod(shape[1:]))

    def channel_fn(z: np.ndarray) -> np.ndarray:
        n = z.shape[1]
        rows = -(-n // inner)
        buf = np.zeros((channels, rows * inner))
        buf[:, :n] = z
        out = fn(buf.reshape(channels, rows, inner).transpose(1, 0, 2).reshape(rows, *shape))
        return out.reshape(rows, channels, inner).transpose(1, 0, 2).reshape(channels, -1)[:, :n]

    return classify_channels(channel_fn, channels)


def affine(fn: ArrayFn, shape: tuple[int, ...]) -> ann.BatchNorm | ann.Identity | None:
    """Recognise ``fn(z) = a * z + b`` element by element, with ``a`` and ``b`` one per channel
    (the first axis of ``shape``; a flat shape has one per feature): an input normalisation
    ``(x - mean) / std`` written inside the model, a scale, a shift. Returns it as the per-channel
    affine op the IR has (a BatchNorm with mean 0, variance 1, eps 0: ``gamma * z + beta``, the op
    :func:`~spikeport.toolchain.passes.normalize.prepend_normalization` makes for ``--mean``/``--std``), the
    identity when ``a = 1`` and ``b = 0`` exactly, or None when ``fn`` is not such a map. ``fn`` maps
    float64 ``(rows, *shape)`` to the same shape."""
    if not shape:
        return None
    channels = shape[0]
    rng = np.random.default_rng(0)
    z = np.concatenate([np.zeros((1, *shape)), np.ones((1, *shape)), rng.uniform(-1e3, 1e3, (2, *shape)),
                        np.full((1, *shape), 1e6), np.full((1, *shape), -1e6)])
    try:
        y = np.asarray(fn(z.copy()), dtype=np.float64)  # a copy: an in-place op (relu_) must not change z
    except Exception:  # a function that does not run on these values is not an affine map
        return None
    if y.shape != z.shape or not np.all(np.isfinite(y)):
        return None
    b = y[0].reshape(channels, -1)
    a = (y[1] - y[0]).reshape(channels, -1)
    scale = 1.0 + float(np.abs(b).max())
    if not (np.allclose(a, a[:, :1], rtol=1e-9, atol=1e-9) and np.allclose(b, b[:, :1], rtol=1e-9,
                                                                                atol=1e-9 * scale)):
        return None  # not one value per channel: a constant per pixel, or not element-wise
    a, b = a[:, 0].copy(), b[:, 0].copy()
    per = (1, channels) + (1,) * (len(shape) - 1)
    want = a.reshape(per) * z + b.reshape(per)
    if not np.allclose(y, want, rtol=1e-6, atol=1e-6 * scale):
        return None
    if np.all(a == 1.0) and np.all(b == 0.0):
        return ann.Identity()
    return ann.BatchNorm(np.zeros(channels), np.ones(channels), a, b, 0.0)
