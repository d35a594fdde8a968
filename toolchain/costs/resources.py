"""What a lowered network needs of its chip: neurons, synapses, synaptic memory, fan-in and
fan-out, neuro cores and chips, from the chip limits of the network's profile
(``net.profile.limits``, a :class:`~spikeport.toolchain.hardware.profiles.ChipLimits`; for ``loihi2``, what
Intel has published for Loihi 2).

An estimate, not a placement: each population is given whole cores of its own (as Lava's Loihi 2
compiler places a process), a core holds at most ``neurons_per_core`` neurons and
``synaptic_memory_bits`` of weights for the synapses *into* its neurons, and:

- a dense or sparse connection stores every non-zero weight once, at the profile's weight width,
  plus a ``sparse_index_bits`` index for a sparse one (a dense matrix is charged in full, zeros
  included, when it holds fewer than ``sparse_index_bits`` zero weights per non-zero one; otherwise
  its non-zero weights are charged as sparse);
- a convolution shares its kernel: every core of the target layer holds the whole kernel once;
- the axonal delays of DelaySparse cost ``delay_bits`` per synapse beside its weight.

The network does not fit where a layer's fan-in exceeds a core's synaptic memory for one neuron,
or the cores exceed what the chips of a system hold; :func:`estimate` says which and why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import sparse

from spikeport.toolchain.hardware.profiles import ChipLimits
from spikeport.toolchain.ir.procnet import (
    ConvProcess,
    COSProcess,
    DenseProcess,
    GradedProcess,
    MaxPoolProcess,
    ProcessNet,
    TPPProcess,
)
from spikeport.toolchain.ir.snn import ConvSynapse
from spikeport.toolchain.ir.synapses import conv_as_matrix


@dataclass
class LayerResources:
    name: str
    neurons: int
    synapses: int  # connections into the layer (a shared conv kernel counts once per connection)
    memory_bits: int  # synaptic memory of all the layer's cores
    fan_in: int  # the largest number of synapses into one neuron
    fan_out: int  # the largest number of synapses out of one neuron of this layer
    cores: int
    limited_by: str  # "neurons" or "synaptic memory"


@dataclass
class Resources:
    limits: ChipLimits
    weight_bits: int
    layers: list[LayerResources] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what does not fit, and why
    notes: list[str] = field(default_factory=list)  # what the estimate assumes beyond stock Loihi 2 neurons

    @property
    def neurons(self) -> int:
        return sum(r.neurons for r in self.layers)

    @property
    def synapses(self) -> int:
        return sum(r.synapses for r in self.layers)

    @property
    def memory_bits(self) -> int:
        return sum(r.memory_bits for r in self.layers)

    @property
    def cores(self) -> int:
        return sum(r.cores for r in self.layers)

    @property
    def chips(self) -> int:
        lim = self.limits
        return max(math.ceil(self.cores / lim.cores_per_chip), math.ceil(self.neurons / lim.neurons_per_chip),
                   math.ceil(self.synapses / lim.synapses_per_chip), 1)

    def to_dict(self) -> dict:
        return {"chip": asdict(self.limits), "weight_bits": self.weight_bits, "neurons": self.neurons,
                "synapses": self.synapses, "synaptic_memory_bytes": self.memory_bits // 8, "cores": self.cores,
                "chips": self.chips, "layers": [asdict(r) for r in self.layers], "problems": self.problems,
                "notes": self.notes}

    def lines(self) -> list[str]:
        out = [f"{self.limits.name}: {self.neurons:,} neurons, {self.synapses:,} synapses, "
               f"{self.memory_bits / 8 / 1024:,.0f} KiB of synaptic memory at {self.weight_bits}-bit weights, "
               f"{self.cores} neuro cores, {self.chips} chip(s)"]
        for r in self.layers:
            out.append(f"  {r.name:<24} {r.neurons:>9,} neurons {r.synapses:>12,} synapses  fan-in {r.fan_in:>6,} "
                       f"fan-out {r.fan_out:>6,}  {r.cores:>4} cores ({r.limited_by})")
        out += [f"  does not fit: {p}" for p in self.problems]
        out += [f"  note: {n}" for n in self.notes]
        out.append(f"  limits: {self.limits.source}")
        return out


def _connection(p: DenseProcess | ConvProcess, weight_bits: int, lim: ChipLimits) -> tuple[int, int, np.ndarray,
                                                                                           np.ndarray]:
    """(synapses, memory bits if stored once, synapses into each target neuron, out of each source)."""
    if isinstance(p, ConvProcess):
        syn = ConvSynapse(p.weight, p.in_shape, p.out_shape, p.stride, p.padding, p.dilation, p.groups)
        m = conv_as_matrix(syn, np.ones_like(np.asarray(p.weight), dtype=np.int64))
        return int(m.nnz), int(np.asarray(p.weight).size) * weight_bits, np.diff(m.indptr), \
            np.bincount(m.indices, minlength=m.shape[1])
    w = sparse.csr_matrix(p.weights)
    w.eliminate_zeros()
    nnz = int(w.nnz)
    per_synapse = weight_bits + (lim.delay_bits if np.any(p.delay) else 0)
    dense_bits = w.shape[0] * w.shape[1] * per_synapse
    sparse_bits = nnz * (per_synapse + lim.sparse_index_bits)
    return nnz, min(dense_bits, sparse_bits), np.diff(w.indptr), np.bincount(w.indices, minlength=w.shape[1])


def estimate(net: ProcessNet) -> Resources:
    """The resources ``net`` needs on the chips of its profile (``net.profile.limits``), its weights
    at the profile's width."""
    limits, bits = net.profile.limits, net.profile.weight_bits
    res = Resources(limits, bits)
    sizes = {p.name: p.size for p in net.lifs}
    fan_out = {name: np.zeros(n, dtype=np.int64) for name, n in sizes.items()}
    incoming: dict[str, list] = {name: [] for name in sizes}
    for p in net.synapses:
        n, mem, into, out_of = _connection(p, bits, limits)
        incoming[p.dst].append((p, n, mem, into))
        if p.src in fan_out:
            fan_out[p.src] = fan_out[p.src] + out_of[:sizes[p.src]]
    for gate in net.lifs:  # a max-pool gate reads its windows: connections without weights
        if isinstance(gate, MaxPoolProcess):
            inside = gate.index >= 0
            incoming[gate.name].append((gate, int(inside.sum()), 0, inside.sum(1)))
            fan_out[gate.src] = fan_out[gate.src] + np.bincount(gate.index[inside], minlength=sizes[gate.src])
    custom = {COSProcess: "COS", TPPProcess: "TPP", GradedProcess: "graded-spike", MaxPoolProcess: "spiking max-pool"}
    for kind, what in custom.items():
        names = [p.name for p in net.lifs if isinstance(p, kind)]
        if names:
            res.notes.append(f"{what} layers ({', '.join(names)}) are spikeport's own processes: Loihi 2 needs a "
                             "custom neuron program for them; counted here as one neuron per unit")
    for lif in net.lifs:
        conns = incoming[lif.name]
        n = lif.size
        into = sum((c[3] for c in conns), np.zeros(n, dtype=np.int64))
        shared = sum(c[2] for c in conns if isinstance(c[0], ConvProcess))  # held by every core
        per_neuron = sum(c[2] for c in conns if not isinstance(c[0], ConvProcess)) / max(n, 1)
        by_neurons = math.ceil(n / limits.neurons_per_core)
        room = limits.synaptic_memory_bits - shared
        if room <= 0 or per_neuron > room:
            what = "its shared conv kernels" if room <= 0 else "the weights into one neuron"
            res.problems.append(f"layer {lif.name!r}: {what} need more than one core's "
                                f"{limits.synaptic_memory_bits // 8 // 1024} KB of synaptic memory")
            by_memory = by_neurons
        else:
            by_memory = math.ceil(n * per_neuron / room) if per_neuron else 1
        cores = max(by_neurons, by_memory)
        memory = shared * cores + sum(c[2] for c in conns if not isinstance(c[0], ConvProcess))
        res.layers.append(LayerResources(lif.name, n, sum(c[1] for c in conns), int(memory),
                                         int(into.max()) if n else 0, int(fan_out[lif.name].max()) if n else 0,
                                         cores, "neurons" if by_neurons >= by_memory else "synaptic memory"))
    if res.neurons > limits.neurons_per_chip * res.chips or res.synapses > limits.synapses_per_chip * res.chips:
        res.problems.append("the network exceeds the chips' neuron or synapse capacity")
    return res
