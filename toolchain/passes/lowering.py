"""Lowering: integer SNN graph -> network of stock Lava processes (:class:`ProcessNet`).

How each population becomes stock Lava processes (docs/design.md, section 3; checked against Lava 0.10):

* IF layer: ``LIFReset(du=-1, dv=4096, vth=theta - v_init - 1)``. With ``du=-1`` the current u is
  a perfect integrator and with ``dv=4096`` v is a copy of u, so ``v > vth << 6`` is exactly
  ``m >= theta`` for ``m = v_init + u / 64``. Reset by subtraction is a self-connection with weight
  ``-theta`` (an inhibitory 8-bit mantissa with an exponent: theta is a power of two) that lands
  one step later, just before the next threshold test.
* Bias (and, for the first layer, the host's analog input current) enters u through an
  ``io.source.RingBuffer`` wired straight into ``a_in``.
* Readout: ``LIFReset(du=-1, dv=4096, vth=2**17)``: it never fires (v saturates below
  ``2**17 << 6``) and ``u >> 6`` is the sum of the logits so far.
* Synapses: Conv for convolutions (Lava ignores its weight exponent, so the kernel is the mantissa
  pre-shifted); Dense/Sparse with weights ``2 * mantissa`` and exponent ``e - 1`` (mixed-sign
  Dense weights lose their least significant bit, the doubled ones survive it exactly).
* Spiking max-pool: spikeport's own ``MaxPoolGate`` process, connected straight to its source's
  ``s_out`` (no synapse); it answers one step later, as a synaptic hop would.
* Pipelining: every hop costs one step, so a population at depth d (the first layer has depth 1)
  sees a sample from step d on. Projections that skip layers get a DelaySparse axonal delay so
  that every input of a population arrives in the same step (residual connections).
* Streaming: samples follow each other every ``T + 1`` steps. Each LIFReset clears its state at the
  first step of its window; in the flush step after the window its source sends a large negative
  current (the quench) so that no spike (and no pending self-subtraction) leaks into the next
  sample.

The seed methods:

* FTBC's per-step, per-channel bias is a time-indexed ``RingBuffer`` (the source's schedule):
  stock processes only.
* COS and TPP are neuron models no stock Lava process has; they become spikeport's own
  ``COSNeuron`` / ``TPPNeuron`` processes (CPU-only, ``runtime/neuron_procs.py``) between stock
  synapses. So do graded spikes (``GradedNeuron``): Lava 0.10's LIF sends 0/1 only; the synapses
  they feed are stock ones with ``num_message_bits`` set, which carry the payloads.
  A COS layer emits its first spike rho steps after its first input, a TPP layer T steps after;
  the depths, the delays of skip connections and the streaming period (rho + S + 1, resp. 2T + 1)
  account for that.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse as sp

from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.hardware.profiles import TargetProfile
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.procnet import (
    ConvProcess,
    COSProcess,
    CurrentSource,
    DenseProcess,
    GradedProcess,
    LIFProcess,
    MaxPoolProcess,
    ProcessNet,
    Timing,
    TPPProcess,
)
from spikeport.toolchain.ir.snn import COS, INPUT, TPP, ConvSynapse, Graded, SNNGraph
from spikeport.toolchain.ir.synapses import conv_as_matrix


def output_delay(snn: SNNGraph, T: int) -> int:
    """Steps between a hidden layer's first input and its first output spike (COS: rho, TPP: T)."""
    return snn.neuron.rho if isinstance(snn.neuron, COS) else T if isinstance(snn.neuron, TPP) else 0


def own_delays(snn: SNNGraph, T: int) -> dict[str, int]:
    """Each population's own output delay: the neuron model's, none for a spiking max-pool."""
    delay = output_delay(snn, T)
    return {p.name: 0 if p.kind == "maxpool" else delay for p in snn.populations}


def depths(snn: SNNGraph, T: int = 1) -> dict[str, int]:
    """First step (1-based) at which each population sees a sample: 1 for input-fed layers, then
    one step per synaptic hop plus the upstream neuron's own output delay (COS: rho, TPP: T)."""
    depth: dict[str, int] = {}
    delay = own_delays(snn, T)
    for p in snn.populations:
        srcs = [depth[pr.source] + delay[pr.source] for pr in p.inputs if pr.source != INPUT]
        depth[p.name] = max(srcs) + 1 if srcs else 1
    return depth


def period(snn: SNNGraph, T: int) -> int:
    """Steps between consecutive streamed samples: each layer's busy span plus one."""
    return output_delay(snn, T) + snn.steps(T) + 1


def _self_connection(name: str, n: int, theta: int, sparse: bool, profile: TargetProfile) -> DenseProcess:
    shift = theta.bit_length() - 1
    if theta <= 0 or theta != 1 << shift:
        raise SpikeportError(f"layer {name!r}: threshold {theta} is not a power of two; the soft-reset "
                             "self-connection cannot represent it exactly")
    mant_shift = min(shift, profile.weight_bits - 1)  # inhibitory weights keep every magnitude bit
    w = sp.identity(n, dtype=np.int64, format="csr") * -(1 << mant_shift)
    return DenseProcess(f"{name}.reset", name, name, w if sparse else w.toarray(), weight_exp=shift - mant_shift,
                        num_weight_bits=profile.weight_bits, sign_mode="inh", sparse=sparse)


