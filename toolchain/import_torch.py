"""Import a PyTorch ``nn.Module`` into the float graph IR with torch.fx.

Supported: Conv2d, Linear, BatchNorm1d/2d, ReLU, QCFS (and any child-less activation module that
computes ReLU, a QCFS staircase or a clipped ReLU element-wise, recognised by probing it),
AvgPool2d, AdaptiveAvgPool2d (exact divisions), MaxPool2d (only with ``allow_maxpool``; the pass
replaces it by AvgPool2d), Flatten / flatten / view / reshape to (batch, features), residual
additions, Dropout and Identity. Anything else raises :class:`UnsupportedOpError` naming the
operation and the node.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from spikeport.toolchain import activations, ir
from spikeport.toolchain.errors import SpikeportError, UnsupportedOpError


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Tracer(fx.Tracer):
    """torch.nn layers and every module without children are leaves (activations get probed)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or not any(True for _ in m.children())


def _conv(m: nn.Conv2d, where: str) -> ir.Conv2d:
    if m.padding_mode != "zeros":
        raise UnsupportedOpError(f"Conv2d {where}: padding_mode={m.padding_mode!r} (only 'zeros')")
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        else:  # 'same' with stride 1
            total = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
            if any(t % 2 for t in total):
                raise UnsupportedOpError(f"Conv2d {where}: asymmetric 'same' padding")
            pad = tuple(t // 2 for t in total)
    return ir.Conv2d(_np(m.weight), _np(m.bias), _pair(m.stride), _pair(pad), _pair(m.dilation), m.groups)


def _bn(m: nn.modules.batchnorm._BatchNorm, where: str) -> ir.BatchNorm:
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedOpError(f"BatchNorm {where}: no running statistics (track_running_stats=False)")
    n = m.num_features
    gamma = _np(m.weight) if m.weight is not None else np.ones(n)
    beta = _np(m.bias) if m.bias is not None else np.zeros(n)
    return ir.BatchNorm(_np(m.running_mean), _np(m.running_var), gamma, beta, float(m.eps))


def _avgpool(kernel, stride, padding, ceil_mode, count_include_pad, divisor, where: str) -> ir.AvgPool2d:
    if ceil_mode:
        raise UnsupportedOpError(f"AvgPool2d {where}: ceil_mode=True")
    if divisor is not None:
        raise UnsupportedOpError(f"AvgPool2d {where}: divisor_override")
    padding = _pair(padding)
    if not count_include_pad and any(padding):
        raise UnsupportedOpError(f"AvgPool2d {where}: count_include_pad=False with padding")
    return ir.AvgPool2d(_pair(kernel), _pair(stride if stride else kernel), padding)


def _adaptive(out_size, in_shape: tuple[int, ...], where: str) -> ir.AvgPool2d:
    oh, ow = _pair(out_size) if out_size is not None else in_shape[-2:]
    h, w = in_shape[-2:]
    if h % oh or w % ow:
        raise UnsupportedOpError(f"AdaptiveAvgPool2d {where}: input {h}x{w} is not a multiple of {oh}x{ow}")
    return ir.AvgPool2d((h // oh, w // ow), (h // oh, w // ow))


def _probe_activation(fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], where: str):
    """Classify an activation module by evaluating it on values laid out in its input shape."""
    per = int(np.prod(shape))

    def scalar_fn(z: np.ndarray) -> np.ndarray:
        n = len(z)
        rows = -(-n // per)
        buf = np.zeros(rows * per)
        buf[:n] = z
        with torch.no_grad():
            out = fn(torch.as_tensor(buf.reshape(rows, *shape), dtype=torch.float64).float())
        return out.double().numpy().reshape(-1)[:n]

    op = activations.classify(scalar_fn)
    if op is None:
        raise UnsupportedOpError(
            f"unsupported activation {where}: it is not ReLU, a QCFS staircase, a clipped ReLU or the "
            "identity applied uniformly to every element (per-channel thresholds are not supported)")
    return op


_ADD = {operator.add, torch.add}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_PASS_METHODS = {"contiguous"}


def import_torch(model: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> ir.Graph:
    """Trace ``model`` (in eval mode) for inputs of shape ``(batch, *input_shape)``."""
    model = model.eval()
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:
        raise SpikeportError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
    gm = fx.GraphModule(model, graph)
    example = torch.zeros(2, *input_shape)
    try:
        ShapeProp(gm).propagate(example)
    except Exception as exc:
        raise SpikeportError(f"model {type(model).__name__} does not run on inputs of shape "
                             f"(batch, {', '.join(map(str, input_shape))}): {exc}") from exc
    modules = dict(gm.named_modules())
    nodes: list[ir.Node] = []
    alias: dict[str, str] = {}  # fx node name -> IR node name (identity-like nodes map to their input)

    def shape_of(n: fx.Node) -> tuple[int, ...]:
        meta = n.meta.get("tensor_meta")
        return tuple(meta.shape[1:]) if meta is not None and hasattr(meta, "shape") else ()

    def tensor_inputs(n: fx.Node) -> list[str]:
        out = []
        for a in n.all_input_nodes:
            if a.name in alias:
                out.append(alias[a.name])
            elif a.op == "get_attr":
                raise UnsupportedOpError(f"node {n.name!r} uses the constant tensor {a.target!r} "
                                         "as an operand (only activations may flow between layers)")
        return out

    def emit(n: fx.Node, op: ir.Op, inputs: list[str], where: str) -> None:
        # name IR nodes after the module path ("features.3") where there is one
        name = str(n.target) if n.op == "call_module" else n.name
        nodes.append(ir.Node(name, op, inputs, shape_of(n), source=where))
        alias[n.name] = name

    output_name = None
    for n in gm.graph.nodes:
        where = f"{n.name!r}"
        if n.op == "placeholder":
            if nodes:
                raise UnsupportedOpError(f"model has more than one input ({n.name!r})")
            emit(n, ir.Input(tuple(input_shape)), [], "input")
            continue
        if n.op == "get_attr":
            continue
        if n.op == "output":
            out = n.args[0]
            if not isinstance(out, fx.Node) or out.name not in alias:
                raise UnsupportedOpError("the model must return a single tensor")
            output_name = alias[out.name]
            continue
        if n.op == "call_method" and n.target == "size":
            continue  # shape arithmetic for view/reshape; not a tensor
        if n.op == "call_function" and n.target in (getattr, operator.getitem) and not shape_of(n):
            continue
        ins = tensor_inputs(n)
        if n.op == "call_module":
            m = modules[n.target]
            where = f"{type(m).__name__} {n.target!r}"
            in_shape = shape_of(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else ()
            if isinstance(m, nn.Conv2d):
                emit(n, _conv(m, where), ins, where)
            elif isinstance(m, nn.Linear):
                emit(n, ir.Linear(_np(m.weight), _np(m.bias)), ins, where)
            elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                emit(n, _bn(m, where), ins, where)
            elif isinstance(m, nn.ReLU):
                emit(n, ir.ReLU(), ins, where)
            elif isinstance(m, nn.AvgPool2d):
                emit(n, _avgpool(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                 m.divisor_override, where), ins, where)
            elif isinstance(m, nn.AdaptiveAvgPool2d):
                emit(n, _adaptive(m.output_size, in_shape, where), ins, where)
            elif isinstance(m, nn.MaxPool2d):
                if m.ceil_mode or m.dilation not in (1, (1, 1)):
                    raise UnsupportedOpError(f"{where}: ceil_mode or dilation")
                emit(n, ir.MaxPool2d(_pair(m.kernel_size), _pair(m.stride or m.kernel_size),
                                     _pair(m.padding)), ins, where)
            elif isinstance(m, nn.Flatten):
                if m.start_dim != 1 or m.end_dim != -1:
                    raise UnsupportedOpError(f"{where}: only flatten from dim 1 to the end")
                emit(n, ir.Flatten(), ins, where)
            elif isinstance(m, nn.Dropout | nn.Dropout2d | nn.Identity):
                alias[n.name] = ins[0]
            elif not any(True for _ in m.children()) and in_shape and shape_of(n) == in_shape:
                op = _probe_activation(m, in_shape, where)
                if isinstance(op, ir.Identity):
                    alias[n.name] = ins[0]
                else:
                    emit(n, op, ins, where)
            else:
                raise UnsupportedOpError(f"unsupported layer {where}")
        elif n.op == "call_function":
            fn = n.target
            fname = getattr(fn, "__name__", str(fn))
            where = f"{fname} at node {n.name!r}"
            if fn in _ADD:
                if len(ins) < 2 or any(not isinstance(a, fx.Node) for a in n.args):
                    raise UnsupportedOpError(f"unsupported op {where}: only the sum of two activations "
                                             "(a residual connection) is supported, not adding a constant")
                emit(n, ir.Add(), ins, where)
            elif fn in (F.relu, torch.relu):
                emit(n, ir.ReLU(), ins, where)
            elif fn is torch.flatten:
                start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
                if start != 1 or len(shape_of(n)) != 1:
                    raise UnsupportedOpError(f"unsupported op {where}: only torch.flatten(x, 1)")
                emit(n, ir.Flatten(), ins, where)
            elif fn in (F.dropout, F.dropout2d):
                alias[n.name] = ins[0]
            elif fn is F.avg_pool2d:
                kw = dict(zip(["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                               "divisor_override"], n.args[1:]))
                kw.update(n.kwargs)
                emit(n, _avgpool(kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                                 kw.get("ceil_mode", False), kw.get("count_include_pad", True),
                                 kw.get("divisor_override"), where), ins, where)
            elif fn is F.adaptive_avg_pool2d:
                emit(n, _adaptive(n.args[1] if len(n.args) > 1 else n.kwargs["output_size"],
                                  shape_of(n.args[0]), where), ins, where)
            else:
                raise UnsupportedOpError(f"unsupported op {where}")
        elif n.op == "call_method":
            where = f"Tensor.{n.target} at node {n.name!r}"
            if n.target in _FLATTEN_METHODS and len(shape_of(n)) == 1:
                if len(shape_of(n.args[0])) == 1:
                    alias[n.name] = ins[0]
                else:
                    emit(n, ir.Flatten(), ins, where)
            elif n.target in _PASS_METHODS:
                alias[n.name] = ins[0]
            elif n.target == "relu":
                emit(n, ir.ReLU(), ins, where)
            else:
                raise UnsupportedOpError(f"unsupported op {where}")
    if output_name is None or not nodes:
        raise SpikeportError("the traced model has no output")
    # keep only what the output depends on, in order; make the output node last
    needed = {output_name}
    for node in reversed(nodes):
        if node.name in needed:
            needed.update(node.inputs)
    kept = [n for n in nodes if n.name in needed]
    out = next(n for n in kept if n.name == output_name)
    kept.remove(out)
    kept.append(out)
    return ir.Graph(kept, name=name or type(model).__name__)
