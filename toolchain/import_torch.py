"""Import a PyTorch ``nn.Module`` into the float graph IR with torch.fx.

Supported: Conv2d, Linear, BatchNorm1d/2d, ReLU, QCFS and any element-wise activation module or
function that computes ReLU, a QCFS staircase or a clipped ReLU (ReLU6, Hardtanh, clamp: found by
probing it), AvgPool2d and AdaptiveAvgPool2d (exact divisions), global average pooling as
``mean`` over H and W, MaxPool2d (kept as such: the passes replace it or make it spiking),
residual additions, ``torch.cat`` along the channels, and every rearrangement of the features that
returns to a (C, H, W) or flat layout (flatten, view, reshape, transpose, permute, chunk, split,
narrow: channel shuffles and splits), Dropout and Identity. A module called more than once (a
shared ``self.relu``) becomes one node per call. Anything else raises :class:`UnsupportedOpError`
naming the operation and the node.

One handler per kind of node (``_MODULES``, ``_FUNCTIONS``, ``_METHODS``), as lava-dl's netx has one
``create_<layer>`` per layer type.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

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


class _Recorder(fx.Interpreter):
    """Runs the traced module once on an example and keeps every node's value (tensor shapes, and
    the sizes that view/reshape calls compute)."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.values: dict[str, Any] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.values[n.name] = out
        return out


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
    if divisor is not None:
        raise UnsupportedOpError(f"AvgPool2d {where}: divisor_override")
    return ir.AvgPool2d(_pair(kernel), _pair(stride if stride else kernel), _pair(padding), bool(ceil_mode),
                        bool(count_include_pad))


def _maxpool(kernel, stride, padding, dilation, ceil_mode, where: str) -> ir.MaxPool2d:
    if _pair(dilation) != (1, 1):
        raise UnsupportedOpError(f"MaxPool2d {where}: dilation {dilation}")
    return ir.MaxPool2d(_pair(kernel), _pair(stride if stride else kernel), _pair(padding), bool(ceil_mode))


def _adaptive(out_size, in_shape: tuple[int, ...], where: str) -> ir.AvgPool2d:
    oh, ow = _pair(out_size) if out_size is not None else in_shape[-2:]
    oh, ow = oh or in_shape[-2], ow or in_shape[-1]
    h, w = in_shape[-2:]
    if h % oh or w % ow:
        raise UnsupportedOpError(f"AdaptiveAvgPool2d {where}: input {h}x{w} is not a multiple of {oh}x{ow}")
    return ir.AvgPool2d((h // oh, w // ow), (h // oh, w // ow))


def _probe_activation(fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...], where: str):
    """Classify an element-wise module or function by evaluating it (float32, as it runs)."""

    def array_fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fn(torch.as_tensor(x, dtype=torch.float64).float()).double().numpy()

    op = activations.probe(array_fn, shape)
    if op is None:
        raise UnsupportedOpError(
            f"unsupported activation {where}: it is not ReLU, a QCFS staircase, a clipped ReLU or the "
            "identity, with one threshold or one per channel")
    return op


_ADD = {operator.add, torch.add}
_SHAPE_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "flatten", "chunk", "split", "narrow",
                  "squeeze", "unsqueeze"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.chunk, torch.split,
                    torch.narrow, torch.squeeze, torch.unsqueeze, operator.getitem}
_DROP = {F.dropout, F.dropout2d}


