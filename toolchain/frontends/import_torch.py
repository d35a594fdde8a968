"""Import a PyTorch ``nn.Module`` into the float graph IR with torch.fx.

Supported: Conv2d, Linear, BatchNorm1d/2d, ReLU, QCFS and any element-wise activation module or
function that computes ReLU, a QCFS staircase or a clipped ReLU (ReLU6, Hardtanh, clamp: found by
probing it), AvgPool2d and AdaptiveAvgPool2d (exact divisions), global average pooling as
``mean`` over H and W, MaxPool2d (kept as such: the passes replace it or make it spiking),
residual additions, ``torch.cat`` along the channels, and every rearrangement of the features that
returns to a (C, H, W) or flat layout (flatten, view, reshape, transpose, permute, chunk, split,
narrow, strided slicing ``x[:, :, ::2, ::2]``: channel shuffles and splits, subsampling), constant
zero padding (``F.pad``, ``nn.ZeroPad2d``: :func:`zero_padding`), per-channel affine maps of an
activation with constant operands (``(x - mean) / std`` with buffers: a BatchNorm node), Dropout and
Identity. Pooling and view arguments computed from traced sizes (``F.avg_pool2d(x, x.size()[3])``,
``x.view(x.size(0), -1)``) take the values they have on the example input. A module called more
than once (a shared ``self.relu``) becomes one node per call. Anything else raises
:class:`UnsupportedOpError` naming the operation and the node.

Child-less modules outside torch.nn are probed before tracing: one that computes an element-wise
activation or a per-channel affine map is a leaf (its node is what it computes); any other one (the
CIFAR ResNets' ``LambdaLayer`` holding a lambda, a small wrapper around tensor ops) is traced
through, and an error inside it names it.

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

from spikeport.toolchain.errors import SpikeportError, UnsupportedOpError
from spikeport.toolchain.frontends import activations
from spikeport.toolchain.ir import ann
from spikeport.toolchain.passes.normalize import zero_padding


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float64)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _torch_layer(m: nn.Module) -> bool:
    """A torch.nn layer: a leaf for torch.fx by default (nn.Sequential is traced through)."""
    return fx.Tracer().is_leaf_module(m, "")


def _childless(m: nn.Module) -> bool:
    return not any(True for _ in m.children())


class _Tracer(fx.Tracer):
    """torch.nn layers are leaves, and so are the child-less modules in ``leaves`` (found by
    :func:`_probe_modules` to compute an element-wise activation or a per-channel affine map). Any
    other child-less module is traced through; ``traced_into`` records them (path -> class name)."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self.leaves = leaves
        self.traced_into: dict[str, str] = {}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if super().is_leaf_module(m, qualname):
            return True
        if not _childless(m):
            return False
        if qualname in self.leaves:
            return True
        self.traced_into[qualname] = type(m).__name__
        return False

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except SpikeportError:
            raise
        except Exception as exc:
            path = self.path_of_module(m)
            if path not in self.traced_into:
                raise
            raise UnsupportedOpError(
                f"{type(m).__name__} {path!r} computes no element-wise activation or per-channel affine map, so "
                f"spikeport traces through it, and torch.fx cannot: {exc}") from exc


