"""The seed methods' own neurons compiled for the CPU (numba): COS and graded spikes, every step of
a chunk for a block of neurons in one pass, the state in cache, instead of several whole-population
torch operations per step.

The arithmetic is :mod:`~spikeport.targets.method_kernels`' (``COSKernel``, ``GradedKernel``: the
kernels Lava's processes and ``sim``'s general models run), written as one loop over each neuron,
int64 throughout and exact like the kernels. ``sim`` runs these loops on the CPU
(``simulate(fast=True)``); the tests check them step for step against the kernels, the fuzzer
against the kernels (``fast=False``) and both against the reference.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from spikeport.targets.if_kernel import BLOCK, loop_threads, named
from spikeport.toolchain.ir.procnet import COSProcess, GradedProcess

BIG = 1 << 40  # "no spike" / "no quiet step" yet (COSKernel.BIG)


@njit(cache=True, inline="always")
def _job(job: int, per_row: int, block: int, N: int) -> tuple[int, int, int]:  # pragma: no cover (compiled)
    """A job's sample and neuron range: ``block`` neurons of one sample (the IF loop's jobs)."""
    lo = (job % per_row) * block
    return job // per_row, lo, min(lo + block, N)


def _cos_steps(js: np.ndarray, a: np.ndarray, v: np.ndarray, count: np.ndarray, min_spike: np.ndarray,
               max_quiet: np.ndarray, buf: np.ndarray, out: np.ndarray, theta: int, v_init: int, rho: int,
               S: int, block: int) -> None:  # pragma: no cover (compiled)
    """K steps of B x N COS neurons. ``js[k]`` is step k's position in its window (-1: before the
    first window: no spike, no change; 0 restarts the neuron); ``a`` (K, B, N) its input; the state
    (B, N) ``v``, ``count``, ``min_spike``, ``max_quiet`` and ``buf`` (S, B, N), the buffered input,
    carry from chunk to chunk; ``out`` (K, B, N) receives the spikes.

    Positions j < rho pre-run an IF neuron on the live input, buffering it; at j = rho - 1 the
    initial potential is shifted (COSKernel's docstring); positions rho .. rho + S - 1 replay the
    buffer from that potential and emit the spikes."""
    K = js.shape[0]
    B, N = v.shape
    per_row = (N + block - 1) // block
    for job in prange(B * per_row):
        b, lo, hi = _job(job, per_row, block, N)
        vb, cb, lb, qb = v[b, lo:hi], count[b, lo:hi], min_spike[b, lo:hi], max_quiet[b, lo:hi]
        for k in range(K):  # (the phase is the step's: each loop below runs branch-free over neurons)
            j = js[k]
            ob = out[k, b, lo:hi]
            if j < 0:
                ob[:] = False
                continue
            ab = a[k, b, lo:hi]
            if j == 0:
                vb[:], cb[:], lb[:], qb[:] = v_init, 0, BIG, -BIG
            if j < S:
                buf[j, b, lo:hi] = ab
            if j < rho:
                for i in range(hi - lo):
                    m = vb[i] + ab[i]
                    fire = m >= theta
                    lb[i] = min(lb[i], m) if fire else lb[i]
                    qb[i] = qb[i] if fire else max(qb[i], m)
                    cb[i] += fire
                    vb[i] = m - theta * fire
                ob[:] = False  # the pre-run emits nothing
                if j == rho - 1:  # one spike too many: shift down; too few: up
                    for i in range(hi - lo):
                        up = max(theta, theta - qb[i]) if qb[i] > -BIG else S * theta
                        down = max(theta, lb[i] - theta + 1)
                        vb[i] = v_init + up if vb[i] >= theta else v_init - down if vb[i] < 0 and cb[i] > 0 \
                            else v_init
            elif j - rho < S:
                rb = buf[j - rho, b, lo:hi]
                for i in range(hi - lo):
                    m = vb[i] + rb[i]
                    fire = m >= theta
                    vb[i] = m - theta * fire
                    ob[i] = fire
            else:
                ob[:] = False


def _graded_steps(js: np.ndarray, a: np.ndarray, v: np.ndarray, out: np.ndarray, theta: int, v_init: int,
                  levels: int, length: int, block: int) -> None:  # pragma: no cover (compiled)
    """K steps of B x N graded-spike neurons (``GradedKernel``): at window positions j < ``length``
    each sends s = clip(floor(m / theta), 0, levels) for m = v + a and keeps m - s * theta; j = 0
    restarts from ``v_init``; other positions (``js`` -1: before the first window) send nothing
    and leave v as it is. ``out`` (K, B, N) uint8 receives the payloads."""
    K = js.shape[0]
    B, N = v.shape
    per_row = (N + block - 1) // block
    for job in prange(B * per_row):
        b, lo, hi = _job(job, per_row, block, N)
        vb = v[b, lo:hi]
        for k in range(K):
            j = js[k]
            ob = out[k, b, lo:hi]
            if j < 0 or j >= length:
                ob[:] = 0
                continue
            if j == 0:
                vb[:] = v_init
            ab = a[k, b, lo:hi]
            for i in range(hi - lo):
                m = vb[i] + ab[i]
                s = min(max(m // theta, 0), levels)
                vb[i] = m - s * theta
                ob[i] = s


_compile = {"cache": True, "boundscheck": False, "nogil": True}
cos_steps = njit(parallel=True, **_compile)(named(_cos_steps, "cos_steps"))
# one thread: no thread pool at all, as for the IF loop (a pool spins after each call, beside torch's)
cos_steps_serial = njit(**_compile)(named(_cos_steps, "cos_steps_serial"))
graded_steps = njit(parallel=True, **_compile)(named(_graded_steps, "graded_steps"))
graded_steps_serial = njit(**_compile)(named(_graded_steps, "graded_steps_serial"))


class _Windowed:
    """A population of one of spikeport's own processes whose windows start at ``p.start`` and
    repeat every ``p.period``, run by a compiled loop: ``sim``'s model of it (in place of a
    ``WindowedModel``) on the CPU."""

    p: COSProcess | GradedProcess
    busy: int  # positions 0 .. busy - 1 of a window change the state or send
    overflow = 0  # int64 state, as in Lava's process: nothing folds

    def positions(self, t0: int, count: int) -> np.ndarray:
        """Each step's position in its window, -1 before the first window."""
        t = np.arange(t0, t0 + count)
        return np.where(t < self.p.start, -1, (t - self.p.start) % self.p.period).astype(np.int64)

    def idle(self, js: np.ndarray) -> bool:
        """No step at these positions sends or changes the state (before the first window, or
        between a window's last busy step and the next window: input there is ignored)."""
        return bool(((js < 0) | (js >= self.busy)).all())


