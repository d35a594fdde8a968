"""The PyTorch reference: the converted SNN as torch modules with zero synaptic delay.

Float mode runs a float :class:`SNNGraph` on raw inputs; integer mode runs an integer graph on the
per-sample input currents of :func:`encode` with exact integer arithmetic (int64 membranes;
synaptic sums in float32 or float64, whichever holds them exactly: ``ops.exact_dtype``). This is the
model the pipelined targets (``sim``, ``lava``) are verified against, after each layer's pipeline
latency is aligned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.host.exact import exact_arithmetic, exact_dtype
from spikeport.toolchain.ir.snn import COS, INPUT, TPP, Graded, SNNGraph
from spikeport.toolchain.ir.synapses import apply_synapse, weight_tensor
from spikeport.toolchain.ir.trace import Trace, first_exit
from spikeport.toolchain.oracle.neurons import (
    Excursion,
    permute_in_time,
    run_cos,
    run_graded,
    run_if,
    run_maxpool,
    run_tpp,
)


class Synapse(nn.Module):
    def __init__(self, projection, integer: bool) -> None:
        super().__init__()
        self.syn = projection.synapse
        self.source = projection.source
        w = projection.effective_weight()
        dtype = exact_dtype(w) if integer else torch.float32  # integer sums stay exact
        self.register_buffer("weight", weight_tensor(w, dtype))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return apply_synapse(self.syn, s.reshape(len(s), *self.syn.in_shape), self.weight).reshape(len(s), -1)


class SNNReference(nn.Module):
    """The SNN as torch modules: one ``Synapse`` list per population, run layer by layer.

    Every hidden layer's whole window is computed before the next layer starts (as the seed
    papers' code does), which is what COS, TPP and the permutation diagnostic need; for plain IF
    neurons it is the same as stepping all layers together.
    """

    def __init__(self, snn: SNNGraph, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.snn = snn
        self.integer = snn.integer
        self.device = torch.device(device)
        self.headroom = snn.profile.headroom if snn.integer else None
        self.dtype = torch.int64 if snn.integer else torch.float32
        # indexed like snn.populations (torch module names cannot hold the dots of layer names)
        self.synapses = nn.ModuleList(
            nn.ModuleList([Synapse(pr, snn.integer) for pr in p.inputs if pr.source != INPUT and p.kind != "maxpool"])
            for p in snn.populations)
        self.biases = [torch.as_tensor(np.asarray(p.bias).reshape(-1), dtype=self.dtype) for p in snn.populations]
        self.time_biases = [None if p.time_bias is None else torch.as_tensor(
            np.broadcast_to(p.time_bias, (len(p.time_bias), *p.shape)).reshape(len(p.time_bias), -1).copy(),
            dtype=self.dtype) for p in snn.populations]
        self.to(self.device)

    def _to_current(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x).to(torch.int64) if self.integer else x

    def layer_input(self, i: int, const: torch.Tensor | None, spikes: dict[str, torch.Tensor], batch: int,
                    cache: dict[int, torch.Tensor] | None = None):
        """``current(t)``: population i's input at step t (bias, time bias, the constant ``const`` and the
        synaptic input from the spike trains in ``spikes``), computed a chunk of steps at a time.
        ``cache`` holds the synaptic input computed so far: calls for the same spikes may share one
        (FTBC runs a layer twice on the same input, before and after fitting its bias)."""
        p = self.snn.populations[i]
        base = self.biases[i].to(self.device)
        if const is not None:
            base = base + const
        tb = self.time_biases[i]
        syns = list(self.synapses[i])
        chunk = max(1, (1 << 24) // max(1, batch * p.size))
        cache = {} if cache is None else cache

        def current(t: int) -> torch.Tensor:
            x = base
            if tb is not None and t < len(tb):
                x = x + tb[t].to(self.device)
            if syns:
                c0 = t - t % chunk
                if c0 not in cache:
                    cache.clear()
                    total = None
                    for syn in syns:
                        src = spikes[syn.source][c0:c0 + chunk]
                        flat = src.reshape(-1, *src.shape[2:]).to(syn.weight.dtype)
                        y = self._to_current(syn(flat)).reshape(len(src), batch, -1)
                        total = y if total is None else total + y
                    cache[c0] = total
                x = x + cache[c0][t - c0]
            return x

        return current

    @torch.no_grad()
    def forward(self, inputs: np.ndarray | dict[str, np.ndarray], T: int, record: bool = False,
                sample_ids: np.ndarray | None = None, permute_seed: int | None = None) -> Trace:
        """``inputs``: raw samples (float graphs) or :func:`encode` currents (integer graphs).

        ``sample_ids`` key TPP's random numbers (default 0..batch-1); ``permute_seed`` shuffles
        every hidden layer's spike trains in time (the temporal-misalignment diagnostic).
        """
        snn = self.snn
        currents = inputs if isinstance(inputs, dict) else encode(snn, inputs)
        const = {k: torch.as_tensor(v, dtype=self.dtype, device=self.device) for k, v in currents.items()}
        batch = len(next(iter(const.values())))
        ids = torch.as_tensor(np.arange(batch) if sample_ids is None else np.asarray(sample_ids), dtype=torch.int64)
        gen = torch.Generator().manual_seed(permute_seed) if permute_seed is not None else None
        S = snn.steps(T)
        consumers = {p.name: 0 for p in snn.populations}
        for p in snn.populations:
            for pr in p.inputs:
                if pr.source != INPUT:
                    consumers[pr.source] += 1
        spikes: dict[str, torch.Tensor] = {}
        recorded, counts, overflow, peak = {}, {}, {}, {}
        headroom = None  # where a membrane first left the head-room, in causal (layer) order
        readout = None
        for i, p in enumerate(snn.populations):
            current = self.layer_input(i, const.get(p.name), spikes, batch)
            shape = (batch, p.size)
            if p.kind == "readout":
                acc = torch.zeros(shape, dtype=self.dtype, device=self.device)
                readout = torch.zeros((T, *shape), dtype=self.dtype)
                for t in range(T):
                    acc = acc + current(t)
                    readout[t] = acc.cpu()
                peak[p.name] = float(readout.abs().max())
                continue
            ex = Excursion(p.v_init, self.headroom)
            if p.kind == "maxpool":
                syn = p.inputs[0].synapse
                s = run_maxpool(spikes[p.inputs[0].source], syn.in_shape, syn.kernel, syn.stride, syn.padding,
                                syn.ceil_mode)
            elif isinstance(snn.neuron, COS):
                s = run_cos(current, S, snn.neuron.rho, shape, p.threshold, p.v_init, self.integer, ex, self.device)
            elif isinstance(snn.neuron, TPP):
                s = run_tpp(current, T, shape, p.threshold, p.v_init, self.integer, ex, self.device,
                            snn.neuron.seed, i, ids)
            elif isinstance(snn.neuron, Graded):
                s = run_graded(current, S, shape, p.threshold, p.v_init, snn.neuron.levels, self.integer, ex,
                               self.device)
            else:
                s = run_if(current, S, shape, p.threshold, p.v_init, self.integer, ex, self.device)
            if gen is not None:
                s = permute_in_time(s, gen)
            spikes[p.name] = s
            peak[p.name], overflow[p.name] = ex.peak, ex.overflow
            if headroom is None and ex.first is not None:
                headroom = {"layer": p.name, "order": i, "step": ex.first[0], "sample": ex.first[1]}
            counts[p.name] = s[:T].sum(dim=(0, 2), dtype=torch.int64).cpu()  # graded: the payloads
            if record:
                recorded[p.name] = s.cpu().to(torch.uint8).numpy()
            for pr in p.inputs:  # free spike trains nobody needs any more
                if pr.source != INPUT:
                    consumers[pr.source] -= 1
                    if consumers[pr.source] == 0:
                        spikes.pop(pr.source, None)
        return Trace(
            target="torch_int" if self.integer else "torch_float", T=T,
            final=readout[-1].numpy(), readout=readout.numpy(), spikes=recorded,
            spike_counts={k: v.numpy() for k, v in counts.items()},
            overflow=overflow if self.integer else {},
            window_start={p.name: 0 for p in snn.hidden}, meta={"peak": peak, "headroom": headroom})


def run_reference(snn: SNNGraph, inputs: np.ndarray, T: int, record: bool = False, batch: int = 64,
                  device: str | torch.device = "cpu", sample_ids: np.ndarray | None = None,
                  permute_seed: int | None = None) -> Trace:
    """Run the reference over many samples in batches (raw inputs; integer graphs are encoded)."""
    model = SNNReference(snn, device)
    ids = np.arange(len(inputs)) if sample_ids is None else np.asarray(sample_ids)
    with exact_arithmetic(device):
        traces = [model(inputs[i:i + batch], T, record, sample_ids=ids[i:i + batch],
                        permute_seed=None if permute_seed is None else permute_seed + i)
                  for i in range(0, len(inputs), batch)]
    out = Trace.concat(traces)
    out.meta["peak"] = {k: max(t.meta["peak"][k] for t in traces) for k in traces[0].meta["peak"]}
    out.meta["headroom"] = first_exit([(t.meta["headroom"], i) for i, t in zip(range(0, len(inputs), batch), traces)])
    return out
