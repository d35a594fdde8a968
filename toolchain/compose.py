"""Compose a chain of linear ops between two neuron layers into one synapse.

The converter splits each pre-activation into a sum over paths from upstream populations; every
path is a chain of Conv2d / AvgPool2d / BatchNorm / Flatten / Linear ops whose *linear part*
becomes one synapse (biases are collected separately). A chain of convolutions and pools becomes
one strided convolution when that is exact (checked numerically); anything else becomes a dense
matrix, materialised from the chain's response to basis vectors.
"""

from __future__ import annotations

import numpy as np
import torch

from spikeport.toolchain import ir
from spikeport.toolchain.errors import UnsupportedOpError
from spikeport.toolchain.interpret import LinearPart
from spikeport.toolchain.ops import apply_synapse
from spikeport.toolchain.snn import ConvSynapse, DenseSynapse, Synapse

DENSE_LIMIT = 1 << 25  # largest materialised matrix (n_in * n_out)


def _as_conv(node: ir.Node, in_shape: tuple[int, ...]) -> ConvSynapse | None:
    """The linear part of a 4-D op as a convolution, or None for ops that are not."""
    op = node.op
    c = in_shape[0]
    if len(in_shape) != 3:
        return None
    out = tuple(node.shape)
    match op:
        case ir.Conv2d():
            return ConvSynapse(op.weight, in_shape, out, op.stride, op.padding, op.dilation, op.groups)
        case ir.AvgPool2d():
            kh, kw = op.kernel
            w = np.full((c, 1, kh, kw), 1.0 / (kh * kw))
            return ConvSynapse(w, in_shape, out, op.stride, op.padding, (1, 1), c)
        case ir.BatchNorm():
            w = (op.gamma / np.sqrt(op.var + op.eps)).reshape(c, 1, 1, 1)
            return ConvSynapse(w, in_shape, out, (1, 1), (0, 0), (1, 1), c)
    return None


def full_weight(s: ConvSynapse) -> np.ndarray:
    """Expand a grouped convolution into an equivalent groups=1 weight."""
    if s.groups == 1:
        return s.weight
    co, cig, kh, kw = s.weight.shape
    ci = cig * s.groups
    w = np.zeros((co, ci, kh, kw))
    per = co // s.groups
    for g in range(s.groups):
        w[g * per:(g + 1) * per, g * cig:(g + 1) * cig] = s.weight[g * per:(g + 1) * per]
    return w


def _compose_two(a: ConvSynapse, b: ConvSynapse) -> ConvSynapse | None:
    if a.dilation != (1, 1) or b.dilation != (1, 1):
        return None
    wa, wb = full_weight(a), full_weight(b)
    (sah, saw), (sbh, sbw) = a.stride, b.stride
    kh = wa.shape[2] + (wb.shape[2] - 1) * sah
    kw = wa.shape[3] + (wb.shape[3] - 1) * saw
    w = np.zeros((wb.shape[0], wa.shape[1], kh, kw))
    for p in range(wb.shape[2]):
        for q in range(wb.shape[3]):
            w[:, :, p * sah:p * sah + wa.shape[2], q * saw:q * saw + wa.shape[3]] += np.einsum(
                "om,mikl->oikl", wb[:, :, p, q], wa)
    pad = (a.padding[0] + b.padding[0] * sah, a.padding[1] + b.padding[1] * saw)
    return ConvSynapse(w, a.in_shape, b.out_shape, (sah * sbh, saw * sbw), pad, (1, 1), 1)


def _matches(chain: list[ConvSynapse], fused: ConvSynapse) -> bool:
    x = torch.randn((2, *chain[0].in_shape), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = x
    for s in chain:
        ref = apply_synapse(s, ref, torch.as_tensor(s.weight))
    got = apply_synapse(fused, x, torch.as_tensor(fused.weight))
    if got.shape != ref.shape:
        return False
    return bool(torch.allclose(got, ref, rtol=1e-9, atol=1e-9 * (1 + float(ref.abs().max()))))


def _chain_graph(chain: list[ir.Node], in_shape: tuple[int, ...]) -> ir.Graph:
    """The chain as a graph of its own: an input of ``in_shape``, then each op fed by the one before."""
    nodes = [ir.Node("chain.input", ir.Input(tuple(in_shape)), [], tuple(in_shape))]
    for node in chain:
        nodes.append(ir.Node(node.name, node.op, [nodes[-1].name], node.shape, node.source))
    return ir.Graph(nodes, "chain")


def compose_chain(chain: list[ir.Node], in_shape: tuple[int, ...], where: str) -> Synapse:
    """One synapse for the linear part of ``chain`` (ops in order) applied to ``in_shape`` inputs."""
    chain = [n for n in chain if not isinstance(n.op, ir.Add | ir.Identity)]
    out_shape = tuple(chain[-1].shape) if chain else tuple(in_shape)
    if not chain:  # identity path (a residual skip)
        if len(in_shape) == 3:
            c = in_shape[0]
            return ConvSynapse(np.ones((c, 1, 1, 1)), in_shape, in_shape, (1, 1), (0, 0), (1, 1), c)
        return DenseSynapse(np.eye(int(np.prod(in_shape))), in_shape, in_shape)
    convs, shape = [], in_shape
    for node in chain:
        s = _as_conv(node, shape)
        if s is None:
            break
        convs.append(s)
        shape = tuple(node.shape)
    if len(convs) == len(chain):
        fused = convs[0]
        for s in convs[1:]:
            fused = _compose_two(fused, s) if fused is not None else None
        if fused is not None and (len(convs) == 1 or _matches(convs, fused)):
            return fused
    if len(chain) <= 2 and isinstance(chain[-1].op, ir.Linear) and all(
            isinstance(n.op, ir.Flatten) for n in chain[:-1]):
        return DenseSynapse(chain[-1].op.weight.astype(np.float64), in_shape, out_shape)
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if n_in * n_out > DENSE_LIMIT:
        raise UnsupportedOpError(
            f"{where}: the ops {[n.kind for n in chain]} do not compose into one convolution and "
            f"their {n_out}x{n_in} matrix is too large to materialise")
    linear = LinearPart(_chain_graph(chain, in_shape), dtype=torch.float64)
    cols = []
    with torch.no_grad():
        for i in range(0, n_in, 2048):
            basis = torch.zeros((min(2048, n_in - i), n_in), dtype=torch.float64)
            basis[torch.arange(len(basis)), torch.arange(i, i + len(basis))] = 1.0
            out = linear.run(basis.reshape(-1, *in_shape), keep=set())[chain[-1].name]
            cols.append(out.reshape(len(basis), n_out))
    return DenseSynapse(torch.cat(cols).T.numpy(), in_shape, out_shape)
