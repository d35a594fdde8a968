"""``FastIF``'s loop compiled for the CPU (numba): every step of a chunk for a block of neurons in
one pass, the state in cache, instead of three whole-population torch operations per step.

The kernel checks exactness itself instead of relying on a bound proved beforehand: every value
it adds is an exact float32 integer (the caller's part: see ``integrate_fire``), and every partial
sum of u is compared with ``lim``. A partial sum inside ``lim`` (< 2**23) is an exact integer; one
outside it is caught whatever float32 made of it, since rounding is monotone and ``lim + 1`` is
representable. The first step at which any neuron leaves the range is returned, and the caller
redoes the chunk up to it and hands that step to Lava's general arithmetic (``LIFModel``).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import torch
from numba import njit, prange

BLOCK = 1024  # neurons per job: their u, pending spikes and parameters stay in L1/L2 over the steps


def _integrate_fire(u: np.ndarray, u_new: np.ndarray, a: np.ndarray, a_scale: float, c0: np.ndarray,
                   c1: np.ndarray, which: np.ndarray, self_w: np.ndarray, thr: np.ndarray, prev: np.ndarray,
                   reset: np.ndarray, lim: float, out: np.ndarray, pool_index: np.ndarray, pool_run: np.ndarray,
                   pooled: np.ndarray, last: np.ndarray, counts: np.ndarray, block: int) -> int:  # pragma: no cover
    """K steps of B x N soft-reset IF neurons; returns the first step at which some |u| left
    ``lim`` (K if none: then ``u_new`` holds the state after them, ``last`` (B, N) the spikes of
    the last step, ``out`` all of them).

    What enters a_in at step k: the synaptic input ``a`` (K' <= K, B, N; steps from K' on: none),
    and ``c0`` (1 or B, N) where ``which[k]`` is 1, ``c1`` where it is 2 (the bias current, the
    input layer's current, the flush step's quench); a_in is u units / ``a_scale`` (a power of
    two, so the scaling is exact). ``u`` (B, N) float32 is the state before (read only);
    ``self_w`` (N,) the self-subtraction in u units, due the step after a spike; ``prev`` (B, N)
    the spikes of the step before (or (0, N): none); ``reset`` (K,) the steps whose start zeroes
    u; ``thr`` (1 or B, N): a neuron spikes where u > thr.

    ``out`` (K, B, N) float32 or bool receives the spikes (or is (0, B, N): not wanted); ``pooled``
    (K, B, P), where ``pool_index`` (N,) is not empty, the sum of the spikes of the neurons whose
    ``pool_index`` is each p: the sum-pool a pooled convolution reads, without the spikes written
    and read in between (``pool_run``: the length of the run of consecutive positions that starts
    at each neuron: ``PoolPlan``). ``counts`` (K, B * jobs per row) receives the number of spikes
    per step and job; a job is ``block`` neurons of one sample (where pooling, whole pooled rows:
    two jobs never add to one sum).
    """
    K = which.shape[0]
    B, N = u.shape
    per_row = (N + block - 1) // block
    first_bad = np.full(B * per_row, K, np.int64)
    has_out, has_pool = out.shape[0] > 0, pool_index.shape[0] > 0
    scale, bound = np.float32(a_scale), np.float32(lim)  # float32 throughout (a float64 would widen u)
    for job in prange(B * per_row):
        b = job // per_row
        lo = (job % per_row) * block
        hi = min(lo + block, N)
        n = hi - lo
        ub = u[b, lo:hi].copy()
        pb = prev[b, lo:hi].copy() if prev.shape[0] else np.zeros(n, np.float32)
        zeros = np.zeros(n, np.float32)  # an absent input: the loop below stays free of branches
        c0b = c0[b % c0.shape[0], lo:hi] if c0.shape[0] else zeros
        c1b = c1[b % c1.shape[0], lo:hi] if c1.shape[0] else zeros
        wb = self_w[lo:hi]
        tb = thr[b % thr.shape[0], lo:hi]
        for k in range(K):
            if reset[k]:
                ub[:] = 0  # (a subtraction still due arrives after it, as Lava's a_in does)
            cb = c0b if which[k] == 1 else c1b if which[k] == 2 else zeros
            over = False
            spikes = np.int32(0)
            if k < a.shape[0]:  # a loop of its own: with fewer arrays in one loop LLVM vectorizes both
                ab = a[k, b, lo:hi]
                for i in range(n):
                    ub[i] += ab[i] * scale
                    over |= abs(ub[i]) > bound
            for i in range(n):
                x = ub[i] + cb[i] * scale
                over |= abs(x) > bound
                x += pb[i] * wb[i]
                over |= abs(x) > bound
                fire = x > tb[i]
                ub[i] = x
                pb[i] = np.float32(fire)
                spikes += np.int32(fire)
            if over:
                first_bad[job] = k
                break
            counts[k, job] = spikes
            if has_out:
                out[k, b, lo:hi] = pb
            if has_pool:  # by runs of neurons that pool into consecutive sums (a pixel's channels)
                pk = pooled[k, b]
                pk[pool_index[lo]:pool_index[hi - 1] + 1] = 0
                i = 0
                while i < n:
                    d, r = pool_index[lo + i], pool_run[lo + i]
                    dst, src = pk[d:d + r], pb[i:i + r]
                    for j in range(r):
                        dst[j] += src[j]
                    i += r
        u_new[b, lo:hi] = ub
        last[b, lo:hi] = pb
    return first_bad.min()


def named(f: Callable, name: str) -> Callable:
    """``f`` under another name: numba names its cache files after the function, and the parallel
    and the serial build must not load each other's machine code."""
    g = types.FunctionType(f.__code__, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = name
    return g


_compile = {"cache": True, "boundscheck": False, "nogil": True}
integrate_fire = njit(parallel=True, **_compile)(named(_integrate_fire, "integrate_fire"))
# one thread: no thread pool at all (an OpenMP pool spins after each call, beside torch's own: two
# test workers on two cores ran 2-4x slower with it)
integrate_fire_serial = njit(**_compile)(named(_integrate_fire, "integrate_fire_serial"))


def loop_threads() -> int:
    """The threads a compiled loop may use: torch's share of the machine, set for numba's pool; one
    means the serial build (no pool at all)."""
    threads = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if threads > 1:
        numba.set_num_threads(threads)
    return threads


def jobs_per_row(n: int, block: int = BLOCK) -> int:
    return (n + block - 1) // block


@dataclass(frozen=True)
class PoolPlan:
    """How the loop sum-pools a population's spikes: each neuron's pooled position (``index``),
    from each neuron that starts a run of consecutive positions the run's length (``runs``; 0
    inside runs), the neurons of one job (``block``: whole pooled rows, so that no two jobs add to
    one sum) and the number of pooled positions (``size``)."""

    index: np.ndarray
    runs: np.ndarray
    block: int
    size: int

    @classmethod
    def of(cls, index: np.ndarray, block: int) -> PoolPlan:
        n = len(index)
        starts = np.ones(n, dtype=bool)
        starts[1:] = index[1:] != index[:-1] + 1
        starts[::block] = True
        at = np.flatnonzero(starts)
        runs = np.zeros(n, dtype=np.int64)
        runs[at] = np.diff(np.append(at, n))
        return cls(index.astype(np.int64), runs, block, int(index.max()) + 1 if n else 0)
