"""The one interface every target keeps, and the registry of targets by name.

``run(snn, x, T, record, sample_ids)`` takes the SNN graph (integer for every target but
``torch_float``), raw input samples and the number of time steps, and returns a :class:`Trace`.
``sample_ids`` name the samples for TPP's random numbers (default: their positions in ``x``). Zero-delay targets
return T steps; pipelined ones return their raw steps per sample, with each population's window
start recorded (``verify`` re-derives those shifts independently).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.snn import SNNGraph
from spikeport.toolchain.trace import Trace


class Target(Protocol):
    name: str
    pipelined: bool
    needs_integer: bool

    def run(self, snn: SNNGraph, x: np.ndarray, T: int, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace: ...


_REGISTRY: dict[str, Callable[..., Target]] = {}


def register(name: str):
    def deco(factory: Callable[..., Target]) -> Callable[..., Target]:
        _REGISTRY[name] = factory
        return factory
    return deco


def get_target(name: str, **options) -> Target:
    import spikeport.targets.lava.target  # register the built-in targets
    import spikeport.targets.sim
    import spikeport.targets.torch_ref  # noqa: F401

    if name not in _REGISTRY:
        raise SpikeportError(f"unknown target {name!r}; choose one of {sorted(_REGISTRY)}")
    return _REGISTRY[name](**options)


def check_graph(target: Target, snn: SNNGraph) -> None:
    if target.needs_integer and not snn.integer:
        raise SpikeportError(f"target {target.name!r} runs integer graphs; quantize the SNN first")
    if not target.needs_integer and snn.integer:
        raise SpikeportError(f"target {target.name!r} runs float graphs")
