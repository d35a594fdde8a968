"""Spike-for-spike verification: every layer, every step, every neuron, as integers.

A pipelined runner (``sim``, ``lava``) shows layer k's window k steps later than the zero-delay
reference. :func:`compare` finds that shift for every layer by itself (it does not trust the
runner's own bookkeeping), compares the aligned windows exactly, and reports the first divergence
in causal order: the earliest step, then the earliest layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from spikeport.toolchain.trace import Trace

READOUT = "readout"


@dataclass
class Check:
    """Two integer arrays compared value by value: how many matched, and where the first did not."""

    name: str
    matched: int
    total: int
    first: list[int] | None = None  # index of the first mismatch (C order), None when exact
    expected: int | None = None
    got: int | None = None

    @property
    def exact(self) -> bool:
        return self.matched == self.total

    def line(self) -> str:
        where = "" if self.exact else f" (first at {self.first}: expected {self.expected}, got {self.got})"
        return f"{self.name:<44} {self.matched:>12,} / {self.total:<12,} {'exact' if self.exact else 'MISMATCH'}{where}"

    def to_dict(self) -> dict:
        return {**asdict(self), "exact": self.exact}


def check_equal(name: str, got: np.ndarray, want: np.ndarray, mask: np.ndarray | None = None) -> Check:
    """Compare ``got`` with ``want`` (same shape) as integers; ``mask`` selects the values that count.
    The one comparison every checker uses (verify, the fuzzer, conformance)."""
    got, want = np.asarray(got).astype(np.int64), np.asarray(want).astype(np.int64)
    if got.shape != want.shape:
        raise ValueError(f"{name}: shapes differ, {got.shape} vs {want.shape}")
    diff = got != want
    if mask is not None:
        diff &= np.broadcast_to(mask, diff.shape)
    total = int(diff.size if mask is None else np.count_nonzero(np.broadcast_to(mask, diff.shape)))
    bad = np.argwhere(diff)
    if not len(bad):
        return Check(name, total, total)
    idx = tuple(int(v) for v in bad[0])
    return Check(name, total - len(bad), total, list(idx), int(want[idx]), int(got[idx]))


@dataclass
class Divergence:
    layer: str
    sample: int
    step: int  # 1-based step inside the T-step window
    neuron: int  # flat index in (C, H, W) order
    expected: int
    got: int
    mismatches: int  # values that differ in this layer at the chosen shift


@dataclass
class Verification:
    target: str
    against: str
    exact: bool
    samples: int
    steps: int
    layers: int
    spikes: int  # spikes in the reference windows that were compared
    values: int  # integers compared (spike bits and readout values)
    first_divergence: dict | None
    shifts: dict[str, int] = field(default_factory=dict)
    expected_shifts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        head = f"{self.target} vs {self.against}: "
        if self.exact:
            return (head + f"exact ({self.samples} samples x {self.steps} steps x {self.layers} layers, "
                    f"{self.values:,} values, {self.spikes:,} spikes)")
        d = self.first_divergence
        return (head + f"DIVERGES at layer {d['layer']!r}, step {d['step']}, sample {d['sample']}, neuron "
                f"{d['neuron']}: expected {d['expected']}, got {d['got']} ({d['mismatches']} values differ "
                "in that layer)")


def _best_shift(ref: np.ndarray, raw: np.ndarray, expected: int | None) -> tuple[int, int]:
    """The shift d at which raw[d:d+T] matches ref best (ties: the runner's own, then the
    earliest); returns (d, number of mismatching values)."""
    T = ref.shape[0]
    if raw.shape[0] < T:
        raise ValueError(f"the runner's trace has {raw.shape[0]} steps, fewer than T={T}")
    scores = [(int(np.count_nonzero(raw[d:d + T] != ref)), d != expected, d) for d in range(raw.shape[0] - T + 1)]
    bad, _, d = min(scores)
    return d, bad


def _first(ref: np.ndarray, got: np.ndarray, layer: str, bad: int) -> Divergence | None:
    c = check_equal(layer, got, ref)  # (step, sample, neuron): the first mismatch is the earliest step
    if c.exact:
        return None
    t, b, n = c.first
    return Divergence(layer, b, t + 1, n, c.expected, c.got, bad)


def compare(ref: Trace, other: Trace, layers: list[str] | None = None) -> Verification:
    """Compare ``other`` (raw, possibly pipelined) against the zero-delay ``ref``."""
    layers = layers or list(ref.spikes)
    missing = [k for k in layers if k not in ref.spikes or k not in other.spikes]
    if missing:
        raise ValueError(f"spikes were not recorded for {missing}")
    firsts: list[tuple[int, int, Divergence]] = []
    shifts, values, spikes = {}, 0, 0
    for order, k in enumerate([*layers, READOUT]):
        r = ref.readout if k == READOUT else ref.spikes[k]
        o = other.readout if k == READOUT else other.spikes[k]
        if r.shape[1:] != o.shape[1:]:
            raise ValueError(f"{k}: shapes differ: {r.shape} vs {o.shape}")
        expected = other.readout_start if k == READOUT else other.window_start.get(k)
        d, bad = _best_shift(r, o, expected)
        shifts[k] = d
        values += r.size
        if k != READOUT:
            spikes += int(r.sum())
        div = _first(r, o[d:d + r.shape[0]], k, bad)
        if div is not None:
            firsts.append((div.step, order, div))
    first = min(firsts, key=lambda f: (f[0], f[1]))[2] if firsts else None
    return Verification(
        target=other.target, against=ref.target, exact=first is None, samples=int(ref.readout.shape[1]),
        steps=ref.T, layers=len(layers) + 1, spikes=spikes, values=values,
        first_divergence=asdict(first) if first else None, shifts=shifts,
        expected_shifts={**{k: other.window_start.get(k, 0) for k in layers}, READOUT: other.readout_start})


def aligned(trace: Trace, shifts: dict[str, int], like: Trace) -> Trace:
    """The windows of a pipelined trace at the given shifts, as long as ``like``'s (the zero-delay
    trace the shifts were found against), as a zero-delay trace."""
    T = trace.T
    return Trace(target=trace.target, T=T, final=trace.final,
                 readout=trace.readout[shifts[READOUT]:shifts[READOUT] + T],
                 spikes={k: v[shifts[k]:shifts[k] + len(like.spikes[k])] for k, v in trace.spikes.items()},
                 spike_counts=trace.spike_counts, overflow=trace.overflow,
                 window_start={k: 0 for k in trace.window_start}, readout_start=0, meta=trace.meta)
