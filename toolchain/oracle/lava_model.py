"""A plainly written, step-by-step model of a lowered network on Lava 0.10: the oracle for ``sim``.

The zero-delay reference (:mod:`reference`) is the oracle for what a network computes. It stops
being comparable where Lava's registers take over: beyond the head-room Lava folds u at 24 bits,
saturates v and wraps Conv outputs, and a flush-step quench that cannot silence a layer leaks into
the next streamed sample. There ``sim`` is checked against this model instead. It shares nothing
with ``sim`` but the :class:`~spikeport.toolchain.ir.procnet.ProcessNet` it runs and the TPP random
numbers: one loop over steps, one numpy int64 update per process, the equations of
docs/lava-semantics.md written out as they read, spikeport's own COS and TPP processes written from
their specification. It is slow, and meant for the fuzzer's small networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from spikeport.toolchain.hardware.prng import prng_u32
from spikeport.toolchain.ir.procnet import (
    ConvProcess,
    COSProcess,
    DenseProcess,
    GradedProcess,
    LIFProcess,
    MaxPoolProcess,
    ProcessNet,
    TPPProcess,
)
from spikeport.toolchain.ir.snn import ConvSynapse
from spikeport.toolchain.ir.synapses import conv_as_matrix


@dataclass
class OracleRun:
    """What the oracle saw, frame by frame like a pipelined :class:`~spikeport.toolchain.ir.trace.Trace`:
    ``spikes[p]`` (frame, samples, N) and ``readout`` (frame, samples, n_out) as ``u >> act_shift``;
    ``overflow[p]``: u folds, v saturations and wrapped Conv outputs into p, over all samples."""

    spikes: dict[str, np.ndarray]
    readout: np.ndarray
    overflow: dict[str, int]


def _round_toward_zero_shift(x: np.ndarray, bits: int) -> np.ndarray:
    return np.sign(x) * (np.abs(x) >> bits)


def _exp_shift(x: np.ndarray, exp: int) -> np.ndarray:
    return x << exp if exp >= 0 else x >> -exp


def dense_weights(p: DenseProcess, weight_bits: int) -> np.ndarray:
    """Lava's Dense/Sparse weight processing, done once: the sign mode (given, or read off the
    weights, a sparse matrix's zeros included), clipping to the mode's range, and dropping the bits
    below ``num_weight_bits`` (one more for mixed signs)."""
    raw = p.weights.toarray() if sparse.issparse(p.weights) else np.asarray(p.weights)
    looked_at = np.append(p.weights.data, 0) if sparse.issparse(p.weights) and p.weights.nnz < raw.size else raw
    lo, hi = (looked_at.min(), looked_at.max()) if looked_at.size else (0, 0)
    mode = p.sign_mode or ("exc" if lo >= 0 else "inh" if hi <= 0 else "mixed")
    w = np.trunc(raw).astype(np.int64)
    if mode == "inh":
        w = -w
    top = 1 << weight_bits
    w = np.clip(w, -top if mode == "mixed" else 0, top - 1)
    drop = weight_bits - p.num_weight_bits + (1 if mode == "mixed" else 0)
    w = (w >> drop) << drop
    return -w if mode == "inh" else w


class _LIF:
    def __init__(self, p: LIFProcess, net: ProcessNet) -> None:
        prof = net.profile
        self.p, self.shift, self.decay_bits = p, prof.act_shift, prof.decay_bits
        self.one = 1 << prof.decay_bits
        self.u_max, self.v_max, self.fold = 1 << (prof.membrane_bits - 1), prof.v_max, 1 << prof.membrane_bits
        bias = np.broadcast_to(np.asarray(p.bias_mant, dtype=np.int64), (p.size,))
        self.bias = _exp_shift(bias.copy(), p.bias_exp)
        self.u = np.zeros(p.size, dtype=np.int64)
        self.v = np.zeros(p.size, dtype=np.int64)
        self.overflow = 0

    def _word(self, x: np.ndarray) -> np.ndarray:
        """x as an int32 register holds it (numpy's int32 wraps), back in int64."""
        held = np.asarray(x, dtype=np.int64).astype(np.int32).astype(np.int64)
        self.overflow += int(np.sum(held != x))
        return held

    def step(self, t: int, a: np.ndarray) -> np.ndarray:
        p = self.p
        if p.reset_interval and t % p.reset_interval == p.reset_offset % p.reset_interval:
            self.u[:] = 0
            self.v[:] = 0
        # Lava's registers are int32: the input, its shift and both sums wrap there (counted as overflow)
        a32 = self._word(a)
        shifted = self._word(a32.astype(np.int64) << self.shift)
        decayed = _round_toward_zero_shift(self.u * (self.one - (p.du + 1)), self.decay_bits)
        u = self._word(decayed + shifted)
        high, low = u > self.u_max, u <= -self.u_max
        self.overflow += int(high.sum() + low.sum())
        u = np.where(high, u - self.fold, np.where(low, u + self.fold, u))
        v = self._word(_round_toward_zero_shift(self.v * (self.one - p.dv), self.decay_bits) + u + self.bias)
        self.overflow += int(np.sum(np.abs(v) > self.v_max))
        v = np.clip(v, -self.v_max, self.v_max)
        s = v > (p.vth << self.shift)
        v[s] = 0
        self.u, self.v = u, v
        return s


class _COS:
    """Calibrating Offset Spikes as spikeport's COS process runs it: every window (from ``start``,
    every ``period`` steps) pre-runs an IF neuron for rho steps on the live input while keeping it,
    shifts the initial potential where the pre-run fired one spike too many (v < 0) or too few
    (v >= theta), then replays the kept input from its first step for S steps."""

    def __init__(self, p: COSProcess) -> None:
        self.p = p
        self.overflow = 0

    def step(self, t: int, a: np.ndarray) -> np.ndarray:
        p, th = self.p, self.p.theta
        none = np.zeros(p.size, dtype=bool)
        if t < p.start:
            return none
        j = (t - p.start) % p.period
        if j == 0:
            self.v = np.full(p.size, p.v_init, dtype=np.int64)
            self.spikes = np.zeros(p.size, dtype=np.int64)
            self.lowest_firing = np.full(p.size, np.iinfo(np.int64).max)
            self.highest_quiet = np.full(p.size, np.iinfo(np.int64).min)
            self.kept = []
        if j < p.S:
            self.kept.append(a.copy())
        if j < p.rho:
            m = self.v + a
            fired = m >= th
            self.lowest_firing = np.where(fired, np.minimum(self.lowest_firing, m), self.lowest_firing)
            self.highest_quiet = np.where(fired, self.highest_quiet, np.maximum(self.highest_quiet, m))
            self.spikes += fired
            self.v = m - th * fired
            if j == p.rho - 1:
                too_many = (self.v < 0) & (self.spikes > 0)
                too_few = self.v >= th
                down = np.maximum(self.lowest_firing - th + 1, th)
                quiet_seen = self.highest_quiet > np.iinfo(np.int64).min
                up = np.where(quiet_seen, np.maximum(th - self.highest_quiet, th), p.S * th)
                v0 = np.full(p.size, p.v_init, dtype=np.int64)
                self.v = np.where(too_few, v0 + up, np.where(too_many, v0 - down, v0))
            return none
        r = j - p.rho
        if r >= p.S:
            return none
        m = self.v + self.kept[r]
        fired = m >= th
        self.v = m - th * fired
        return fired


class _TPP:
    """Two-phase probabilistic neurons as spikeport's TPP process runs them: in every window the
    first T steps add the input to v (from v_init), the next T fire with probability
    v / (theta * steps left), drawn from the shared PRNG keyed by the window's sample id."""

    def __init__(self, p: TPPProcess, sample_ids: np.ndarray) -> None:
        self.p, self.ids = p, sample_ids
        self.neurons = np.arange(p.size, dtype=np.int64)
        self.overflow = 0

    def step(self, t: int, a: np.ndarray) -> np.ndarray:
        p = self.p
        none = np.zeros(p.size, dtype=bool)
        if t < p.start:
            return none
        window, j = divmod(t - p.start, p.period)
        if j == 0:
            self.v = np.full(p.size, p.v_init, dtype=np.int64)
        if j < p.T:
            self.v = self.v + a
            return none
        k = j - p.T + 1  # firing step 1..T
        if k > p.T or window >= len(self.ids):
            return none
        r = prng_u32(p.seed, p.layer, int(self.ids[window]), self.neurons, k)
        fired = r * (p.theta * (p.T - k + 1)) < self.v * (1 << 32)
        self.v = self.v - p.theta * fired
        return fired


class _Graded:
    """Graded spikes as spikeport's graded-spike process runs them: in every window (from
    ``start``, every ``period`` steps, ``length`` steps long, v from v_init) send how many whole
    thresholds the potential holds, at most ``levels``, and keep the rest."""

    def __init__(self, p: GradedProcess) -> None:
        self.p = p
        self.overflow = 0

    def step(self, t: int, a: np.ndarray) -> np.ndarray:
        p = self.p
        if t < p.start:
            return np.zeros(p.size, dtype=np.int64)
        j = (t - p.start) % p.period
        if j == 0:
            self.v = np.full(p.size, p.v_init, dtype=np.int64)
        if j >= p.length:
            return np.zeros(p.size, dtype=np.int64)
        m = self.v + a
        sent = np.minimum(np.maximum(np.floor_divide(m, p.theta), 0), p.levels)
        self.v = m - p.theta * sent
        return sent


class _MaxPool:
    """spikeport's spiking max-pool gate: count each source neuron's spikes in the window (from
    ``start``, every ``period`` steps, for ``length`` steps); an output fires when the largest count
    over its window of sources grows. Its input is the source's spikes of the step before."""

    def __init__(self, p: MaxPoolProcess) -> None:
        self.p = p
        self.overflow = 0
        self.counts = np.zeros(p.in_size, dtype=np.int64)
        self.largest = np.zeros(p.size, dtype=np.int64)

    def step(self, t: int, a: np.ndarray) -> np.ndarray:
        p = self.p
        j = (t - p.start) % p.period if t >= p.start else p.length
        if j == 0:
            self.counts[:] = 0
            self.largest[:] = 0
        if j >= p.length:
            return np.zeros(p.size, dtype=bool)
        self.counts += a != 0
        largest = np.array([max([int(self.counts[i]) for i in row if i >= 0], default=0) for row in p.index],
                           dtype=np.int64)
        fired = largest > self.largest
        self.largest = largest
        return fired


class _Synapse:
    """Dense / Sparse / DelaySparse / Conv: what the spikes of step t deliver, and when."""

    def __init__(self, p: DenseProcess | ConvProcess, net: ProcessNet) -> None:
        self.p = p
        self.bits = net.profile.membrane_bits
        self.overflow = 0
        if isinstance(p, ConvProcess):
            syn = ConvSynapse(p.weight, p.in_shape, p.out_shape, p.stride, p.padding, p.dilation, p.groups)
            self.blocks = [(0, conv_as_matrix(syn, np.asarray(p.weight, dtype=np.int64)).astype(np.int64))]
            return
        w = dense_weights(p, net.profile.weight_bits)
        delays = np.broadcast_to(np.asarray(p.delay), w.shape)
        self.blocks = [(int(d), np.where(delays == d, w, 0)) for d in np.unique(delays)]

    def deliver(self, s: np.ndarray) -> list[tuple[int, np.ndarray]]:
        x = s.astype(np.int64) if self.p.num_message_bits else (s != 0).astype(np.int64)
        if isinstance(self.p, ConvProcess):
            a = self.blocks[0][1] @ x
            half = 1 << (self.bits - 1)
            wrapped = (a + half) % (1 << self.bits) - half
            self.overflow += int(np.sum(wrapped != a))
            return [(0, wrapped)]
        return [(d, _exp_shift(w @ x, self.p.weight_exp)) for d, w in self.blocks]


def _stream(net: ProcessNet, currents: dict[str, np.ndarray], sample_ids: np.ndarray, steps: int,
            spikes_in: np.ndarray | None) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """One Lava run: the samples one after another, a window every ``net.period`` steps."""
    n = len(sample_ids)
    neurons = {p.name: _LIF(p, net) if isinstance(p, LIFProcess) else _COS(p) if isinstance(p, COSProcess)
               else _MaxPool(p) if isinstance(p, MaxPoolProcess) else _Graded(p) if isinstance(p, GradedProcess)
               else _TPP(p, sample_ids) for p in net.lifs}
    size = {p.name: p.size for p in net.lifs}
    in_size = {p.name: p.in_size if isinstance(p, MaxPoolProcess) else p.size for p in net.lifs}
    gates = [p for p in net.lifs if isinstance(p, MaxPoolProcess)]
    synapses = [_Synapse(p, net) for p in net.synapses]
    pending: dict[tuple[str, int], np.ndarray] = {}  # (destination, step) -> input waiting for it
    spikes = {name: np.zeros((steps, size[name]), dtype=np.uint8) for name in size}
    readout = np.zeros((steps, size[net.readout]), dtype=np.int64)
    for t in range(1, steps + 1):
        a = {name: pending.pop((name, t), np.zeros(in_size[name], dtype=np.int64)) for name in size}
        for src in net.sources:  # a RingBuffer wired straight into a_in: no delay
            length = src.length if src.length is not None else net.T
            if t < src.start:
                continue
            window, k = divmod(t - src.start, net.period)
            if window >= n or k > length:
                continue
            if k == length:
                a[src.dst] = a[src.dst] - src.quench
                continue
            value = np.asarray(src.value, dtype=np.int64)
            if src.schedule is not None and k < len(src.schedule):
                value = value + src.schedule[k]
            if src.adds_input:
                value = value + np.asarray(currents[src.dst][window], dtype=np.int64).reshape(-1)
            a[src.dst] = a[src.dst] + value
        out = {name: neurons[name].step(t, a[name]) for name in size}
        if spikes_in is not None and t <= len(spikes_in):
            out["input"] = np.asarray(spikes_in[t - 1]).reshape(-1)
        for name, s in out.items():
            if name in spikes:
                spikes[name][t - 1] = s
        readout[t - 1] = neurons[net.readout].u >> net.profile.act_shift
        for syn in synapses:  # spikes of step t arrive at step t + 1 + delay
            if syn.p.src not in out:
                continue
            for delay, contrib in syn.deliver(out[syn.p.src]):
                key = (syn.p.dst, t + 1 + delay)
                pending[key] = pending.get(key, 0) + contrib.reshape(-1)
        for gate in gates:  # wired straight to the source's s_out; it sends before it receives
            pending[(gate.name, t + 1)] = out[gate.src].astype(np.int64)
    overflow = {name: neurons[name].overflow + sum(s.overflow for s in synapses if s.p.dst == name)
                for name in size}
    return spikes, readout, overflow


def run_oracle(net: ProcessNet, currents: dict[str, np.ndarray], stream: bool, steps: int | None = None,
               sample_ids: np.ndarray | None = None, spikes_in: np.ndarray | None = None) -> OracleRun:
    """Run ``net`` on the samples whose input currents are ``currents[pop]`` ((samples, N) integers).

    ``stream=True``: one Lava run, the samples one after another as the Lava target streams them;
    ``stream=False``: every sample in a run of its own, from a clean state, as ``sim`` runs them side
    by side. Either way the result is cut into one frame (``steps`` or ``net.frame`` steps) per
    sample. ``spikes_in`` (steps, samples, N): spikes into the synapses whose source is ``"input"``.
    """
    n = len(next(iter(currents.values()))) if currents else (spikes_in.shape[1] if spikes_in is not None else 1)
    ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids)
    frame = steps or net.frame
    hidden = [p.name for p in net.lifs if p.name != net.readout]
    if stream:
        total = (n - 1) * net.period + frame
        ins = None if spikes_in is None else _streamed_inputs(spikes_in, net.period, total)
        sp, ro, overflow = _stream(net, currents, ids, total, ins)
        starts = np.arange(n) * net.period
        return OracleRun({k: np.stack([sp[k][s:s + frame] for s in starts], axis=1) for k in hidden},
                         np.stack([ro[s:s + frame] for s in starts], axis=1), overflow)
    runs = [_stream(net, {k: v[i:i + 1] for k, v in currents.items()}, ids[i:i + 1], frame,
                    None if spikes_in is None else spikes_in[:, i]) for i in range(n)]
    return OracleRun({k: np.stack([r[0][k] for r in runs], axis=1) for k in hidden},
                     np.stack([r[1] for r in runs], axis=1),
                     {k: sum(r[2][k] for r in runs) for k in runs[0][2]})


def _streamed_inputs(spikes_in: np.ndarray, period: int, total: int) -> np.ndarray:
    """Per-sample input spikes (steps, samples, N) laid out in one stream, sample i from i * period."""
    steps, n, size = spikes_in.shape
    out = np.zeros((total, size), dtype=spikes_in.dtype)
    for i in range(n):
        s = i * period
        k = min(steps, total - s)
        out[s:s + k] += spikes_in[:k, i]
    return out
