"""``torch_float`` / ``torch_int``: the zero-delay PyTorch reference as a target."""

from __future__ import annotations

import numpy as np

from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.oracle.reference import run_reference


class TorchTarget:
    """``torch_int`` runs the deployment's integer SNN, ``torch_float`` its float SNN, both for its T."""

    pipelined = False
    streams = False

    def __init__(self, integer: bool, batch: int = 64, device: str = "cpu") -> None:
        self.integer = integer
        self.name = "torch_int" if integer else "torch_float"
        self.batch = batch
        self.device = device

    def run(self, deployment: Deployment, x: np.ndarray, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        snn = deployment.snn if self.integer else deployment.float_graph()
        return run_reference(snn, x, deployment.T, record=record, batch=self.batch, device=self.device,
                             sample_ids=sample_ids)
