"""Import an ONNX file into the float graph IR with the ``onnx`` package.

Supported ops: Conv, Gemm, MatMul (+ bias Add), BatchNormalization, Relu, AveragePool and MaxPool
(ceil_mode and count_include_pad included; MaxPool is kept for the passes to replace or make
spiking), GlobalAveragePool, ReduceMean over H and W, Concat along the channels, Add of two
activations (residual), Pad with constant zeros (:func:`passes.zero_padding`), Dropout, Identity.
Chains of element-wise ops with scalar or per-channel constants (Mul, Div, Add, Sub, Floor, Ceil,
Round, Clip, Relu, Max, Min, Neg) are evaluated as one function and recognised by what they compute:
a per-channel affine map (an input normalisation ``(x - mean) / std``: a BatchNorm node), ReLU, a
QCFS staircase (how QCFS exports) or a clipped ReLU (ReLU6). Chains of rearrangements (Reshape,
Transpose, Flatten, Split, Slice with or without steps, Squeeze, Unsqueeze: channel shuffles and
splits, strided subsampling) that return to a (C, H, W) or flat layout become one Select, found by
running them on an index map; the shape arithmetic exporters emit for them (Shape, Gather, Concat
of constants ...) is folded. Anything else raises an error naming the op and the node.

One handler per op type (``_Importer.op_<Type>``), as lava-dl's netx has one ``create_<layer>`` per
layer type.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from spikeport.toolchain.errors import ModelFileError, SpikeportError, UnsupportedOpError
from spikeport.toolchain.frontends import activations
from spikeport.toolchain.ir import ann
from spikeport.toolchain.passes.normalize import infer_shapes, zero_padding

ELEMENTWISE = {"Mul", "Div", "Add", "Sub", "Floor", "Ceil", "Round", "Clip", "Relu", "Max", "Min", "Neg",
               "Identity"}
REARRANGE = {"Reshape", "Transpose", "Flatten", "Split", "Slice", "Squeeze", "Unsqueeze"}
FOLDABLE = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Reshape", "ConstantOfShape",
            "Range", "Expand", "Transpose", "Floor", "Div", "Mul", "Add", "Sub"}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _per_channel(c: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether constant ``c`` broadcasts to ``shape`` (batch first) with one value per channel."""
    try:
        b = np.broadcast_to(c, shape)
    except ValueError:
        return False
    first = b[(slice(None), slice(None)) + (slice(0, 1),) * (len(shape) - 2)]
    return bool(np.array_equal(b, np.broadcast_to(first, shape)))


def _eval_elementwise(op: str, args: list[np.ndarray], attrs: dict) -> np.ndarray:
    x = args[0]
    match op:
        case "Mul":
            return x * args[1]
        case "Div":
            return x / args[1]
        case "Add":
            return x + args[1]
        case "Sub":
            return x - args[1]
        case "Floor":
            return np.floor(x)
        case "Ceil":
            return np.ceil(x)
        case "Round":
            return np.round(x)
        case "Relu":
            return np.maximum(x, 0)
        case "Neg":
            return -x
        case "Identity":
            return x
        case "Max":
            return np.maximum.reduce(np.broadcast_arrays(*args))
        case "Min":
            return np.minimum.reduce(np.broadcast_arrays(*args))
        case "Clip":
            lo = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min", -np.inf)
            hi = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max", np.inf)
            return np.clip(x, lo, hi)
    raise AssertionError(op)


