"""Neuron models of the PyTorch reference (the oracle), each run over a whole layer window with zero delay.

``current(t)`` gives the layer's input at step t as a (batch, neurons) tensor (float, or int64 in
integer graphs). Every model returns the spike train (S, batch, neurons) as bool (graded
spikes: their uint8 payloads). These are the
reference semantics the pipelined targets are verified against; ``sim`` and the Lava process
models implement the same methods separately (``targets/method_kernels.py``), sharing only the PRNG.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from spikeport.toolchain.hardware.prng import prng_u32

Current = Callable[[int], torch.Tensor]


class Excursion:
    """Tracks |m - v_init|: the largest value seen (for calibration) and head-room violations."""

    def __init__(self, v_init: float, headroom: int | None) -> None:
        self.v_init, self.headroom = v_init, headroom
        self.peak, self.overflow = 0.0, 0
        self.first: tuple[int, int] | None = None  # (step, sample) of the first violation

    def observe(self, m: torch.Tensor, step: int) -> None:
        e = (m - self.v_init).abs()
        self.peak = max(self.peak, float(e.max()))
        if self.headroom is not None:
            out = e > self.headroom
            self.overflow += int(out.sum())
            if self.first is None and self.overflow:
                self.first = (step, int(out.reshape(len(out), -1).any(1).nonzero()[0, 0]))


def fire(m: torch.Tensor, theta) -> tuple[torch.Tensor, torch.Tensor]:
    """The soft-reset IF neuron, the one place the oracle writes it: spikes ``s = m >= theta`` and the
    potential ``v = m - theta * s`` left after them (reset by subtraction)."""
    s = m >= theta
    return s, m - theta * s.to(m.dtype)


def fire_graded(m: torch.Tensor, theta, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The graded neuron: payload ``s = clip(floor(m / theta), 0, levels)`` (thresholds crossed) and
    the potential ``v = m - theta * s`` left after it."""
    s = torch.clamp(torch.div(m, theta, rounding_mode="floor"), 0, levels)
    return s.to(torch.uint8), m - theta * s


def _zeros(shape, integer: bool, device) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int64 if integer else torch.float32, device=device)


def run_if(current: Current, S: int, shape: tuple[int, int], theta, v_init, integer: bool, ex: Excursion,
           device) -> torch.Tensor:
    """IF with reset by subtraction: m = v + x; fire when m >= theta; v = m - theta * s.

    ``v_init`` is a number, or a (batch, neurons) tensor of per-neuron initial potentials (COS)."""
    v = _zeros(shape, integer, device) + v_init
    out = torch.zeros((S, *shape), dtype=torch.bool, device=device)
    for t in range(S):
        m = v + current(t)
        ex.observe(m, t + 1)
        out[t], v = fire(m, theta)
    return out


def run_graded(current: Current, S: int, shape: tuple[int, int], theta, v_init, levels: int, integer: bool,
               ex: Excursion, device) -> torch.Tensor:
    """Graded spikes: m = v + x; send s = clip(floor(m / theta), 0, levels); v = m - theta * s.
    Returns the payloads (S, batch, neurons) as uint8."""
    v = _zeros(shape, integer, device) + v_init
    out = torch.zeros((S, *shape), dtype=torch.uint8, device=device)
    for t in range(S):
        m = v + current(t)
        ex.observe(m, t + 1)
        out[t], v = fire_graded(m, theta, levels)
    return out


def run_maxpool(s: torch.Tensor, in_shape: tuple[int, int, int], kernel, stride, padding,
                ceil_mode: bool) -> torch.Tensor:
    """The spiking max-pool over a whole window: spike when the largest running spike count of the
    window grows. Written with PyTorch's own max-pool of the counts (``sim`` and Lava gather the
    windows themselves, ``method_kernels.MaxPoolKernel``)."""
    S, batch = s.shape[:2]
    counts = torch.cumsum(s.to(torch.float32), 0).reshape(S * batch, *in_shape)  # exact: counts <= S
    m = F.max_pool2d(counts, kernel, stride, padding, ceil_mode=ceil_mode).reshape(S, batch, -1)
    return m > torch.cat([torch.zeros_like(m[:1]), m[:-1]])


