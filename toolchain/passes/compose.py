"""Compose a chain of linear ops between two neuron layers into one synapse.

The converter splits each pre-activation into a sum over paths from upstream populations; every
path is a chain of Conv2d / AvgPool2d / BatchNorm / Flatten / Linear / Select / Embed ops whose
*linear part* becomes one synapse (biases are collected separately):

- a chain of convolutions, pools, batch norms and channel selections becomes one strided
  convolution when that is exact (checked numerically): what Lava's Conv runs;
- Flatten + Linear is a dense matrix;
- anything else is the product of the ops' sparse matrices: a sparse connection (Lava's Sparse),
  or a dense matrix where that product is mostly non-zero and small enough. Only a connection too
  large even as a sparse matrix is refused, with an error that names the layer.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from spikeport.toolchain.errors import UnsupportedOpError
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.interpret import LinearPart
from spikeport.toolchain.ir.snn import ConvSynapse, DenseSynapse, SparseSynapse, Synapse
from spikeport.toolchain.ir.synapses import apply_synapse, conv_as_matrix

DENSE_LIMIT = 1 << 25  # largest dense matrix (n_in * n_out)
SPARSE_LIMIT = 1 << 28  # most non-zero weights of one sparse connection
DENSE_SHARE = 0.25  # a composed matrix at least this full (and small enough) is kept dense


def _as_conv(node: ann.Node, in_shape: tuple[int, ...]) -> ConvSynapse | None:
    """The linear part of a 4-D op as a convolution, or None for ops that are not."""
    op = node.op
    c = in_shape[0]
    if len(in_shape) != 3:
        return None
    out = tuple(node.shape)
    match op:
        case ann.Conv2d():
            return ConvSynapse(op.weight, in_shape, out, op.stride, op.padding, op.dilation, op.groups)
        case ann.AvgPool2d() if not op.ceil_mode and (op.count_include_pad or op.padding == (0, 0)):
            kh, kw = op.kernel
            w = np.full((c, 1, kh, kw), 1.0 / (kh * kw))
            return ConvSynapse(w, in_shape, out, op.stride, op.padding, (1, 1), c)
        case ann.BatchNorm():
            w = (op.gamma / np.sqrt(op.var + op.eps)).reshape(c, 1, 1, 1)
            return ConvSynapse(w, in_shape, out, (1, 1), (0, 0), (1, 1), c)
        case ann.Embed():
            w = np.zeros((op.channels, c, 1, 1))
            w[op.offset + np.arange(c), np.arange(c)] = 1.0
            return ConvSynapse(w, in_shape, out, (1, 1), (0, 0), (1, 1), 1)
        case ann.Select() if len(out) == 3:
            return _select_as_conv(np.asarray(op.index), in_shape, out)
    return None


def _select_as_conv(index: np.ndarray, in_shape: tuple[int, int, int], out: tuple[int, ...]) -> ConvSynapse | None:
    """A channel map with a strided window, ``out[k, y, x] = in[m(k), y0 + sy y, x0 + sx x]`` (a channel
    shuffle or split: y0 = x0 = 0, s = 1; a strided slice ``x[:, :, ::2, ::2]``: s = 2), as a
    convolution with stride (sy, sx) and a (y0 + 1, x0 + 1) kernel holding one 1, when the slice runs
    to the end of H and W as the convolution's windows do; None otherwise."""
    c, h, w = in_shape
    co, ho, wo = out
    if index.size != co * ho * wo or index.size == 0:
        return None
    src_c, rest = np.divmod(index.reshape(co, ho, wo), h * w)
    ys, xs = np.divmod(rest, w)
    y0, x0 = int(ys[0, 0, 0]), int(xs[0, 0, 0])
    sy = int(ys[0, 1, 0]) - y0 if ho > 1 else max(1, h - y0)
    sx = int(xs[0, 0, 1]) - x0 if wo > 1 else max(1, w - x0)
    if sy < 1 or sx < 1 or (h - y0 - 1) // sy + 1 != ho or (w - x0 - 1) // sx + 1 != wo:
        return None
    src = src_c[:, 0, 0]
    if not (np.array_equal(src_c, np.broadcast_to(src[:, None, None], src_c.shape))
            and np.array_equal(ys, np.broadcast_to((y0 + sy * np.arange(ho))[None, :, None], ys.shape))
            and np.array_equal(xs, np.broadcast_to((x0 + sx * np.arange(wo))[None, None, :], xs.shape))):
        return None
    weight = np.zeros((co, c, y0 + 1, x0 + 1))
    weight[np.arange(co), src, y0, x0] = 1.0
    return ConvSynapse(weight, in_shape, tuple(out), (sy, sx), (0, 0), (1, 1), 1)


