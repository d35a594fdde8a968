"""``sim``: a bit-accurate simulator of a :class:`ProcessNet` with Lava 0.10 fixed_pt semantics
(the per-process arithmetic lives in :mod:`sim_models`), batched over samples and over time.

How it schedules the work: every synapse delivers at least one step after the spike, so within a
chunk of steps each group of populations that feed each other (one population with its
self-connection, in a feedforward network) can run through all the chunk's steps before the next
group starts; each synapse then carries the whole chunk's spikes in one batched convolution or
matrix product. That is the computation of stepping the network step by step (``chunk=1``), in a
different order; the tests check both against each other and against Lava. Soft-reset IF layers
run in a fused int32 loop (``FastIF``) wherever a bound proves Lava's 24-bit folds cannot occur.

Samples run side by side in a batch, each starting at step 1 (the streamed Lava run puts sample i
at steps i*P + 1 ..; the LIFReset/quench construction makes the two equivalent, which the Lava
tests check).

Memory: each population's pending input and spikes for one chunk of ``CHUNK`` steps, freed as
soon as its readers are done, so it grows with the batch and not with T; every step of every
layer only when ``record`` asks for the spikes.
"""

from __future__ import annotations

import numpy as np
import torch

from spikeport.targets.base import check_graph
from spikeport.targets.sim_models import (
    ConvModel,
    DenseModel,
    FastIF,
    LIFModel,
    Link,
    LinkModel,
    MaxPoolModel,
    SynapseModel,
    WindowedModel,
    lava_weights,
)
from spikeport.toolchain.lowering import lower
from spikeport.toolchain.ops import exact_arithmetic
from spikeport.toolchain.procnet import DenseProcess, GradedProcess, LIFProcess, MaxPoolProcess, ProcessNet
from spikeport.toolchain.reference import encode
from spikeport.toolchain.snn import SNNGraph
from spikeport.toolchain.trace import Trace, cut_frames

__all__ = ["INPUT_NAME", "SimTarget", "components", "lava_weights", "simulate"]

INPUT_NAME = "input"  # the source name of synapses fed by external spikes
INT32_SAFE = 1 << 30
CHUNK = 8  # steps scheduled together: enough to fill the batched convolutions, small enough that
# memory does not grow with T (measured on the MNIST-5k CNN at batch 64: 8 steps is as fast as the
# whole window at T=8 and 1.5x faster at T=32)


