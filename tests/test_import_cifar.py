"""Issue 23: the CIFAR ResNet as the literature writes it, trained elsewhere with plain ReLU: the
original paper's option-A shortcuts (a strided slice and a zero channel pad inside a ``LambdaLayer``
that calls a stored lambda), ``F.avg_pool2d(out, out.size()[3])``, ``out.view(out.size(0), -1)``
and the input normalisation ``(x - mean) / std`` inside the model. Through torch.fx and both ONNX
exporters: the imported graph computes what the module computes, and the integer network runs on
sim (and Lava) spike for spike as the integer reference. Refusals name the op and the node."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from torch import nn

from spikeport.api import import_model, verify
from spikeport.models.families import FunctionLayer as LambdaLayer  # a module calling a stored lambda
from spikeport.models.families import OptionABlock as BasicBlock  # the option-A shortcut in such a module
from spikeport.models.families import randomize_batchnorm
from spikeport.toolchain.errors import SpikeportError, UnsupportedOpError
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.interpret import forward
from spikeport.toolchain.ir.snn import ConvSynapse
from spikeport.toolchain.ir.synapses import apply_synapse
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.quantize import quantize

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
X = np.random.default_rng(0).random((10, 3, 16, 16)).astype(np.float32)  # raw pixels in [0, 1]


class CifarResNet(nn.Module):
    """A CIFAR ResNet with one block per stage (widths 4, 8, 16), plain ReLU, option-A shortcuts and
    the normalisation inside the model."""

    def __init__(self, widths: tuple[int, int, int] = (4, 8, 16), num_classes: int = 10) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = nn.Sequential(BasicBlock(widths[0], widths[0]))
        self.layer2 = nn.Sequential(BasicBlock(widths[0], widths[1], 2))
        self.layer3 = nn.Sequential(BasicBlock(widths[1], widths[2], 2))
        self.linear = nn.Linear(widths[2], num_classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


def build() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(CifarResNet())


def export(module: nn.Module, path, dynamo: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.from_numpy(X[:1]),), str(path), dynamo=dynamo, verbose=False)


def imported(module: nn.Module, via: str, folder, shape: tuple[int, ...] = (3, 16, 16)) -> ann.Graph:
    """``module`` through torch.fx, or exported to ``folder/<via>.onnx`` (once per folder) and read back."""
    if via == "torch":
        return import_model(module, shape)
    path = folder / f"{via}.onnx"
    if not path.exists():
        # the dynamo exporter (onnxscript, a dev extra) exports this model: were it to fail, the tests
        # would fail with its error, not skip
        export(module, path, dynamo=via == "onnx_dynamo")
    return import_model(path)


@pytest.fixture(scope="module")
def resnet_folder(tmp_path_factory):
    """Where the ResNet's two ONNX exports are written, once per test worker."""
    return tmp_path_factory.mktemp("cifar_resnet")


VIAS = ["torch", "onnx", "onnx_dynamo"]


