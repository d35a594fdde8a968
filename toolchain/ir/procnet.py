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
s .. s+L-1 for a window of L steps, ``-quench`` at step s+L (the flush step), and 0 otherwise
(:meth:`CurrentSource.pattern`). Dense and Conv deliver one step after the spike (plus ``delay``
for DelaySparse). :class:`Timing` states when each population handles each sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from spikeport.toolchain.hardware.profiles import TargetProfile


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
    """spikeport's own COS neuron (``neuron_procs.COSNeuron``; CPU-only in Lava): a rho-step pre-run on
    the live input fixes each neuron's initial potential, then the buffered input is replayed for
    S steps (see ``method_kernels.COSKernel``). Window j = 0 starts at ``start`` and repeats every ``period``."""

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


@dataclass
class GradedProcess:
    """spikeport's own graded-spike neuron (CPU-only in Lava): each window step it sends the number
    of thresholds crossed, up to ``levels``, as the payload of its spike and subtracts that many
    thresholds (``method_kernels.GradedKernel``). Window j = 0 (v = v_init) starts at ``start`` and
    repeats every ``period``; inputs after ``length`` steps of a window are ignored."""

    name: str
    shape: tuple[int, ...]
    theta: int
    v_init: int
    levels: int
    start: int
    period: int
    length: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class MaxPoolProcess:
    """spikeport's own spiking max-pool gate (CPU-only in Lava), wired straight to its source's
    ``s_out`` with no synapse: it counts each source neuron's spikes and emits a spike when the
    largest count of a window grows (``method_kernels.MaxPoolKernel``). Like a synaptic hop it
    answers one step later: source spikes of step t make its output of step t + 1. Window j = 0
    (the counts cleared) starts at ``start`` and repeats every ``period``; inputs after ``length``
    steps of a window are ignored."""

    name: str
    shape: tuple[int, ...]
    src: str
    in_shape: tuple[int, int, int]
    index: np.ndarray  # (N_out, kH*kW) flattened source positions of each window, -1 outside the source
    start: int
    period: int
    length: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape))


NeuronProcess = LIFProcess | COSProcess | TPPProcess | GradedProcess | MaxPoolProcess


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
    conv: ConvProcess | None = None  # the convolution ``weights`` is the matrix of (a delayed one: Lava's
    # Conv has no delay), kernel in the same units; Lava runs the matrix, ``sim`` may run the convolution


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

    def pattern(self, T: int) -> np.ndarray:
        """What the source sends into ``dst`` in each step of one sample's window and in its flush
        step, without the per-sample input: (window + 1, N) int64, the row ``window`` holding the
        quench. The one definition ``sim`` and the Lava worker both play back."""
        length = self.length if self.length is not None else T
        out = np.empty((length + 1, len(self.value)), dtype=np.int64)
        out[:length] = self.value
        if self.schedule is not None:
            k = min(length, len(self.schedule))
            out[:k] += self.schedule[:k]
        out[length] = -self.quench
        return out


@dataclass(frozen=True)
class Timing:
    """When a lowered network handles a sample: the contract every pipelined target keeps and
    ``verify`` holds it to. Steps are 1-based; sample i of a stream adds ``i * period``.

    Population p takes its input window from step ``input_start[p]`` and emits its output window,
    ``length[p]`` steps long (S for hidden layers, T for the readout), from ``output_start[p]``: one
    step per synaptic hop after its sources, plus its own output delay (COS: rho, TPP: T)."""

    T: int
    period: int  # steps between consecutive streamed samples
    input_start: dict[str, int]
    output_start: dict[str, int]
    length: dict[str, int]
    readout: str

    @property
    def frame(self) -> int:
        """Steps from a sample's first step to the last output any population makes for it."""
        return max(max(self.output_start[k] + self.length[k] - 1, self.input_start[k] + self.length[k] - 1)
                   for k in self.output_start)

    @property
    def latency(self) -> int:
        """Steps from a sample's first input to the readout's last window step (its answer)."""
        return self.output_start[self.readout] + self.T - 1


@dataclass
class ProcessNet:
    lifs: list[NeuronProcess]
    synapses: list[DenseProcess | ConvProcess]
    sources: list[CurrentSource]
    readout: str  # the LIF whose u carries the summed logits
    T: int = 1  # window length of the sources
    period: int = 1  # steps between consecutive streamed samples
    # the target (bit widths of the registers, Lava's rules, chip limits), always passed: lower(),
    # the netx reader, the fuzzer and hand-built test networks name it
    profile: TargetProfile = field(kw_only=True)
    timing: Timing | None = None  # lowering states it; derived for plain LIF networks
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timing is None:
            if any(not isinstance(p, LIFProcess) for p in self.lifs):
                raise ValueError("a network with COS or TPP processes needs the Timing its lowering states")
            # plain LIFs answer in the steps their sources drive them (from step 1 without a source)
            start = {p.name: next((s.start for s in self.sources if s.dst == p.name), 1) for p in self.lifs}
            self.timing = Timing(self.T, self.period, start, dict(start), {k: self.T for k in start}, self.readout)
        elif (self.timing.T, self.timing.period) != (self.T, self.period):
            raise ValueError(f"timing (T={self.timing.T}, period={self.timing.period}) differs from the network's "
                             f"(T={self.T}, period={self.period})")

    def lif(self, name: str) -> NeuronProcess:
        return next(p for p in self.lifs if p.name == name)

    @property
    def frame(self) -> int:
        return self.timing.frame

    @property
    def latency(self) -> int:
        return self.timing.latency
