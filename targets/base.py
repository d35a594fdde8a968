"""The one interface every target keeps (the registry by name is :mod:`spikeport.targets.registry`).

``run(snn, x, T, record, sample_ids)`` takes the SNN graph (integer for every target but
``torch_float``), raw input samples and the number of time steps, and returns a :class:`Trace`.
``sample_ids`` name the samples for TPP's random numbers (default: their positions in ``x``). Zero-delay targets
return T steps; pipelined ones return their raw steps per sample, with each population's window
start recorded (``verify`` re-derives those shifts independently).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.ir.snn import SNNGraph
from spikeport.toolchain.ir.trace import Trace


class Target(Protocol):
    name: str
    pipelined: bool
    needs_integer: bool
    streams: bool  # samples run one after another, state carried (else side by side, each from a clean state)

    def run(self, snn: SNNGraph, x: np.ndarray, T: int, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace: ...


def check_graph(target: Target, snn: SNNGraph) -> None:
    if target.needs_integer and not snn.integer:
        raise SpikeportError(f"target {target.name!r} runs integer graphs; quantize the SNN first")
    if not target.needs_integer and snn.integer:
        raise SpikeportError(f"target {target.name!r} runs float graphs")
