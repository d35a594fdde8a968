"""The spiking graph IR: populations of integrate-and-fire neurons and the projections between them.

The same dataclasses describe the float SNN that :func:`convert` makes and the integer SNN that
:func:`quantize` makes (``SNNGraph.integer``). Conventions shared by every runner:

* Neuron (``kind == "if"``), zero synaptic delay, steps t = 1..T::

      m(t) = v(t-1) + sum_p W_p s_p(t) + bias + time_bias[t]      v(0) = v_init
      s(t) = m(t) >= threshold
      v(t) = m(t) - threshold * s(t)                # reset by subtraction

  ``SNNGraph.neuron`` swaps this model for COS or TPP (see :mod:`spikeport.toolchain.neurons`).

  Spike amplitudes are folded into the weights, so ``s`` is 0/1 everywhere.
* The readout (``kind == "readout"``, always the last population) does not spike; its output is
  the sum over steps of ``sum_p W_p s_p(t) + bias``.
* A projection from :data:`INPUT` is the analog (direct) input: ``W x`` is the same current at
  every step. In an integer graph it stays float and is rounded to the population's membrane
  unit once per sample (``Projection.unit``), which is what the host sends to the chip.
* Integer graphs: the effective weight is ``weight * 2**weight_exp``; ``weight`` is the 8-bit
  mantissa, thresholds, initial potentials and biases are integers in membrane units.
* Arrays are in PyTorch layout: populations are (C, H, W) or (N,), dense weights act on the
  flattened (C, H, W) vector, conv weights are (C_out, C_in / groups, kH, kW).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

INPUT = "input"
Pair = tuple[int, int]


@dataclass
class ConvSynapse:
    weight: np.ndarray  # (C_out, C_in / groups, kH, kW)
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    @property
    def fan_in(self) -> int:
        return int(np.prod(self.weight.shape[1:]))


@dataclass
class DenseSynapse:
    weight: np.ndarray  # (n_out, n_in) on flattened (C, H, W) vectors
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])


Synapse = ConvSynapse | DenseSynapse


@dataclass
class Projection:
    source: str  # a population name, or INPUT
    synapse: Synapse
    weight_exp: int = 0  # integer graphs: effective weight = weight * 2**weight_exp
    unit: float | None = None  # integer graphs, INPUT projections only: membrane unit of the current

    def effective_weight(self) -> np.ndarray:
        w = self.synapse.weight
        return w * (2.0 ** self.weight_exp) if self.weight_exp else w


@dataclass
class Population:
    name: str
    shape: tuple[int, ...]
    kind: Literal["if", "readout"]
    threshold: float  # integer graphs: an int; 0 for the readout
    v_init: float  # integer graphs: an int
    bias: np.ndarray  # per neuron, shaped like ``shape``
    inputs: list[Projection] = field(default_factory=list)
    origin: str = ""  # the ANN layers it was made from
    time_bias: np.ndarray | None = None  # FTBC: (T, ...) added at step t, broadcast to ``shape``

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


NEURONS = ("if", "cos", "tpp")


@dataclass
class SNNGraph:
    input_shape: tuple[int, ...]
    populations: list[Population]  # topological order; the last one is the readout
    integer: bool = False
    meta: dict = field(default_factory=dict)
    neuron: str = "if"  # the model of every hidden population: "if", "cos" (rho) or "tpp" (seed, v_init)
    neuron_params: dict = field(default_factory=dict)

    def steps(self, T: int) -> int:
        """Output steps of each hidden layer for a T-step readout (COS runs max(T, rho))."""
        return max(T, int(self.neuron_params["rho"])) if self.neuron == "cos" else T

    @property
    def readout(self) -> Population:
        return self.populations[-1]

    @property
    def hidden(self) -> list[Population]:
        return self.populations[:-1]

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def summary(self) -> str:
        rows = []
        for p in self.populations:
            srcs = ", ".join(f"{pr.source}:{type(pr.synapse).__name__[:-7].lower()}" for pr in p.inputs)
            thr = f"theta={p.threshold:g}" if p.kind == "if" else "readout"
            rows.append(f"{p.name:<12} {p.kind:<8} {p.shape!s:<16} {thr:<18} <- {srcs}")
        return "\n".join(rows)