def _module_path(node: onnx.NodeProto) -> str:
    """The torch module path PyTorch's dynamo exporter stores with a node ("layer1.0.conv1"), or ""."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return ""
            # ['', 'block', 'block.act1', 'mul']: the scopes nest; the last one above the op is the module
            if isinstance(scopes, list) and len(scopes) > 2 and all(isinstance(x, str) for x in scopes):
                return scopes[-2]
    return ""


def _pads(node: onnx.NodeProto, attrs: dict, kernel: tuple[int, int], strides, dilations) -> tuple[int, int]:
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return (0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if any(s != 1 for s in strides):
            raise UnsupportedOpError(f"{node.op_type} {node.name!r}: auto_pad={auto} with stride > 1")
        total = [d * (k - 1) for d, k in zip(dilations, kernel)]
        if any(t % 2 for t in total):
            raise UnsupportedOpError(f"{node.op_type} {node.name!r}: asymmetric auto_pad={auto}")
        return tuple(t // 2 for t in total)
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise UnsupportedOpError(f"{node.op_type} {node.name!r}: asymmetric padding {pads}")
    return (int(pads[0]), int(pads[1]))


def load_onnx(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a valid ONNX file (truncated or corrupted?): "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    try:
        # checked by path, so that external data (``net.onnx.data``, as PyTorch's default exporter
        # writes it) is found next to the file and must stay inside its folder, whatever the
        # working directory
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path} fails the ONNX checker: {str(exc).splitlines()[0]}") from exc
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        try:
            onnx.load_external_data_for_model(model, str(path.resolve().parent))
        except Exception as exc:
            raise ModelFileError(f"{path}: its external data cannot be read: {str(exc).splitlines()[0]}") from exc
    if not model.graph.node:
        raise ModelFileError(f"{path} holds no ONNX graph nodes (truncated or empty file?)")
    return model


def _fold(node: onnx.NodeProto, args: list[np.ndarray | None], a: dict) -> list[np.ndarray]:
    """A node whose inputs are all constants, evaluated (exporters compute reshape targets this way)."""
    op = node.op_type
    x = args[0]
    match op:
        case "Gather":
            return [np.take(x, args[1].astype(np.int64), axis=int(a.get("axis", 0)))]
        case "Unsqueeze":
            axes = a.get("axes", args[1] if len(args) > 1 else None)
            out = x
            for ax in sorted(int(v) % (out.ndim + len(axes)) for v in axes):
                out = np.expand_dims(out, ax)
            return [out]
        case "Squeeze":
            axes = a.get("axes", args[1] if len(args) > 1 else None)
            return [np.squeeze(x, axis=None if axes is None else tuple(int(v) for v in axes))]
        case "Concat":
            return [np.concatenate([np.atleast_1d(v) for v in args], axis=int(a.get("axis", 0)))]
        case "Cast":
            return [x]
        case "Slice":
            return [_slice(x, *args[1:], **{})]
        case "Reshape":
            return [x.reshape(_target(x.shape, args[1], a))]
        case "ConstantOfShape":
            value = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1)
            return [np.full(x.astype(np.int64), value.reshape(-1)[0])]
        case "Range":
            return [np.arange(x, args[1], args[2])]
        case "Expand":
            return [x * np.ones(args[1].astype(np.int64))]
        case "Transpose":
            return [np.transpose(x, a.get("perm"))]
        case _:
            return [_eval_elementwise(op, args, a)]


def _slice(x: np.ndarray, starts, ends, axes=None, steps=None) -> np.ndarray:
    index = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        index[int(ax)] = slice(int(s), int(max(min(e, 2 ** 62), -(2 ** 62))), int(st))
    return x[tuple(index)]


def _target(shape: tuple[int, ...], target: np.ndarray, a: dict) -> tuple[int, ...]:
    """ONNX Reshape's target: 0 copies the input dimension (unless allowzero), -1 is inferred."""
    out = [int(v) for v in np.asarray(target).reshape(-1)]
    if not a.get("allowzero", 0):
        out = [shape[i] if v == 0 else v for i, v in enumerate(out)]
    return tuple(out)


