"""A network of Lava processes, described as data: what ``sim`` simulates and the Lava worker builds.

Every field carries the raw parameter the stock Lava process receives (``du``, ``dv``, ``vth`` of
``LIF``/``LIFReset``; ``weights``, ``weight_exp``, ``num_weight_bits``, ``sign_mode`` of
``Dense``/``Sparse``/``DelaySparse``; the kernel of ``Conv``), so the simulator's arithmetic and
Lava's can be compared parameter by parameter. Arrays are in PyTorch layout (populations
(C, H, W) or (N,), dense matrices on flattened (C, H, W) vectors, conv kernels
(C_out, C_in / groups, kH, kW)); the Lava worker converts to Lava's (X, Y, C) layout itself.

Time: steps are numbered from 1 as in Lava. ``CurrentSource`` models an ``io.source.RingBuffer``
wired straight into a LIF's ``a_in`` (no delay): for a sample whose window starts at step s it
sends ``value`` at steps s .. s+T-1, ``-quench`` at step s+T (the flush step), and 0 otherwise.
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
class DenseProcess:
    name: str
    src: str
    dst: str
    weights: np.ndarray | sparse.csr_matrix  # (n_out, n_in) int64, raw Lava values
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str | None = None  # None: Lava determines it from the weights
    delay: int = 0  # uniform axonal delay (DelaySparse); arrives at t + 1 + delay
    sparse: bool = False  # Sparse instead of Dense (same arithmetic)


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


@dataclass
class CurrentSource:
    name: str
    dst: str
    start: int  # first step of the window (1-based) for the first sample
    value: np.ndarray  # (N,) int64 constant part (bias)
    quench: int  # sent negated in the flush step
    adds_input: bool = False  # add the per-sample input current of ``dst``


@dataclass
class ProcessNet:
    T: int
    period: int  # steps between consecutive streamed samples
    lifs: list[LIFProcess]
    synapses: list[DenseProcess | ConvProcess]
    sources: list[CurrentSource]
    readout: str  # the LIF whose u carries the summed logits
    act_shift: int = 6
    meta: dict = field(default_factory=dict)

    def lif(self, name: str) -> LIFProcess:
        return next(p for p in self.lifs if p.name == name)

    @property
    def frame(self) -> int:
        """Steps from a sample's first step to the readout's last window step."""
        start = self.window_start(self.readout)
        return (start or 1) + self.T - 1

    def window_start(self, name: str) -> int | None:
        """First step (1-based) of the LIF's window: where its current source starts; None without one."""
        return next((s.start for s in self.sources if s.dst == name), None)
