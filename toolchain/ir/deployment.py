"""The compiled artifact: what ``compile`` makes once and every runner, check and report takes.

A :class:`Deployment` holds the integer SNN (sized for its profile at its T), the process network it
lowers to with that network's :class:`~spikeport.toolchain.ir.procnet.Timing`, and, where it was
compiled from one, the float SNN running the same method (what ``torch_float`` runs). T and the
profile live in the integer SNN and nowhere else; the process network is checked to agree with it.
A runner given a deployment never lowers again.
"""

from __future__ import annotations

from dataclasses import dataclass

from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.hardware.profiles import TargetProfile
from spikeport.toolchain.ir.procnet import ProcessNet, Timing
from spikeport.toolchain.ir.snn import SNNGraph


@dataclass(frozen=True, eq=False)  # identity is equality: runtimes cache what they build per deployment
class Deployment:
    snn: SNNGraph  # the integer SNN
    net: ProcessNet  # ``snn`` lowered for ``snn.T``
    float_snn: SNNGraph | None = None  # the float SNN the integer one was quantized from (same method)

    def __post_init__(self) -> None:
        if not self.snn.integer or self.snn.T is None:
            raise SpikeportError("a deployment holds an integer SNN quantized for a T (run quantize() first)")
        if self.net.T != self.snn.T or self.net.profile is not self.snn.profile:
            raise SpikeportError(f"the process network (T={self.net.T}, profile {self.net.profile.name!r}) was not "
                                 f"lowered from this SNN (T={self.snn.T}, profile {self.snn.profile.name!r})")
        if self.float_snn is not None and self.float_snn.integer:
            raise SpikeportError("float_snn must be the float SNN (the integer one is snn)")

    @property
    def T(self) -> int:
        return int(self.snn.T)

    @property
    def profile(self) -> TargetProfile:
        return self.snn.profile

    @property
    def timing(self) -> Timing:
        return self.net.timing

    def float_graph(self) -> SNNGraph:
        """The float SNN (``torch_float`` runs it), or a clear error where the deployment has none."""
        if self.float_snn is None:
            raise SpikeportError("this deployment holds no float SNN (it was made from an integer SNN alone); "
                                 "torch_float needs the float SNN: compile the model")
        return self.float_snn
