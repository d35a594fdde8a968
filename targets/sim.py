"""``sim``: a bit-accurate CPU simulator of a :class:`ProcessNet` with Lava 0.10 fixed_pt semantics.

Its arithmetic follows Lava's bit-accurate process models, not the PyTorch reference:

* LIF / LIFReset: ``u = u*(4096-(du+1)) >> 12`` (rounded toward zero), ``u += a << 6``, u folds
  once at 24 bits; ``v = v*(4096-dv) >> 12 + u + (bias_mant << bias_exp)``, v saturates at
  +-(2**23-1); spike when ``v > vth << 6``; then ``v = 0``. LIFReset zeroes u and v at the start
  of steps ``t % interval == offset % interval``.
* Dense / Sparse / DelaySparse: weights clipped to the sign mode's 8-bit range and truncated to
  ``num_weight_bits``, accumulated, shifted by ``weight_exp`` (floor), delivered 1 + delay steps
  later.
* Conv: true integer convolution, wrapped to signed 24 bits, delivered one step later.

Samples run side by side in a batch, each starting at step 1 (the streamed Lava run puts sample i
at steps i*P + 1 ..; the LIFReset/quench construction makes the two equivalent, which the Lava
tests check). Synaptic sums run in float32 where every partial sum stays below 2**24 (exact for 0/1
inputs) and in float64 otherwise (``toolchain.ops.exact_dtype``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from spikeport.targets.base import check_graph, register
from spikeport.targets.lava.kernels import COSKernel, TPPKernel
from spikeport.targets.lowering import lower
from spikeport.targets.process_net import ConvProcess, COSProcess, DenseProcess, LIFProcess, ProcessNet, TPPProcess
from spikeport.toolchain.ops import exact_dtype
from spikeport.toolchain.reference import encode
from spikeport.toolchain.snn import SNNGraph
from spikeport.toolchain.trace import Trace

INPUT_NAME = "input"  # the source name of synapses fed by external spikes
U_FOLD = 1 << 24
U_MAX = 1 << 23
V_MAX = (1 << 23) - 1


def lava_weights(w: np.ndarray | sparse.spmatrix, sign_mode: str | None, num_weight_bits: int):
    """What Lava's bit-accurate Dense/Sparse models do to the weights at their first step."""
    is_sparse = sparse.issparse(w)
    w = sparse.csr_matrix(w, copy=True) if is_sparse else np.asarray(w)
    vals = w.data if is_sparse else w
    implicit_zero = is_sparse and w.nnz < w.shape[0] * w.shape[1]
    lo_v, hi_v = (vals.min(), vals.max()) if vals.size else (0, 0)
    if implicit_zero:  # Lava's np.min/np.max see the sparse matrix's zeros too
        lo_v, hi_v = min(lo_v, 0), max(hi_v, 0)
    mode = sign_mode or ("exc" if lo_v >= 0 else "inh" if hi_v <= 0 else "mixed")
    x = np.trunc(vals).astype(np.int64)
    if mode == "inh":
        x = -x
    x = np.clip(x, -256 if mode == "mixed" else 0, 255)
    k = 8 - num_weight_bits + (mode == "mixed")
    x = (x >> k) << k
    if mode == "inh":
        x = -x
    if is_sparse:
        w.data = x
        w.eliminate_zeros()
        return w
    return x


def _shift(acc: torch.Tensor, exp: int) -> torch.Tensor:
    return acc << exp if exp > 0 else acc >> -exp