def components(names: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of the population graph, in topological order (Tarjan).

    A feedforward network gives one population per component (its self-connection is an edge
    inside it); only populations that feed each other in a loop share one.
    """
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        if a in succ and b in succ and b not in succ[a]:
            succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp, key=names.index))

    for n in names:
        if n not in index:
            visit(n)
    return out[::-1]


class Inbox:
    """Synaptic input waiting for one population, by absolute step: ``buf[i]`` is step ``base + i``.
    It holds the chunk being simulated plus whatever delayed synapses sent beyond it, never the
    whole run. ``dtype`` is int32 where the incoming synapses' bounds allow it."""

    def __init__(self, batch: int, size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.base = 1
        self.shape = (batch, size)
        self.dtype = dtype
        self.device = device
        self.buf = torch.zeros((0, batch, size), dtype=dtype, device=device)

    def _grow(self, length: int) -> torch.Tensor | None:
        """Make the buffer ``length`` steps long; return the new steps' part (uninitialised)."""
        if length <= len(self.buf):
            return None
        old = self.buf
        self.buf = torch.empty((length, *self.shape), dtype=self.dtype, device=self.device)
        self.buf[:len(old)] = old
        return self.buf[len(old):]

    def add(self, step: int, x: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """Add the k steps in ``x`` (integer-valued, any dtype and layout, shape (k * batch, ...)) at
        steps ``step`` .. ``step + k - 1``, or at ``step + rows[i]``."""
        lo = step - self.base
        if lo < 0:
            raise AssertionError("synaptic input sent into the past")
        k = len(x) // self.shape[0]
        old_len = len(self.buf)
        if rows is None:
            if old_len <= lo:  # only new steps: one converting copy, no zero-fill
                new = self._grow(lo + k)
                new[:lo - old_len].zero_()
                self.buf[lo:].view(x.shape).copy_(x)
                return
            new = self._grow(lo + k)
            if new is not None:
                new.zero_()
            self.buf[lo:lo + k].view(x.shape).add_(x.to(self.dtype))
            return
        new = self._grow(lo + int(rows[-1]) + 1)
        if new is not None:
            new.zero_()
        self.buf[lo:].index_add_(0, rows, x.reshape(k, *self.shape).to(self.dtype))

    def take(self, t0: int, count: int) -> torch.Tensor | None:
        """The input of steps t0 .. t0+count-1 (a tensor the caller owns), or None if nothing was
        sent for them; those steps leave the inbox."""
        if t0 != self.base:
            raise AssertionError("inbox read out of order")
        self.base = t0 + count
        if not len(self.buf):
            return None
        new = self._grow(count)
        if new is not None:
            new.zero_()
        out, self.buf = self.buf[:count], self.buf[count:]
        return out


class _Run:
    """One batch through the network: the models, their pending inputs and what is recorded."""

    def __init__(self, net: ProcessNet, currents: dict[str, np.ndarray], batch: int, steps: int,
                 device: torch.device, sample_ids: torch.Tensor, record: bool, record_state: tuple[str, ...],
                 fast: bool = True, synapses: list[SynapseModel] | None = None, stream: int = 0):
        """``stream`` > 0: that many samples one after another through a batch of one, as Lava
        streams them (a window every ``net.period`` steps), instead of side by side."""
        self.net, self.batch, self.steps, self.dev, self.stream = net, batch, steps, device, stream
        self.neurons: dict[str, LIFModel | WindowedModel | MaxPoolModel] = {
            p.name: LIFModel(p, batch, net.profile, device) if isinstance(p, LIFProcess)
            else MaxPoolModel(p, batch, device) if isinstance(p, MaxPoolProcess)
            else WindowedModel(p, batch, device, sample_ids, per_window=bool(stream)) for p in net.lifs}
        self.syns = synapses if synapses is not None else synapse_models(net, device)
        for s in self.syns:
            s.overflow = 0
        names = list(self.neurons)
        self.groups = components(names, [(s.p.src, s.p.dst) for s in self.syns])
        self.inbox = {}
        for n, nr in self.neurons.items():
            bounds = [s.bound for s in self.syns if s.p.dst == n]
            safe = all(b is not None for b in bounds) and sum(bounds) << net.profile.act_shift < INT32_SAFE
            size = nr.p.in_size if isinstance(nr.p, MaxPoolProcess) else nr.p.size
            self.inbox[n] = Inbox(batch, size, torch.int32 if safe else torch.int64, device)
        self.in_bound = {n: sum(s.bound for s in self.syns if s.p.dst == n and s.p.src != n)
                         if self.inbox[n].dtype == torch.int32 else None for n in names}
        rows = stream or batch  # streamed: one row of input current per sample, used in its window
        self.pattern = {s.name: torch.as_tensor(s.pattern(net.T), device=device) for s in net.sources}
        extra_in = {s.dst: torch.as_tensor(currents[s.dst], dtype=torch.int64, device=device).reshape(rows, -1)
                    for s in net.sources if s.adds_input}
        # the window's first value plus the per-sample input, one tensor for every step of a window
        # whose pattern is constant (the usual case: the fused loop converts it once)
        self.source_value = {s.name: self.pattern[s.name][0] + extra_in.get(s.dst, 0) for s in net.sources}
        if stream:  # a row per sample, whether or not the source carries a per-sample input
            self.source_value = {k: torch.broadcast_to(v, (stream, v.shape[-1])) for k, v in self.source_value.items()}
        self.source_peak = {s.name: int(self.source_value[s.name].abs().max()) if self.source_value[s.name].numel()
                            else 0 for s in net.sources}
        self.pattern_step = {s.name: self.pattern[s.name] - self.pattern[s.name][0] for s in net.sources
                             if s.schedule is not None}  # the changes from step to step (FTBC's time bias)
        self.fast: dict[str, FastIF] = {}
        self.pending: dict[str, torch.Tensor] = {}
        for n in names:
            internal = [s for s in self.syns if s.p.src == n and s.p.dst == n]
            if (fast and n != net.readout and n not in record_state
                    and FastIF.eligible(self.neurons[n].p, internal, net.profile)):
                self.fast[n] = FastIF(self.neurons[n], internal[0])
        readout = self.neurons[net.readout]
        self.readout = torch.zeros((steps, batch, readout.p.size), dtype=torch.int64)
        self.hidden = [n for n in names if n != net.readout]
        self.recorded = {n: torch.zeros((steps, batch, self.neurons[n].p.size), dtype=torch.uint8)
                         for n in self.hidden} if record else {}
        self.record_state = record_state
        self.states = {k: {n: torch.zeros((steps, batch, self.neurons[n].p.size), dtype=torch.int64)
                           for n in record_state} for k in ("u", "v")}
        self.starts, self.out_start = net.timing.input_start, net.timing.output_start
        self.counts = {n: torch.zeros(stream or batch, dtype=torch.int64) for n in self.hidden}

    # -- inputs ---------------------------------------------------------------------------------
    def source_inputs(self, n: str, t0: int, count: int) -> tuple[list, list[int]]:
        """Per chunk step, what the RingBuffer sources send into ``n``'s a_in (a_in units): the
        value through the window, the negated quench in the flush step, else None; and a bound of
        each step's largest |value|."""
        extra: list = [None] * count
        peak = [0] * count
        for s in self.net.sources:
            if s.dst != n:
                continue
            pattern = self.pattern[s.name]
            length = len(pattern) - 1
            for j in range(count):
                rel = t0 + j - s.start  # steps since the first window began
                if rel < 0:
                    continue
                w, k = divmod(rel, self.net.period) if self.stream else (0, rel)  # window, step in it
                if w >= max(1, self.stream) or k > length:
                    continue
                if k < length:
                    v, bound = self.source_value[s.name], self.source_peak[s.name]
                    if self.stream:
                        v = v[w:w + 1]
                    if s.name in self.pattern_step:
                        change = self.pattern_step[s.name][k]
                        v, bound = v + change, bound + int(change.abs().max())
                else:  # the flush step
                    v, bound = pattern[k], int(pattern[k].abs().max()) if pattern.shape[1] else 0
                extra[j] = v if extra[j] is None else extra[j] + v
                peak[j] += bound
        return extra, peak

    # -- one chunk --------------------------------------------------------------------------------
    def chunk(self, t0: int, count: int, spikes_in: torch.Tensor | None) -> None:
        if spikes_in is not None:
            self.send(INPUT_NAME, spikes_in, t0, [s for s in self.syns if s.p.src == INPUT_NAME])
        for group in self.groups:
            if len(group) == 1 and group[0] in self.fast:
                out = {group[0]: self.run_fast(group[0], t0, count)}
            else:
                out = self.run_general(group, t0, count)
            for n, s in out.items():
                self.send(n, s, t0, [syn for syn in self.syns if syn.p.src == n and syn.p.dst not in group])
                if n in self.counts:
                    self.count_spikes(n, s, t0)
                if n in self.recorded:
                    self.recorded[n][t0 - 1:t0 - 1 + count] = s.cpu()

    def count_spikes(self, n: str, s: torch.Tensor, t0: int) -> None:
        """Add the spikes of ``n``'s output window(s) within this chunk to the per-sample counts:
        byte-wise adds over the steps (a window of T <= 255 steps cannot overflow a byte), then
        one reduction over neurons."""
        for w in range(max(1, self.stream)):
            start = self.out_start[n] + w * self.net.period
            lo, hi = max(start, t0), min(start + self.net.T, t0 + len(s))
            if lo >= hi:
                continue
            if s.dtype != torch.bool:  # graded payloads: plain integer sums
                total = s[lo - t0:hi - t0].sum(dim=(0, 2), dtype=torch.int64).cpu()
            else:
                rows = s[lo - t0:hi - t0].view(torch.uint8)
                acc = rows[0].clone() if self.net.T <= 255 else rows[0].to(torch.int32)
                for row in rows[1:]:
                    acc.add_(row)
                total = acc.sum(1, dtype=torch.int64).cpu()
            if self.stream:
                self.counts[n][w] += total[0]
            else:
                self.counts[n] += total

    def run_fast(self, n: str, t0: int, count: int) -> torch.Tensor:
        f, shift = self.fast[n], self.net.profile.act_shift
        a = self.inbox[n].take(t0, count)
        extra, extra_max = self.source_inputs(n, t0, count)
        extra_u: list = [None] * count  # the same inputs in u units, int32, converted once per tensor
        cache: dict[int, torch.Tensor] = {}
        in_bound = self.in_bound[n] if a is not None else 0
        step_max = [((in_bound or 0) + m) << shift for m in extra_max]
        if a is not None and (in_bound is None or f.span(step_max, 0)[0] < count):  # measure the input
            hi, lo = a.amax(dim=(1, 2)).tolist(), a.amin(dim=(1, 2)).tolist()
            step_max = [(max(h, -lo_) + m) << shift for h, lo_, m in zip(hi, lo, extra_max, strict=True)]
        out = torch.empty((count, self.batch, f.lif.p.size), dtype=torch.bool, device=self.dev)
        prev, j = self.pending.pop(n, None), 0  # spikes of the step before, their subtraction still due
        while j < count:
            k, bound = f.span(step_max, j)
            if k:
                a_u = None
                if a is not None:  # u units, int32 (in place where the inbox already is int32)
                    a_u = a[j:j + k].mul_(1 << shift) if a.dtype == torch.int32 else \
                        a[j:j + k].to(torch.int32).mul_(1 << shift)
                for i in range(j, j + k):
                    e = extra[i]
                    if isinstance(e, int):
                        extra_u[i] = e << shift
                    elif e is not None:
                        if id(e) not in cache:
                            cache[id(e)] = (e << shift).to(torch.int32)
                        extra_u[i] = cache[id(e)]
                f.run(t0, None if a_u is None else _Shifted(a_u, j), extra_u, j, j + k, prev, out)
                f.u_bound = bound
                j += k
                prev = out[j - 1]
            else:  # a step the bound cannot vouch for: Lava's general arithmetic (LIFModel)
                f.sync()
                a_j = torch.zeros(self.inbox[n].shape, dtype=torch.int64, device=self.dev) if a is None \
                    else a[j].to(torch.int64)
                if extra[j] is not None:
                    a_j = a_j + extra[j]
                if prev is not None:  # the fast run's pending self-subtraction
                    a_j = a_j + prev.to(torch.int64) * f.self_w_a
                out[j] = f.lif.step(t0 + j, a_j)
                prev = out[j]
                j += 1
        if prev is not None:  # the subtraction is due in the first step of the next chunk
            self.pending[n] = prev.clone()
        return out

    def run_general(self, group: list[str], t0: int, count: int) -> dict[str, torch.Tensor]:
        """Step by step with the general models; synapses inside the group run every step."""
        a = {}
        for n in group:
            x = self.inbox[n].take(t0, count)
            a[n] = torch.zeros((count, *self.inbox[n].shape), dtype=torch.int64, device=self.dev) if x is None \
                else x.to(torch.int64)
            for j, e in enumerate(self.source_inputs(n, t0, count)[0]):
                if e is not None:
                    a[n][j] += e
        out = {n: torch.empty((count, self.batch, self.neurons[n].p.size), device=self.dev,
                              dtype=torch.uint8 if isinstance(self.neurons[n].p, GradedProcess) else torch.bool)
               for n in group}  # graded spikes carry payloads
        internal = [s for s in self.syns if s.p.src in group and s.p.dst in group]
        for j in range(count):
            t = t0 + j
            for n in group:
                nr = self.neurons[n]
                out[n][j] = nr.step(t, a[n][j])
                if n == self.net.readout:
                    self.readout[t - 1] = (nr.u >> self.net.profile.act_shift).cpu()
                if n in self.record_state:
                    self.states["u"][n][t - 1] = nr.u.cpu()
                    self.states["v"][n][t - 1] = nr.v.cpu()
            for syn in internal:
                for delay, contrib in syn(out[syn.p.src][j]):
                    arrive = t + 1 + delay
                    if arrive < t0 + count:
                        a[syn.p.dst][arrive - t0] += contrib.reshape(self.batch, -1).to(torch.int64)
                    else:
                        self.inbox[syn.p.dst].add(arrive, contrib)
        return out

    def send(self, src: str, spikes: torch.Tensor, t0: int, synapses: list[SynapseModel]) -> None:
        """Carry a chunk of ``src``'s spikes through its outgoing synapses, skipping silent steps."""
        if not synapses:
            return
        count = len(spikes)
        flags = spikes.view(torch.uint8) if spikes.dtype == torch.bool else spikes != 0
        rows = torch.nonzero(flags.reshape(count, -1).amax(dim=1)).reshape(-1)
        if not len(rows):
            return
        first, last = int(rows[0]), int(rows[-1])
        contiguous = last - first + 1 == len(rows)  # the usual case: a layer's window
        x = spikes[first:last + 1] if contiguous else spikes[rows]
        flat = x.reshape(len(x) * self.batch, -1)
        for syn in synapses:
            for delay, contrib in syn(flat):
                if contiguous:
                    self.inbox[syn.p.dst].add(t0 + 1 + delay + first, contrib)
                else:
                    self.inbox[syn.p.dst].add(t0 + 1 + delay, contrib, rows=rows)

    def trace(self) -> Trace:
        net, steps = self.net, self.steps
        end = min(self.starts[net.readout] + net.T - 1, steps)
        state_meta = {"u": {k: v.numpy() for k, v in self.states["u"].items()},
                      "v": {k: v.numpy() for k, v in self.states["v"].items()}} if self.record_state else {}
        readout, spikes, final = self.readout.numpy(), {k: v.numpy() for k, v in self.recorded.items()}, None
        if self.stream:  # cut the stream into one frame per sample, as the Lava runner does
            readout = cut_frames(readout[:, 0], self.stream, net.period, net.frame)
            spikes = {k: cut_frames(v[:, 0], self.stream, net.period, net.frame) for k, v in spikes.items()}
            final = readout[end - 1]
        return Trace(
            target="sim", T=net.T, final=self.readout[end - 1].numpy() if final is None else final,
            readout=readout, spikes=spikes,
            spike_counts={k: v.numpy() for k, v in self.counts.items()},
            overflow={n: nr.overflow + sum(s.overflow for s in self.syns if s.p.dst == n)
                      for n, nr in self.neurons.items()},
            window_start={n: self.out_start[n] - 1 for n in self.hidden},
            readout_start=self.starts[net.readout] - 1,
            meta={"steps": steps, "period": net.period, **state_meta},
            stream_position=np.arange(self.stream) if self.stream else None)


def synapse_models(net: ProcessNet, device: str | torch.device = "cpu") -> list[SynapseModel]:
    """The synapse models of ``net`` (stateless apart from their overflow counts, which every run
    resets): build them once to simulate many batches."""
    dev = torch.device(device)
    links: list[SynapseModel] = [LinkModel(Link(f"{p.name}.in", p.src, p.name)) for p in net.lifs
                                 if isinstance(p, MaxPoolProcess)]
    return [DenseModel(p, dev, net.profile) if isinstance(p, DenseProcess) else ConvModel(p, dev, net.profile)
            for p in net.synapses] + links


class _Shifted:
    """``a[j]`` for chunk positions j >= offset of a tensor that starts at ``offset``."""

    def __init__(self, a: torch.Tensor, offset: int) -> None:
        self.a, self.offset = a, offset

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.a[j - self.offset]


def simulate(net: ProcessNet, currents: dict[str, np.ndarray], record: bool = False,
             steps: int | None = None, device: str | torch.device = "cpu", sample_ids: np.ndarray | None = None,
             spikes_in: np.ndarray | None = None, record_state: tuple[str, ...] = (),
             chunk: int | None = None, fast: bool = True, synapses: list[SynapseModel] | None = None,
             stream: bool = False, batch: int | None = None) -> Trace:
    """Run one window per sample (batched). ``currents[pop]`` is (batch, N) for input-fed layers;
    ``sample_ids`` key TPP's random numbers (default 0..batch-1); ``spikes_in`` (steps, batch, N)
    feeds the synapses whose source is ``"input"`` (netx networks); ``record_state`` names LIFs whose
    u and v are kept for every step (``trace.meta["u"]``, ``trace.meta["v"]``); ``chunk`` is the
    number of steps scheduled together (default ``CHUNK``; 1 steps the whole network step by step);
    ``fast=False`` runs every population through the general models (for cross-checks);
    ``synapses`` are prebuilt :func:`synapse_models` of ``net``; ``batch`` is needed only when
    neither currents nor spikes say it (a LIF whose ``bias_mant`` is (batch, N): netx input layers).

    ``stream=True`` runs the samples one after another, a window every ``net.period`` steps, as
    the Lava target streams them: state then carries from one sample into the next exactly as in
    Lava. Within the head-room the flush steps make both modes equal; beyond it (a quench that
    cannot silence a layer) only the streamed mode reproduces Lava's leak into the next sample."""
    dev = torch.device(device)
    if batch is None and currents:
        batch = len(next(iter(currents.values())))
    elif batch is None:
        batch = 1 if spikes_in is None else np.asarray(spikes_in).shape[1]
    ids = torch.as_tensor(np.arange(batch) if sample_ids is None else np.asarray(sample_ids), dtype=torch.int64)
    n_stream = batch if stream else 0
    if stream:
        if spikes_in is not None or record_state:
            raise ValueError("stream=True takes input currents only, without record_state")
        batch = 1
        steps = steps or (n_stream - 1) * net.period + net.frame
    steps = steps or net.frame
    chunk = max(1, min(chunk or CHUNK, steps))
    with exact_arithmetic(dev):
        run = _Run(net, currents, batch, steps, dev, ids, record, record_state, fast, synapses, n_stream)
        for t0 in range(1, steps + 1, chunk):
            count = min(chunk, steps - t0 + 1)
            x = None
            if spikes_in is not None:
                x = torch.as_tensor(np.asarray(spikes_in[t0 - 1:t0 - 1 + count]), device=dev)
                run.chunk(t0, count, x.reshape(count, batch, -1))
            else:
                run.chunk(t0, count, None)
        return run.trace()


class SimTarget:
    """``sim``: lower for T, encode the inputs, simulate in batches."""

    name = "sim"
    pipelined = True
    needs_integer = True

    def __init__(self, batch: int = 64, device: str = "cpu", progress=None, stream: bool = False) -> None:
        """``stream=True``: each batch of samples runs one after another, as the Lava target streams
        them (see :func:`simulate`); otherwise side by side, each from a clean state."""
        self.batch = batch
        self.device = device
        self.progress = progress
        self.stream = stream

    def run(self, snn: SNNGraph, x: np.ndarray, T: int, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        check_graph(self, snn)
        net = lower(snn, T)
        syns = synapse_models(net, self.device)
        ids = np.arange(len(x)) if sample_ids is None else np.asarray(sample_ids)
        traces = []
        for i in range(0, len(x), self.batch):
            traces.append(simulate(net, encode(snn, x[i:i + self.batch]), record=record, device=self.device,
                                   sample_ids=ids[i:i + self.batch], synapses=syns, stream=self.stream))
            if self.progress is not None:
                self.progress(len(x[i:i + self.batch]))
        return Trace.concat(traces)


