"""``lava`` as a :class:`~spikeport.targets.base.Target`."""

from __future__ import annotations

import numpy as np

from spikeport.targets.lava.runner import LavaRunner
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.trace import Trace


class LavaTarget:
    """``lava``: encode the inputs, stream them through real Lava (fixed_pt) running the deployment's
    process network."""

    name = "lava"
    pipelined = True
    streams = True  # the runner streams every chunk through one Lava network

    def __init__(self, python: str | None = None, timeout: float = 900.0, chunk: int = 64, progress=None) -> None:
        self.runner = LavaRunner(python=python, timeout=timeout, chunk=chunk, progress=progress)

    def run(self, deployment: Deployment, x: np.ndarray, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        return self.runner.run(deployment.net, encode(deployment.snn, x), record=record, sample_ids=sample_ids)
