"""Evaluates a float :class:`~spikeport.toolchain.ir.Graph` with torch's functional ops.

Used to check importers numerically, to collect activation statistics for conversion, and to
split linear chains into synapses. ``feeds`` replaces the value of any node (for example the
outputs of activations set to zero), which is how the converter isolates one affine piece.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from spikeport.toolchain import ir


def _t(a: np.ndarray | None, like: torch.Tensor) -> torch.Tensor | None:
    """A parameter as a tensor of ``like``'s type, on ``like``'s device."""
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=like.dtype, device=like.device)


def apply_op(op: ir.Op, args: list[torch.Tensor], clip_qcfs: bool = False) -> torch.Tensor:
    """Apply one op to its (batched) inputs."""
    x = args[0] if args else None
    match op:
        case ir.Conv2d():
            return F.conv2d(x, _t(op.weight, x), _t(op.bias, x), op.stride, op.padding, op.dilation, op.groups)
        case ir.Linear():
            return F.linear(x, _t(op.weight, x), _t(op.bias, x))
        case ir.BatchNorm():
            shape = (1, -1) + (1,) * (x.dim() - 2)
            scale = _t(op.gamma / np.sqrt(op.var + op.eps), x).reshape(shape)
            return (x - _t(op.mean, x).reshape(shape)) * scale + _t(op.beta, x).reshape(shape)
        case ir.ReLU():
            return torch.relu(x)
        case ir.QCFS():
            y = torch.clamp(x / op.lam, 0.0, 1.0)
            if op.levels > 0 and not clip_qcfs:
                y = torch.floor(y * op.levels + 0.5) / op.levels
            return y * op.lam
        case ir.AvgPool2d():
            return F.avg_pool2d(x, op.kernel, op.stride, op.padding, count_include_pad=True)
        case ir.MaxPool2d():
            return F.max_pool2d(x, op.kernel, op.stride, op.padding)
        case ir.Flatten():
            return torch.flatten(x, 1)
        case ir.Add():
            out = args[0]
            for a in args[1:]:
                out = out + a
            return out
        case ir.Identity():
            return x
    raise TypeError(f"cannot evaluate {type(op).__name__}")


def run_graph(
    graph: ir.Graph,
    x: torch.Tensor | np.ndarray,
    feeds: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
    clip_qcfs: bool = False,
    keep: set[str] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Evaluate the graph; returns the values of the nodes in ``keep`` (all nodes if None).

    ``clip_qcfs`` evaluates QCFS activations unquantized (the large-T limit of the SNN).
    """
    feeds = feeds or {}
    env: dict[str, torch.Tensor] = {}
    x = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x, dtype=dtype, device=device)
    remaining = {n.name: 0 for n in graph.nodes}
    for n in graph.nodes:
        for i in n.inputs:
            remaining[i] += 1
    out: dict[str, torch.Tensor] = {}
    for n in graph.nodes:
        if n.name in feeds:
            val = feeds[n.name].to(dtype=dtype, device=x.device)
        elif isinstance(n.op, ir.Input):
            val = x
        else:
            val = apply_op(n.op, [env[i] for i in n.inputs], clip_qcfs=clip_qcfs)
        env[n.name] = val
        if keep is None or n.name in keep or n is graph.output:
            out[n.name] = val
        for i in n.inputs:  # free intermediates nobody needs any more
            remaining[i] -= 1
            if remaining[i] == 0 and (keep is None or i not in keep):
                env.pop(i, None)
    return out


@torch.no_grad()
def forward(graph: ir.Graph, x: np.ndarray, batch: int = 512, clip_qcfs: bool = False,
            dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> np.ndarray:
    """The ANN's output for a batch of inputs, evaluated in chunks."""
    outs = []
    for i in range(0, len(x), batch):
        res = run_graph(graph, x[i:i + batch], clip_qcfs=clip_qcfs, keep=set(), dtype=dtype, device=device)
        outs.append(res[graph.output.name].cpu().numpy())
    return np.concatenate(outs)