class CompiledCOS(_Windowed):
    """A COS population's state between chunks, stepped by :func:`cos_steps`."""

    def __init__(self, p: COSProcess, batch: int) -> None:
        self.p, self.busy = p, p.rho + p.S
        shape = (batch, p.size)
        self.v = np.full(shape, p.v_init, np.int64)
        self.count = np.zeros(shape, np.int64)
        self.min_spike = np.full(shape, BIG, np.int64)
        self.max_quiet = np.full(shape, -BIG, np.int64)
        self.buf = np.zeros((p.S, *shape), np.int64)

    def run(self, js: np.ndarray, a: torch.Tensor) -> torch.Tensor:
        """The steps at window positions ``js`` for input ``a`` (K, B, N) int64: their spikes (K, B, N) bool."""
        p, out = self.p, np.empty(a.shape, np.bool_)
        loop = cos_steps if loop_threads() > 1 else cos_steps_serial
        loop(js, np.ascontiguousarray(a.numpy()), self.v, self.count, self.min_spike, self.max_quiet, self.buf, out,
             int(p.theta), int(p.v_init), int(p.rho), int(p.S), BLOCK)
        return torch.from_numpy(out)


class CompiledGraded(_Windowed):
    """A graded-spike population's state between chunks, stepped by :func:`graded_steps`."""

    def __init__(self, p: GradedProcess, batch: int) -> None:
        self.p, self.busy = p, p.length
        self.v = np.full((batch, p.size), p.v_init, np.int64)

    def run(self, js: np.ndarray, a: torch.Tensor) -> torch.Tensor:
        """The steps at window positions ``js`` for input ``a`` (K, B, N) int64: their payloads (K, B, N) uint8."""
        p, out = self.p, np.empty(a.shape, np.uint8)
        loop = graded_steps if loop_threads() > 1 else graded_steps_serial
        loop(js, np.ascontiguousarray(a.numpy()), self.v, out, int(p.theta), int(p.v_init), int(p.levels),
             int(p.length), BLOCK)
        return torch.from_numpy(out)
