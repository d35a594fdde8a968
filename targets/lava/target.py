"""``lava`` as a :class:`~spikeport.targets.base.Target`."""

from __future__ import annotations

import numpy as np

from spikeport.targets.base import check_graph
from spikeport.targets.lava.runner import LavaRunner
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.procnet import ProcessNet
from spikeport.toolchain.ir.snn import SNNGraph
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.passes.lowering import lower


class LavaTarget:
    """``lava``: lower for T, encode the inputs, stream them through real Lava (fixed_pt)."""

    name = "lava"
    pipelined = True
    streams = True  # the runner streams every chunk through one Lava network
    needs_integer = True

    def __init__(self, python: str | None = None, timeout: float = 900.0, chunk: int = 64, progress=None) -> None:
        self.runner = LavaRunner(python=python, timeout=timeout, chunk=chunk, progress=progress)
        self._lowered: tuple[SNNGraph, int, ProcessNet] | None = None

    def lower(self, snn: SNNGraph, T: int) -> ProcessNet:
        """``snn`` lowered for T, once per network and T on this target (not once per chunk of samples).
        Graphs are values (every pass returns a new one), so the same object is the same network."""
        if self._lowered is None or self._lowered[0] is not snn or self._lowered[1] != T:
            self._lowered = (snn, T, lower(snn, T))
        return self._lowered[2]

    def run(self, snn: SNNGraph, x: np.ndarray, T: int, record: bool = False,
            sample_ids: np.ndarray | None = None) -> Trace:
        check_graph(self, snn)
        return self.runner.run(self.lower(snn, T), encode(snn, x), record=record, sample_ids=sample_ids)


