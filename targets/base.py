"""The one interface every target keeps (the registry by name is :mod:`spikeport.targets.registry`).

``run(deployment, x, record, sample_ids)`` takes the compiled
:class:`~spikeport.toolchain.ir.deployment.Deployment` (its integer SNN, its lowered process network,
its T; ``torch_float`` runs its float SNN) and raw input samples, and returns a :class:`Trace`.
``sample_ids`` name the samples for TPP's random numbers (default: their positions in ``x``).
Zero-delay targets return T steps; pipelined ones return their raw steps per sample, with each
population's window start recorded (``verify`` re-derives those shifts independently). A target
never lowers: it runs what the deployment holds, building its own models once per deployment.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.trace import Trace


class Target(Protocol):
    name: str
    pipelined: bool
    streams: bool  # samples run one after another, state carried (else side by side, each from a clean state)

    def run(self, deployment: Deployment, x: np.ndarray, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace: ...