def deploy(snn: SNNGraph, float_snn: SNNGraph | None = None) -> Deployment:
    """The compiled artifact of an integer SNN: lowered once, for the T and the profile it was
    quantized for; ``float_snn`` is the float SNN it was quantized from (``torch_float`` runs it)."""
    return Deployment(snn, lower(snn), float_snn)


def lower(snn: SNNGraph) -> ProcessNet:
    """The Lava process network that runs ``snn`` for the ``snn.T``-step windows it was quantized
    for, streamed sample after sample, under its profile (which the network carries on)."""
    if not snn.integer or snn.T is None:
        raise SpikeportError("only integer graphs can be lowered; run quantize() first")
    profile, T = snn.profile, int(snn.T)
    P = period(snn, T)
    depth = depths(snn, T)
    delay_out = own_delays(snn, T)
    S = snn.steps(T)
    one = profile.decay_unit
    lifs, synapses, sources = [], [], []
    message_bits = {p.name: snn.neuron.message_bits for p in snn.neurons} if isinstance(snn.neuron, Graded) else {}
    for i, p in enumerate(snn.populations):
        d = depth[p.name]
        length, quench = T, 0
        if p.kind == "maxpool":  # no synapse, no bias: the gate reads its source's spikes itself
            pr = p.inputs[0]
            lifs.append(MaxPoolProcess(p.name, p.shape, pr.source, pr.synapse.in_shape, pr.synapse.window_index(),
                                       start=d, period=P, length=S))
            continue
        if p.kind == "readout":  # never fires: v saturates below vth << act_shift
            lifs.append(LIFProcess(p.name, p.shape, du=-1, dv=one, vth=profile.u_limit,
                                   reset_interval=P, reset_offset=d % P))
        elif isinstance(snn.neuron, COS):
            lifs.append(COSProcess(p.name, p.shape, int(p.threshold), int(p.v_init), snn.neuron.rho, S, start=d,
                                   period=P))
            length = S
        elif isinstance(snn.neuron, TPP):
            lifs.append(TPPProcess(p.name, p.shape, int(p.threshold), int(p.v_init), T, start=d, period=P,
                                   seed=snn.neuron.seed, layer=i))
        elif isinstance(snn.neuron, Graded):
            lifs.append(GradedProcess(p.name, p.shape, int(p.threshold), int(p.v_init), snn.neuron.levels, start=d,
                                      period=P, length=S))
        else:
            vth = int(p.threshold) - int(p.v_init) - 1
            lifs.append(LIFProcess(p.name, p.shape, du=-1, dv=one, vth=vth, reset_interval=P, reset_offset=d % P))
            synapses.append(_self_connection(p.name, p.size, int(p.threshold), len(p.shape) > 1, profile))
            quench = profile.quench
        adds_input = False
        for k, pr in enumerate(p.inputs):
            if pr.source == INPUT:
                adds_input = True
                continue
            delay = d - depth[pr.source] - delay_out[pr.source] - 1
            name = f"{p.name}.in{k}"
            mant = pr.synapse.weight.astype(np.int64)
            bits = message_bits.get(pr.source, 0)  # graded payloads need Lava's num_message_bits
            if isinstance(pr.synapse, ConvSynapse) and delay == 0:
                s = pr.synapse
                synapses.append(ConvProcess(name, pr.source, p.name, mant << pr.weight_exp, s.in_shape,
                                            s.out_shape, s.stride, s.padding, s.dilation, s.groups,
                                            num_message_bits=bits))
                continue
            if isinstance(pr.synapse, ConvSynapse):
                s = pr.synapse
                w = conv_as_matrix(s, mant)
                conv = ConvProcess(name, pr.source, p.name, mant * 2, s.in_shape, s.out_shape, s.stride, s.padding,
                                   s.dilation, s.groups, num_message_bits=bits)
                synapses.append(DenseProcess(name, pr.source, p.name, w * 2, weight_exp=pr.weight_exp - 1,
                                             sign_mode="mixed", delay=delay, sparse=True, num_message_bits=bits,
                                             conv=conv))
            else:
                synapses.append(DenseProcess(name, pr.source, p.name, mant * 2, weight_exp=pr.weight_exp - 1,
                                             sign_mode="mixed", delay=delay, sparse=delay > 0 or sp.issparse(mant),
                                             num_message_bits=bits))
        schedule = None
        if p.time_bias is not None:
            schedule = np.broadcast_to(p.time_bias, (len(p.time_bias), *p.shape)).reshape(len(p.time_bias), -1)
            schedule = schedule.astype(np.int64).copy()
        sources.append(CurrentSource(f"{p.name}.bias", p.name, start=d,
                                     value=np.asarray(p.bias, dtype=np.int64).reshape(-1),
                                     quench=quench, adds_input=adds_input, length=length, schedule=schedule))
    hidden_out = {p.name: depth[p.name] + delay_out[p.name] for p in snn.hidden}
    timing = Timing(T=T, period=P, input_start=dict(depth),
                    output_start={**hidden_out, snn.readout.name: depth[snn.readout.name]},
                    length={**{p.name: S for p in snn.hidden}, snn.readout.name: T}, readout=snn.readout.name)
    return ProcessNet(lifs, synapses, sources, readout=snn.readout.name, T=T, period=P, profile=profile,
                      timing=timing, meta={"depth": depth})