class _Importer:
    """Reads the nodes in order; ``alias`` maps an ONNX tensor to the IR node holding it, ``region``
    an element-wise tensor to its (root, ops), ``arranged`` a rearranged tensor to its (root, ops)."""

    def __init__(self, path: Path, model: onnx.ModelProto) -> None:
        self.path, g = path, model.graph
        self.consts: dict[str, np.ndarray] = {}
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            self.consts[init.name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
        inputs = [i for i in g.input if i.name not in self.consts]
        if len(inputs) != 1 or len(g.output) != 1:
            raise UnsupportedOpError(f"{path}: the model must have exactly one input and one output "
                                     f"(has {len(inputs)} and {len(g.output)})")
        dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) < 2 or any(d <= 0 for d in dims[1:]):
            raise UnsupportedOpError(f"{path}: input {inputs[0].name!r} needs a static shape after the batch "
                                     f"axis, got {dims}")
        self.graph = g
        self.nodes: list[ann.Node] = [ann.Node("input", ann.Input(tuple(dims[1:])), [], source=inputs[0].name)]
        self.alias: dict[str, str] = {inputs[0].name: "input"}
        self.region: dict[str, tuple[str, list[onnx.NodeProto]]] = {}
        self.arranged: dict[str, tuple[str, list[tuple[onnx.NodeProto, int]]]] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.order: dict[int, int] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.shapes:
            for n in infer_shapes(ann.Graph(list(self.nodes))).nodes:
                self.shapes[n.name] = tuple(n.shape)
        return self.shapes[name]

    def tensor_shape(self, tensor: str) -> tuple[int, ...]:
        """The shape of any tensor the importer knows (batch axis 1): constants, activations, rearrangements."""
        if tensor in self.consts:
            return tuple(self.consts[tensor].shape)
        if tensor in self.arranged:
            return tuple(self.evaluate_arranged(tensor).shape)
        return (1, *self.shape(self.close(tensor)))

    def emit(self, onnx_node: onnx.NodeProto, op: ann.Op, ins: list[str]) -> str:
        # the module path is the model's own name for the layer (as the torch.fx import gives it):
        # PyTorch's dynamo exporter records it as metadata, the TorchScript one names nodes
        # "/<module path>/<Op>_<k>"; the full node name where neither says or the path is taken
        full = (onnx_node.name or onnx_node.output[0]).strip("/")
        scope = _module_path(onnx_node) or full.rpartition("/")[0]
        taken = {n.name for n in self.nodes}
        candidates = [c.replace("/", ".") for c in (scope, full) if c]
        name = next((c for c in candidates if c not in taken), None) or ann.unique_name(candidates[-1], taken)
        self.nodes.append(ann.Node(name, op, ins, source=f"{onnx_node.op_type} {onnx_node.name!r}"))
        return name

    def close(self, tensor: str) -> str:
        """The IR node for an activation tensor, turning a pending element-wise region or
        rearrangement into one."""
        if tensor in self.alias:
            return self.alias[tensor]
        if tensor in self.arranged:
            return self.close_arranged(tensor)
        if tensor not in self.region:
            raise SpikeportError(f"tensor {tensor!r} is used before it is computed")
        root, ops = self.region[tensor]

        def fn(z: np.ndarray) -> np.ndarray:  # (rows, *shape): constants broadcast as in the model
            env = {t: z for t, a in self.alias.items() if a == root}
            for op_node in ops:
                args = [env[i] if i in env else self.consts.get(i) if i else None for i in op_node.input]
                env[op_node.output[0]] = _eval_elementwise(op_node.op_type, args, _attrs(op_node))
            return np.broadcast_to(env[tensor], z.shape)

        op = activations.affine(fn, tuple(self.shape(root))) or activations.probe(fn, tuple(self.shape(root)))
        last = ops[-1]
        if op is None:
            raise UnsupportedOpError(
                f"unsupported activation: element-wise ops {[o.op_type for o in ops]} ending at node "
                f"{last.name!r} compute neither ReLU, a QCFS staircase, a clipped ReLU, the identity nor a "
                "per-channel affine map, with one threshold or one per channel")
        self.alias[tensor] = root if isinstance(op, ann.Identity) else self.emit(last, op, [root])
        return self.alias[tensor]

    def root_of(self, tensor: str) -> str | None:
        if tensor in self.region:
            return self.region[tensor][0]
        return self.alias.get(tensor)

    def evaluate_arranged(self, tensor: str) -> np.ndarray:
        """A rearranged tensor's index map: which input feature sits where (batch axis 1)."""
        root, ops = self.arranged[tensor]
        shape = self.shape(root)
        env = {"": np.arange(int(np.prod(shape)), dtype=np.int64).reshape(1, *shape)}
        first = ops[0][0]
        env[first.input[0]] = env[""]
        for node, _ in ops:
            args = [env.get(i, self.consts.get(i)) if i else None for i in node.input]
            a = _attrs(node)
            x = args[0]
            match node.op_type:
                case "Reshape":
                    outs = [x.reshape(_target(x.shape, args[1], a))]
                case "Transpose":
                    outs = [np.transpose(x, a.get("perm"))]
                case "Flatten":
                    axis = int(a.get("axis", 1)) % x.ndim
                    outs = [x.reshape(int(np.prod(x.shape[:axis])), -1)]
                case "Split":
                    axis = int(a.get("axis", 0)) % x.ndim
                    sizes = a.get("split", args[1] if len(args) > 1 and args[1] is not None else None)
                    if sizes is None:
                        sizes = [x.shape[axis] // len(node.output)] * len(node.output)
                    outs = np.split(x, np.cumsum([int(v) for v in sizes])[:-1], axis=axis)
                case "Slice":
                    outs = [_slice(x, *args[1:])]
                case "Squeeze" | "Unsqueeze":
                    outs = _fold(node, args, a)
            env.update(zip(node.output, outs))
        return env[tensor]

    def close_arranged(self, tensor: str) -> str:
        root, ops = self.arranged[tensor]
        out = self.evaluate_arranged(tensor)
        node = ops[-1][0]
        if out.ndim not in (2, 4) or out.shape[0] != 1:
            raise UnsupportedOpError(f"{node.op_type} node {node.name!r}: the rearrangement ends in layout "
                                     f"{out.shape}, not (batch, C, H, W) or (batch, features)")
        flat, shape = out.reshape(-1), tuple(out.shape[1:])
        count = int(np.prod(self.shape(root)))
        if np.array_equal(flat, np.arange(count)):
            self.alias[tensor] = root if shape == self.shape(root) else self.emit(node, ann.Flatten(), [root])
        else:
            self.alias[tensor] = self.emit(node, ann.Select(flat, shape), [root])
        return self.alias[tensor]

    # -- the graph -------------------------------------------------------------------------------
    def run(self) -> ann.Graph:
        nodes = list(self.graph.node)  # one Python object per node, so id() is stable
        self.order = {id(n): i for i, n in enumerate(nodes)}
        for node in nodes:
            self.visit(node)
        final = self.close(self.graph.output[0].name)
        keep = {final}
        for n in reversed(self.nodes):
            if n.name in keep:
                keep.update(n.inputs)
        kept = [n for n in self.nodes if n.name in keep]
        kept.append(kept.pop(next(i for i, n in enumerate(kept) if n.name == final)))
        return ann.Graph(kept, name=self.path.stem)

    def visit(self, node: onnx.NodeProto) -> None:
        op, a = node.op_type, _attrs(node)
        where = f"{op} node {node.name!r}"
        if op == "Constant":
            value = numpy_helper.to_array(a["value"])
            self.consts[node.output[0]] = value.astype(np.float64) if value.dtype.kind == "f" else value
            return
        known = (self.consts, self.alias, self.region, self.arranged)
        for i in node.input:
            if i and not any(i in k for k in known):
                raise ModelFileError(f"{where} reads {i!r}, which no earlier node or initializer defines")
        dyn = [i for i in node.input if i and i not in self.consts]
        if op == "Shape":  # every shape but the batch axis is static: batch 1
            self.consts[node.output[0]] = np.asarray(self.tensor_shape(dyn[0]), dtype=np.int64)
            return
        if not dyn and (op in FOLDABLE or op in ELEMENTWISE):  # shape arithmetic, weights shared via Identity
            outs = _fold(node, [self.consts.get(i) if i else None for i in node.input], a)
            self.consts.update(zip(node.output, outs))
            return
        if op in ELEMENTWISE and dyn:
            self.elementwise(node, dyn, where)
            return
        if op in REARRANGE and len(dyn) == 1:
            root, ops = self.arranged.get(dyn[0], (None, []))
            if root is None:
                root = self.close(dyn[0])
            self.arranged.update({out: (root, [*ops, (node, k)]) for k, out in enumerate(node.output)})
            return
        if not dyn:
            raise UnsupportedOpError(f"unsupported op {where}: it computes a constant")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise UnsupportedOpError(f"unsupported ONNX op {op} (node {node.name!r})")
        handler(node, a, dyn, where)

    def elementwise(self, node: onnx.NodeProto, dyn: list[str], where: str) -> None:
        op, consts = node.op_type, self.consts
        for i in dyn:  # a rearranged activation becomes its Select first
            if i in self.arranged:
                self.close(i)
        roots = {self.root_of(i) for i in dyn}
        const_in = [consts[i] for i in node.input if i and i in consts]
        scalar_consts = all(np.size(c) == 1 for c in const_in)
        if op == "Add" and len(dyn) == 1 and not scalar_consts and dyn[0] in self.alias:  # bias after MatMul
            src = self.alias[dyn[0]]
            prev = next(n for n in self.nodes if n.name == src)
            const = const_in[0].reshape(-1)
            if isinstance(prev.op, ann.Linear) and prev.op.bias is None and len(const) == prev.op.weight.shape[0]:
                prev.op.bias = const.astype(np.float64)
                self.alias[node.output[0]] = src
                return
        if len(roots) == 1 and None not in roots and not scalar_consts:
            # constants per channel: (1, C, 1, 1) or (C, 1, 1) against (batch, C, H, W): a per-channel threshold
            shape = (1, *self.shape(next(iter(roots))))
            scalar_consts = all(_per_channel(c, shape) for c in const_in)
        if len(roots) == 1 and None not in roots and scalar_consts:
            root = roots.pop()
            prior = {id(o): o for i in dyn if i in self.region for o in self.region[i][1]}
            ops = [*sorted(prior.values(), key=lambda o: self.order[id(o)]), node]
            self.region[node.output[0]] = (root, ops)
            return
        if op == "Add" and len(dyn) == 2 and not any(i in consts for i in node.input):
            self.alias[node.output[0]] = self.emit(node, ann.Add(), [self.close(i) for i in dyn])
            return
        raise UnsupportedOpError(f"unsupported op {where}: only element-wise ops with scalar or per-channel "
                                 "constants on one activation, or the sum of two activations, are supported")

    # -- one handler per op ----------------------------------------------------------------------
    def op_Conv(self, node, a, dyn, where) -> None:
        w = self.consts.get(node.input[1])
        if w is None or w.ndim != 4:
            raise UnsupportedOpError(f"{where}: only 2-D convolutions with constant weights are supported")
        b = self.consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        k = tuple(w.shape[2:])
        strides = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        self.alias[node.output[0]] = self.emit(node, ann.Conv2d(w, b, strides, _pads(node, a, k, strides, dil), dil,
                                                               int(a.get("group", 1))), [self.close(dyn[0])])

    def op_Gemm(self, node, a, dyn, where) -> None:
        w = self.consts.get(node.input[1])
        if w is None or w.ndim != 2 or a.get("transA", 0):
            raise UnsupportedOpError(f"{where}: only x @ W with a constant 2-D W is supported")
        w = w.T if (node.op_type == "MatMul" or not a.get("transB", 0)) else w
        bias = None
        if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]:
            bias = np.broadcast_to(self.consts[node.input[2]] * a.get("beta", 1.0), (w.shape[0],)).copy()
        self.alias[node.output[0]] = self.emit(node, ann.Linear(w * a.get("alpha", 1.0), bias), [self.close(dyn[0])])

    op_MatMul = op_Gemm

    def op_BatchNormalization(self, node, a, dyn, where) -> None:
        scale, bias, mean, var = (self.consts[i] for i in node.input[1:5])
        self.alias[node.output[0]] = self.emit(node, ann.BatchNorm(mean, var, scale, bias,
                                                                  float(a.get("epsilon", 1e-5))), [self.close(dyn[0])])

    def op_AveragePool(self, node, a, dyn, where) -> None:
        k = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", k))
        pads = _pads(node, a, k, strides, (1, 1))
        op = ann.AvgPool2d(k, strides, pads, bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0)))
        self.alias[node.output[0]] = self.emit(node, op, [self.close(dyn[0])])

    def op_MaxPool(self, node, a, dyn, where) -> None:
        k = tuple(a["kernel_shape"])
        strides = tuple(a.get("strides", k))
        if tuple(a.get("dilations", (1, 1))) != (1, 1) or (len(node.output) > 1 and node.output[1]):
            raise UnsupportedOpError(f"{where}: dilation or indices")
        op = ann.MaxPool2d(k, strides, _pads(node, a, k, strides, (1, 1)), bool(a.get("ceil_mode", 0)))
        self.alias[node.output[0]] = self.emit(node, op, [self.close(dyn[0])])

    def op_GlobalAveragePool(self, node, a, dyn, where) -> None:
        x = self.close(dyn[0])
        h, w = self.shape(x)[-2:]
        self.alias[node.output[0]] = self.emit(node, ann.AvgPool2d((h, w), (h, w)), [x])

    def op_ReduceMean(self, node, a, dyn, where) -> None:
        x = self.close(dyn[0])
        axes = a.get("axes", self.consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None)
        shape = self.shape(x)
        if axes is None or len(shape) != 3 or sorted(int(v) % 4 for v in axes) != [2, 3]:
            raise UnsupportedOpError(f"unsupported op {where}: only the mean over H and W (global average pooling)")
        h, w = shape[1:]
        pooled = self.emit(node, ann.AvgPool2d((h, w), (h, w)), [x])
        if a.get("keepdims", 1):
            self.alias[node.output[0]] = pooled
        else:
            name = ann.unique_name(f"{pooled}.flatten", {n.name for n in self.nodes})
            self.nodes.append(ann.Node(name, ann.Flatten(), [pooled], source=f"ReduceMean {node.name!r}"))
            self.alias[node.output[0]] = name

    def op_Concat(self, node, a, dyn, where) -> None:
        ins = [self.close(i) for i in node.input]
        if any(i in self.consts for i in node.input) or len(self.shape(ins[0])) != 3 or int(a.get("axis")) % 4 != 1:
            raise UnsupportedOpError(f"unsupported op {where}: only concatenation of activations along the "
                                     "channels of (batch, C, H, W) tensors")
        self.alias[node.output[0]] = self.emit(node, ann.Concat(), ins)

    def op_Dropout(self, node, a, dyn, where) -> None:
        self.alias[node.output[0]] = self.close(dyn[0])

    def op_Pad(self, node, a, dyn, where) -> None:
        """Constant zero padding (an option-A ResNet shortcut pads the channels): an Embed or a
        one-hot convolution (:func:`passes.zero_padding`)."""
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            raise UnsupportedOpError(f"unsupported op {where}: mode {mode!r} (only constant zero padding is "
                                     "supported)")
        if dyn != [node.input[0]]:
            raise UnsupportedOpError(f"unsupported op {where}: pads or value computed from an activation")
        inputs = [*node.input, "", "", ""]
        pads = a.get("pads", self.consts.get(inputs[1]))
        value = self.consts.get(inputs[2]) if inputs[2] else a.get("value", 0.0)
        if pads is None:
            raise UnsupportedOpError(f"unsupported op {where}: no constant pads")
        if np.any(np.asarray(value, dtype=np.float64) != 0):
            raise UnsupportedOpError(f"unsupported op {where}: pads with the value {np.asarray(value).tolist()}, "
                                     "not zero (only zero padding is a linear map of spikes)")
        x = self.close(dyn[0])
        shape = tuple(self.shape(x))
        rank = len(shape) + 1
        pads = [int(v) for v in np.asarray(pads).reshape(-1)]
        axes = [int(v) % rank for v in np.asarray(self.consts[inputs[3]]).reshape(-1)] if inputs[3] in self.consts \
            else list(range(rank))
        if len(pads) != 2 * len(axes):
            raise UnsupportedOpError(f"unsupported op {where}: {len(pads)} pads for {len(axes)} axes")
        per = dict.fromkeys(range(rank), (0, 0))
        per.update({ax: (pads[k], pads[k + len(axes)]) for k, ax in enumerate(axes)})
        if per[0] != (0, 0):
            raise UnsupportedOpError(f"unsupported op {where}: pads the batch axis")
        op = zero_padding(shape, [per[ax] for ax in range(1, rank)], where)
        self.alias[node.output[0]] = x if op is None else self.emit(node, op, [x])


def import_onnx(path: str | Path) -> ann.Graph:
    """Read an ONNX file (one input, one output) into the float IR."""
    path = Path(path)
    return _Importer(path, load_onnx(path)).run()