def assert_same_function(graph: ann.Graph, module: nn.Module, via: str, tmp_path) -> None:
    """The imported graph computes the module's function: in float64 from torch.fx (the same
    parameters: equal to rounding), in float32 from ONNX (the exporters fold batch norms in float32),
    where onnxruntime must agree too."""
    with torch.no_grad():
        want32 = module(torch.from_numpy(X)).numpy()
    if via == "torch":
        with torch.no_grad():
            want = module.double()(torch.from_numpy(X).double()).numpy()
        module.float()
        assert np.allclose(forward(graph, X, dtype=torch.float64), want, rtol=1e-9, atol=1e-9)
    else:
        got = forward(graph, X)
        assert np.allclose(got, want32, rtol=1e-5, atol=1e-5), np.abs(got - want32).max()
        ort_out = ort.InferenceSession(str(tmp_path / f"{via}.onnx")).run(None, {
            ort.InferenceSession(str(tmp_path / f"{via}.onnx")).get_inputs()[0].name: X[:1]})[0]
        assert np.allclose(got[:1], ort_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("via", VIAS)
def test_option_a_resnet_imports_exactly_and_runs_spike_for_spike(via, resnet_folder):
    module = build()
    graph = imported(module, via, resnet_folder)
    assert_same_function(graph, module, via, resnet_folder)
    kinds = [n.kind for n in graph.nodes]
    assert kinds[1] == "BatchNorm"  # the normalisation: a per-channel affine op on the input
    assert kinds.count("Select") == 2 and kinds.count("Embed") == 2  # two option-A shortcuts
    assert kinds.count("ReLU") == 7 and kinds.count("Add") == 3
    q = quantize(convert(graph, X[:8]), X[:8], 4)
    # each option-A shortcut composes into one 1x1 convolution with stride 2 that embeds input channel c
    # at output channel c + planes // 4
    shortcuts = [pr for p in q.populations for pr in p.inputs if isinstance(pr.synapse, ConvSynapse)
                 and pr.synapse.stride == (2, 2) and pr.synapse.weight.shape[2:] == (1, 1)]
    assert len(shortcuts) == 2
    for pr in shortcuts:
        w = pr.synapse.weight[:, :, 0, 0]
        c_out, c_in = w.shape
        pad = (c_out - c_in) // 2
        assert np.count_nonzero(w) == c_in and np.all(w[pad + np.arange(c_in), np.arange(c_in)] > 0)
    (row,), _ = verify(deploy(q), X[8:10], targets=("sim",))
    assert row.exact and row.spikes > 0, row.line()


def test_the_three_imports_give_the_same_integer_network(resnet_folder):
    module = build()
    nets = [quantize(convert(g, X[:8]), X[:8], 4) for g in (imported(module, via, resnet_folder) for via in VIAS)]
    a = nets[0]
    for b in nets[1:]:
        assert [p.shape for p in a.populations] == [p.shape for p in b.populations]
        assert [p.threshold for p in a.populations] == [p.threshold for p in b.populations]
        for pa, pb in zip(a.populations, b.populations):
            assert np.abs(pa.bias - pb.bias).max() <= 1, pa.name  # float rounding of the folded normalisation
            assert sorted(r.weight_exp for r in pa.inputs) == sorted(r.weight_exp for r in pb.inputs)


def test_the_normalisation_folds_into_the_first_layer_exactly_at_the_border():
    """The first conv's zero padding sees the normalised zero (a raw value equal to the mean), so no
    per-channel bias is exact: the first layer gets the normalisation in its weights and one bias per
    neuron, which differs at the border."""
    module = build()
    snn = convert(import_model(module, (3, 16, 16)), X[:8])
    first = snn.populations[0]
    (proj,) = first.inputs
    x = torch.from_numpy(X).double()
    z = apply_synapse(proj.synapse, x, torch.as_tensor(proj.synapse.weight)) + torch.as_tensor(first.bias)
    m = module.double()
    with torch.no_grad():
        want = m.bn1(m.conv1((x - m.mean) / m.std))
    assert torch.allclose(z, want, rtol=0, atol=1e-9)
    assert not np.allclose(first.bias[:, 0, 0], first.bias[:, 8, 8])  # the border's own bias


@pytest.mark.lava
def test_option_a_resnet_in_lava():
    q = quantize(convert(import_model(build(), (3, 16, 16)), X[:8]), X[:8], 3)
    rows, _ = verify(deploy(q), X[8:9], targets=("sim", "lava"))
    assert {(r.target, r.against) for r in rows} == {("sim", "torch_int"), ("lava", "torch_int"), ("lava", "sim")}
    assert all(r.exact and r.spikes > 0 for r in rows), [r.line() for r in rows]


# -- zero padding of H and W, wrappers, per-channel constants -----------------------------------------------


class Padded(nn.Module):
    """Zero padding of H and W, symmetric and not, before a conv and before an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))  # as TensorFlow's 'SAME' with stride 2
        self.conv1 = nn.Conv2d(3, 4, 3, 2)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.fc = nn.Linear(6 * 9 * 9, 5)

    def forward(self, x):
        out = F.relu(self.conv1(self.pad(x)))  # 17x17 -> 8x8
        out = F.relu(F.pad(self.conv2(F.pad(out, (1, 1, 1, 1))), (1, 0, 1, 0)))  # 10x10 -> 8x8 -> 9x9
        return self.fc(torch.flatten(out, 1))


class Normalize(nn.Module):
    """A child-less wrapper that computes a per-channel affine map: kept as one node."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class Subsample(nn.Module):
    def forward(self, x):
        return x[:, :, 1::2, 1::2]


def test_wrappers_are_probed_first_then_traced_through():
    torch.manual_seed(0)
    module = nn.Sequential(Normalize(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), Subsample(),
                           nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 8 * 8, 3)).eval()
    graph = import_model(module, (3, 16, 16))
    assert [(n.name, n.kind) for n in graph.nodes[1:2]] == [("0", "BatchNorm")]  # a leaf: one node
    assert [n.name for n in graph.nodes if n.kind == "Select"] == ["3.getitem"]  # traced through
    with torch.no_grad():
        want = module.double()(torch.from_numpy(X).double()).numpy()
    assert np.allclose(forward(graph, X, dtype=torch.float64), want, rtol=1e-9, atol=1e-9)
    # the offset strided slice x[:, :, 1::2, 1::2] composes with the next conv into one convolution
    q = quantize(convert(graph, X[:8]), X[:8], 4)
    (proj,) = q.populations[1].inputs
    assert isinstance(proj.synapse, ConvSynapse) and proj.synapse.stride == (2, 2)
    (row,), _ = verify(deploy(q), X[8:10], targets=("sim",))
    assert row.exact and row.spikes > 0, row.line()


