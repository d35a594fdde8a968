"""spikeport's own processes for COS, TPP, graded spikes and the spiking max-pool (CPU-only: Python
process models).

Their arithmetic is ``method_kernels.py``, the same code ``sim`` runs; Lava contributes the runtime:
message passing, the stock synapses around them, the schedule of the streamed samples. The PyTorch
reference implements both methods independently.
"""

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from method_kernels import COSKernel, GradedKernel, MaxPoolKernel, TPPKernel
from prng import prng_u32


class COSNeuron(AbstractProcess):
    """Calibrating Offset Spikes neurons; see ``method_kernels.COSKernel``."""

    def __init__(self, *, shape, theta, v_init, rho, S, start, period, name=None):
        super().__init__(shape=shape, theta=theta, v_init=v_init, rho=rho, S=S, start=start, period=period,
                         name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class TPPNeuron(AbstractProcess):
    """Two-phase probabilistic neurons; see ``method_kernels.TPPKernel``. ``neuron_ids`` give the PRNG
    index (PyTorch flat order) of each neuron in Lava order, ``sample_ids`` the id of each streamed
    sample (empty: the window index)."""

    def __init__(self, *, shape, theta, v_init, T, start, period, seed, layer, neuron_ids, sample_ids, name=None):
        super().__init__(shape=shape, theta=theta, v_init=v_init, T=T, start=start, period=period, seed=seed,
                         layer=layer, neuron_ids=neuron_ids, sample_ids=sample_ids, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class GradedNeuron(AbstractProcess):
    """Graded-spike neurons; see ``method_kernels.GradedKernel``. ``s_out`` carries the payloads
    (0..levels); the synapses it feeds need ``num_message_bits`` set (Lava treats a binary synapse's
    input as 0/1)."""

    def __init__(self, *, shape, theta, v_init, levels, start, period, length, name=None):
        super().__init__(shape=shape, theta=theta, v_init=v_init, levels=levels, start=start, period=period,
                         length=length, name=name)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)


class _WindowedModel(PyLoihiProcessModel):
    """Window j = 0 restarts every ``period`` steps from ``start``; outputs are spikes (0/1, or the
    payloads of graded spikes)."""

    def _setup(self, kernel):
        # prefixed names: PyLoihiProcessModel already has attributes such as start() and shape
        p = self.proc_params
        self._sp_shape, self._sp_t0, self._sp_period = tuple(p["shape"]), p["start"], p["period"]
        self._sp_kernel = kernel
        self._sp_window = -1

    def run_spk(self):
        a = self.a_in.recv().astype(np.int64).reshape(-1)
        t = self.time_step
        s = np.zeros(a.shape, dtype=np.int64)
        if t >= self._sp_t0:
            j = (t - self._sp_t0) % self._sp_period
            if j == 0:
                self._sp_kernel.reset()
                self._sp_window = (t - self._sp_t0) // self._sp_period
            s = self._sp_step(j, a)
        self.s_out.send(s.reshape(self._sp_shape).astype(np.int32))

    def _sp_step(self, j, a):
        return self._sp_kernel.step(j, a)


@implements(proc=COSNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCOSNeuronModel(_WindowedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        n = int(np.prod(p["shape"]))
        self._setup(COSKernel(np, (n,), p["theta"], p["v_init"], p["rho"], p["S"]))


@implements(proc=GradedNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyGradedNeuronModel(_WindowedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        n = int(np.prod(p["shape"]))
        self._setup(GradedKernel(np, (n,), p["theta"], p["v_init"], p["levels"], p["length"]))


@implements(proc=TPPNeuron, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyTPPNeuronModel(_WindowedModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        n = int(np.prod(p["shape"]))
        self._sp_samples = np.asarray(p["sample_ids"], dtype=np.int64)
        self._setup(TPPKernel(np, prng_u32, (n,), p["theta"], p["v_init"], p["T"], p["seed"], p["layer"],
                              np.asarray(p["neuron_ids"], dtype=np.int64)))

    def _sp_step(self, j, a):
        if not len(self._sp_samples):  # no ids given: window w is sample w (an open-ended stream)
            return self._sp_kernel.step(j, a, self._sp_window)
        if self._sp_window >= len(self._sp_samples):  # the tail of the run, after the last sample
            return np.zeros(a.shape, dtype=bool)
        return self._sp_kernel.step(j, a, self._sp_samples[self._sp_window])


class MaxPoolGate(AbstractProcess):
    """The spiking max-pool; see ``method_kernels.MaxPoolKernel``. ``s_in`` connects straight to the
    source's ``s_out``. ``index`` (N_out, K) lists each window's sources in PyTorch flat order;
    ``in_order`` / ``out_order`` give the PyTorch flat index of each Lava-order input / output."""

    def __init__(self, *, in_shape, shape, index, in_order, out_order, start, period, length, name=None):
        super().__init__(in_shape=in_shape, shape=shape, index=index, in_order=in_order, out_order=out_order,
                         start=start, period=period, length=length, name=name)
        self.s_in = InPort(shape=in_shape)
        self.s_out = OutPort(shape=shape)


@implements(proc=MaxPoolGate, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyMaxPoolGateModel(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = proc_params
        self._sp_shape, self._sp_t0 = tuple(p["shape"]), p["start"]
        self._sp_period, self._sp_length = p["period"], p["length"]
        self._sp_in_order = np.asarray(p["in_order"], dtype=np.int64)
        self._sp_out_order = np.asarray(p["out_order"], dtype=np.int64)
        index = np.asarray(p["index"], dtype=np.int64)
        self._sp_kernel = MaxPoolKernel(np, 1, len(self._sp_in_order), index)
        self._sp_kernel.reset()
        self._sp_next = np.zeros(self._sp_shape, dtype=np.int32)

    def run_spk(self):
        # send first, as Lava's Dense does: the spikes received now answer in the next step
        self.s_out.send(self._sp_next)
        raw = self.s_in.recv().reshape(-1)
        t = self.time_step + 1  # the step these inputs are answered in
        out = np.zeros(len(self._sp_out_order), dtype=bool)
        if t >= self._sp_t0:
            j = (t - self._sp_t0) % self._sp_period
            if j == 0:
                self._sp_kernel.reset()
            if j < self._sp_length:
                x = np.zeros(len(self._sp_in_order), dtype=np.int64)
                x[self._sp_in_order] = raw != 0  # Lava order -> PyTorch order
                out = self._sp_kernel.step(x.reshape(1, -1))[0]
        self._sp_next = out[self._sp_out_order].reshape(self._sp_shape).astype(np.int32)
