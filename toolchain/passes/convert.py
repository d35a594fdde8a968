"""ANN -> SNN conversion: every ReLU/QCFS activation becomes a population of IF neurons with reset
by subtraction, threshold theta and initial potential theta/2; the network output becomes a
non-spiking readout summed over time; the first layer gets the analog input directly. A max-pool
kept for the spiking max-pool (``normalize(..., maxpool="spiking")``) becomes a population of its
own that pools its source's spike counts (:class:`~spikeport.toolchain.ir.snn.PoolSynapse`); its
spikes stand for as much as its source's.

theta is the QCFS lambda (clipped ReLU: its clip value); for a plain ReLU it is a percentile of
the layer's positive activations over calibration samples (99.9 by default, "robust
normalisation", Rueckauer et al. 2017).
"""

from __future__ import annotations

import numpy as np
import torch

from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.interpret import run_graph
from spikeport.toolchain.ir.snn import INPUT, PoolSynapse, Population, Projection, SNNGraph
from spikeport.toolchain.passes.compose import compose_chain


def _paths(graph: ann.Graph, z: str, sources: set[str]) -> list[tuple[str, list[ann.Node]]]:
    """Every path from a source (population or input) to node ``z`` through linear ops."""
    out: list[tuple[str, list[ann.Node]]] = []

    def walk(name: str, suffix: list[ann.Node]) -> None:
        if name in sources:
            out.append((name, suffix))
            return
        node = graph.node(name)
        if isinstance(node.op, ann.Add):
            for i in node.inputs:
                walk(i, suffix)
            return
        if isinstance(node.op, ann.Concat):  # one synapse per input, into its slice of the channels
            offset = 0
            for k, i in enumerate(node.inputs):
                channels = graph.node(i).shape[0]
                place = ann.Node(f"{name}.{k}", ann.Embed(offset, node.shape[0]), [i], node.shape, node.source)
                walk(i, [place, *suffix])
                offset += channels
            return
        if not isinstance(node.op, ann.LINEAR_OPS):
            raise SpikeportError(f"{node.kind} at {name!r} cannot sit between neuron layers")
        walk(node.inputs[0], [node, *suffix])

    walk(z, [])
    return out


@torch.no_grad()
def _relu_thresholds(graph: ann.Graph, acts: list[ann.Node], calib_x: np.ndarray | None,
                     percentile: float, device: str | torch.device = "cpu") -> dict[str, float]:
    need = [a for a in acts if isinstance(a.op, ann.ReLU)]
    if not need:
        return {}
    if calib_x is None or len(calib_x) == 0:
        raise SpikeportError(f"ReLU layers {[a.name for a in need]} need calibration samples to set "
                             "their thresholds (pass calibration data)")
    values: dict[str, list[np.ndarray]] = {a.name: [] for a in need}
    for i in range(0, len(calib_x), 256):
        res = run_graph(graph, calib_x[i:i + 256], keep=set(values), device=device)
        for k in values:
            v = res[k].cpu().numpy().ravel()
            values[k].append(v[v > 0])
    out = {}
    for k, vs in values.items():
        v = np.concatenate(vs)
        if v.size == 0:
            raise SpikeportError(f"ReLU layer {k!r} never activates on the calibration samples")
        out[k] = float(np.percentile(v, percentile))
    return out


@torch.no_grad()
def convert(graph: ann.Graph, calib_x: np.ndarray | None = None, percentile: float = 99.9,
            device: str | torch.device = "cpu") -> SNNGraph:
    """Convert a normalised float graph (see :func:`passes.normalize`) into a float SNN; ``device``
    runs the calibration forward passes (the result is the same on every device up to float
    rounding in the percentile)."""
    acts = [n for n in graph.nodes if isinstance(n.op, ann.ACTIVATIONS)]
    out_node = graph.output
    if isinstance(out_node.op, ann.ACTIVATIONS):
        raise SpikeportError(f"the model ends with {out_node.kind} at {out_node.name!r}; the last layer must "
                             "be linear (it becomes the non-spiking readout)")
    if isinstance(out_node.op, ann.Input):
        raise SpikeportError("the model has no layers")
    pools = [n for n in graph.nodes if isinstance(n.op, ann.MaxPool2d)]
    spiking = {a.name for a in acts}
    for m in pools:  # graph order: a pool of a pool reads spikes too
        src = graph.node(m.inputs[0])
        if src.name not in spiking:
            raise SpikeportError(
                f"MaxPool2d at {m.name!r} ({m.source}) reads {src.kind} {src.name!r}; the spiking max-pool pools "
                "spikes, so it must follow a ReLU/QCFS activation (directly or through the layer it activates)")
        spiking.add(m.name)
    thresholds = _relu_thresholds(graph, acts, calib_x, percentile, device)
    for a in acts:
        if isinstance(a.op, ann.QCFS):
            thresholds[a.name] = float(a.op.lam)
    for m in pools:  # its spikes weigh what its source's do
        thresholds[m.name] = thresholds[m.inputs[0]]
    sources = {a.name for a in acts} | {m.name for m in pools} | {graph.input.name}
    # constant part of every pre-activation: evaluate with all sources at zero
    zero_feeds = {n: torch.zeros((1, *graph.node(n).shape), dtype=torch.float64) for n in sources}
    consts = run_graph(graph, np.zeros((1, *graph.input.shape)), feeds=zero_feeds, dtype=torch.float64)

    pops: list[Population] = []
    order = [n for n in graph.nodes if n.name in sources and n.name != graph.input.name]
    for node, kind in [(n, "maxpool" if isinstance(n.op, ann.MaxPool2d) else "if") for n in order] + \
            [(out_node, "readout")]:
        if kind == "maxpool":
            op = node.op
            syn = PoolSynapse(tuple(graph.node(node.inputs[0]).shape), tuple(node.shape), op.kernel, op.stride,
                              op.padding, op.ceil_mode)
            pops.append(Population(node.name, tuple(node.shape), "maxpool", thresholds[node.name], 0.0,
                                   np.zeros(node.shape), [Projection(node.inputs[0], syn)], node.source or node.name))
            continue
        z = node.inputs[0] if kind == "if" else node.name
        projections = []
        for src, chain in _paths(graph, z, sources):
            src_shape = tuple(graph.node(src).shape)
            syn = compose_chain(chain, src_shape, where=f"layer {node.name!r}")
            amplitude = 1.0 if src == graph.input.name else thresholds[src]
            syn.weight = syn.weight * amplitude
            projections.append(Projection(INPUT if src == graph.input.name else src, syn))
        theta = thresholds.get(node.name, 0.0)
        origin = ", ".join(dict.fromkeys(n.source or n.name for _, ch in _paths(graph, z, sources)
                                         for n in ch)) or node.name
        pops.append(Population(
            name=node.name, shape=tuple(graph.node(z).shape), kind=kind, threshold=theta,
            v_init=theta / 2, bias=consts[z][0].numpy().copy(), inputs=projections, origin=origin))
    levels = {a.name: a.op.levels for a in acts if isinstance(a.op, ann.QCFS)}
    return SNNGraph(tuple(graph.input.shape), pops,
                    meta={"model": graph.name, "qcfs_levels": levels, "percentile": percentile})
