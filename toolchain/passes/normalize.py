"""Graph-to-graph passes on the float IR, run in this order by :func:`normalize`: validate values,
remove identities, replace max-pool (or keep it for the spiking max-pool), fold batch norm, put
max-pools after their activations (spiking max-pool), infer shapes.

Every pass is a pure function: it returns a new :class:`~spikeport.toolchain.ir.ann.Graph` of new
nodes and leaves its input as it was.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from spikeport.toolchain.errors import SpikeportError, UnsupportedOpError
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.interpret import Interpreter


def check_finite(graph: ann.Graph) -> ann.Graph:
    """NaN or Inf anywhere in the parameters is an error naming the node and the field."""
    for n in graph.nodes:
        for f in dataclasses.fields(n.op):
            v = getattr(n.op, f.name)
            if isinstance(v, np.ndarray) and not np.all(np.isfinite(v)):
                bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
                raise SpikeportError(f"layer {n.name!r} ({n.kind}, {n.source}): {f.name} has {bad} "
                                     "NaN/Inf value(s)")
            if isinstance(v, float) and not np.isfinite(v):
                raise SpikeportError(f"layer {n.name!r} ({n.kind}, {n.source}): {f.name} = {v}")
        if isinstance(n.op, ann.QCFS) and np.any(np.asarray(n.op.lam) <= 0):
            raise SpikeportError(f"layer {n.name!r}: QCFS threshold lam = {np.min(n.op.lam)} must be positive")
        if isinstance(n.op, ann.BatchNorm) and np.any(n.op.var + n.op.eps <= 0):
            raise SpikeportError(f"layer {n.name!r}: BatchNorm variance + eps is not positive")
    return graph


def _rewired(nodes: list[ann.Node], old: str, new: str) -> list[ann.Node]:
    """The nodes with every input ``old`` replaced by ``new``."""
    return [dataclasses.replace(n, inputs=[new if i == old else i for i in n.inputs]) if old in n.inputs else n
            for n in nodes]


def remove_identities(graph: ann.Graph) -> ann.Graph:
    nodes = list(graph.nodes)
    for n in graph.nodes:
        if isinstance(n.op, ann.Identity) and n is not graph.output:
            nodes = _rewired([m for m in nodes if m.name != n.name], n.name, n.inputs[0])
    return ann.Graph(nodes, graph.name)


def _scale(name: str, factor: np.ndarray, inputs: list[str], source: str) -> ann.Node:
    """A per-channel multiplication by ``factor``, as a BatchNorm node (folds and composes like one)."""
    c = len(factor)
    return ann.Node(name, ann.BatchNorm(np.zeros(c), np.ones(c), np.asarray(factor, float), np.zeros(c), 0.0), inputs,
                   source=source)


def uniform_thresholds(graph: ann.Graph) -> ann.Graph:
    """One threshold per layer: a QCFS (or clipped ReLU) with one ``lam`` per channel becomes
    ``s * QCFS_theta(z / s)`` with theta the largest lam and ``s = lam / theta`` per channel (the
    same function: QCFS_{s theta}(z) = s QCFS_theta(z / s)). The 1/s before it folds into the layer
    that feeds it; the s after it composes into the synapses out of it."""
    nodes: list[ann.Node] = []
    for n in graph.nodes:
        if not (isinstance(n.op, ann.QCFS) and np.ndim(n.op.lam) > 0):
            nodes.append(n)
            continue
        lam = np.asarray(n.op.lam, dtype=np.float64)
        theta = float(lam.max())
        taken = {m.name for m in graph.nodes} | {m.name for m in nodes}
        pre = _scale(ann.unique_name(f"{n.name}.per_channel_in", taken), theta / lam, list(n.inputs),
                     f"{n.source} (per-channel threshold)")
        post = _scale(ann.unique_name(f"{n.name}.per_channel_out", taken | {pre.name}), lam / theta, [n.name],
                      f"{n.source} (per-channel threshold)")
        nodes += [pre, dataclasses.replace(n, op=ann.QCFS(theta, n.op.levels), inputs=[pre.name]), post]
        rest = graph.nodes[graph.nodes.index(n) + 1:]
        graph = ann.Graph(nodes + _rewired(rest, n.name, post.name), graph.name)
        return uniform_thresholds(graph)
    return ann.Graph(nodes, graph.name)


MAXPOOL_MODES = ("error", "average", "spiking")


def replace_maxpool(graph: ann.Graph, mode: str = "error") -> ann.Graph:
    """Max-pool as the user chose: ``"error"`` refuses it, ``"average"`` replaces it by average
    pooling over the elements the max would see, ``"spiking"`` keeps it for spikeport's spiking
    max-pool (:func:`order_maxpool` then puts it after its activation)."""
    if mode not in MAXPOOL_MODES:
        raise SpikeportError(f"unknown max-pool mode {mode!r}; choose one of {MAXPOOL_MODES}")
    nodes = []
    for n in graph.nodes:
        if isinstance(n.op, ann.MaxPool2d) and mode != "spiking":
            if mode == "error":
                raise UnsupportedOpError(
                    f"MaxPool2d at {n.name!r} ({n.source}) has no IF-neuron equivalent; choose maxpool='spiking' "
                    "(CLI --maxpool spiking: a spiking max-pool that runs on sim and Lava) or maxpool='average' "
                    "(--maxpool average: average pooling, the accuracy will change; `spikeport finetune` "
                    "recovers most of it), or retrain with AvgPool2d")
            warnings.warn(f"MaxPool2d at {n.name!r} replaced by AvgPool2d", stacklevel=2)
            # the average over the elements the max would see: padding and the ceil-mode border excluded
            n = dataclasses.replace(n, op=ann.AvgPool2d(n.op.kernel, n.op.stride, n.op.padding, n.op.ceil_mode,
                                                       count_include_pad=False))
        nodes.append(n)
    return ann.Graph(nodes, graph.name)


def _pool_rewrite(nodes: list[ann.Node], m: ann.Node) -> list[ann.Node] | None:
    """One step of :func:`order_maxpool` for max-pool ``m``, or None when it already reads spikes
    (or no rule applies)."""
    users = [n for n in nodes if m.name in n.inputs]
    src = next(n for n in nodes if n.name == m.inputs[0])
    at = [n.name for n in nodes].index(m.name)
    if isinstance(src.op, ann.Concat):  # per-channel op: maxpool(cat(a, b)) == cat(maxpool(a), maxpool(b))
        taken = {n.name for n in nodes}
        pools = []
        for k, i in enumerate(src.inputs):
            pools.append(ann.Node(ann.unique_name(f"{m.name}.{k}", taken), m.op, [i], m.shape, m.source))
            taken.add(pools[-1].name)
        cat = ann.Node(m.name, src.op, [q.name for q in pools], m.shape, m.source)
        keep_src = sum(src.name in n.inputs for n in nodes) > 1
        return [n for n in nodes[:at] if keep_src or n is not src] + pools + [cat] + nodes[at + 1:]
    if isinstance(src.op, ann.BatchNorm) and np.all(src.op.gamma > 0) and \
            sum(src.name in n.inputs for n in nodes) == 1:  # a positive scale and shift: max commutes with it
        at_src = nodes.index(src)
        rest = _rewired([n for n in nodes[at_src + 1:] if n is not m], m.name, src.name)
        return [*nodes[:at_src], dataclasses.replace(m, inputs=list(src.inputs)),
                dataclasses.replace(src, inputs=[m.name]), *rest]
    if isinstance(src.op, ann.LINEAR_OPS) and len(users) == 1 and isinstance(users[0].op, ann.ACTIVATIONS):
        act = users[0]  # act(maxpool(z)) == maxpool(act(z)): ReLU and QCFS never decrease
        moved_act = dataclasses.replace(act, inputs=list(m.inputs))
        moved_pool = dataclasses.replace(m, inputs=[act.name])
        after = _rewired([n for n in nodes[at + 1:] if n.name != act.name], act.name, m.name)
        return [*nodes[:at], moved_act, moved_pool, *after]
    return None


def order_maxpool(graph: ann.Graph) -> ann.Graph:
    """Make every max-pool read spikes, for the spiking max-pool (docs/design.md): a max-pool
    followed by an activation moves after it, and a max-pool of a channel concatenation becomes the
    concatenation of max-pools of its inputs. Both leave the network's function unchanged."""
    nodes = list(graph.nodes)
    changed = True
    while changed:
        changed = False
        for m in nodes:
            if isinstance(m.op, ann.MaxPool2d):
                new = _pool_rewrite(nodes, m)
                if new is not None:
                    nodes, changed = new, True
                    break
    return ann.Graph(nodes, graph.name)