class _TorchImporter:
    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.model = model.eval()
        try:
            graph = _Tracer().trace(self.model)
        except Exception as exc:
            raise SpikeportError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
        self.gm = fx.GraphModule(self.model, graph)
        rec = _Recorder(self.gm)
        try:
            with torch.no_grad():
                rec.run(torch.zeros(2, *input_shape))
        except Exception as exc:
            raise SpikeportError(f"model {type(model).__name__} does not run on inputs of shape "
                                 f"(batch, {', '.join(map(str, input_shape))}): {exc}") from exc
        self.values = rec.values
        self.input_shape = tuple(input_shape)
        self.modules = dict(self.gm.named_modules())
        self.nodes: list[ir.Node] = []
        self.alias: dict[str, str] = {}  # fx node -> IR node (identity-like nodes map to their input)
        self.pending: dict[str, str] = {}  # fx node of a rearrangement -> the fx node it starts from

    # -- helpers ---------------------------------------------------------------------------------
    def shape_of(self, n: fx.Node) -> tuple[int, ...]:
        v = self.values.get(n.name)
        return tuple(v.shape[1:]) if isinstance(v, torch.Tensor) else ()

    def emit(self, n: fx.Node, op: ir.Op, inputs: list[str], where: str) -> str:
        # named after the module path ("features.3") where there is one; a module called twice
        # (torchvision's BasicBlock calls self.relu twice) is two nodes: "layer1.0.relu", "layer1.0.relu#2"
        base = str(n.target) if n.op == "call_module" else n.name
        name = ir.unique_name(base, {m.name for m in self.nodes})
        self.nodes.append(ir.Node(name, op, inputs, self.shape_of(n), source=where))
        self.alias[n.name] = name
        return name

    def ir_name(self, a: fx.Node, user: fx.Node) -> str:
        """The IR node holding ``a``'s value, turning a pending rearrangement into a Select."""
        if a.name in self.pending:
            return self.materialize(a)
        if a.name in self.alias:
            return self.alias[a.name]
        if a.op == "get_attr":
            raise UnsupportedOpError(f"node {user.name!r} uses the constant tensor {a.target!r} as an operand "
                                     "(only activations may flow between layers)")
        raise UnsupportedOpError(f"node {user.name!r} uses {a.name!r}, which is not an activation")

    def tensor_inputs(self, n: fx.Node) -> list[str]:
        return [self.ir_name(a, n) for a in n.all_input_nodes if isinstance(self.values.get(a.name), torch.Tensor)
                or a.name in self.alias or a.name in self.pending]

    def _evaluate(self, n: fx.Node, root: fx.Node, index: torch.Tensor) -> Any:
        """``n``'s value when ``root`` holds ``index`` (rearrangements only; other values as recorded)."""
        if n is root:
            return index
        if n.name not in self.pending:
            return self.values[n.name]
        args = fx.node.map_arg(n.args, lambda a: self._evaluate(a, root, index))
        kwargs = fx.node.map_arg(n.kwargs, lambda a: self._evaluate(a, root, index))
        if n.op == "call_method":
            return getattr(args[0], n.target)(*args[1:], **kwargs)
        if n.op == "call_module":
            return self.modules[n.target](*args, **kwargs)
        return n.target(*args, **kwargs)

    def materialize(self, n: fx.Node) -> str:
        """A rearrangement of ``root``'s features as one Select, found by running it on the index map."""
        if n.name in self.alias:
            return self.alias[n.name]
        root = next(a for a in self.gm.graph.nodes if a.name == self.pending[n.name])
        shape = self.shape_of(root)
        count = int(np.prod(shape))
        index = torch.arange(count, dtype=torch.int64).reshape(1, *shape).expand(2, *shape)
        out = self._evaluate(n, root, index)
        if not isinstance(out, torch.Tensor) or out.dim() not in (2, 4):
            layout = tuple(getattr(out, "shape", ()))
            raise UnsupportedOpError(f"{n.name!r}: the rearrangement ends in layout {layout}, not (batch, C, H, W) "
                                     "or (batch, features)")
        flat = out[0].reshape(-1).numpy().astype(np.int64)
        out_shape = tuple(out.shape[1:])
        src = self.ir_name(root, n)
        if out_shape == shape and np.array_equal(flat, np.arange(count)):
            self.alias[n.name] = src
        elif len(out_shape) == 1 and np.array_equal(flat, np.arange(count)):
            self.emit(n, ir.Flatten(), [src], f"flatten at node {n.name!r}")
        else:
            self.emit(n, ir.Select(flat, out_shape), [src], f"rearrangement at node {n.name!r}")
        return self.alias[n.name]

    def start_rearrangement(self, n: fx.Node) -> None:
        base = n.args[0]
        self.pending[n.name] = self.pending.get(base.name, base.name)

    # -- handlers --------------------------------------------------------------------------------
    def call_module(self, n: fx.Node) -> None:
        m = self.modules[n.target]
        where = f"{type(m).__name__} {n.target!r}"
        in_shape = self.shape_of(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else ()
        ins = self.tensor_inputs(n)
        if isinstance(m, nn.Conv2d):
            self.emit(n, _conv(m, where), ins, where)
        elif isinstance(m, nn.Linear):
            self.emit(n, ir.Linear(_np(m.weight), _np(m.bias)), ins, where)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            self.emit(n, _bn(m, where), ins, where)
        elif isinstance(m, nn.ReLU):
            self.emit(n, ir.ReLU(), ins, where)
        elif isinstance(m, nn.AvgPool2d):
            self.emit(n, _avgpool(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad,
                                  m.divisor_override, where), ins, where)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self.emit(n, _adaptive(m.output_size, in_shape, where), ins, where)
        elif isinstance(m, nn.MaxPool2d):
            self.emit(n, _maxpool(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, where), ins, where)
        elif isinstance(m, nn.Flatten):
            self.start_rearrangement(n)
        elif isinstance(m, nn.Dropout | nn.Dropout2d | nn.Identity):
            self.alias[n.name] = ins[0]
        elif not any(True for _ in m.children()) and in_shape and self.shape_of(n) == in_shape:
            self.activation(n, m, in_shape, ins, where)
        else:
            raise UnsupportedOpError(f"unsupported layer {where}")

    def activation(self, n: fx.Node, fn: Callable, in_shape: tuple[int, ...], ins: list[str], where: str) -> None:
        op = _probe_activation(fn, in_shape, where)
        if isinstance(op, ir.Identity):
            self.alias[n.name] = ins[0]
        else:
            self.emit(n, op, ins, where)

    def global_mean(self, n: fx.Node, dims, keepdim: bool, where: str) -> None:
        in_shape = self.shape_of(n.args[0])
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if len(in_shape) != 3 or sorted(d % 4 for d in dims) != [2, 3]:
            raise UnsupportedOpError(f"unsupported op {where}: only the mean over H and W (global average "
                                     "pooling) is supported")
        h, w = in_shape[1:]
        pooled = self.emit(n, ir.AvgPool2d((h, w), (h, w)), self.tensor_inputs(n), where)
        self.nodes[-1].shape = (in_shape[0], 1, 1)
        if not keepdim:  # (batch, C): a flatten after the pool
            flat = ir.unique_name(f"{pooled}.flatten", {m.name for m in self.nodes})
            self.nodes.append(ir.Node(flat, ir.Flatten(), [pooled], (in_shape[0],), where))
            self.alias[n.name] = flat

    def call_function(self, n: fx.Node) -> None:
        fn = n.target
        where = f"{getattr(fn, '__name__', str(fn))} at node {n.name!r}"
        if fn in _SHAPE_FUNCTIONS:
            self.start_rearrangement(n)
            return
        if fn in _ADD:
            ins = self.tensor_inputs(n)
            if len(ins) < 2 or any(not isinstance(a, fx.Node) for a in n.args):
                raise UnsupportedOpError(f"unsupported op {where}: only the sum of two activations (a residual "
                                         "connection) is supported, not adding a constant")
            self.emit(n, ir.Add(), ins, where)
        elif fn is torch.cat:
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            if len(self.shape_of(n)) != 3 or dim % 4 != 1:
                raise UnsupportedOpError(f"unsupported op {where}: only concatenation along the channels "
                                         "of (batch, C, H, W) tensors")
            self.emit(n, ir.Concat(), [self.ir_name(a, n) for a in n.args[0]], where)
        elif fn in _DROP:
            self.alias[n.name] = self.tensor_inputs(n)[0]
        elif fn is F.avg_pool2d:
            kw = dict(zip(["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                           "divisor_override"], n.args[1:]))
            kw.update(n.kwargs)
            self.emit(n, _avgpool(kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("ceil_mode", False),
                                  kw.get("count_include_pad", True), kw.get("divisor_override"), where),
                      self.tensor_inputs(n), where)
        elif fn is F.max_pool2d:
            kw = dict(zip(["kernel_size", "stride", "padding", "dilation", "ceil_mode"], n.args[1:]))
            kw.update(n.kwargs)
            self.emit(n, _maxpool(kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1),
                                  kw.get("ceil_mode", False), where), self.tensor_inputs(n), where)
        elif fn is F.adaptive_avg_pool2d:
            self.emit(n, _adaptive(n.args[1] if len(n.args) > 1 else n.kwargs["output_size"],
                                   self.shape_of(n.args[0]), where), self.tensor_inputs(n), where)
        elif fn is torch.mean:
            self.global_mean(n, n.args[1] if len(n.args) > 1 else n.kwargs.get("dim"),
                             bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)), where)
        else:
            self.elementwise(n, lambda t: fn(t, *self._rest(n), **self._kwargs(n)), where)

    def call_method(self, n: fx.Node) -> None:
        where = f"Tensor.{n.target} at node {n.name!r}"
        if n.target in _SHAPE_METHODS:
            self.start_rearrangement(n)
        elif n.target == "mean":
            self.global_mean(n, n.args[1] if len(n.args) > 1 else n.kwargs.get("dim"),
                             bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)), where)
        else:
            self.elementwise(n, lambda t: getattr(t, n.target)(*self._rest(n), **self._kwargs(n)), where)

    def _rest(self, n: fx.Node) -> list:
        return [self.values[a.name] if isinstance(a, fx.Node) else a for a in n.args[1:]]

    def _kwargs(self, n: fx.Node) -> dict:
        return {k: self.values[v.name] if isinstance(v, fx.Node) else v for k, v in n.kwargs.items()}

    def elementwise(self, n: fx.Node, fn: Callable, where: str) -> None:
        """A function of one activation, applied element by element (relu, relu6, hardtanh, clamp, a
        user's own QCFS): probed; anything else is an unsupported op."""
        tensors = [a for a in n.all_input_nodes if isinstance(self.values.get(a.name), torch.Tensor)]
        in_shape = self.shape_of(n.args[0]) if n.args and isinstance(n.args[0], fx.Node) else ()
        if len(tensors) != 1 or not in_shape or self.shape_of(n) != in_shape:
            raise UnsupportedOpError(f"unsupported op {where}")
        try:
            self.activation(n, fn, in_shape, self.tensor_inputs(n), where)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"unsupported op {where}: {exc}") from None

    # -- the whole graph -------------------------------------------------------------------------
    def run(self, name: str | None) -> ir.Graph:
        output_name = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if self.nodes:
                    raise UnsupportedOpError(f"model has more than one input ({n.name!r})")
                self.emit(n, ir.Input(self.input_shape), [], "input")
            elif n.op == "get_attr" or (n.op == "call_method" and n.target == "size") \
                    or (n.op == "call_function" and n.target is getattr):
                continue
            elif n.op == "output":
                out = n.args[0]
                if not isinstance(out, fx.Node) or not isinstance(self.values.get(out.name), torch.Tensor):
                    raise UnsupportedOpError("the model must return a single tensor")
                output_name = self.ir_name(out, n)
            elif not isinstance(self.values.get(n.name), torch.Tensor | tuple | list) or \
                    (n.target is operator.getitem and n.args[0].name not in self.pending
                     and not isinstance(self.values.get(n.name), torch.Tensor)):
                continue  # arithmetic on sizes (view(b, c // g, ...)), an element of a size tuple
            else:
                getattr(self, n.op)(n)
        if output_name is None or not self.nodes:
            raise SpikeportError("the traced model has no output")
        # keep only what the output depends on, in order; make the output node last
        needed = {output_name}
        for node in reversed(self.nodes):
            if node.name in needed:
                needed.update(node.inputs)
        kept = [n for n in self.nodes if n.name in needed]
        out = next(n for n in kept if n.name == output_name)
        kept.remove(out)
        kept.append(out)
        return ir.Graph(kept, name=name or type(self.model).__name__)


def import_torch(model: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> ir.Graph:
    """Trace ``model`` (in eval mode) for inputs of shape ``(batch, *input_shape)``."""
    return _TorchImporter(model, tuple(input_shape)).run(name)
