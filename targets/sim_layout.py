"""The neuron order ``sim`` keeps a population in: channels-last where convolutions read or write it.

A network of Lava processes numbers the neurons of a (C, H, W) population channel by channel (PyTorch
layout). oneDNN's convolutions run fastest on channels-last tensors, and a population stored in
(H, W, C) order is exactly such a tensor: a convolution's channels-last output is then the
population's input without a copy, and its spikes are the next convolution's channels-last input
without one (at batch 64 on the MNIST-5k CNN the two layout copies per convolution took a sixth of
``sim``'s time). Renumbering neurons changes nothing in Lava's arithmetic, which is per neuron and
per synapse: the dense matrices, biases and source values follow the new numbering, the
convolutions are told the layout they read and write (``ConvModel``'s ``in_hwc`` / ``out_hwc``), and
what ``sim`` reports (recorded spikes and states) is put back into the network's own order.

Only LIF populations of images of at least ``CHANNELS_LAST_MIN_PIXELS`` pixels (below that oneDNN is
faster on the plain layout) touched by convolutions and otherwise by dense synapses are renumbered: the
readout, populations of spikeport's own neuron processes (their kernels and TPP's random numbers
are keyed by neuron index) and max-pool sources keep their order.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from spikeport.targets.sim_models import CHANNELS_LAST_MIN_PIXELS
from spikeport.toolchain.ir.procnet import ConvProcess, DenseProcess, LIFProcess, MaxPoolProcess, ProcessNet

__all__ = ["channels_last_order", "permute_net", "restore_order"]


def channels_last_order(net: ProcessNet) -> dict[str, np.ndarray]:
    """For each population ``sim`` keeps channels-last, the network index of the neuron at each
    position: ``order[p][i]`` is the (C, H, W)-flat index of the neuron stored at i."""
    pooled = {p.src for p in net.lifs if isinstance(p, MaxPoolProcess)}
    out = {}
    for p in net.lifs:
        if (not isinstance(p, LIFProcess) or p.name == net.readout or p.name in pooled or len(p.shape) != 3
                or p.shape[0] < 2 or p.shape[1] * p.shape[2] < CHANNELS_LAST_MIN_PIXELS):
            continue
        touching = [s for s in net.synapses if p.name in (s.src, s.dst)]
        if any(isinstance(s, ConvProcess) for s in touching) and all(
                isinstance(s, ConvProcess | DenseProcess) for s in touching):
            c, h, w = p.shape
            out[p.name] = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
    return out


def permute_net(net: ProcessNet, order: dict[str, np.ndarray]) -> ProcessNet:
    """``net`` with the neurons of ``order``'s populations renumbered: the same network."""
    if not order:
        return net

    def lif(p):
        if p.name not in order or np.ndim(p.bias_mant) == 0:
            return p
        return replace(p, bias_mant=np.ascontiguousarray(np.asarray(p.bias_mant)[..., order[p.name]]))

    def dense(s: DenseProcess) -> DenseProcess:
        rows, cols = order.get(s.dst), order.get(s.src)
        if rows is None and cols is None:
            return s
        w, delay = s.weights, s.delay
        if rows is not None:
            w, delay = w[rows], delay if np.ndim(delay) == 0 else np.asarray(delay)[rows]
        if cols is not None:
            w, delay = w[:, cols], delay if np.ndim(delay) == 0 else np.asarray(delay)[:, cols]
        return replace(s, weights=w, delay=delay)

    def source(s):
        if s.dst not in order:
            return s
        o = order[s.dst]
        return replace(s, value=np.asarray(s.value)[o],
                       schedule=None if s.schedule is None else np.ascontiguousarray(s.schedule[:, o]))

    return replace(net, lifs=[lif(p) for p in net.lifs],
                   synapses=[dense(s) if isinstance(s, DenseProcess) else s for s in net.synapses],
                   sources=[source(s) for s in net.sources])


def restore_order(values: dict[str, np.ndarray], order: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-neuron arrays (neurons on the last axis) from ``sim``'s order back to the network's."""
    out = {}
    for name, v in values.items():
        if name in order:
            back = np.empty_like(order[name])
            back[order[name]] = np.arange(len(back))
            v = v[..., back]
        out[name] = v
    return out