def fold_batchnorm(graph: ann.Graph) -> ann.Graph:
    """Fold each BatchNorm into the Conv2d/Linear that feeds only it. Others stay as affine ops."""
    nodes = list(graph.nodes)
    i = 0
    while i < len(nodes):
        n = nodes[i]
        prev = next((m for m in nodes[:i] if n.inputs and m.name == n.inputs[0]), None)
        if not (isinstance(n.op, ann.BatchNorm) and prev is not None and isinstance(prev.op, ann.Conv2d | ann.Linear)
                and sum(prev.name in m.inputs for m in nodes) == 1):
            i += 1
            continue
        bn = n.op
        scale = bn.gamma / np.sqrt(bn.var + bn.eps)
        w = prev.op.weight * scale.reshape((-1,) + (1,) * (prev.op.weight.ndim - 1))
        b = prev.op.bias if prev.op.bias is not None else np.zeros(len(scale))
        op = dataclasses.replace(prev.op, weight=w, bias=(b - bn.mean) * scale + bn.beta)
        folded = dataclasses.replace(prev, op=op, source=f"{prev.source} + {n.source}")
        # prev's only user was n, so moving prev into n's place keeps the order topological
        nodes = [m for m in nodes[:i] if m is not prev] + [folded] + _rewired(nodes[i + 1:], n.name, prev.name)
    return ann.Graph(nodes, graph.name)


