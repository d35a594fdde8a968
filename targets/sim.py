"""``sim``: a bit-accurate simulator of a :class:`ProcessNet` with Lava 0.10 fixed_pt semantics
(the per-process arithmetic lives in :mod:`sim_models`), batched over samples and over time.

How it schedules the work: every synapse delivers at least one step after the spike, so each
group of populations that feed each other (one population with its self-connection, in a
feedforward network) can run through a chunk of steps before its readers do; each synapse then
carries the whole chunk's spikes in one batched convolution or matrix product. Each group's chunks
start at its own input window (``_Run.schedule``), so a layer's window reaches its synapses as one
batch. That is the computation of stepping the network step by step (``chunk=1``), in a different
order; the tests check both against each other and against Lava. Soft-reset IF layers run in a
fused float32 loop (``FastIF``; on the CPU compiled, ``if_kernel``) wherever it can vouch that
Lava's 24-bit folds do not occur; a layer read only by pooled convolutions hands them its spikes
sum-pooled by that loop (``Chunk.pooled``); conv layers are kept in channels-last neuron order
(``sim_layout``).

Samples run side by side in a batch, each starting at step 1 (the streamed Lava run puts sample i
at steps i*P + 1 ..; the LIFReset/quench construction makes the two equivalent, which the Lava
tests check).

Memory: each population's pending input and spikes for at most two chunks (a window and its
flush step where that is at most ``2 * CHUNK`` steps, else ``CHUNK``), so it grows with the
batch and hardly with T; every step of every layer only when ``record`` asks for the spikes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass

import numpy as np
import torch

from spikeport.targets.if_kernel import PoolPlan
from spikeport.targets.int8_kernels import resolve
from spikeport.targets.method_loops import CompiledCOS, CompiledGraded
from spikeport.targets.sim_layout import channels_last_order, permute_net, restore_order
from spikeport.targets.sim_models import (
    FLOAT32_EXACT,
    ConvModel,
    DenseModel,
    FastIF,
    LIFModel,
    Link,
    LinkModel,
    MaxPoolModel,
    SynapseModel,
    WindowedModel,
)
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.host.exact import exact_arithmetic
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.procnet import (
    COSProcess,
    DenseProcess,
    GradedProcess,
    LIFProcess,
    MaxPoolProcess,
    ProcessNet,
)
from spikeport.toolchain.ir.trace import Trace, cut_frames

__all__ = ["INPUT_NAME", "SimNet", "SimTarget", "components", "simulate"]

INPUT_NAME = "input"  # the source name of synapses fed by external spikes
CHUNK = 8  # steps scheduled together: enough to fill the batched convolutions, small enough that
# memory does not grow with T (measured on the MNIST-5k CNN at batch 64: 8 steps is as fast as the
# whole window at T=8 and 1.5x faster at T=32)


def _peak(x: torch.Tensor) -> int:
    """The largest |x| (0 for an empty tensor), in one pass."""
    if not x.numel():
        return 0
    lo, hi = torch.aminmax(x)
    return max(int(hi), -int(lo))


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
    """Synaptic input waiting for one population, by absolute step: ``buf[i]`` is step ``start + i``
    and ``base`` the next step to be taken (``start`` is ahead of it where the next input begins
    later). It holds the chunk being simulated plus whatever delayed synapses sent beyond it,
    never the whole run. ``dtype`` is float32 (the convolutions' own output type: no conversion)
    where the incoming synapses' bounds keep every sum an integer below 2**24, else int64."""

    def __init__(self, batch: int, size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.base = self.start = 1
        self.last = 0  # the last step anything was sent for
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

    def add(self, step: int, x: torch.Tensor, rows: torch.Tensor | None = None, owned: bool = False) -> None:
        """Add the k steps in ``x`` (integer-valued, any dtype and layout, shape (k * batch, ...)) at
        steps ``step`` .. ``step + k - 1``, or at ``step + rows[i]``. ``owned``: nothing else holds
        ``x`` (a synapse's fresh result), so an empty inbox may keep it as its buffer, uncopied."""
        if step < self.base:
            raise AssertionError("synaptic input sent into the past")
        if not len(self.buf):
            self.start = step
        elif step < self.start:  # before what the buffer holds (a shorter delay): zeros in front
            old = self.buf
            self.buf = torch.zeros((self.start - step + len(old), *self.shape), dtype=self.dtype, device=self.device)
            self.buf[self.start - step:] = old
            self.start = step
        lo = step - self.start
        k = len(x) // self.shape[0]
        self.last = max(self.last, step + (k - 1 if rows is None else int(rows[-1])))
        old_len = len(self.buf)
        if rows is None:
            if old_len == lo == 0 and owned and x.dtype == self.dtype and x.is_contiguous():
                self.buf = x.view(k, *self.shape)  # a convolution's output as it is: no copy
                return
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

    def take(self, t0: int, count: int, pad: bool = True) -> torch.Tensor | None:
        """The input of steps t0 .. t0+count-1 (a tensor the caller owns), or None if nothing was
        sent for them; those steps leave the inbox. ``pad=False``: steps after the last one sent
        to may be left out (the result is then shorter than ``count``: they receive nothing)."""
        if t0 != self.base:
            raise AssertionError("inbox read out of order")
        self.base = end = t0 + count
        if not len(self.buf) or t0 > self.last or end <= self.start:  # nothing sent for these steps
            gone = min(max(end - self.start, 0), len(self.buf))
            self.buf, self.start = self.buf[gone:], self.start + gone
            return None
        lead = self.start - t0  # steps before the first one sent to (zeros)
        if lead > 0:
            out = torch.zeros((count, *self.shape), dtype=self.dtype, device=self.device)
            part = self.buf[:count - lead]
            out[lead:lead + len(part)] = part
        else:
            if pad:
                new = self._grow(count)
                if new is not None:
                    new.zero_()
            out = self.buf[:count]
        gone = min(end - self.start, len(self.buf))
        self.buf, self.start = self.buf[gone:], self.start + gone
        return out


@dataclass
class Chunk:
    """What a population made in a chunk of ``count`` steps: its spikes (count, batch, N), where
    kept; the sum-pool its pooled convolutions read (count, batch, P), where the compiled loop
    made it; its spikes per step and sample (count, batch), where the loop counted them."""

    count: int
    spikes: torch.Tensor | None
    pooled: torch.Tensor | None = None
    per_step: np.ndarray | None = None


class _Run:
    """One batch through the network: the models, their pending inputs and what is recorded."""

    def __init__(self, sn: SimNet, currents: dict[str, np.ndarray], batch: int, steps: int,
                 device: torch.device, sample_ids: torch.Tensor, record: bool, record_state: tuple[str, ...],
                 fast: bool = True, stream: int = 0, loop: str = "auto"):
        """``stream`` > 0: that many samples one after another through a batch of one, as Lava
        streams them (a window every ``net.period`` steps), instead of side by side. ``loop``: how
        FastIF populations run (``simulate``)."""
        net, self.order, currents = sn.net, sn.order, sn.currents(currents)
        self.net, self.batch, self.steps, self.dev, self.stream = net, batch, steps, device, stream
        if loop not in ("auto", "compiled", "torch") or (loop == "compiled" and device.type != "cpu"):
            raise ValueError(f"loop={loop!r}: 'auto', 'torch', or 'compiled' (CPU only)")
        self.compiled = loop == "compiled" or (loop == "auto" and device.type == "cpu")
        # COS and graded-spike populations on the CPU run in compiled loops (method_loops), as FastIF's do
        loops = fast and self.compiled
        self.neurons: dict[str, LIFModel | WindowedModel | MaxPoolModel | CompiledCOS | CompiledGraded] = {
            p.name: LIFModel(p, batch, net.profile, device) if isinstance(p, LIFProcess)
            else MaxPoolModel(p, batch, device) if isinstance(p, MaxPoolProcess)
            else CompiledCOS(p, batch) if loops and isinstance(p, COSProcess)
            else CompiledGraded(p, batch) if loops and isinstance(p, GradedProcess)
            else WindowedModel(p, batch, device, sample_ids, per_window=bool(stream)) for p in net.lifs}
        self.syns = sn.synapses
        for s in self.syns:
            s.overflow = 0
        names = list(self.neurons)
        self.groups = components(names, [(s.p.src, s.p.dst) for s in self.syns])
        self.inbox = {}
        for n, nr in self.neurons.items():
            bounds = [s.bound for s in self.syns if s.p.dst == n]
            exact = all(b is not None for b in bounds) and sum(bounds) < FLOAT32_EXACT
            size = nr.p.in_size if isinstance(nr.p, MaxPoolProcess) else nr.p.size
            self.inbox[n] = Inbox(batch, size, torch.float32 if exact else torch.int64, device)
        self.in_bound = {n: sum(s.bound for s in self.syns if s.p.dst == n and s.p.src != n)
                         if self.inbox[n].dtype == torch.float32 else None for n in names}
        rows = stream or batch  # streamed: one row of input current per sample, used in its window
        self.pattern = {s.name: torch.as_tensor(s.pattern(net.T), device=device) for s in net.sources}
        extra_in = {s.dst: torch.as_tensor(currents[s.dst], dtype=torch.int64, device=device).reshape(rows, -1)
                    for s in net.sources if s.adds_input}
        # the window's first value plus the per-sample input, one tensor for every step of a window
        # whose pattern is constant (the usual case: the fused loop converts it once)
        self.source_value = {s.name: self.pattern[s.name][0] + extra_in.get(s.dst, 0) for s in net.sources}
        if stream:  # a row per sample, whether or not the source carries a per-sample input
            self.source_value = {k: torch.broadcast_to(v, (stream, v.shape[-1])) for k, v in self.source_value.items()}
        self.source_peak = {s.name: _peak(self.source_value[s.name]) for s in net.sources}
        self.pattern_step = {s.name: self.pattern[s.name] - self.pattern[s.name][0] for s in net.sources
                             if s.schedule is not None}  # the changes from step to step (FTBC's time bias)
        self.fast: dict[str, FastIF] = {}
        self.pending: dict[str, torch.Tensor] = {}
        self.spike_buffers: dict[str, torch.Tensor] = {}
        self.pool_buffers: dict[str, torch.Tensor] = {}
        # the compiled loop writes spikes as the int8 kernels read them (bool: a byte, viewed as
        # uint8 without a copy), else as the float32 the float kernels read
        self.spike_dtype = torch.bool if self.compiled and sn.int8 else torch.float32
        for n in names:
            internal = [s for s in self.syns if s.p.src == n and s.p.dst == n]
            if (fast and n != net.readout and n not in record_state
                    and FastIF.eligible(self.neurons[n].p, internal, net.profile)):
                self.fast[n] = FastIF(self.neurons[n], internal[0])
        # FastIF populations read only by pooled convolutions: the compiled loop sum-pools their
        # spikes as it makes them (each neuron's pooled position, the pooled size)
        self.pool_out: dict[str, PoolPlan] = {}
        for n in self.fast if self.compiled else ():
            readers = [s for s in self.syns if s.p.src == n and s.p.dst != n]
            if readers and all(isinstance(s, ConvModel) and s.pooled is not None and not s.p.num_message_bits
                               for s in readers):
                plans = [s.pool_plan() for s in readers]
                if all(np.array_equal(p.index, plans[0].index) for p in plans):
                    self.pool_out[n] = plans[0]
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

    # -- the schedule ------------------------------------------------------------------------------
    def schedule(self, chunk: int, spikes_in: np.ndarray | None) -> None:
        """Run every group through all steps, ``chunk`` steps at a time, each group's chunks
        aligned to its own input window (so a layer's window of T <= ``chunk`` steps reaches its
        synapses as one batch, not split between two calls).

        A group may run through step ``c + d`` once each group feeding it through a synapse of
        delay d has run up to (not including) step c: every input for those steps has then
        arrived. Sweeping the groups in topological order, the first always advances, so every
        sweep makes progress; a group runs at most one chunk ahead of its readers, which bounds
        the pending input to two chunks whatever T is."""
        cursor = dict.fromkeys(range(len(self.groups)), 1)
        fed_by = [self.feeders(group) for group in self.groups]
        inputs = [s for s in self.syns if s.p.src == INPUT_NAME]
        input_cursor = self.steps + 1 if spikes_in is None else 1
        while min(cursor.values()) <= self.steps:
            if input_cursor <= self.steps:
                count = min(chunk, self.steps - input_cursor + 1)
                x = torch.as_tensor(np.asarray(spikes_in[input_cursor - 1:input_cursor - 1 + count]), device=self.dev)
                if x.is_floating_point():  # float32 spike tensors are FastIF's own 0/1 (sim_models._message)
                    x = x.to(torch.int64)
                self.send(INPUT_NAME, Chunk(count, x.reshape(count, self.batch, -1)), input_cursor, inputs)
                input_cursor += count
            for g, group in enumerate(self.groups):
                t0 = cursor[g]
                ready = min([self.steps] + [(input_cursor if h is None else cursor[h]) + d for h, d in fed_by[g]])
                end = min(ready, self.chunk_end(group, t0, chunk))
                if end >= t0:
                    self.run_group(group, t0, end - t0 + 1)
                    cursor[g] = end + 1

    def feeders(self, group: list[str]) -> list[tuple[int | None, int]]:
        """(index of the feeding group, or None for external input; the synapse's shortest delay)
        for each synapse into ``group`` from outside it."""
        index = {n: g for g, members in enumerate(self.groups) for n in members}
        out = []
        for s in self.syns:
            if s.p.dst in group and s.p.src not in group:
                delay = min(d for d, _ in s.blocks) if isinstance(s, DenseModel) else 0
                out.append((index.get(s.p.src), delay))
        return out

    def chunk_end(self, group: list[str], t0: int, chunk: int) -> int:
        """The last step of the chunk that starts at t0 on ``group``'s grid: chunks of ``chunk``
        steps from the start of each of its input windows (steps before the first window go in
        chunks of their own)."""
        start = min(self.starts.get(n, 1) for n in group)
        if t0 < start:
            return min(start - 1, t0 + chunk - 1)
        w, k = divmod(t0 - start, self.net.period) if self.stream else (0, t0 - start)
        window = start + w * self.net.period
        end = window + (k // chunk + 1) * chunk - 1
        return min(end, window + self.net.period - 1) if self.stream else end

    def run_group(self, group: list[str], t0: int, count: int) -> None:
        """Steps t0 .. t0+count-1 of one group, its spikes sent on, counted and recorded."""
        if len(group) == 1 and group[0] in self.fast:
            out = {group[0]: self.run_fast(group[0], t0, count)}
        elif isinstance(self.neurons[group[0]], CompiledCOS | CompiledGraded):  # (groups of one: no self-connection)
            out = {group[0]: self.run_loop(group[0], t0, count)}
        else:
            out = {n: Chunk(count, s) for n, s in self.run_general(group, t0, count).items()}
        for n, c in out.items():
            if c is None:
                continue
            self.send(n, c, t0, [syn for syn in self.syns if syn.p.src == n and syn.p.dst not in group])
            if n in self.counts:
                self.count_spikes(n, c, t0)
            if n in self.recorded:
                self.recorded[n][t0 - 1:t0 - 1 + count] = c.spikes.cpu()

    def count_spikes(self, n: str, c: Chunk, t0: int) -> None:
        """Add the spikes of ``n``'s output window(s) within this chunk to the per-sample counts:
        from the compiled loop's counts per step where it gives them, else byte-wise adds over the
        steps (a window of T <= 255 steps cannot overflow a byte), then one reduction over neurons."""
        s = c.spikes
        for w in range(max(1, self.stream)):
            start = self.out_start[n] + w * self.net.period
            lo, hi = max(start, t0), min(start + self.net.T, t0 + c.count)
            if lo >= hi:
                continue
            if c.per_step is not None:
                total = torch.as_tensor(c.per_step[lo - t0:hi - t0].sum(axis=0))
            elif s.dtype == torch.float32 and self.net.T * s.shape[2] < FLOAT32_EXACT:  # FastIF's 0/1 spikes
                total = s[lo - t0:hi - t0].sum(dim=(0, 2)).to(torch.int64).cpu()
            elif s.dtype != torch.bool:  # graded payloads: plain integer sums
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

    def run_fast(self, n: str, t0: int, count: int) -> Chunk | None:
        """``count`` steps of a FastIF population from step t0, or None where it provably has no
        spikes and its state does not change (no input, nothing to fire). On the CPU the compiled
        loop runs them (``run_compiled``), elsewhere torch operations (``run_torch``); a step
        neither can vouch for goes through Lava's general arithmetic (``general_step``)."""
        f = self.fast[n]
        a = self.inbox[n].take(t0, count, pad=not self.compiled)  # the compiled loop takes a short input
        extra, extra_max = self.source_inputs(n, t0, count)
        prev = self.pending.pop(n, None)  # spikes of the step before, their subtraction still due
        if a is None and all(e is None for e in extra) and f.idle(t0, count, prev):
            return None  # before its window and after its flush a layer waits: nothing to compute
        if self.compiled:
            pooled = self.buffer(self.pool_buffers, n, count, self.pool_out[n].size) if n in self.pool_out else None
            spikes = None if pooled is not None and n not in self.recorded else \
                self.buffer(self.spike_buffers, n, count, f.lif.p.size, self.spike_dtype)
            c = Chunk(count, spikes, pooled, np.zeros((count, self.batch), dtype=np.int64))
            prev = self.run_compiled(n, a, extra, extra_max, t0, c, prev)
            prev = None if not c.per_step[-1].any() else prev  # a silent last step: no subtraction due
        else:
            c = Chunk(count, self.buffer(self.spike_buffers, n, count, f.lif.p.size))
            prev = self.run_torch(n, a, extra, extra_max, t0, c.spikes, prev)
            prev = None if prev is None else prev.clone()  # (a step of the reused spike buffer)
        if prev is not None:  # the subtraction is due in the first step of the next chunk
            self.pending[n] = prev
        return c

    def run_compiled(self, n: str, a: torch.Tensor | None, extra: list, extra_max: list[int], t0: int, c: Chunk,
                     prev: torch.Tensor | None) -> torch.Tensor | None:
        """The chunk in ``FastIF.run_compiled``, in runs of steps with at most two distinct source
        values; a step it cannot run exactly goes to ``general_step``. Returns the last step's spikes."""
        f, scale = self.fast[n], 1 << self.net.profile.act_shift
        a_float, exact_input = a, True
        if a is not None and a.dtype != torch.float32:  # an int64 inbox: float32 where it is exact
            exact_input = _peak(a) < FLOAT32_EXACT
            a_float = a.to(torch.float32) if exact_input else None
        as_float: dict[int, torch.Tensor] = {}  # each source value as float32, converted once per chunk

        def const(e) -> torch.Tensor | None:
            if e is not None and id(e) not in as_float:
                as_float[id(e)] = torch.full((1, f.lif.p.size), float(e)) if isinstance(e, int) \
                    else e.to(torch.float32).reshape(-1, f.lif.p.size)
            return None if e is None else as_float[id(e)]

        j = 0
        while j < c.count:
            k, seen = j, set()  # the steps from j on that the loop can take in one call
            while k < c.count and exact_input and extra_max[k] * scale < FLOAT32_EXACT and \
                    len(seen | ({id(extra[k])} if extra[k] is not None else set())) <= 2:
                if extra[k] is not None:
                    seen.add(id(extra[k]))
                k += 1
            if k > j:
                done, last = f.run_compiled(t0, a_float, [const(e) for e in extra[j:k]], j, c.spikes, c.pooled,
                                            self.pool_out.get(n) if c.pooled is not None else None, prev,
                                            c.per_step)
                if done:
                    j, prev = j + done, last
                    if j == k:
                        continue
            s = self.general_step(n, a, extra, t0, j, prev)
            if c.spikes is not None:
                c.spikes[j] = s
            if c.pooled is not None:
                c.pooled[j].zero_().index_add_(1, torch.as_tensor(self.pool_out[n].index), s.to(torch.float32))
            c.per_step[j] = s.sum(1).numpy()
            prev = s
            j += 1
        return prev

    def run_torch(self, n: str, a: torch.Tensor | None, extra: list, extra_max: list[int], t0: int,
                  out: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor | None:
        """The chunk in ``FastIF.run`` (torch operations, any device), in spans whose exactness
        ``FastIF.span`` proves beforehand from bounds of the input. Returns the last step's spikes."""
        f, scale, count = self.fast[n], 1 << self.net.profile.act_shift, len(out)
        in_bound = self.in_bound[n] if a is not None else 0
        step_max = [((in_bound or 0) + m) * scale for m in extra_max]
        if a is not None and (in_bound is None or f.span(step_max, 0)[0] < count):  # measure the input
            flat = a.reshape(count, -1)
            hi, lo = flat.amax(dim=1).tolist(), flat.amin(dim=1).tolist()
            step_max = [(int(max(h, -lo_)) + m) * scale for h, lo_, m in zip(hi, lo, extra_max, strict=True)]
        cache: dict[int, torch.Tensor] = {}
        j = 0
        while j < count:
            k, bound = f.span(step_max, j)
            if k:
                f.run(t0, self.fast_inputs(a, extra, j, k, scale, cache), j, j + k, prev, out)
                f.u_bound = bound
                j += k
                prev = out[j - 1]
            else:  # a step the bound cannot vouch for
                out[j] = self.general_step(n, a, extra, t0, j, prev)
                prev = out[j]
                j += 1
        return prev

    def general_step(self, n: str, a: torch.Tensor | None, extra: list, t0: int, j: int,
                     prev: torch.Tensor | None) -> torch.Tensor:
        """Chunk position j of a FastIF population in Lava's general arithmetic (``LIFModel``): its
        spikes (bool)."""
        f = self.fast[n]
        f.sync()
        a_j = torch.zeros(self.inbox[n].shape, dtype=torch.int64, device=self.dev) if a is None or j >= len(a) \
            else a[j].to(torch.int64)
        if extra[j] is not None:
            a_j = a_j + extra[j]
        if prev is not None:  # the fast run's pending self-subtraction
            a_j = a_j + prev.to(torch.int64) * f.self_w_a
        return f.lif.step(t0 + j, a_j)

    def buffer(self, buffers: dict[str, torch.Tensor], n: str, count: int, size: int,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A (count, batch, size) buffer for a FastIF population's spikes or their
        sum-pool, reused from chunk to chunk (nothing holds on to a chunk's spikes once its group
        has run: they are sent, counted and recorded by copy), so it is not handed fresh pages by
        the system each time."""
        buf = buffers.get(n)
        if buf is None or len(buf) < count:
            buf = buffers[n] = torch.empty((count, self.batch, size), dtype=dtype, device=self.dev)
        return buf[:count]

    @staticmethod
    def fast_inputs(a: torch.Tensor | None, extra: list, j: int, k: int, scale: int,
                    cache: dict[int, torch.Tensor]) -> list[list]:
        """What enters u at chunk positions j .. j+k-1 (``FastIF.run``'s ``inputs``), in u units as
        float32, which ``span`` has shown to be exact: the synaptic input scaled in one operation
        over the steps, and a source value that stays the same over them (the bias, the input
        layer's current) added to it once rather than at every step."""
        def u_units(e):
            if e is None or isinstance(e, int):
                return None if e is None else float(e * scale)
            if id(e) not in cache:
                cache[id(e)] = (e * scale).to(torch.float32)
            return cache[id(e)]

        steps = [[] for _ in range(j + k)]
        sources = [u_units(e) for e in extra[j:j + k]]
        if a is not None:
            a_u = a[j:j + k].mul_(scale) if a.dtype == torch.float32 else a[j:j + k].to(torch.float32).mul_(scale)
            if sources[0] is not None and all(e is sources[0] for e in sources):
                a_u.add_(sources[0])
                sources = [None] * k
            for i in range(k):
                steps[j + i].append(a_u[i])
        for i, e in enumerate(sources):
            if e is not None:
                steps[j + i].append(e)
        return steps

    def run_general(self, group: list[str], t0: int, count: int) -> dict[str, torch.Tensor]:
        """Step by step with the general models; synapses inside the group run every step."""
        a = {n: self.general_inputs(n, t0, count) for n in group}
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

    def run_loop(self, n: str, t0: int, count: int) -> Chunk | None:
        """``count`` steps of a COS or graded-spike population in its compiled loop, or None where
        they neither spike nor change its state (what arrives then is ignored, as the kernel ignores it)."""
        loop = self.neurons[n]
        js = loop.positions(t0, count)
        if loop.idle(js):
            self.inbox[n].take(t0, count)  # consumed all the same
            return None
        return Chunk(count, loop.run(js, self.general_inputs(n, t0, count)))

    def general_inputs(self, n: str, t0: int, count: int) -> torch.Tensor:
        """Everything that enters ``n`` at each step of the chunk, (count, batch, N) int64."""
        x = self.inbox[n].take(t0, count)
        a = torch.zeros((count, *self.inbox[n].shape), dtype=torch.int64, device=self.dev) if x is None \
            else x.to(torch.int64)
        for j, e in enumerate(self.source_inputs(n, t0, count)[0]):
            if e is not None:
                a[j] += e
        return a

    def send(self, src: str, c: Chunk, t0: int, synapses: list[SynapseModel]) -> None:
        """Carry a chunk of ``src``'s spikes (or their sum-pool) through its outgoing synapses,
        skipping silent steps."""
        if not synapses:
            return
        if c.per_step is not None:
            active = c.per_step.any(axis=1)
        else:
            spikes = c.spikes
            if spikes.dtype == torch.bool:
                flags = spikes.view(torch.uint8)
            else:  # FastIF's float32 0/1 and graded uint8 payloads are >= 0; external input may be signed
                flags = spikes if spikes.dtype in (torch.float32, torch.uint8) else spikes != 0
            flags = flags.reshape(c.count, -1)
            # (spikes in the first and the last step settle it without looking at the others)
            active = np.ones(c.count, dtype=bool) if bool(flags[0].any()) and bool(flags[-1].any()) \
                else flags.amax(dim=1).numpy(force=True) > 0
        if active[0] and active[-1]:  # a layer in its window: send every step
            rows = torch.arange(c.count)  # (a silent step in between sends zeros: the same sums)
        else:
            rows = torch.as_tensor(np.flatnonzero(active))
        if not len(rows):
            return
        first, last = int(rows[0]), int(rows[-1])
        contiguous = last - first + 1 == len(rows)  # the usual case: a layer's window
        data = c.spikes if c.pooled is None else c.pooled
        x = data[first:last + 1] if contiguous else data[rows]
        flat = x.reshape(len(x) * self.batch, -1)
        for syn in synapses:
            for delay, contrib in (syn(flat) if c.pooled is None else syn.from_pooled(flat)):
                if contiguous:  # (a LinkModel passes the spikes on, which are not its to give away)
                    self.inbox[syn.p.dst].add(t0 + 1 + delay + first, contrib, owned=not isinstance(syn, LinkModel))
                else:
                    self.inbox[syn.p.dst].add(t0 + 1 + delay, contrib, rows=rows)

    def trace(self) -> Trace:
        net, steps = self.net, self.steps
        end = min(self.starts[net.readout] + net.T - 1, steps)
        state_meta = {k: restore_order({n: v.numpy() for n, v in self.states[k].items()}, self.order)
                      for k in ("u", "v")} if self.record_state else {}
        readout, final = self.readout.numpy(), None
        spikes = restore_order({k: v.numpy() for k, v in self.recorded.items()}, self.order)
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


@dataclass
class SimNet:
    """A network as ``sim`` runs it: renumbered channels-last where convolutions meet it
    (``sim_layout``), with its synapse models (stateless apart from their overflow counts, which
    every run resets). Build it once to simulate many batches."""

    net: ProcessNet  # in sim's neuron order
    order: dict[str, np.ndarray]  # population -> network index of the neuron at each position
    synapses: list[SynapseModel]
    int8: bool = False  # binary synapses on oneDNN's int8 kernels where they fit

    @classmethod
    def build(cls, net: ProcessNet, device: str | torch.device = "cpu", channels_last: bool = True,
              int8: bool | None = None) -> SimNet:
        """``int8``: binary synapses on oneDNN's int8 kernels (``int8_kernels.resolve``: by default
        where the CPU has int8 dot-product instructions and they prove exact here)."""
        dev = torch.device(device)
        order = channels_last_order(net) if channels_last else {}
        inner = permute_net(net, order)
        links: list[SynapseModel] = [LinkModel(Link(f"{p.name}.in", p.src, p.name)) for p in inner.lifs
                                     if isinstance(p, MaxPoolProcess)]
        use = resolve(int8, dev)
        syns = [(DenseModel if isinstance(p, DenseProcess) else ConvModel)(
                    p, dev, inner.profile, p.src in order, p.dst in order, use) for p in inner.synapses]
        return cls(inner, order, syns + links, use)

    def currents(self, currents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-sample input currents, (samples, N) in the network's order, in sim's."""
        # (np.take: row-major and 12x faster than fancy indexing on the last axis, which gathers
        # column-major and needs a copy)
        return {k: np.take(np.asarray(v), self.order[k], axis=-1) if k in self.order else v
                for k, v in currents.items()}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
HEAP_BLOCK_MAX = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse instead of returning it to the
    system. ``sim`` allocates and frees buffers of tens of MB every chunk (convolution outputs,
    layout copies); returned to the system, each comes back as fresh pages that fault on first
    touch, which took a quarter of the run time on the MNIST-5k CNN at batch 64. The process's
    resident size then stays at its peak. A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(1 << 30)) and
                    libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(HEAP_BLOCK_MAX)))
    except (OSError, AttributeError):
        return False


def simulate(net: ProcessNet, currents: dict[str, np.ndarray], record: bool = False,
             steps: int | None = None, device: str | torch.device = "cpu", sample_ids: np.ndarray | None = None,
             spikes_in: np.ndarray | None = None, record_state: tuple[str, ...] = (),
             chunk: int | None = None, fast: bool = True, prepared: SimNet | None = None,
             stream: bool = False, batch: int | None = None, loop: str = "auto", int8: bool | None = None) -> Trace:
    """Run one window per sample (batched). ``currents[pop]`` is (batch, N) for input-fed layers;
    ``sample_ids`` key TPP's random numbers (default 0..batch-1); ``spikes_in`` (steps, batch, N)
    feeds the synapses whose source is ``"input"`` (netx networks); ``record_state`` names LIFs whose
    u and v are kept for every step (``trace.meta["u"]``, ``trace.meta["v"]``); ``chunk`` is the
    number of steps scheduled together (default: a window and its flush step where that is at most
    ``2 * CHUNK`` steps, so that one call of the compiled loop covers both; else ``CHUNK``; 1 steps
    the whole network step by step);
    ``fast=False`` runs every population through the general models (for cross-checks);
    ``loop`` how the fast soft-reset IF populations run: ``"compiled"`` (``if_kernel``, CPU only),
    ``"torch"`` (torch operations, any device), ``"auto"`` the first on the CPU, else the second;
    ``int8`` whether binary synapses run on oneDNN's int8 kernels (``SimNet.build``; None: where
    they are fast and exact on this CPU);
    ``prepared`` is ``SimNet.build(net)`` built beforehand; ``batch`` is needed only when
    neither currents nor spikes say it (a LIF whose ``bias_mant`` is (batch, N): netx input layers).

    ``stream=True`` runs the samples one after another, a window every ``net.period`` steps, as
    the Lava target streams them: state then carries from one sample into the next exactly as in
    Lava. Within the head-room the flush steps make both modes equal; beyond it (a quench that
    cannot silence a layer) only the streamed mode reproduces Lava's leak into the next sample."""
    dev = torch.device(device)
    keep_freed_memory()
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
    chunk = max(1, min(chunk or (net.period if net.period <= 2 * CHUNK else CHUNK), steps))
    with exact_arithmetic(dev):
        run = _Run(prepared or SimNet.build(net, dev, int8=int8), currents, batch, steps, dev, ids, record,
                   record_state, fast, n_stream, loop)
        run.schedule(chunk, spikes_in)
        return run.trace()


class SimTarget:
    """``sim``: encode the inputs, simulate the deployment's process network in batches."""

    name = "sim"
    pipelined = True

    def __init__(self, batch: int = 64, device: str = "cpu", progress=None, stream: bool = False,
                 int8: bool | None = None) -> None:
        """``stream=True``: each batch of samples runs one after another, as the Lava target streams
        them (see :func:`simulate`); otherwise side by side, each from a clean state. ``int8``: see
        :meth:`SimNet.build`."""
        self.batch = batch
        self.int8 = int8
        self.device = device
        self.progress = progress
        self.stream = self.streams = stream
        self._compiled: tuple[Deployment, SimNet] | None = None

    def compile(self, deployment: Deployment) -> SimNet:
        """The deployment's process network as sim's models, built once per deployment on this target
        (0.5 s for a ResNet-18, as long as simulating 10 of its samples)."""
        if self._compiled is None or self._compiled[0] is not deployment:
            self._compiled = (deployment, SimNet.build(deployment.net, self.device, int8=self.int8))
        return self._compiled[1]

    def run(self, deployment: Deployment, x: np.ndarray, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        prepared = self.compile(deployment)
        net = prepared.net
        ids = np.arange(len(x)) if sample_ids is None else np.asarray(sample_ids)
        traces = []
        for i in range(0, len(x), self.batch):
            traces.append(simulate(net, encode(deployment.snn, x[i:i + self.batch]), record=record,
                                   device=self.device, sample_ids=ids[i:i + self.batch], prepared=prepared,
                                   stream=self.stream))
            if self.progress is not None:
                self.progress(len(x[i:i + self.batch]))
        return Trace.concat(traces)