class DownsampleA(nn.Module):
    """The other option-A spelling (pytorch-classification's CIFAR ResNet): a 1x1 average pool with
    stride 2 and a concatenation with zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.avg = nn.AvgPool2d(kernel_size=1, stride=2)

    def forward(self, x):
        x = self.avg(x)
        return torch.cat((x, x.mul(0)), 1)


class PoolCatBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, 2, 1)
        self.downsample = DownsampleA()
        self.fc = nn.Linear(8 * 8 * 8, 3)

    def forward(self, x):
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out) + self.downsample(out))
        return self.fc(out.flatten(1))


@pytest.mark.parametrize("via", ["torch", "onnx"])
@pytest.mark.parametrize("make", [Padded, PoolCatBlock], ids=["zero padding of H and W is a convolution",
                                                              "the pool-and-zeros spelling of option A"])
def test_linear_rearrangements_import_exactly_and_run_spike_for_spike(make, via, tmp_path):
    torch.manual_seed(0)
    module = make().eval()
    graph = imported(module, via, tmp_path)
    assert_same_function(graph, module, via, tmp_path)
    q = quantize(convert(graph, X[:8]), X[:8], 4)
    (row,), _ = verify(deploy(q), X[8:10], targets=("sim",))
    assert row.exact and row.spikes > 0, row.line()


# -- refusals name the op and the node --------------------------------------------------------------------------


def _wrapped(fn) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), fn if isinstance(fn, nn.Module) else LambdaLayer(fn))


@pytest.mark.parametrize("fn,words", [
    (lambda x: F.pad(x, (0, 0, 0, 0, 2, 2), "constant", 1.0), r"pad at node 'pad'.*value 1\.0, not zero"),
    (lambda x: F.pad(x, (1, 1, 1, 1), "reflect"), r"pad at node 'pad'.*'reflect' padding"),
    (lambda x: F.pad(x, (-1, -1, 0, 0)), r"pad at node 'pad'.*negative padding"),
    (lambda x: x * torch.sigmoid(x), r"sigmoid at node 'sigmoid'.*inside FunctionLayer '2'"),
])
def test_torch_refusals_name_the_op_and_node(fn, words):
    with pytest.raises(UnsupportedOpError, match=words):
        import_model(_wrapped(fn), (3, 8, 8))


def test_an_untraceable_wrapper_is_named():
    class Branchy(nn.Module):
        def forward(self, x):
            return x[:, :, ::2] if x.sum() > 0 else x[:, :, 1::2]

    with pytest.raises(SpikeportError, match=r"Branchy '2'.*torch.fx cannot"):
        import_model(_wrapped(Branchy()), (3, 8, 8))


def test_a_constant_per_pixel_is_refused():
    class MeanImage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.register_buffer("mean", torch.rand(1, 3, 8, 8))

        def forward(self, x):
            return self.conv(x - self.mean)

    with pytest.raises(UnsupportedOpError, match=r"unsupported op sub at node 'sub'"):
        import_model(MeanImage(), (3, 8, 8))


def _onnx_pad(tmp_path, mode: str = "constant", value: float | None = None, pads=(0, 1, 0, 0, 0, 1, 0, 0)):
    """Conv -> Relu -> Pad (hand-written, so that every attribute is what the test says)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, (2, 3, 3, 3), np.ones(54, np.float32).tolist())
    p = helper.make_tensor("pads", TensorProto.INT64, (8,), list(pads))
    inits = [w, p]
    pad_in = ["r", "pads"]
    if value is not None:
        inits.append(helper.make_tensor("value", TensorProto.FLOAT, (), [value]))
        pad_in.append("value")
    out = [d + pads[k] + pads[k + 4] for k, d in enumerate((1, 2, 6, 6))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Pad", pad_in, ["y"], name="the_pad", mode=mode)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 8, 8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits)
    path = tmp_path / f"pad_{mode}_{value}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("mode,value,words", [
    ("constant", 1.0, r"Pad node 'the_pad'.*value \[?1\.0\]?, not zero"),
    ("reflect", None, r"Pad node 'the_pad'.*mode 'reflect'"),
])
def test_onnx_pad_refusals_name_the_node(mode, value, words, tmp_path):
    with pytest.raises(UnsupportedOpError, match=words):
        import_model(_onnx_pad(tmp_path, mode, value))


