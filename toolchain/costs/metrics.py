"""Counting the work of one inference: messages, payloads, synaptic operations, neuron updates and
energy, from an integer spiking network and a recorded run of it.

The units, as a Loihi chip spends them (``eval``, ``bench``, the quantization report and
``lowlat`` all count with this module, so their figures agree):

* a *message* is one spike that one neuron sends at one step. A graded spike is one message,
  whatever payload it carries;
* a *payload* is the value a message carries: 1 for a binary spike, 1 to ``levels`` thresholds for
  a graded one. On a binary network payloads equal messages;
* a *synaptic operation* is one message reaching one of its targets (messages x fan-out): the
  chip's unit of work, and the unit its energy figures are published in. A graded spike therefore
  costs what a binary one does; its payload changes the value added, not the number of additions.
  The analog input projection is computed on the host and is not counted;
* a *neuron update* is one neuron (readout and max-pool gates included) at one of its steps;
* *energy* is synaptic operations and neuron updates at per-operation figures the caller passes
  (a target profile's :class:`~spikeport.toolchain.hardware.profiles.EnergyFigures`, sources named).

Counts are taken over each population's output window (``Trace.window_counts``), so a pipelined
runner's (``sim``, ``lava``) count is the zero-delay reference's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from spikeport.toolchain.hardware.profiles import EnergyFigures
from spikeport.toolchain.ir.snn import INPUT, ConvSynapse, PoolSynapse, SNNGraph, Synapse
from spikeport.toolchain.ir.synapses import conv_as_matrix
from spikeport.toolchain.ir.trace import Trace

Fans = dict[tuple[str, int], np.ndarray]


def fan_out(syn: Synapse) -> np.ndarray:
    """Synaptic targets of every source neuron (flattened source order)."""
    if isinstance(syn, PoolSynapse):  # the windows each source neuron is in
        index = syn.window_index()
        return np.bincount(index[index >= 0], minlength=int(np.prod(syn.in_shape)))
    if isinstance(syn, ConvSynapse):
        m = conv_as_matrix(syn, np.ones_like(np.asarray(syn.weight), dtype=np.int64))
        return np.asarray((m != 0).sum(axis=0)).ravel()
    if sparse.issparse(syn.weight):
        return np.bincount(sparse.csr_matrix(syn.weight).indices, minlength=syn.weight.shape[1])
    return np.count_nonzero(np.asarray(syn.weight), axis=0)


def fan_outs(snn: SNNGraph) -> Fans:
    """``fan_out`` of every projection between populations, keyed by (population, input index):
    computed once for callers that count batch after batch."""
    return {(p.name, i): fan_out(pr.synapse).astype(np.float64) for p in snn.populations
            for i, pr in enumerate(p.inputs) if pr.source != INPUT}


def synaptic_ops(snn: SNNGraph, messages: dict[str, np.ndarray], fans: Fans | None = None) -> np.ndarray:
    """Synaptic operations per sample: ``messages[name]`` is a (batch, neurons) array of messages
    each neuron sent; every message reaches each of its neuron's targets once."""
    fans = fan_outs(snn) if fans is None else fans
    total = None
    for p in snn.populations:
        for i, pr in enumerate(p.inputs):
            if pr.source in messages:
                ops = np.asarray(messages[pr.source], dtype=np.float64) @ fans[(p.name, i)]
                total = ops if total is None else total + ops
    return total if total is not None else np.zeros(0)


def neuron_updates(snn: SNNGraph, steps: int) -> int:
    """Neuron updates of one inference: every population, at every one of its ``steps`` steps."""
    return sum(p.size for p in snn.populations) * steps


@dataclass(frozen=True)
class Work:
    """The work of each inference of a batch: (batch,) arrays, and the neuron updates every sample
    shares (every neuron updates at every step, spiking or not)."""

    messages: np.ndarray  # spikes sent, a graded spike once
    payloads: np.ndarray  # the values they carried (== messages on a binary network)
    synops: np.ndarray  # messages x fan-out
    neuron_updates: int
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # each hidden layer's (batch, N) window payloads

    def energy_uJ(self, figures: EnergyFigures) -> np.ndarray:
        """Energy of each inference at ``figures`` (synaptic operations and neuron updates only)."""
        return (self.synops * figures.synop_pJ + self.neuron_updates * figures.neuron_update_pJ) * 1e-6

    def per_inference(self, figures: EnergyFigures) -> dict[str, float]:
        """The batch's means: what a report states per inference."""
        return {"messages": float(self.messages.mean()), "payloads": float(self.payloads.mean()),
                "synops": float(self.synops.mean()), "neuron_updates": float(self.neuron_updates),
                "energy_uJ": float(self.energy_uJ(figures).mean())}


def count_work(snn: SNNGraph, trace: Trace, fans: Fans | None = None) -> Work:
    """The work of every sample of ``trace``, a recorded run (``record=True``) of the integer
    network ``snn`` at ``trace.T``. ``fans``: ``fan_outs(snn)``, to reuse across batches."""
    steps = snn.steps(trace.T)
    messages = {p.name: trace.window_counts(p.name, steps, messages=True) for p in snn.hidden}
    counts = {p.name: trace.window_counts(p.name, steps) for p in snn.hidden}
    none = np.zeros(len(trace.final), dtype=np.int64)
    synops = synaptic_ops(snn, messages, fans) if messages else none.astype(np.float64)
    return Work(messages=sum((m.sum(1) for m in messages.values()), none),
                payloads=sum((c.sum(1) for c in counts.values()), none),
                synops=synops, neuron_updates=neuron_updates(snn, steps), counts=counts)