def _per_channel(node: ann.Node, in_shape: tuple[int, int, int]) -> sparse.csr_matrix:
    """A per-channel linear op (a pool of any kind) as a matrix, from its response to every pixel
    of one channel (exact: the op acts on each channel alike)."""
    c, h, w = in_shape
    basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    probe = ann.Node(node.name, node.op, ["chain.input"], (1, *node.shape[1:]))
    one = LinearPart(_chain_graph([probe], (1, h, w)), dtype=torch.float64).run(basis, keep=set())[node.name]
    m = sparse.csr_matrix(one.reshape(h * w, -1).T.numpy())
    return sparse.kron(sparse.identity(c, format="csr"), m, format="csr")


def _as_sparse(node: ann.Node, in_shape: tuple[int, ...]) -> sparse.csr_matrix:
    """The linear part of one op as a sparse (n_out, n_in) matrix on flattened (C, H, W) vectors."""
    op, n_in = node.op, int(np.prod(in_shape))
    match op:
        case ann.Conv2d():
            return conv_as_matrix(ConvSynapse(op.weight, in_shape, tuple(node.shape), op.stride, op.padding,
                                              op.dilation, op.groups), op.weight)
        case ann.AvgPool2d():
            return _per_channel(node, in_shape)
        case ann.BatchNorm():
            scale = op.gamma / np.sqrt(op.var + op.eps)
            return sparse.diags(np.repeat(scale, n_in // len(scale)), format="csr")
        case ann.Flatten() | ann.Identity():
            return sparse.identity(n_in, format="csr")
        case ann.Linear():
            return sparse.csr_matrix(op.weight)
        case ann.Select():
            n = len(op.index)
            return sparse.csr_matrix((np.ones(n), (np.arange(n), np.asarray(op.index))), shape=(n, n_in))
        case ann.Embed():
            hw = n_in // in_shape[0]
            rows = op.offset * hw + np.arange(n_in)
            return sparse.csr_matrix((np.ones(n_in), (rows, np.arange(n_in))), shape=(op.channels * hw, n_in))
    raise UnsupportedOpError(f"{node.kind} at {node.name!r} cannot sit between neuron layers")


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


def _chain_graph(chain: list[ann.Node], in_shape: tuple[int, ...]) -> ann.Graph:
    """The chain as a graph of its own: an input of ``in_shape``, then each op fed by the one before."""
    nodes = [ann.Node("chain.input", ann.Input(tuple(in_shape)), [], tuple(in_shape))]
    for node in chain:
        nodes.append(ann.Node(node.name, node.op, [nodes[-1].name], node.shape, node.source))
    return ann.Graph(nodes, "chain")


def compose_chain(chain: list[ann.Node], in_shape: tuple[int, ...], where: str) -> Synapse:
    """One synapse for the linear part of ``chain`` (ops in order) applied to ``in_shape`` inputs."""
    chain = [n for n in chain if not isinstance(n.op, ann.Add | ann.Identity)]
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
    if len(chain) <= 2 and isinstance(chain[-1].op, ann.Linear) and all(
            isinstance(n.op, ann.Flatten) for n in chain[:-1]):
        return DenseSynapse(chain[-1].op.weight.astype(np.float64), in_shape, out_shape)
    m, shape = None, tuple(in_shape)
    for node in chain:
        step = _as_sparse(node, shape)
        m = step if m is None else sparse.csr_matrix(step @ m)
        m.eliminate_zeros()
        if m.nnz > SPARSE_LIMIT:
            raise UnsupportedOpError(f"{where}: the ops {[n.kind for n in chain]} do not compose into one "
                                     f"convolution, and even as a sparse connection they hold more than "
                                     f"{SPARSE_LIMIT:,} weights")
        shape = tuple(node.shape)
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if n_in * n_out <= DENSE_LIMIT and m.nnz >= DENSE_SHARE * n_in * n_out:
        return DenseSynapse(m.toarray(), in_shape, out_shape)
    return SparseSynapse(m, in_shape, out_shape)
