"""Evaluates a float :class:`~spikeport.toolchain.ir.ann.Graph` with torch's functional ops.

:class:`Interpreter` is the one evaluator of the float IR (as torch.fx's ``Interpreter`` is of
fx graphs): :meth:`Interpreter.call_op` is the only place an op's arithmetic is written, and
subclasses change what a node computes by overriding it (the composer's :class:`LinearPart`
evaluates only the linear part of each op). It checks importers numerically, collects activation
statistics for conversion, and splits linear chains into synapses. ``feeds`` replaces the value of
any node (for example the outputs of activations set to zero), which is how the converter isolates
one affine piece.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from spikeport.toolchain.errors import UnsupportedOpError
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.ann import qcfs


def _t(a: np.ndarray | None, like: torch.Tensor) -> torch.Tensor | None:
    """A parameter as a tensor of ``like``'s type, on ``like``'s device."""
    return None if a is None else torch.as_tensor(np.asarray(a), dtype=like.dtype, device=like.device)


class Interpreter:
    """Runs a graph node by node. ``clip_qcfs`` evaluates QCFS activations unquantized (the
    large-T limit of the SNN)."""

    def __init__(self, graph: ann.Graph, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 clip_qcfs: bool = False) -> None:
        self.graph, self.dtype, self.device, self.clip_qcfs = graph, dtype, torch.device(device), clip_qcfs

    def call_op(self, node: ann.Node, args: list[torch.Tensor]) -> torch.Tensor:
        """Apply one node's op to its (batched) inputs."""
        op = node.op
        x = args[0] if args else None
        match op:
            case ann.Conv2d():
                return F.conv2d(x, _t(op.weight, x), _t(op.bias, x), op.stride, op.padding, op.dilation, op.groups)
            case ann.Linear():
                return F.linear(x, _t(op.weight, x), _t(op.bias, x))
            case ann.BatchNorm():
                shape = (1, -1) + (1,) * (x.dim() - 2)
                scale = _t(op.gamma / np.sqrt(op.var + op.eps), x).reshape(shape)
                return (x - _t(op.mean, x).reshape(shape)) * scale + _t(op.beta, x).reshape(shape)
            case ann.ReLU():
                return torch.relu(x)
            case ann.QCFS():
                lam = op.lam if np.ndim(op.lam) == 0 else _t(op.lam, x).reshape((1, -1) + (1,) * (x.dim() - 2))
                return qcfs(x, lam, 0 if self.clip_qcfs else op.levels)
            case ann.AvgPool2d():
                return F.avg_pool2d(x, op.kernel, op.stride, op.padding, op.ceil_mode, op.count_include_pad)
            case ann.MaxPool2d():
                return F.max_pool2d(x, op.kernel, op.stride, op.padding, ceil_mode=op.ceil_mode)
            case ann.Flatten():
                return torch.flatten(x, 1)
            case ann.Add():
                out = args[0]
                for a in args[1:]:
                    out = out + a
                return out
            case ann.Identity():
                return x
            case ann.Concat():
                return torch.cat(args, 1)
            case ann.Select():
                index = torch.as_tensor(op.index, device=x.device)
                return x.reshape(len(x), -1)[:, index].reshape(len(x), *op.shape)
            case ann.Embed():
                out = x.new_zeros((len(x), op.channels, *x.shape[2:]))
                out[:, op.offset:op.offset + x.shape[1]] = x
                return out
        raise TypeError(f"cannot evaluate {type(op).__name__}")

    def run(self, x: torch.Tensor | np.ndarray, feeds: dict[str, torch.Tensor] | None = None,
            keep: set[str] | None = None) -> dict[str, torch.Tensor]:
        """The values of the nodes in ``keep`` (all nodes if None) and of the output node."""
        graph, feeds = self.graph, feeds or {}
        env: dict[str, torch.Tensor] = {}
        x = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x, dtype=self.dtype, device=self.device)
        remaining = {n.name: 0 for n in graph.nodes}
        for n in graph.nodes:
            for i in n.inputs:
                remaining[i] += 1
        out: dict[str, torch.Tensor] = {}
        for n in graph.nodes:
            if n.name in feeds:
                val = feeds[n.name].to(dtype=self.dtype, device=x.device)
            elif isinstance(n.op, ann.Input):
                val = x
            else:
                val = self.call_op(n, [env[i] for i in n.inputs])
            env[n.name] = val
            if keep is None or n.name in keep or n is graph.output:
                out[n.name] = val
            for i in n.inputs:  # free intermediates nobody needs any more
                remaining[i] -= 1
                if remaining[i] == 0 and (keep is None or i not in keep):
                    env.pop(i, None)
        return out


class LinearPart(Interpreter):
    """The linear part of every op: biases, batch-norm offsets and means dropped. Only ops that are
    affine (Conv2d, Linear, BatchNorm, AvgPool2d, Flatten, Add, Identity) can be evaluated."""

    def call_op(self, node: ann.Node, args: list[torch.Tensor]) -> torch.Tensor:
        op = node.op
        match op:
            case ann.Conv2d() | ann.Linear():
                op = dataclasses.replace(op, bias=None)
            case ann.BatchNorm():
                op = dataclasses.replace(op, mean=np.zeros_like(op.mean), beta=np.zeros_like(op.beta))
            case (ann.AvgPool2d() | ann.Flatten() | ann.Add() | ann.Identity() | ann.Concat() | ann.Select()
                  | ann.Embed()):
                pass
            case _:
                raise UnsupportedOpError(f"{node.kind} at {node.name!r} cannot sit between neuron layers")
        return super().call_op(dataclasses.replace(node, op=op), args)


def run_graph(graph: ann.Graph, x: torch.Tensor | np.ndarray, feeds: dict[str, torch.Tensor] | None = None,
              dtype: torch.dtype = torch.float32, clip_qcfs: bool = False, keep: set[str] | None = None,
              device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Evaluate the graph; returns the values of the nodes in ``keep`` (all nodes if None)."""
    return Interpreter(graph, dtype, device, clip_qcfs).run(x, feeds, keep)


@torch.no_grad()
def forward(graph: ann.Graph, x: np.ndarray, batch: int = 512, clip_qcfs: bool = False,
            dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> np.ndarray:
    """The ANN's output for a batch of inputs, evaluated in chunks."""
    interp = Interpreter(graph, dtype, device, clip_qcfs)
    outs = []
    for i in range(0, len(x), batch):
        outs.append(interp.run(x[i:i + batch], keep=set())[graph.output.name].cpu().numpy())
    return np.concatenate(outs)
