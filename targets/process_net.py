"""A network of Lava processes, described as data: what ``sim`` simulates and the Lava worker builds.

Every field carries the raw parameter the stock Lava process receives (``du``, ``dv``, ``vth`` of
``LIF``/``LIFReset``; ``weights``, ``weight_exp``, ``num_weight_bits``, ``sign_mode`` of
``Dense``/``Sparse``/``DelaySparse``; the kernel of ``Conv``), so the simulator's arithmetic and
Lava's can be compared parameter by parameter. Arrays are in PyTorch layout (populations
(C, H, W) or (N,), dense matrices on flattened (C, H, W) vectors, conv kernels
(C_out, C_in / groups, kH, kW)); the Lava worker converts to Lava's (X, Y, C) layout itself.

Time: steps are numbered from 1 as in Lava. ``CurrentSource`` models an ``io.source.RingBuffer``
wired straight into a neuron's ``a_in`` (no delay): for a sample whose window starts at step s it
sends ``value`` (plus ``schedule[j]`` at window step j, FTBC's time-indexed bias) at steps
s .. s+L-1 for a window of L steps, ``-quench`` at step s+L (the flush step), and 0 otherwise.
Dense and Conv deliver one step after the spike (plus ``delay`` for DelaySparse).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

SIGN_MODES = ("mixed", "exc", "inh")


@dataclass
class LIFProcess:
    name: str
    shape: tuple[int, ...]
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray | int = 0
    bias_exp: int = 0
    reset_interval: int = 0  # 0: plain LIF; otherwise LIFReset
    reset_offset: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class COSProcess:
    """spikeport's own COS neuron (``procs/neurons.py``; CPU-only in Lava): a rho-step pre-run on
    the live input fixes each neuron's initial potential, then the buffered input is replayed for
    S steps (see ``kernels.COSKernel``). Window j = 0 starts at ``start`` and repeats every ``period``."""

    name: str
    shape: tuple[int, ...]
    theta: int
    v_init: int
    rho: int
    S: int
    start: int
    period: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class TPPProcess:
    """spikeport's own two-phase probabilistic neuron (CPU-only in Lava): accumulate T steps, fire T
    steps with the shared PRNG keyed by (seed, layer, sample id, neuron, step)."""

    name: str
    shape: tuple[int, ...]
    theta: int
    v_init: int
    T: int
    start: int
    period: int
    seed: int
    layer: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


NeuronProcess = LIFProcess | COSProcess | TPPProcess


@dataclass
class DenseProcess:
    name: str
    src: str
    dst: str
    weights: np.ndarray | sparse.csr_matrix  # (n_out, n_in) int64, raw Lava values
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str | None = None  # None: Lava determines it from the weights
    delay: int | np.ndarray = 0  # axonal delay, uniform or per synapse (DelaySparse); arrives at t + 1 + delay
    sparse: bool = False  # Sparse instead of Dense (same arithmetic)
    num_message_bits: int = 0  # 0: binary spikes; > 0: graded input values


@dataclass
class ConvProcess:
    name: str
    src: str
    dst: str
    weight: np.ndarray  # (C_out, C_in / groups, kH, kW) int64, PyTorch layout
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    num_message_bits: int = 0


@dataclass
class CurrentSource:
    name: str
    dst: str
    start: int  # first step of the window (1-based) for the first sample
    value: np.ndarray  # (N,) int64 constant part (bias)
    quench: int  # sent negated in the flush step
    adds_input: bool = False  # add the per-sample input current of ``dst``
    length: int | None = None  # window length (default: the net's T)
    schedule: np.ndarray | None = None  # (steps, N) int64 added at window step j (FTBC's time bias)

    def window(self, T: int) -> int:
        return self.length if self.length is not None else T

    def value_at(self, j: int, T: int):
        """Constant part at window step j (0-based) without the per-sample input, or None outside."""
        if 0 <= j < self.window(T):
            if self.schedule is not None and j < len(self.schedule):
                return self.value + self.schedule[j]
            return self.value
        return None


@dataclass
class ProcessNet:
    T: int
    period: int  # steps between consecutive streamed samples
    lifs: list[NeuronProcess]
    synapses: list[DenseProcess | ConvProcess]
    sources: list[CurrentSource]
    readout: str  # the LIF whose u carries the summed logits
    act_shift: int = 6
    meta: dict = field(default_factory=dict)

    def lif(self, name: str) -> LIFProcess:
        return next(p for p in self.lifs if p.name == name)

    @property
    def frame(self) -> int:
        """Steps from a sample's first step to the last output any process makes for it (the
        readout's last window step, or a COS layer's last replayed step when S > T)."""
        last = 0
        for p in self.lifs:
            if isinstance(p, COSProcess):
                end = p.start + p.rho + p.S - 1
            elif isinstance(p, TPPProcess):
                end = p.start + 2 * p.T - 1
            else:
                src = next((s for s in self.sources if s.dst == p.name), None)
                end = (src.start + src.window(self.T) - 1) if src else self.T
            last = max(last, end)
        return last

    @property
    def latency(self) -> int:
        """Steps from a sample's first input to the readout's last window step (its answer)."""
        return (self.window_start(self.readout) or 1) + self.T - 1

    def output_delay(self, name: str) -> int:
        """Steps from a neuron's first input of a window to its first output (COS: rho, TPP: T)."""
        p = self.lif(name)
        return p.rho if isinstance(p, COSProcess) else p.T if isinstance(p, TPPProcess) else 0

    def window_start(self, name: str) -> int | None:
        """First step (1-based) of the LIF's window: where its current source starts; None without one."""
        return next((s.start for s in self.sources if s.dst == name), None)
