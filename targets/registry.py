"""Targets by name. This module imports every runtime; none of them imports it back."""

from __future__ import annotations

from collections.abc import Callable

from spikeport.targets.base import Target
from spikeport.targets.lava.target import LavaTarget
from spikeport.targets.sim import SimTarget
from spikeport.targets.torch_ref import TorchTarget
from spikeport.toolchain.errors import SpikeportError

TARGETS: dict[str, Callable[..., Target]] = {
    "torch_float": lambda **kw: TorchTarget(integer=False, **kw),
    "torch_int": lambda **kw: TorchTarget(integer=True, **kw),
    "sim": SimTarget,
    "lava": LavaTarget,
}


def get_target(name: str, **options) -> Target:
    if name not in TARGETS:
        raise SpikeportError(f"unknown target {name!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[name](**options)
