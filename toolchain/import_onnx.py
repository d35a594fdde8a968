"""Import an ONNX file into the float graph IR with the ``onnx`` package.

Supported ops: Conv, Gemm, MatMul (+ bias Add), BatchNormalization, Relu, AveragePool,
GlobalAveragePool, MaxPool (opt-in, see :func:`passes.replace_maxpool`), Flatten, Reshape to
(batch, features), Add of two activations (residual), Dropout, Identity. Chains of element-wise
ops with scalar constants (Mul, Div, Add, Sub, Floor, Ceil, Round, Clip, Relu, Max, Min, Neg)
are evaluated as one function and recognised by what they compute: ReLU, a QCFS staircase (how
QCFS exports) or a clipped ReLU. Anything else raises an error naming the op and the node.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from spikeport.toolchain import activations, ir
from spikeport.toolchain.errors import ModelFileError, SpikeportError, UnsupportedOpError
from spikeport.toolchain.passes import infer_shapes

ELEMENTWISE = {"Mul", "Div", "Add", "Sub", "Floor", "Ceil", "Round", "Clip", "Relu", "Max", "Min", "Neg",
               "Identity"}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


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


def import_onnx(path: str | Path) -> ir.Graph:
    """Read an ONNX file (one input, one output) into the float IR."""
    model = load_onnx(path)
    g = model.graph
    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        consts[init.name] = arr.astype(np.float64) if arr.dtype.kind == "f" else arr
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UnsupportedOpError(f"{path}: the model must have exactly one input and one output "
                                 f"(has {len(inputs)} and {len(g.output)})")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) < 2 or any(d <= 0 for d in dims[1:]):
        raise UnsupportedOpError(f"{path}: input {inputs[0].name!r} needs a static shape after the batch axis, "
                                 f"got {dims}")
    nodes: list[ir.Node] = [ir.Node("input", ir.Input(tuple(dims[1:])), [], source=inputs[0].name)]
    alias: dict[str, str] = {inputs[0].name: "input"}  # ONNX tensor -> IR node
    region: dict[str, tuple[str, list[onnx.NodeProto]]] = {}  # element-wise tensor -> (root, ops)
    shapes: dict[str, tuple[int, ...]] = {}

    def shape(name: str) -> tuple[int, ...]:
        if name not in shapes:
            for n in infer_shapes(ir.Graph(list(nodes))).nodes:
                shapes[n.name] = tuple(n.shape)
        return shapes[name]

    def emit(onnx_node: onnx.NodeProto, op: ir.Op, ins: list[str]) -> str:
        # the module path is the model's own name for the layer (as the torch.fx import gives it):
        # PyTorch's dynamo exporter records it as metadata, the TorchScript one names nodes
        # "/<module path>/<Op>_<k>"; the full node name where neither says or the path is taken
        full = (onnx_node.name or onnx_node.output[0]).strip("/")
        scope = _module_path(onnx_node) or full.rpartition("/")[0]
        taken = {n.name for n in nodes}
        candidates = [c.replace("/", ".") for c in (scope, full) if c]
        name = next((c for c in candidates if c not in taken), None) or ir.unique_name(candidates[-1], taken)
        nodes.append(ir.Node(name, op, ins, source=f"{onnx_node.op_type} {onnx_node.name!r}"))
        return name

    def close(tensor: str) -> str:
        """The IR node for an activation tensor, turning a pending element-wise region into one."""
        if tensor in alias:
            return alias[tensor]
        if tensor not in region:
            raise SpikeportError(f"tensor {tensor!r} is used before it is computed")
        root, ops = region[tensor]

        def fn(z: np.ndarray) -> np.ndarray:
            env = {t: z for t, a in alias.items() if a == root}
            for op_node in ops:
                args = [env[i] if i in env else consts.get(i) if i else None for i in op_node.input]
                env[op_node.output[0]] = _eval_elementwise(op_node.op_type, args, _attrs(op_node))
            return env[tensor]

        op = activations.classify(fn)
        last = ops[-1]
        if op is None:
            raise UnsupportedOpError(
                f"unsupported activation: element-wise ops {[o.op_type for o in ops]} ending at node "
                f"{last.name!r} compute neither ReLU, a QCFS staircase, a clipped ReLU nor the identity")
        alias[tensor] = root if isinstance(op, ir.Identity) else emit(last, op, [root])
        return alias[tensor]

    def root_of(tensor: str) -> str | None:
        if tensor in region:
            return region[tensor][0]
        return alias.get(tensor)

    graph_nodes = list(g.node)  # one Python object per node, so id() is stable
    order = {id(n): i for i, n in enumerate(graph_nodes)}
    for node in graph_nodes:
        op, a = node.op_type, _attrs(node)
        where = f"{op} node {node.name!r}"
        if op == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(a["value"]).astype(np.float64)
            continue
        for i in node.input:
            if i and i not in consts and i not in alias and i not in region:
                raise ModelFileError(f"{where} reads {i!r}, which no earlier node or initializer defines")
        dyn = [i for i in node.input if i and i not in consts]
        if not dyn and op in ELEMENTWISE:  # constant folding (exporters alias shared weights via Identity)
            consts[node.output[0]] = _eval_elementwise(op, [consts.get(i) if i else None for i in node.input], a)
            continue
        if op in ELEMENTWISE and dyn:
            roots = {root_of(i) for i in dyn}
            scalar_consts = all(np.size(consts[i]) == 1 for i in node.input if i and i in consts)
            if op == "Add" and len(dyn) == 1 and not scalar_consts:  # bias after MatMul
                src = close(dyn[0])
                prev = next(n for n in nodes if n.name == src)
                const = consts[next(i for i in node.input if i in consts)].reshape(-1)
                if isinstance(prev.op, ir.Linear) and prev.op.bias is None and len(const) == prev.op.weight.shape[0]:
                    prev.op.bias = const.astype(np.float64)
                    alias[node.output[0]] = src
                    continue
                raise UnsupportedOpError(f"unsupported op {where}: adds a constant tensor to an activation")
            if len(roots) == 1 and scalar_consts:
                root = roots.pop()
                prior = {id(o): o for i in dyn if i in region for o in region[i][1]}
                ops = [*sorted(prior.values(), key=lambda o: order[id(o)]), node]
                region[node.output[0]] = (root, ops)
                continue
            if op == "Add" and len(dyn) == 2 and not any(i in consts for i in node.input):
                alias[node.output[0]] = emit(node, ir.Add(), [close(i) for i in dyn])
                continue
            raise UnsupportedOpError(f"unsupported op {where}: only element-wise ops with scalar constants on "
                                     "one activation, or the sum of two activations, are supported")
        if not dyn:
            raise UnsupportedOpError(f"unsupported op {where}: it computes a constant")
        x = close(dyn[0])
        out = node.output[0]
        if op == "Conv":
            w = consts.get(node.input[1])
            if w is None or w.ndim != 4:
                raise UnsupportedOpError(f"{where}: only 2-D convolutions with constant weights are supported")
            b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            k = tuple(w.shape[2:])
            strides = tuple(a.get("strides", [1, 1]))
            dil = tuple(a.get("dilations", [1, 1]))
            alias[out] = emit(node, ir.Conv2d(w, b, strides, _pads(node, a, k, strides, dil), dil,
                                              int(a.get("group", 1))), [x])
        elif op in ("Gemm", "MatMul"):
            w = consts.get(node.input[1])
            if w is None or w.ndim != 2 or a.get("transA", 0):
                raise UnsupportedOpError(f"{where}: only x @ W with a constant 2-D W is supported")
            w = w.T if (op == "MatMul" or not a.get("transB", 0)) else w
            bias = None
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                bias = np.broadcast_to(consts[node.input[2]] * a.get("beta", 1.0), (w.shape[0],)).copy()
            alias[out] = emit(node, ir.Linear(w * a.get("alpha", 1.0), bias), [x])
        elif op == "BatchNormalization":
            scale, bias, mean, var = (consts[i] for i in node.input[1:5])
            alias[out] = emit(node, ir.BatchNorm(mean, var, scale, bias, float(a.get("epsilon", 1e-5))), [x])
        elif op in ("AveragePool", "MaxPool"):
            k = tuple(a["kernel_shape"])
            strides = tuple(a.get("strides", k))
            if a.get("ceil_mode", 0):
                raise UnsupportedOpError(f"{where}: ceil_mode=1")
            pads = _pads(node, a, k, strides, (1, 1))
            if op == "AveragePool":
                if any(pads) and not a.get("count_include_pad", 0):
                    raise UnsupportedOpError(f"{where}: padding without count_include_pad")
                alias[out] = emit(node, ir.AvgPool2d(k, strides, pads), [x])
            else:
                alias[out] = emit(node, ir.MaxPool2d(k, strides, pads), [x])
        elif op == "GlobalAveragePool":
            h, w_ = shape(x)[-2:]
            alias[out] = emit(node, ir.AvgPool2d((h, w_), (h, w_)), [x])
        elif op == "Flatten":
            if a.get("axis", 1) != 1:
                raise UnsupportedOpError(f"{where}: only axis=1")
            alias[out] = emit(node, ir.Flatten(), [x]) if len(shape(x)) > 1 else x
        elif op == "Reshape":
            target = consts.get(node.input[1])
            n = int(np.prod(shape(x)))
            if target is None or len(target) != 2 or int(target[1]) not in (-1, n):
                raise UnsupportedOpError(f"{where}: only reshapes to (batch, features) are supported")
            alias[out] = emit(node, ir.Flatten(), [x]) if len(shape(x)) > 1 else x
        elif op == "Dropout":
            alias[out] = x
        else:
            raise UnsupportedOpError(f"unsupported ONNX op {op} (node {node.name!r})")
    final = close(g.output[0].name)
    keep = {final}
    for n in reversed(nodes):
        if n.name in keep:
            keep.update(n.inputs)
    kept = [n for n in nodes if n.name in keep]
    kept.append(kept.pop(next(i for i, n in enumerate(kept) if n.name == final)))
    return ir.Graph(kept, name=Path(path).stem)
