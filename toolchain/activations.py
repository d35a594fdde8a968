"""Recognises an element-wise activation by probing it: ReLU, a QCFS staircase, a clipped ReLU or
the identity. Both importers use it, so a user's own QCFS module (torch) or the Mul/Add/Floor/Clip
chain it exports to (ONNX) is found by what it computes, not by how it is written."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from spikeport.toolchain import ir

ScalarFn = Callable[[np.ndarray], np.ndarray]


def staircase(y, levels: int):
    """QCFS's rounding of y in [0, 1] to ``levels`` steps: floor(y * L + 1/2) / L (numpy or torch;
    an explicit floor, which every ONNX exporter writes as Floor)."""
    floor = torch.floor if isinstance(y, torch.Tensor) else np.floor
    return floor(y * levels + 0.5) / levels


def qcfs(z, lam: float, levels: int):
    """The QCFS activation ``lam * clip(floor(z * L / lam + 1/2) / L, 0, 1)`` on numpy arrays or torch
    tensors; ``levels == 0`` is the unquantized clip ``lam * clip(z / lam, 0, 1)``. The one definition:
    the interpreter, the activation probe and the zoo's trainable ``QCFS`` module all use it."""
    y = (z / lam).clip(0.0, 1.0)
    return (staircase(y, levels) if levels > 0 else y) * lam


def classify(fn: ScalarFn) -> ir.ReLU | ir.QCFS | ir.Identity | None:
    """Return the IR op that ``fn`` computes element-wise, or None if it is none of them."""
    big = np.array([1e6, 3e6], dtype=np.float64)
    top = fn(big)
    if np.allclose(top, big, rtol=1e-4):
        grid = np.linspace(-50.0, 50.0, 100_001)
        y = fn(grid)
        if np.allclose(y, np.maximum(grid, 0.0), atol=1e-5):
            return ir.ReLU()
        if np.allclose(y, grid, atol=1e-5):
            return ir.Identity()
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
    # the staircase thresholds sit at (k - 1/2) lam / L; probe away from them (float rounding)
    if levels > 0:
        edges = (np.arange(1, levels + 1) - 0.5) * lam / levels
        idx = np.searchsorted(edges, grid)
        lo, hi = edges[np.clip(idx - 1, 0, levels - 1)], edges[np.clip(idx, 0, levels - 1)]
        dist = np.minimum(np.abs(grid - lo), np.abs(grid - hi))
        near = dist < 1e-6 * lam
        grid, y = grid[~near], y[~near]
    if np.allclose(y, qcfs(grid, lam, levels), atol=1e-5 * lam):
        return ir.QCFS(lam=lam, levels=levels)
    return None