def infer_shapes(graph: ann.Graph) -> ann.Graph:
    """Run the graph on zeros to fill in every node's output shape; a mismatch is an error."""
    interp = Interpreter(graph)
    env: dict[str, torch.Tensor] = {}
    nodes = []
    for n in graph.nodes:
        if isinstance(n.op, ann.Input):
            val = torch.zeros((1, *n.op.shape))
        else:
            try:
                val = interp.call_op(n, [env[i] for i in n.inputs])
            except (RuntimeError, ValueError) as exc:
                shapes = [tuple(env[i].shape[1:]) for i in n.inputs]
                raise SpikeportError(f"shape mismatch at layer {n.name!r} ({n.kind}, {n.source}): "
                                     f"inputs {shapes}: {str(exc).splitlines()[0]}") from exc
        env[n.name] = val
        nodes.append(dataclasses.replace(n, shape=tuple(val.shape[1:])))
    return ann.Graph(nodes, graph.name)


def prepend_normalization(graph: ann.Graph, mean: list[float], std: list[float]) -> ann.Graph:
    """The graph of ``model((x - mean) / std)`` per input channel: the user's preprocessing, which
    composes into the first layer's weights and bias (the host then feeds raw inputs)."""
    channels = graph.input.op.shape[0]
    mean_a, std_a = np.broadcast_to(np.asarray(mean, float), (channels,)), np.broadcast_to(np.asarray(std, float),
                                                                                          (channels,))
    if np.any(std_a <= 0) or not np.all(np.isfinite(mean_a)) or not np.all(np.isfinite(std_a)):
        raise SpikeportError(f"input normalisation needs finite means and positive standard deviations, got "
                             f"mean {list(mean)} and std {list(std)}")
    first = graph.input.name
    norm = ann.Node(ann.unique_name(f"{first}.normalize", {n.name for n in graph.nodes}),
                   ann.BatchNorm(mean_a.copy(), std_a ** 2, np.ones(channels), np.zeros(channels), 0.0), [first],
                   graph.input.shape, "input normalisation")
    rest = _rewired(graph.nodes[1:], first, norm.name)
    return ann.Graph([graph.input, norm, *rest], graph.name)


def zero_padding(shape: tuple[int, ...], pads: list[tuple[int, int]], where: str) -> ann.Conv2d | ann.Embed | None:
    """Constant zero padding of a ``(C, H, W)`` or ``(features,)`` activation (``pads``: (before,
    after) per axis after the batch axis) as the linear op it is, in ops every backend already runs:

    - channels (features) only: an :class:`~spikeport.toolchain.ir.ann.Embed` (input channel c at
      channel c + before, zeros elsewhere), as a concatenation's inputs are placed;
    - H or W too: a convolution without bias whose kernel holds a single 1 per channel (a 1x1
      identity for symmetric padding; for (t, b) a kernel of 2 max(t, b) - t - b + 1 rows with the 1
      at row max(t, b) - t, and the padding max(t, b)), embedding the channels where they are padded.

    Both compose into the synapses around them (an option-A ResNet shortcut ``x[:, :, ::2, ::2]``
    padded by p channels on each side becomes one 1x1 stride-2 convolution). None when every pad is
    zero. Negative padding (cropping) is refused, naming ``where``."""
    if len(pads) != len(shape) or len(shape) not in (1, 3):
        raise UnsupportedOpError(f"unsupported op {where}: padding of a {len(shape) + 1}-D tensor (only "
                                 "(batch, C, H, W) and (batch, features) activations)")
    if any(p < 0 for pair in pads for p in pair):
        raise UnsupportedOpError(f"unsupported op {where}: negative padding (cropping), (before, after) per axis "
                                 f"after the batch axis: {pads}; only zero padding (pads >= 0)")
    (cb, ce), c = pads[0], shape[0]
    if len(shape) == 1 or pads[1:] == [(0, 0), (0, 0)]:
        return None if cb == ce == 0 else ann.Embed(cb, c + cb + ce)
    (t, b), (left, right) = pads[1:]
    ph, pw = max(t, b), max(left, right)
    kh, kw = 2 * ph - t - b + 1, 2 * pw - left - right + 1
    if cb == ce == 0:  # depthwise
        weight = np.zeros((c, 1, kh, kw))
        weight[:, 0, ph - t, pw - left] = 1.0
        return ann.Conv2d(weight, None, (1, 1), (ph, pw), (1, 1), c)
    weight = np.zeros((c + cb + ce, c, kh, kw))
    weight[cb + np.arange(c), np.arange(c), ph - t, pw - left] = 1.0
    return ann.Conv2d(weight, None, (1, 1), (ph, pw), (1, 1), 1)


def normalize(graph: ann.Graph, maxpool: str = "error") -> ann.Graph:
    """The passes every import goes through; ``maxpool`` is one of :data:`MAXPOOL_MODES`."""
    graph = check_finite(graph)
    graph = remove_identities(graph)
    graph = uniform_thresholds(graph)
    graph = replace_maxpool(graph, maxpool)
    graph = fold_batchnorm(graph)
    if maxpool == "spiking":
        graph = order_maxpool(graph)
    return infer_shapes(graph)
