"""``torch_float`` / ``torch_int``: the zero-delay PyTorch reference as a target."""

from __future__ import annotations

import numpy as np

from spikeport.targets.base import check_graph
from spikeport.toolchain.ir.snn import SNNGraph
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.oracle.reference import run_reference


class TorchTarget:
    pipelined = False
    streams = False

    def __init__(self, integer: bool, batch: int = 64, device: str = "cpu") -> None:
        self.needs_integer = integer
        self.name = "torch_int" if integer else "torch_float"
        self.batch = batch
        self.device = device

    def run(self, snn: SNNGraph, x: np.ndarray, T: int, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        check_graph(self, snn)
        return run_reference(snn, x, T, record=record, batch=self.batch, device=self.device, sample_ids=sample_ids)