def _classify(fn: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, ...]) -> ann.Op | None:
    """What an element-wise function of activations shaped ``shape`` computes: a per-channel affine
    map (a BatchNorm node, or the identity; evaluated in float64, so the constants are exact) or an
    activation (ReLU, QCFS, clipped ReLU; evaluated in float32, as it runs); None if neither."""

    def f64(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fn(torch.tensor(x, dtype=torch.float64)).double().numpy()

    def f32(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return fn(torch.as_tensor(x, dtype=torch.float64).float()).double().numpy()

    op = activations.affine(f64, shape)
    if op is not None:
        return op
    try:
        return activations.probe(f32, shape)
    except Exception:  # it does not run on the probe's values: not an element-wise function
        return None


def _probe_modules(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, dict[tuple[int, ...], ann.Op]]:
    """Runs the model once on zeros and classifies every child-less module outside torch.nn by what
    it computes on the shapes it is called with (:func:`_classify`). Returns those that compute an
    element-wise activation or affine map on every call (path -> {input shape: op}): the tracer keeps
    them as leaves. The others (a module that slices, pads, reshapes, or is called with several
    tensors) are traced through."""
    calls: dict[str, list[tuple[int, ...] | None]] = {}
    modules = {name: m for name, m in model.named_modules() if name and _childless(m) and not _torch_layer(m)}

    def recorder(name: str) -> Callable:
        def hook(m: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            one = len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor) and args[0].dim() > 1
            same = one and isinstance(out, torch.Tensor) and out.shape == args[0].shape
            calls.setdefault(name, []).append(tuple(args[0].shape[1:]) if same else None)
        return hook

    handles = [m.register_forward_hook(recorder(name), with_kwargs=True) for name, m in modules.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(2, *input_shape))
    except Exception as exc:
        raise SpikeportError(f"model {type(model).__name__} does not run on inputs of shape "
                             f"(batch, {', '.join(map(str, input_shape))}): {exc}") from exc
    finally:
        for h in handles:
            h.remove()
    found: dict[str, dict[tuple[int, ...], ann.Op]] = {}
    for name, shapes in calls.items():
        if None in shapes:
            continue
        ops = {shape: _classify(modules[name], shape) for shape in dict.fromkeys(shapes)}
        if all(op is not None for op in ops.values()):
            found[name] = ops
    return found


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


def _conv(m: nn.Conv2d, where: str) -> ann.Conv2d:
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
    return ann.Conv2d(_np(m.weight), _np(m.bias), _pair(m.stride), _pair(pad), _pair(m.dilation), m.groups)


def _bn(m: nn.modules.batchnorm._BatchNorm, where: str) -> ann.BatchNorm:
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedOpError(f"BatchNorm {where}: no running statistics (track_running_stats=False)")
    n = m.num_features
    gamma = _np(m.weight) if m.weight is not None else np.ones(n)
    beta = _np(m.bias) if m.bias is not None else np.zeros(n)
    return ann.BatchNorm(_np(m.running_mean), _np(m.running_var), gamma, beta, float(m.eps))


def _avgpool(kernel, stride, padding, ceil_mode, count_include_pad, divisor, where: str) -> ann.AvgPool2d:
    if divisor is not None:
        raise UnsupportedOpError(f"AvgPool2d {where}: divisor_override")
    return ann.AvgPool2d(_pair(kernel), _pair(stride if stride else kernel), _pair(padding), bool(ceil_mode),
                        bool(count_include_pad))


def _maxpool(kernel, stride, padding, dilation, ceil_mode, where: str) -> ann.MaxPool2d:
    if _pair(dilation) != (1, 1):
        raise UnsupportedOpError(f"MaxPool2d {where}: dilation {dilation}")
    return ann.MaxPool2d(_pair(kernel), _pair(stride if stride else kernel), _pair(padding), bool(ceil_mode))


def _adaptive(out_size, in_shape: tuple[int, ...], where: str) -> ann.AvgPool2d:
    oh, ow = _pair(out_size) if out_size is not None else in_shape[-2:]
    oh, ow = oh or in_shape[-2], ow or in_shape[-1]
    h, w = in_shape[-2:]
    if h % oh or w % ow:
        raise UnsupportedOpError(f"AdaptiveAvgPool2d {where}: input {h}x{w} is not a multiple of {oh}x{ow}")
    return ann.AvgPool2d((h // oh, w // ow), (h // oh, w // ow))


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


_ADD = {operator.add, operator.iadd, torch.add}
_SHAPE_METHODS = {"view", "reshape", "transpose", "permute", "contiguous", "flatten", "chunk", "split", "narrow",
                  "squeeze", "unsqueeze"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.transpose, torch.permute, torch.chunk, torch.split,
                    torch.narrow, torch.squeeze, torch.unsqueeze, operator.getitem}
_DROP = {F.dropout, F.dropout2d}
_PAD = {F.pad: ("pad", "mode", "value"), torch.constant_pad_nd: ("pad", "value")}  # the arguments after the input


def _pads_per_axis(pad: tuple[int, ...] | list[int], dims: int, where: str) -> list[tuple[int, int]]:
    """``F.pad``'s (last-axis-first) pad list as (before, after) per axis after the batch axis."""
    pad = [int(v) for v in pad]
    if len(pad) % 2 or len(pad) // 2 > dims:
        raise UnsupportedOpError(f"unsupported op {where}: pad {pad} for a {dims}-D tensor")
    per = [(0, 0)] * dims
    for k in range(len(pad) // 2):
        per[dims - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if per[0] != (0, 0):
        raise UnsupportedOpError(f"unsupported op {where}: pads the batch axis")
    return per[1:]


class _TorchImporter:
    def __init__(self, model: nn.Module, input_shape: tuple[int, ...]) -> None:
        self.model = model.eval()
        self.probed = _probe_modules(self.model, tuple(input_shape))
        tracer = _Tracer(set(self.probed))
        try:
            graph = tracer.trace(self.model)
        except Exception as exc:
            raise SpikeportError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
        self.traced_into = tracer.traced_into
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
        self.nodes: list[ann.Node] = []
        self.alias: dict[str, str] = {}  # fx node -> IR node (identity-like nodes map to their input)
        self.pending: dict[str, str] = {}  # fx node of a rearrangement -> the fx node it starts from
        # the nodes whose value depends on the input; the others (buffers, parameters, arithmetic on
        # them) are constants, read from ``values`` where an op uses them as operands
        self.dynamic: set[str] = set()
        for n in self.gm.graph.nodes:
            if n.op == "placeholder" or any(a.name in self.dynamic for a in n.all_input_nodes):
                self.dynamic.add(n.name)

    # -- helpers ---------------------------------------------------------------------------------
    def shape_of(self, n: fx.Node) -> tuple[int, ...]:
        v = self.values.get(n.name)
        return tuple(v.shape[1:]) if isinstance(v, torch.Tensor) else ()

    def emit(self, n: fx.Node, op: ann.Op, inputs: list[str], where: str) -> str:
        # named after the module path ("features.3") where there is one; a module called twice
        # (torchvision's BasicBlock calls self.relu twice) is two nodes: "layer1.0.relu", "layer1.0.relu#2"
        inside = self.inside(n)
        base = str(n.target) if n.op == "call_module" else f"{inside[0]}.{n.name}" if inside else n.name
        name = ann.unique_name(base, {m.name for m in self.nodes})
        self.nodes.append(ann.Node(name, op, inputs, self.shape_of(n), source=where))
        self.alias[n.name] = name
        return name

    def inside(self, n: fx.Node) -> tuple[str, str] | None:
        """(path, class name) of the innermost traced-through child-less module ``n`` comes from."""
        stack = n.meta.get("nn_module_stack") or {}
        path = next(reversed(stack), None)
        return (path, self.traced_into[path]) if path in self.traced_into else None

    def ir_name(self, a: fx.Node, user: fx.Node) -> str:
        """The IR node holding ``a``'s value, turning a pending rearrangement into a Select."""
        if a.name in self.pending:
            return self.materialize(a)
        if a.name in self.alias:
            return self.alias[a.name]
        if a.op == "get_attr" or a.name not in self.dynamic:
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
            self.emit(n, ann.Flatten(), [src], f"flatten at node {n.name!r}")
        else:
            self.emit(n, ann.Select(flat, out_shape), [src], f"rearrangement at node {n.name!r}")
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
            self.emit(n, ann.Linear(_np(m.weight), _np(m.bias)), ins, where)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            self.emit(n, _bn(m, where), ins, where)
        elif isinstance(m, nn.ReLU):
            self.emit(n, ann.ReLU(), ins, where)
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
        elif isinstance(m, nn.ConstantPad1d | nn.ConstantPad2d | nn.ConstantPad3d):
            self.zero_pad(n, m.padding, "constant", m.value, where)
        elif n.target in self.probed and in_shape in self.probed[n.target]:
            self.place(n, self.probed[n.target][in_shape], ins, where)
        elif _childless(m) and in_shape and self.shape_of(n) == in_shape:
            self.activation(n, m, in_shape, ins, where)
        else:
            raise UnsupportedOpError(f"unsupported layer {where}")

    def place(self, n: fx.Node, op: ann.Op, ins: list[str], where: str) -> None:
        if isinstance(op, ann.Identity):
            self.alias[n.name] = ins[0]
        else:
            self.emit(n, op, ins, where)

    def activation(self, n: fx.Node, fn: Callable, in_shape: tuple[int, ...], ins: list[str], where: str) -> None:
        self.place(n, _probe_activation(fn, in_shape, where), ins, where)

    def zero_pad(self, n: fx.Node, pad, mode: str, value, where: str) -> None:
        """Constant zero padding (F.pad, nn.ZeroPad2d): an Embed or a one-hot convolution."""
        if mode != "constant":
            raise UnsupportedOpError(f"unsupported op {where}: {mode!r} padding (only constant zero padding is "
                                     "supported)")
        if value not in (None, 0):
            raise UnsupportedOpError(f"unsupported op {where}: pads with the value {value}, not zero (only zero "
                                     "padding is a linear map of spikes)")
        src = n.args[0]
        shape = self.shape_of(src)
        pads = [pad] * 2 * len(shape[1:]) if isinstance(pad, int) else pad
        op = zero_padding(shape, _pads_per_axis(pads, len(shape) + 1, where), where)
        ins = [self.ir_name(src, n)]
        if op is None:
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
        pooled = self.emit(n, ann.AvgPool2d((h, w), (h, w)), self.tensor_inputs(n), where)
        self.nodes[-1].shape = (in_shape[0], 1, 1)
        if not keepdim:  # (batch, C): a flatten after the pool
            flat = ann.unique_name(f"{pooled}.flatten", {m.name for m in self.nodes})
            self.nodes.append(ann.Node(flat, ann.Flatten(), [pooled], (in_shape[0],), where))
            self.alias[n.name] = flat

    def call_function(self, n: fx.Node) -> None:
        fn = n.target
        where = f"{getattr(fn, '__name__', str(fn))} at node {n.name!r}"
        if fn in _SHAPE_FUNCTIONS:
            self.start_rearrangement(n)
            return
        if fn in _ADD and len(self.dynamic_tensors(n)) != 1:
            ins = self.tensor_inputs(n)
            if len(ins) < 2 or any(not isinstance(a, fx.Node) for a in n.args) or n.kwargs:
                raise UnsupportedOpError(f"unsupported op {where}: only the sum of two activations (a residual "
                                         "connection) is supported")
            self.emit(n, ann.Add(), ins, where)
        elif fn in _PAD:
            kw = self.arguments(n, _PAD[fn])
            self.zero_pad(n, kw["pad"], kw.get("mode", "constant"), kw.get("value"), where)
        elif fn is torch.cat:
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
            if len(self.shape_of(n)) != 3 or dim % 4 != 1:
                raise UnsupportedOpError(f"unsupported op {where}: only concatenation along the channels "
                                         "of (batch, C, H, W) tensors")
            self.emit(n, ann.Concat(), [self.ir_name(a, n) for a in n.args[0]], where)
        elif fn in _DROP:
            self.alias[n.name] = self.tensor_inputs(n)[0]
        elif fn is F.avg_pool2d:
            kw = self.arguments(n, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                    "divisor_override"))
            self.emit(n, _avgpool(kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("ceil_mode", False),
                                  kw.get("count_include_pad", True), kw.get("divisor_override"), where),
                      self.tensor_inputs(n), where)
        elif fn is F.max_pool2d:
            kw = self.arguments(n, ("kernel_size", "stride", "padding", "dilation", "ceil_mode"))
            self.emit(n, _maxpool(kw["kernel_size"], kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1),
                                  kw.get("ceil_mode", False), where), self.tensor_inputs(n), where)
        elif fn is F.adaptive_avg_pool2d:
            self.emit(n, _adaptive(self.arguments(n, ("output_size",))["output_size"], self.shape_of(n.args[0]),
                                   where), self.tensor_inputs(n), where)
        elif fn is torch.mean:
            self.global_mean(n, n.args[1] if len(n.args) > 1 else n.kwargs.get("dim"),
                             bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)), where)
        else:
            self.elementwise(n, where)

    def call_method(self, n: fx.Node) -> None:
        where = f"Tensor.{n.target} at node {n.name!r}"
        if n.target in _SHAPE_METHODS:
            self.start_rearrangement(n)
        elif n.target == "mean":
            self.global_mean(n, n.args[1] if len(n.args) > 1 else n.kwargs.get("dim"),
                             bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False)), where)
        else:
            self.elementwise(n, where)

    def arguments(self, n: fx.Node, names: tuple[str, ...]) -> dict[str, Any]:
        """The arguments after the input by name, with the values traced sizes and constants had on
        the example (``F.avg_pool2d(x, x.size()[3])``)."""
        kw = dict(zip(names, n.args[1:]))
        kw.update(n.kwargs)
        return {k: fx.node.map_arg(v, lambda a: self.values[a.name]) for k, v in kw.items()}

    def dynamic_tensors(self, n: fx.Node) -> list[fx.Node]:
        """The activations ``n`` reads (its operands that depend on the input and hold tensors)."""
        return [a for a in n.all_input_nodes if a.name in self.dynamic and (
            isinstance(self.values.get(a.name), torch.Tensor) or a.name in self.alias or a.name in self.pending)]

    def elementwise(self, n: fx.Node, where: str) -> None:
        """A function of one activation (any other operands constants: buffers, parameters, numbers),
        applied element by element: a per-channel affine map (``(x - mean) / std``) becomes a
        BatchNorm node; relu, relu6, hardtanh, clamp, a user's own QCFS are probed; anything else is an
        unsupported op."""
        tensors = self.dynamic_tensors(n)
        in_shape = self.shape_of(tensors[0]) if len(tensors) == 1 else ()
        if len(tensors) != 1 or not in_shape or self.shape_of(n) != in_shape:
            raise UnsupportedOpError(f"unsupported op {where}")
        src = tensors[0]

        def fn(t: torch.Tensor) -> torch.Tensor:
            args = fx.node.map_arg(n.args, lambda a: t if a is src else self.values[a.name])
            kwargs = fx.node.map_arg(n.kwargs, lambda a: t if a is src else self.values[a.name])
            return getattr(args[0], n.target)(*args[1:], **kwargs) if n.op == "call_method" else \
                n.target(*args, **kwargs)

        op = activations.affine(lambda x: fn(torch.tensor(x, dtype=torch.float64)).double().numpy(), in_shape)
        ins = [self.ir_name(src, n)]
        if op is not None:
            self.place(n, op, ins, where)
            return
        try:
            self.activation(n, fn, in_shape, ins, where)
        except UnsupportedOpError as exc:
            raise UnsupportedOpError(f"unsupported op {where}: {exc}") from None

    # -- the whole graph -------------------------------------------------------------------------
    def run(self, name: str | None) -> ann.Graph:
        output_name = None
        for n in self.gm.graph.nodes:
            if n.op == "placeholder":
                if self.nodes:
                    raise UnsupportedOpError(f"model has more than one input ({n.name!r})")
                self.emit(n, ann.Input(self.input_shape), [], "input")
            elif n.op == "get_attr" or n.name not in self.dynamic or (n.op == "call_method" and n.target == "size") \
                    or (n.op == "call_function" and n.target is getattr):
                continue  # constants (operands of the ops that use them), sizes
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
                try:
                    getattr(self, n.op)(n)
                except UnsupportedOpError as exc:
                    inside = self.inside(n)
                    if inside is None:
                        raise
                    raise UnsupportedOpError(f"{exc} (inside {inside[1]} {inside[0]!r}, which spikeport traced "
                                             "through: it is no activation or per-channel affine map it "
                                             "recognises)") from None
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
        return ann.Graph(kept, name=name or type(self.model).__name__)


def import_torch(model: nn.Module, input_shape: tuple[int, ...], name: str | None = None) -> ann.Graph:
    """Trace ``model`` (in eval mode) for inputs of shape ``(batch, *input_shape)``."""
    return _TorchImporter(model, tuple(input_shape)).run(name)