def test_onnx_channel_pad_imports_as_an_embed(tmp_path):
    path = _onnx_pad(tmp_path, value=0.0)
    graph = import_model(path)
    assert graph.output.kind == "Embed" and graph.output.shape == (4, 6, 6)
    x = np.ascontiguousarray(X[:1, :, :8, :8])
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.allclose(forward(graph, x), want, atol=1e-5)


def test_onnx_slice_with_negative_steps_is_a_permutation(tmp_path):
    """A reversed axis (Slice with step -1) is exactly representable: a Select (a permutation of the
    features), so it imports rather than being refused."""
    rng = np.random.default_rng(1)
    inits = [numpy_tensor("w1", rng.standard_normal((2, 3, 3, 3))),
             numpy_tensor("w2", rng.standard_normal((4, 2, 3, 3))),
             numpy_tensor("starts", np.array([-1]), np.int64), numpy_tensor("ends", np.array([-2 ** 63]), np.int64),
             numpy_tensor("axes", np.array([3]), np.int64), numpy_tensor("steps", np.array([-1]), np.int64)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv1"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Slice", ["r", "starts", "ends", "axes", "steps"], ["s"], name="flip"),
             helper.make_node("Conv", ["s", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 8, 8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4, 4, 4))], inits)
    path = tmp_path / "flip.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    g = import_model(path)
    assert [n.kind for n in g.nodes] == ["Input", "Conv2d", "ReLU", "Select", "Conv2d"]
    x = np.ascontiguousarray(X[:1, :, :8, :8])
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.allclose(forward(g, x), want, atol=1e-5)


def numpy_tensor(name: str, a: np.ndarray, dtype=np.float32) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(a, dtype=dtype), name)