class _Matrix:
    """One integer weight matrix applied to a (batch, n_in) input: diagonal, CSR or dense."""

    def __init__(self, w, device: torch.device) -> None:
        self.diag = self.w = None
        if sparse.issparse(w):
            coo = w.tocoo()
            if w.shape[0] == w.shape[1] and np.all(coo.row == coo.col):  # self-connections, skips
                d = np.zeros(w.shape[0], dtype=np.int64)
                d[coo.row] = coo.data
                self.diag = torch.as_tensor(d, device=device)
            else:
                dtype = exact_dtype(np.asarray(abs(w).sum(axis=1)))
                with warnings.catch_warnings():  # torch calls CSR "beta"; the indices come from scipy
                    warnings.simplefilter("ignore", UserWarning)
                    self.w = torch.sparse_csr_tensor(
                        torch.as_tensor(w.indptr, dtype=torch.int64), torch.as_tensor(w.indices, dtype=torch.int64),
                        torch.as_tensor(w.data, dtype=dtype), w.shape, device=device)
        else:
            self.w = torch.as_tensor(w, dtype=exact_dtype(w), device=device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.diag is not None:
            return x.to(torch.int64) * self.diag
        x = x.to(self.w.dtype)
        acc = (self.w @ x.T).T if self.w.layout == torch.sparse_csr else x @ self.w.T
        return acc.round().to(torch.int64)


class _Dense:
    """Dense / Sparse / DelaySparse / DelayDense: Lava's weight processing on the whole matrix, then
    one matrix per distinct delay (each block is shifted by weight_exp on its own, as Lava does)."""

    def __init__(self, p: DenseProcess, device: torch.device) -> None:
        self.p = p
        w = lava_weights(p.weights, p.sign_mode, p.num_weight_bits)
        if np.ndim(p.delay) == 0:
            self.blocks = [(int(p.delay), _Matrix(w, device))]
        else:
            dense = w.toarray() if sparse.issparse(w) else np.asarray(w)
            delays = np.asarray(p.delay)
            self.blocks = [(int(d), _Matrix(sparse.csr_matrix(np.where(delays == d, dense, 0)), device))
                           for d in np.unique(delays[dense != 0])] or [(0, _Matrix(dense, device))]
        self.queue: list[torch.Tensor | None] = []

    def __call__(self, s: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        x = s.reshape(len(s), -1)
        if not self.p.num_message_bits:
            x = x != 0
        return [(d, _shift(m(x), self.p.weight_exp)) for d, m in self.blocks]


class _Conv:
    def __init__(self, p: ConvProcess, device: torch.device) -> None:
        self.p = p
        self.w = torch.as_tensor(p.weight, dtype=exact_dtype(p.weight), device=device)
        self.queue: list[torch.Tensor | None] = []
        self.overflow = 0

    def __call__(self, s: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        p = self.p
        x = s.reshape(len(s), *p.in_shape)
        x = (x != 0 if not p.num_message_bits else x).to(self.w.dtype)
        a = F.conv2d(x, self.w, None, p.stride, p.padding, p.dilation, p.groups).round().to(torch.int64)
        wrapped = (a + U_MAX) % U_FOLD - U_MAX  # Lava's signed 24-bit clamp of the conv output
        self.overflow += int((wrapped != a).sum())
        return [(0, wrapped.reshape(len(s), -1))]


class _LIF:
    def __init__(self, p: LIFProcess, batch: int, act_shift: int, device: torch.device) -> None:
        self.p = p
        self.act_shift = act_shift
        self.u = torch.zeros((batch, p.size), dtype=torch.int64, device=device)
        self.v = torch.zeros_like(self.u)
        bias = torch.as_tensor(np.broadcast_to(np.asarray(p.bias_mant, dtype=np.int64), (p.size,)).copy())
        self.bias = _shift(bias, p.bias_exp).to(device)
        self.vth = p.vth << act_shift
        self.overflow = 0

    @staticmethod
    def _decay(x: torch.Tensor, keep: int) -> torch.Tensor:
        if keep == 4096:
            return x
        y = x * keep
        return torch.sign(y) * (y.abs() >> 12)

    def step(self, t: int, a: torch.Tensor) -> torch.Tensor:
        p = self.p
        if p.reset_interval and t % p.reset_interval == p.reset_offset % p.reset_interval:
            self.u.zero_()
            self.v.zero_()
        u = self._decay(self.u, 4096 - (p.du + 1)) + (a << self.act_shift)
        wrapped = (u > U_MAX) | (u <= -U_MAX)
        self.overflow += int(wrapped.sum())
        u = torch.where(u > U_MAX, u - U_FOLD, torch.where(u <= -U_MAX, u + U_FOLD, u))
        v = self._decay(self.v, 4096 - p.dv) + u + self.bias
        self.overflow += int(((v > V_MAX) | (v < -V_MAX)).sum())
        v = v.clamp(-V_MAX, V_MAX)
        s = v > self.vth
        self.u, self.v = u, torch.where(s, torch.zeros_like(v), v)
        return s


class _Windowed:
    """A COS or TPP kernel driven by the step counter: window j = 0 restarts every period."""

    def __init__(self, p: COSProcess | TPPProcess, batch: int, device: torch.device, sample_ids: torch.Tensor):
        self.p = p
        self.overflow = 0
        shape = (batch, p.size)
        if isinstance(p, COSProcess):
            self.kernel = COSKernel(torch, shape, p.theta, p.v_init, p.rho, p.S)
            self.out_start = p.start + p.rho
        else:
            neurons = torch.arange(p.size, dtype=torch.int64, device=device)
            self.kernel = TPPKernel(torch, shape, p.theta, p.v_init, p.T, p.seed, p.layer, neurons)
            self.out_start = p.start + p.T
        self.kernel.reset()
        self.samples = sample_ids.to(device).reshape(-1, 1)
        self.none = torch.zeros(shape, dtype=torch.bool, device=device)

    def step(self, t: int, a: torch.Tensor) -> torch.Tensor:
        p = self.p
        if t < p.start:
            return self.none
        j = (t - p.start) % p.period
        if j == 0:
            self.kernel.reset()
        if isinstance(p, TPPProcess):
            return self.kernel.step(j, a, self.samples)
        return self.kernel.step(j, a)


def simulate(net: ProcessNet, currents: dict[str, np.ndarray], record: bool = False,
             steps: int | None = None, device: str = "cpu", sample_ids: np.ndarray | None = None,
             spikes_in: np.ndarray | None = None, record_state: tuple[str, ...] = ()) -> Trace:
    """Run one window per sample (batched). ``currents[pop]`` is (batch, N) for input-fed layers;
    ``sample_ids`` key TPP's random numbers (default 0..batch-1); ``spikes_in`` (steps, batch, N)
    feeds the synapses whose source is ``"input"`` (netx networks); ``record_state`` names LIFs whose
    u and v are kept for every step (``trace.meta["u"]``, ``trace.meta["v"]``)."""
    dev = torch.device(device)
    if currents:
        batch = len(next(iter(currents.values())))
    elif spikes_in is not None:
        batch = np.asarray(spikes_in).shape[1]
    else:
        batch = 1
    ids = torch.as_tensor(np.arange(batch) if sample_ids is None else np.asarray(sample_ids), dtype=torch.int64)
    steps = steps or net.frame
    neurons: dict[str, _LIF | _Windowed] = {}
    for p in net.lifs:
        neurons[p.name] = _LIF(p, batch, net.act_shift, dev) if isinstance(p, LIFProcess) else \
            _Windowed(p, batch, dev, ids)
    syns = [_Dense(p, dev) if isinstance(p, DenseProcess) else _Conv(p, dev) for p in net.synapses]
    src_values = []
    for s in net.sources:
        extra = None
        if s.adds_input:
            extra = torch.as_tensor(currents[s.dst], dtype=torch.int64, device=dev).reshape(batch, -1)
        src_values.append((s, extra))
    readout = neurons[net.readout]
    ro_trace = torch.zeros((steps, batch, readout.p.size), dtype=torch.int64)
    hidden = [n for n in neurons if n != net.readout]
    spikes = {n: torch.zeros((steps, batch, neurons[n].p.size), dtype=torch.uint8) for n in hidden} if record else {}
    starts = {n: net.window_start(n) or 1 for n in neurons}
    out_start = {n: getattr(neurons[n], "out_start", starts[n]) for n in neurons}
    counts = {n: torch.zeros(batch, dtype=torch.int64) for n in hidden}
    states = {k: {n: torch.zeros((steps, batch, neurons[n].p.size), dtype=torch.int64) for n in record_state}
              for k in ("u", "v")}
    for t in range(1, steps + 1):
        a_in = {n: torch.zeros((batch, nr.p.size), dtype=torch.int64, device=dev) for n, nr in neurons.items()}
        for syn in syns:  # deliver what was computed 1 + delay steps ago
            if syn.queue and syn.queue[0] is not None:
                a_in[syn.p.dst] += syn.queue[0]
            if syn.queue:
                syn.queue.pop(0)
        for s, extra in src_values:
            j = t - s.start
            val = s.value_at(j, net.T)
            if val is not None:
                a_in[s.dst] += torch.as_tensor(val, dtype=torch.int64, device=dev)
                if extra is not None:
                    a_in[s.dst] += extra
            elif j == s.window(net.T):
                a_in[s.dst] -= s.quench
        out = {n: nr.step(t, a_in[n]) for n, nr in neurons.items()}
        if spikes_in is not None:
            out[INPUT_NAME] = torch.as_tensor(spikes_in[t - 1], device=dev).reshape(batch, -1)
        for syn in syns:
            for delay, contrib in syn(out[syn.p.src]):
                while len(syn.queue) < delay + 1:
                    syn.queue.append(None)
                syn.queue[delay] = contrib if syn.queue[delay] is None else syn.queue[delay] + contrib
        ro_trace[t - 1] = (readout.u >> net.act_shift).cpu()
        for n in record_state:
            states["u"][n][t - 1] = neurons[n].u.cpu()
            states["v"][n][t - 1] = neurons[n].v.cpu()
        for n, c in counts.items():
            if out_start[n] <= t < out_start[n] + net.T:
                c += out[n].sum(1).cpu()
        if record:
            for n in spikes:
                spikes[n][t - 1] = out[n].cpu()
    end = min(starts[net.readout] + net.T - 1, steps)
    return Trace(
        target="sim", T=net.T, final=ro_trace[end - 1].numpy(), readout=ro_trace.numpy(),
        spikes={k: v.numpy() for k, v in spikes.items()},
        spike_counts={k: v.numpy() for k, v in counts.items()},
        overflow={n: nr.overflow + sum(getattr(s, "overflow", 0) for s in syns if s.p.dst == n)
                  for n, nr in neurons.items()},
        window_start={n: out_start[n] - 1 for n in hidden},
        readout_start=starts[net.readout] - 1,
        meta={"steps": steps, "period": net.period,
              **({"u": {k: v.numpy() for k, v in states["u"].items()},
                  "v": {k: v.numpy() for k, v in states["v"].items()}} if record_state else {})})


class SimTarget:
    """``sim``: lower for T, encode the inputs, simulate in batches."""

    name = "sim"
    pipelined = True
    needs_integer = True

    def __init__(self, batch: int = 256, device: str = "cpu", progress=None) -> None:
        self.batch = batch
        self.device = device
        self.progress = progress

    def run(self, snn: SNNGraph, x: np.ndarray, T: int, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        check_graph(self, snn)
        net = lower(snn, T)
        ids = np.arange(len(x)) if sample_ids is None else np.asarray(sample_ids)
        traces = []
        for i in range(0, len(x), self.batch):
            traces.append(simulate(net, encode(snn, x[i:i + self.batch]), record=record, device=self.device,
                                   sample_ids=ids[i:i + self.batch]))
            if self.progress is not None:
                self.progress(len(x[i:i + self.batch]))
        return Trace.concat(traces)


register("sim")(SimTarget)
