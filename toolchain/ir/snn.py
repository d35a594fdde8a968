"""The spiking graph IR: populations of integrate-and-fire neurons and the projections between them.

The same dataclasses describe the float SNN that :func:`convert` makes and the integer SNN that
:func:`quantize` makes (``SNNGraph.integer``). Conventions shared by every runner:

* Neuron (``kind == "if"``), zero synaptic delay, steps t = 1..T::

      m(t) = v(t-1) + sum_p W_p s_p(t) + bias + time_bias[t]      v(0) = v_init
      s(t) = m(t) >= threshold
      v(t) = m(t) - threshold * s(t)                # reset by subtraction

  ``SNNGraph.neuron`` swaps this model for :class:`COS` or :class:`TPP` (their equations are in their
  docstrings; the reference implements them in :mod:`spikeport.toolchain.oracle.neurons`).

  Spike amplitudes are folded into the weights, so ``s`` is 0/1 everywhere (graded spikes,
  :class:`Graded`, carry an integer payload 0..levels instead).
* The readout (``kind == "readout"``, always the last population) does not spike; its output is
  the sum over steps of ``sum_p W_p s_p(t) + bias``.
* Spiking max-pool (``kind == "maxpool"``): one :class:`PoolSynapse` input from a spiking
  population and no state but counts::

      c(t) = c(t-1) + s_src(t)                      c(0) = 0, per source neuron
      M(t) = max over the window of c(t)            M(0) = 0
      s(t) = M(t) > M(t-1)

  M grows by at most one per step, so the population's spike count is the largest spike count in
  its window: the max-pool of the rates. Each spike stands for as much as a source spike
  (``threshold`` is the source's, informational; weights out of it carry the amplitude).
* A projection from :data:`INPUT` is the analog (direct) input: ``W x`` is the same current at
  every step. In an integer graph it stays float and is rounded to the population's membrane
  unit once per sample (``Projection.unit``), which is what the host sends to the chip.
* Integer graphs (``profile`` set by :func:`quantize`): the effective weight is
  ``weight * 2**weight_exp``; ``weight`` is the signed mantissa of the profile's width, thresholds,
  initial potentials and biases are integers in membrane units, and the ranges were calibrated for
  ``T`` steps.
* Arrays are in PyTorch layout: populations are (C, H, W) or (N,), dense weights act on the
  flattened (C, H, W) vector, conv weights are (C_out, C_in / groups, kH, kW).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import sparse

from spikeport.toolchain.hardware.profiles import TargetProfile

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


@dataclass
class SparseSynapse:
    """A connection that is neither one convolution nor small enough for a dense matrix: a compressed
    sparse row matrix (n_out, n_in) on flattened (C, H, W) vectors (for example an average or
    substituted max-pool with padding followed by a convolution, which do not fuse into one)."""

    weight: sparse.csr_matrix
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    @property
    def fan_in(self) -> int:
        return int(np.diff(self.weight.indptr).max()) if self.weight.shape[0] else 0


@dataclass
class PoolSynapse:
    """What a spiking max-pool population reads: the spikes of its source over (C, H, W) windows.

    No weights: the population emits a spike at step t exactly when the largest spike count of a
    window so far, ``max_i count_i(t)``, grows (it grows by at most one per step). Its spike count
    over the window is therefore the largest of its inputs' counts: the max-pool of the rates.
    """

    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False

    @property
    def fan_in(self) -> int:
        return self.kernel[0] * self.kernel[1]

    def window_index(self) -> np.ndarray:
        """(N_out, kH*kW) positions in the flattened source read by each output, -1 outside it."""
        c, h, w = self.in_shape
        _, oh, ow = self.out_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        oc, oy, ox = (a.reshape(-1, 1) for a in np.meshgrid(np.arange(c), np.arange(oh), np.arange(ow), indexing="ij"))
        dy, dx = (a.reshape(1, -1) for a in np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij"))
        iy, ix = oy * sh - ph + dy, ox * sw - pw + dx
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        return np.where(inside, (oc * h + iy) * w + ix, -1).astype(np.int64)


Synapse = ConvSynapse | DenseSynapse | SparseSynapse | PoolSynapse


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
    kind: Literal["if", "readout", "maxpool"]
    threshold: float  # integer graphs: an int; 0 for the readout
    v_init: float  # integer graphs: an int
    bias: np.ndarray  # per neuron, shaped like ``shape``
    inputs: list[Projection] = field(default_factory=list)
    origin: str = ""  # the ANN layers it was made from
    time_bias: np.ndarray | None = None  # FTBC: (T, ...) added at step t, broadcast to ``shape``

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class IF:
    """Integrate-and-fire with reset by subtraction (the equations above): QCFS, FTBC, NQ."""


@dataclass(frozen=True)
class COS:
    """Calibrating Offset Spikes (Hao et al., ICLR 2023): each hidden layer first runs ``rho`` steps of
    its input as an IF neuron (the pre-run); where that neuron fired one spike too many (``v < 0``)
    or too few (``v >= theta``), its initial potential is shifted per sample (by the smallest integer
    shift the authors' inequalities allow), and the input is replayed from its first step for
    ``max(T, rho)`` real steps. Latency is honestly ``T + rho`` per layer."""

    rho: int

    def __post_init__(self) -> None:
        if self.rho < 1:
            raise ValueError(f"COS needs a pre-run of at least one step, got rho={self.rho}")


@dataclass(frozen=True)
class TPP:
    """Two-phase probabilistic neurons (Bojkovic et al., ICML 2025): accumulate the T input steps
    into v (from ``v_init``), then fire for T steps with probability ``clip(v / (theta * steps left),
    0, 1)``, subtracting theta per spike; the uniform numbers come from :mod:`prng`, keyed by
    (``seed``, layer, sample, neuron, step)."""

    seed: int
    v_init: Literal["zero", "half"] = "zero"


@dataclass(frozen=True)
class Graded:
    """Graded spikes (a Loihi 2 capability: a spike message carries an integer payload). Each step
    a neuron sends the number of thresholds its potential has crossed, at most ``levels``, and
    subtracts that many::

        m(t) = v(t-1) + I(t);   s(t) = clip(floor(m(t) / theta), 0, levels);   v(t) = m(t) - theta * s(t)

    With theta = lambda / L, v_init = theta / 2 and ``levels = L`` one step is exactly the QCFS
    activation lambda / L * clip(floor(z L / lambda + 1/2), 0, L); over T steps the payloads sum
    to what T steps of a binary IF neuron with L times the resolution would send. Spike amplitudes
    stay folded into the weights: a payload s weighs s times a unit spike."""

    levels: int

    def __post_init__(self) -> None:
        if not 1 <= self.levels <= 255:
            raise ValueError(f"graded spikes carry 1 to 255 levels, got {self.levels}")

    @property
    def message_bits(self) -> int:
        """Bits of a payload (Lava's ``num_message_bits`` on the synapses it feeds)."""
        return self.levels.bit_length()


Neuron = IF | COS | TPP | Graded


@dataclass
class SNNGraph:
    input_shape: tuple[int, ...]
    populations: list[Population]  # topological order; the last one is the readout
    neuron: Neuron = field(default_factory=IF)  # the model of every hidden population
    profile: TargetProfile | None = None  # integer graphs: the target the integers are sized for
    T: int | None = None  # integer graphs: the window the ranges were calibrated for
    meta: dict = field(default_factory=dict)  # informational only (model name, method details, report)

    def __post_init__(self) -> None:
        names = [p.name for p in self.populations]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"populations {dup} appear more than once: population names must be unique")
        if self.populations and (self.populations[-1].kind != "readout"
                                 or any(p.kind == "readout" for p in self.populations[:-1])):
            raise ValueError("the last population, and only it, must be the readout")

    @property
    def integer(self) -> bool:
        return self.profile is not None

    def steps(self, T: int) -> int:
        """Output steps of each hidden layer for a T-step readout (COS runs max(T, rho))."""
        return max(T, self.neuron.rho) if isinstance(self.neuron, COS) else T

    @property
    def readout(self) -> Population:
        return self.populations[-1]

    @property
    def hidden(self) -> list[Population]:
        return self.populations[:-1]

    @property
    def neurons(self) -> list[Population]:
        """The hidden populations of neurons (every hidden one but the spiking max-pools)."""
        return [p for p in self.populations[:-1] if p.kind == "if"]

    def population(self, name: str) -> Population:
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def summary(self) -> str:
        rows = []
        for p in self.populations:
            srcs = ", ".join(f"{pr.source}:{type(pr.synapse).__name__[:-7].lower()}" for pr in p.inputs)
            thr = f"theta={p.threshold:g}" if p.kind == "if" else p.kind
            rows.append(f"{p.name:<12} {p.kind:<8} {p.shape!s:<16} {thr:<18} <- {srcs}")
        return "\n".join(rows)
