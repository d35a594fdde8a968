"""Recorders that write each step straight into a numpy memmap file.

Lava's ``Var.get()`` moves one element per message (about 15 us each), so reading the spikes of
a 12,544-neuron layer over a few hundred steps back through the runtime would take minutes. These
recorders run inside their own Lava process and write every step into a file the host reads once.
They observe the network; they do not change it (the network itself uses stock processes only).
"""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyRefPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, RefPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class SpikeRecorder(AbstractProcess):
    """Writes what arrives at ``a_in`` in step t to row t-1 of an (steps, N) int8 memmap."""

    def __init__(self, *, shape, path):
        super().__init__(shape=shape, path=path)
        self.a_in = InPort(shape=shape)


class StateProbe(AbstractProcess):
    """Writes a Var's value after step t (post-management phase) to row t-1 of an int32 memmap."""

    def __init__(self, *, var, path):
        super().__init__(shape=var.shape, path=path)
        self.state = RefPort(var.shape)
        self.state.connect_var(var)


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PySpikeRecorderModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.out = np.lib.format.open_memmap(proc_params["path"], mode="r+")

    def run_spk(self):
        self.out[self.time_step - 1] = self.a_in.recv().reshape(-1)


@implements(proc=StateProbe, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyStateProbeModel(PyLoihiProcessModel):
    state: PyRefPort = LavaPyType(PyRefPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.out = np.lib.format.open_memmap(proc_params["path"], mode="r+")

    def post_guard(self):
        return True

    def run_post_mgmt(self):
        self.out[self.time_step - 1] = self.state.read().reshape(-1)
