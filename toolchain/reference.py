"""The PyTorch reference: the converted SNN as torch modules with zero synaptic delay.

Float mode runs a float :class:`SNNGraph` on raw inputs; integer mode runs an integer graph on the
per-sample input currents of :func:`encode` with exact integer arithmetic (int64 membranes;
synaptic sums computed in float64, exact for the integer ranges the quantizer allows). This is the
model the pipelined targets (``sim``, ``lava``) are verified against, after each layer's pipeline
latency is aligned.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spikeport.toolchain.ops import apply_synapse
from spikeport.toolchain.snn import INPUT, Population, SNNGraph
from spikeport.toolchain.trace import Trace


@torch.no_grad()
def encode(snn: SNNGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Input currents (integer graphs): ``round(W x / unit)`` per sample for each input-fed population.

    Computed in float64 once per sample on the host; every integer runner receives the same
    integers, so they agree bit for bit whatever the platform's float rounding.
    """
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    out = {}
    for p in snn.populations:
        for pr in p.inputs:
            if pr.source == INPUT:
                cur = apply_synapse(pr.synapse, xt, torch.as_tensor(pr.synapse.weight, dtype=torch.float64))
                if snn.integer:
                    cur = torch.round(cur / pr.unit).to(torch.int64)
                out[p.name] = cur.reshape(len(xt), -1).numpy()
    return out


class Synapse(nn.Module):
    def __init__(self, projection, dtype: torch.dtype) -> None:
        super().__init__()
        self.syn = projection.synapse
        self.source = projection.source
        self.register_buffer("weight", torch.as_tensor(projection.effective_weight(), dtype=dtype))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return apply_synapse(self.syn, s.reshape(len(s), *self.syn.in_shape), self.weight).reshape(len(s), -1)


class IFNeurons(nn.Module):
    """IF neurons with reset by subtraction: fire when ``m >= threshold``."""

    def __init__(self, pop: Population, integer: bool, headroom: int | None) -> None:
        super().__init__()
        self.integer = integer
        self.threshold = pop.threshold
        self.v_init = pop.v_init
        self.headroom = headroom
        self.overflow = 0
        self.peak = 0.0  # largest |m - v_init| seen since reset (what the quantizer sizes u for)

    def reset(self, batch: int, n: int, device: torch.device) -> None:
        dtype = torch.int64 if self.integer else torch.float32
        self.v = torch.full((batch, n), self.v_init, dtype=dtype, device=device)
        self.overflow = 0
        self.peak = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.v + x
        excursion = (m - self.v_init).abs()  # what a Loihi current register u holds
        self.peak = max(self.peak, float(excursion.max()))
        if self.headroom is not None:
            self.overflow += int((excursion > self.headroom).sum())
        s = m >= self.threshold
        self.v = m - self.threshold * s.to(m.dtype)
        return s


class SNNReference(nn.Module):
    def __init__(self, snn: SNNGraph, device: str | torch.device = "cpu") -> None:
        super().__init__()
        self.snn = snn
        self.integer = snn.integer
        self.device = torch.device(device)
        syn_dtype = torch.float64 if snn.integer else torch.float32
        headroom = snn.meta.get("headroom") if snn.integer else None
        # indexed like snn.populations (torch module names cannot hold the dots of layer names)
        self.synapses = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.biases: dict[str, torch.Tensor] = {}
        for p in snn.populations:
            self.synapses.append(nn.ModuleList([Synapse(pr, syn_dtype) for pr in p.inputs if pr.source != INPUT]))
            self.neurons.append(IFNeurons(p, snn.integer, headroom) if p.kind == "if" else nn.Identity())
            dtype = torch.int64 if snn.integer else torch.float32
            self.biases[p.name] = torch.as_tensor(np.asarray(p.bias).reshape(-1), dtype=dtype, device=self.device)
        self.to(self.device)

    def _to_current(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x).to(torch.int64) if self.integer else x

    @torch.no_grad()
    def forward(self, inputs: np.ndarray | dict[str, np.ndarray], T: int, record: bool = False) -> Trace:
        """``inputs``: raw samples (float graphs) or :func:`encode` currents (integer graphs)."""
        if isinstance(inputs, dict):
            currents = inputs
        else:
            currents = encode(self.snn, inputs)
        dtype = torch.int64 if self.integer else torch.float32
        const = {k: torch.as_tensor(v, dtype=dtype, device=self.device) for k, v in currents.items()}
        batch = len(next(iter(const.values())))
        for i, p in enumerate(self.snn.hidden):
            self.neurons[i].reset(batch, p.size, self.device)
        ro = self.snn.readout
        acc = torch.zeros((batch, ro.size), dtype=dtype, device=self.device)
        readout = torch.zeros((T, batch, ro.size), dtype=dtype)
        spikes = {p.name: torch.zeros((T, batch, p.size), dtype=torch.uint8) for p in self.snn.hidden} \
            if record else {}
        counts = {p.name: torch.zeros(batch, dtype=torch.int64) for p in self.snn.hidden}
        for t in range(T):
            out: dict[str, torch.Tensor] = {}
            for i, p in enumerate(self.snn.populations):
                x = self.biases[p.name] + const[p.name] if p.name in const else self.biases[p.name]
                for syn in self.synapses[i]:
                    x = x + self._to_current(syn(out[syn.source].to(syn.weight.dtype)))
                if p.kind == "readout":
                    acc = acc + x
                    readout[t] = acc.cpu()
                else:
                    s = self.neurons[i](x)
                    out[p.name] = s
                    counts[p.name] += s.sum(1).cpu()
                    if record:
                        spikes[p.name][t] = s.cpu()
        return Trace(
            target="torch_int" if self.integer else "torch_float", T=T,
            final=readout[-1].numpy(), readout=readout.numpy(),
            spikes={k: v.numpy() for k, v in spikes.items()},
            spike_counts={k: v.numpy() for k, v in counts.items()},
            overflow={p.name: self.neurons[i].overflow for i, p in enumerate(self.snn.hidden)} if self.integer else {},
            window_start={p.name: 0 for p in self.snn.hidden},
            meta={"peak": {**{p.name: self.neurons[i].peak for i, p in enumerate(self.snn.hidden)},
                           ro.name: float(readout.abs().max())}})


def run_reference(snn: SNNGraph, inputs: np.ndarray, T: int, record: bool = False, batch: int = 256,
                  device: str = "cpu") -> Trace:
    """Run the reference over many samples in batches (raw inputs; integer graphs are encoded)."""
    model = SNNReference(snn, device)
    traces = [model(inputs[i:i + batch], T, record) for i in range(0, len(inputs), batch)]
    out = Trace.concat(traces)
    out.meta["peak"] = {k: max(t.meta["peak"][k] for t in traces) for k in traces[0].meta["peak"]}
    return out