def cos_initial_potential(v: torch.Tensor, count: torch.Tensor, min_spike: torch.Tensor, max_quiet: torch.Tensor,
                          has_quiet: torch.Tensor, theta, v_init, S: int, integer: bool) -> torch.Tensor:
    """The COS shift of the initial potential after the pre-run (Hao et al. 2023, authors' code).

    Float graphs use the authors' constants in threshold units (shift down by max(1, m_min - 0.999),
    up by max(1, 1.001 - v_max)); integer graphs use the smallest integer shifts that satisfy the
    same inequalities. Neurons that fired at every pre-run step have no v_max: the authors shift
    them by ~1001 theta, spikeport by S * theta (both force a spike at every real step).
    """
    lower = (v < 0) & (count > 0)
    higher = v >= theta
    if integer:
        down = torch.clamp(min_spike - theta + 1, min=theta)
        up = torch.clamp(theta - max_quiet, min=theta)
    else:
        down = torch.clamp(min_spike - 0.999 * theta, min=theta)
        up = torch.clamp(1.001 * theta - max_quiet, min=theta)
    up = torch.where(has_quiet, up, torch.full_like(up, S * theta))
    base = torch.full_like(v, v_init)
    return torch.where(higher, base + up, torch.where(lower, base - down, base))


def run_cos(current: Current, S: int, rho: int, shape: tuple[int, int], theta, v_init, integer: bool,
            ex: Excursion, device) -> torch.Tensor:
    """COS: a rho-step pre-run on the layer's first rho input steps fixes each neuron's initial
    potential; the real run then starts again from input step 0 and lasts S steps."""
    v = _zeros(shape, integer, device) + v_init
    count = torch.zeros(shape, dtype=torch.int64, device=device)
    min_spike = torch.full(shape, float("inf"), dtype=torch.float64, device=device)
    max_quiet = torch.full(shape, float("-inf"), dtype=torch.float64, device=device)
    for t in range(rho):
        m = v + current(t)
        ex.observe(m, t + 1)
        s, v = fire(m, theta)
        md = m.to(torch.float64)
        min_spike = torch.where(s, torch.minimum(min_spike, md), min_spike)
        max_quiet = torch.where(s, max_quiet, torch.maximum(max_quiet, md))
        count += s
    has_quiet = torch.isfinite(max_quiet)
    if integer:
        min_spike = torch.where(torch.isfinite(min_spike), min_spike, torch.zeros_like(min_spike)).to(torch.int64)
        max_quiet = torch.where(has_quiet, max_quiet, torch.zeros_like(max_quiet)).to(torch.int64)
    else:
        min_spike, max_quiet = min_spike.to(v.dtype), max_quiet.to(v.dtype)
    v = cos_initial_potential(v, count, min_spike, max_quiet, has_quiet, theta, v_init, S, integer)
    return run_if(current, S, shape, theta, v, integer, ex, device)


def run_tpp(current: Current, T: int, shape: tuple[int, int], theta, v_init, integer: bool, ex: Excursion,
            device, seed: int, layer: int, sample_ids: torch.Tensor) -> torch.Tensor:
    """TPP: accumulate the T input steps into v (from v_init), then fire for T steps with
    probability clip(v / (theta * steps left), 0, 1), subtracting theta per spike. The uniform
    numbers come from the shared integer PRNG keyed by (seed, layer, sample, neuron, step)."""
    v = _zeros(shape, integer, device) + v_init
    for t in range(T):
        v = v + current(t)
    ex.observe(v, T)  # the integration phase's end: its largest excursion
    neuron = torch.arange(shape[1], dtype=torch.int64, device=device)
    sample = sample_ids.to(device).reshape(-1, 1)
    out = torch.zeros((T, *shape), dtype=torch.bool, device=device)
    for k in range(1, T + 1):
        r = prng_u32(seed, layer, sample, neuron, k)
        remaining = T - k + 1
        if integer:
            s = r * (int(theta) * remaining) < v * (1 << 32)
        else:
            s = r.to(torch.float64) * (float(theta) * remaining) < v.to(torch.float64) * float(1 << 32)
        v = v - theta * s.to(v.dtype)
        out[k - 1] = s
    return out


def permute_in_time(spikes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shuffle each neuron's spike train over the steps (same count, new positions): the
    temporal-misalignment diagnostic of Bojkovic et al."""
    S = spikes.shape[0]
    keys = torch.rand(spikes.shape, generator=generator, device="cpu").to(spikes.device)
    order = keys.argsort(dim=0)
    return torch.gather(spikes, 0, order[:S])
