"""The latency contract, derived from the graph alone: when a pipelined target must answer.

``verify`` holds every pipelined target to the :class:`~spikeport.toolchain.ir.procnet.Timing` the
lowering states, and holds that Timing to this derivation, which shares no code with the lowering:
otherwise a lowering that delayed every layer by a step (and said so) would verify exact.

The rules, from the network's structure and the neuron model:

* one step per synaptic hop: a population fed by the input sees a sample from step 1; any other
  from one step after its latest source's first output (skip connections wait for the longest path);
* a hidden layer's first output comes ``d`` steps after its first input: d = 0 for IF and graded
  neurons and the spiking max-pool, rho for COS (its pre-run), T for TPP (its integration phase);
* hidden layers emit ``S = snn.steps(T)`` steps, the readout integrates T;
* consecutive samples of a stream are one layer's busy span (d + S) plus one flush step apart.
"""

from __future__ import annotations

from functools import cache

from spikeport.toolchain.ir.procnet import Timing
from spikeport.toolchain.ir.snn import COS, INPUT, TPP, SNNGraph


def _first_output_delay(snn: SNNGraph, kind: str, T: int) -> int:
    if kind != "if":  # the spiking max-pool gates its source's spikes as they arrive
        return 0
    neuron = snn.neuron
    return neuron.rho if isinstance(neuron, COS) else T if isinstance(neuron, TPP) else 0


def graph_timing(snn: SNNGraph) -> Timing:
    """The Timing a correct lowering of the integer ``snn`` (for the T it was quantized for) must state."""
    T = int(snn.T)
    by_name = {p.name: p for p in snn.populations}

    @cache
    def first_input(name: str) -> int:  # longest path from the input, walked backwards
        sources = [pr.source for pr in by_name[name].inputs if pr.source != INPUT]
        return 1 + max((first_output(s) for s in sources), default=0)

    @cache
    def first_output(name: str) -> int:
        return first_input(name) + _first_output_delay(snn, by_name[name].kind, T)

    S = snn.steps(T)
    busy = max((_first_output_delay(snn, p.kind, T) for p in snn.hidden), default=0) + S
    readout = snn.readout.name
    hidden = {p.name: first_output(p.name) for p in snn.hidden}
    return Timing(T=T, period=busy + 1, input_start={p.name: first_input(p.name) for p in snn.populations},
                  output_start={**hidden, readout: first_input(readout)},
                  length={**{k: S for k in hidden}, readout: T}, readout=readout)
