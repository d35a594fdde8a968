"""torch.fx and ONNX import: numerics against torch / onnxruntime, and errors that name the problem."""

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from spikeport.api import dataset_for, import_model, load_model
from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint
from spikeport.toolchain.errors import ModelFileError, SpikeportError, UnsupportedOpError
from spikeport.toolchain.frontends.import_onnx import import_onnx
from spikeport.toolchain.frontends.import_torch import import_torch
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.interpret import forward
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.normalize import normalize

ZOO = ["cnn_mnist", "mlp_digits", "resnet_digits"]


def export_onnx(model: nn.Module, example: torch.Tensor, path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})


def close_up_to_level_flips(got: np.ndarray, want: np.ndarray) -> bool:
    """QCFS floors: a float32 rounding difference can move a value across a level boundary, which
    changes a few outputs by a level; everything else must agree to 1e-4."""
    rows = np.all(np.isclose(got, want, atol=1e-4), axis=1)
    return rows.mean() >= 0.98 and (got.argmax(1) == want.argmax(1)).mean() >= 0.99


@pytest.mark.parametrize("name", ZOO)
def test_torch_import_matches_the_module(name):
    loaded = load_model(name, maxpool="spiking")  # no-op for models without max-pools
    module, _ = load_checkpoint(CHECKPOINT_DIR / f"{name}.pt")
    x = dataset_for(loaded).x_test[:200]
    with torch.no_grad():  # in float64 rounding cannot flip a QCFS level: exact agreement
        want = module.double()(torch.from_numpy(x).double()).numpy()
    got = forward(loaded.graph, x, dtype=torch.float64)
    assert np.allclose(got, want, atol=1e-9), np.abs(got - want).max()
    assert not any(isinstance(n.op, ann.BatchNorm) for n in loaded.graph.nodes)  # folded


@pytest.mark.parametrize("name", ZOO)
def test_onnx_import_matches_onnxruntime(name, tmp_path):
    loaded = load_model(name, maxpool="spiking")  # no-op for models without max-pools
    module, _ = load_checkpoint(CHECKPOINT_DIR / f"{name}.pt")
    x = dataset_for(loaded).x_test[:200]
    export_onnx(module, torch.from_numpy(x[:1]), tmp_path / "m.onnx")
    graph = import_model(tmp_path / "m.onnx")
    want = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    got = forward(graph, x)
    assert close_up_to_level_flips(got, want), np.abs(got - want).max()
    kinds = [n.kind for n in graph.nodes]
    assert kinds.count("QCFS") == sum(isinstance(n.op, ann.QCFS) for n in loaded.graph.nodes)
    lams = [n.op.lam for n in graph.nodes if isinstance(n.op, ann.QCFS)]
    ref = [n.op.lam for n in loaded.graph.nodes if isinstance(n.op, ann.QCFS)]
    assert np.allclose(lams, ref, rtol=1e-5)


class MyQCFS(nn.Module):
    """A user's own QCFS, written differently from spikeport's."""

    def __init__(self, lam: float, levels: int) -> None:
        super().__init__()
        self.lam, self.levels = lam, levels

    def forward(self, x):
        return self.lam * torch.clamp(torch.floor(x * self.levels / self.lam + 0.5) / self.levels, 0, 1)


def small_net(act: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), act, nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 5))


@pytest.mark.parametrize("act,expect", [(MyQCFS(1.5, 4), ann.QCFS(1.5, 4)), (nn.ReLU(), ann.ReLU()),
                                        (nn.Hardtanh(0.0, 2.0), ann.QCFS(2.0, 0))])
def test_activations_are_recognised_by_what_they_compute(act, expect, tmp_path):
    net = small_net(act)
    g = import_model(net, (1, 8, 8))
    acts = [n.op for n in g.nodes if isinstance(n.op, ann.ACTIVATIONS)]
    assert len(acts) == 1 and type(acts[0]) is type(expect)
    if isinstance(expect, ann.QCFS):
        assert acts[0].lam == pytest.approx(expect.lam, rel=1e-6) and acts[0].levels == expect.levels
    export_onnx(net, torch.zeros(1, 1, 8, 8), tmp_path / "a.onnx")
    g2 = import_model(tmp_path / "a.onnx")
    acts2 = [n.op for n in g2.nodes if isinstance(n.op, ann.ACTIVATIONS)]
    assert len(acts2) == 1 and type(acts2[0]) is type(expect)


def test_unsupported_module_is_named():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    with pytest.raises(UnsupportedOpError, match=r"Sigmoid '1'"):
        import_model(net, (4,))


def test_unsupported_function_is_named():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 2)

        def forward(self, x):
            return self.fc(torch.cat([x, x], dim=1))

    with pytest.raises(UnsupportedOpError, match=r"cat at node"):
        import_model(Cat(), (4,))


def test_unsupported_onnx_op_is_named(tmp_path):
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))
    export_onnx(net, torch.zeros(1, 4), tmp_path / "t.onnx")
    with pytest.raises(UnsupportedOpError, match=r"unsupported ONNX op Tanh \(node '/1/Tanh'\)"):
        import_onnx(tmp_path / "t.onnx")


def test_maxpool_needs_opt_in():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2))
    with pytest.raises(UnsupportedOpError, match=r"MaxPool2d at '2'.*maxpool='spiking'"):
        import_model(net, (1, 8, 8))
    with pytest.warns(UserWarning, match="replaced by AvgPool2d"):
        g = import_model(net, (1, 8, 8), maxpool="average")
    assert any(isinstance(n.op, ann.AvgPool2d) for n in g.nodes)


def test_nan_weights_are_named():
    net = small_net(nn.ReLU())
    with torch.no_grad():
        net[0].weight[1, 0, 1, 1] = float("nan")
    with pytest.raises(SpikeportError, match=r"layer '0' \(Conv2d.*weight has 1 NaN/Inf"):
        import_model(net, (1, 8, 8))
    net = small_net(nn.ReLU())
    with torch.no_grad():
        net[4].bias[0] = float("inf")
    with pytest.raises(SpikeportError, match=r"layer '4'.*bias has 1 NaN/Inf"):
        import_model(net, (1, 8, 8))


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(SpikeportError, match=r"does not run on inputs of shape \(batch, 1, 10, 10\)"):
        import_model(small_net(nn.ReLU()), (1, 10, 10))
    loaded = load_model("mlp_digits")
    with pytest.raises(SpikeportError, match=r"shape mismatch.*mnist5k"):
        dataset_for(loaded, "mnist5k")


def test_corrupted_and_truncated_onnx_files(tmp_path):
    good = tmp_path / "good.onnx"
    export_onnx(small_net(nn.ReLU()), torch.zeros(1, 1, 8, 8), good)
    data = good.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ["cut.onnx", "noise.onnx", "empty.onnx"]:
        with pytest.raises(ModelFileError, match=name):
            import_onnx(tmp_path / name)
    with pytest.raises(ModelFileError, match="does not exist"):
        import_onnx(tmp_path / "missing.onnx")


def test_residual_import_keeps_the_add():
    g = normalize(import_torch(load_checkpoint(CHECKPOINT_DIR / "resnet_digits.pt")[0], (1, 8, 8)))
    adds = [n for n in g.nodes if isinstance(n.op, ann.Add)]
    assert len(adds) == 1 and len(adds[0].inputs) == 2


BUNDLED = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt") if p.stem[-3:-1] != "_l")  # twins at other L:
# the same architectures as their base model


@pytest.mark.parametrize("name", BUNDLED)
def test_both_onnx_exporters_give_the_same_integers_from_any_folder(name, tmp_path, monkeypatch):
    """Issue 17: PyTorch's default (dynamo) exporter writes the weights to ``net.onnx.data`` beside
    the model; the file must import from any working directory, and give the same integer network
    as the legacy TorchScript exporter's file."""
    from spikeport.api import prepare

    loaded = load_model(name, maxpool="spiking")  # no-op for models without max-pools
    module, _ = load_checkpoint(CHECKPOINT_DIR / f"{name}.pt")
    data = dataset_for(loaded)
    example = torch.from_numpy(data.x_test[:1])
    (tmp_path / "models").mkdir()
    dynamo, legacy = tmp_path / "models" / "net.onnx", tmp_path / "models" / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), str(dynamo), dynamo=True, external_data=True, verbose=False)
    assert (tmp_path / "models" / "net.onnx.data").is_file()
    export_onnx(module, example, legacy)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    nets = []
    for path in (dynamo, legacy):
        p = prepare(path, data=data.name, calib=128, maxpool="spiking")
        nets.append(p.quantize(p.snn, 4))
    a, b = nets
    assert [p.name for p in a.populations] == [p.name for p in loaded_names(loaded)]  # the model's own names
    assert len(a.populations) == len(b.populations)
    for pa, pb in zip(a.populations, b.populations):
        assert pa.threshold == pb.threshold and np.array_equal(pa.bias, pb.bias)
        for ra, rb in zip(pa.inputs, pb.inputs):
            assert ra.weight_exp == rb.weight_exp
            if not hasattr(ra.synapse, "weight"):  # a spiking max-pool: geometry only
                assert ra.synapse == rb.synapse
            elif ra.source != "input":
                assert np.array_equal(ra.synapse.weight, rb.synapse.weight)
            else:
                assert np.allclose(ra.synapse.weight, rb.synapse.weight, atol=1e-6)


def loaded_names(loaded):
    from spikeport.toolchain.passes.convert import convert

    return convert(loaded.graph, dataset_for(loaded).x_train[:64]).populations


class PerChannelQCFS(nn.Module):
    """A QCFS with one trained threshold per channel (as some QCFS codebases train it)."""

    def __init__(self, channels: int, levels: int = 4, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.lam = nn.Parameter(torch.rand(channels, 1, 1, generator=gen) + 0.5)
        self.levels = levels

    def forward(self, x):
        return torch.clamp(torch.floor(x / self.lam * self.levels + 0.5) / self.levels, 0, 1) * self.lam


def _per_channel_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), PerChannelQCFS(4), nn.Conv2d(4, 6, 3, padding=1),
                         PerChannelQCFS(6, levels=8, seed=1), nn.Flatten(), nn.Linear(6 * 6 * 6, 3)).eval()


@pytest.mark.parametrize("via", ["torch", "onnx"])
def test_per_channel_thresholds_become_one_threshold_with_the_factors_in_the_weights(via, tmp_path):
    from spikeport.api import verify
    from spikeport.toolchain.ir.interpret import run_graph
    from spikeport.toolchain.passes.convert import convert
    from spikeport.toolchain.passes.quantize import quantize

    net = _per_channel_net()
    x = np.random.default_rng(0).random((10, 1, 8, 8)).astype(np.float32)
    if via == "onnx":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (torch.from_numpy(x[:1]),), str(tmp_path / "pc.onnx"), dynamo=False)
        graph = import_model(tmp_path / "pc.onnx")
    else:
        graph = import_model(net, (1, 8, 8))
    qcfs = [n.op for n in graph.nodes if isinstance(n.op, ann.QCFS)]
    assert [q.levels for q in qcfs] == [4, 8] and all(np.ndim(q.lam) == 0 for q in qcfs)
    assert qcfs[0].lam == pytest.approx(float(net[2].lam.detach().max()))
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_graph(graph, x)[graph.output.name].numpy(), want, atol=1e-5)
    q = quantize(convert(graph, x[:8]), x[:8], 4)
    (row,), _ = verify(deploy(q), x[8:], targets=("sim",))
    assert row.exact and row.spikes > 0, row.line()


def test_channels_of_different_kinds_are_layers_of_their_own_or_refused():
    """A child-less module that computes no element-wise function is traced through (issue 23): channel
    0 a ReLU and channel 1 clipped at 1, written as slices and a concatenation, are two layers. The same
    written as one element-wise function (two kinds of channel, no single threshold per channel) is
    refused, naming the op."""
    from spikeport.api import verify
    from spikeport.toolchain.passes.convert import convert
    from spikeport.toolchain.passes.quantize import quantize

    class Mixed(nn.Module):
        def forward(self, x):  # channel 0 a ReLU, channel 1 clipped at 1
            return torch.cat([torch.relu(x[:, :1]), torch.clamp(x[:, 1:], 0, 1)], 1)

    class Masked(nn.Module):
        def forward(self, x):
            return torch.where(torch.arange(2).view(1, 2, 1, 1) == 0, torch.relu(x), torch.clamp(x, 0, 1))

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), Mixed(), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)).eval()
    with torch.no_grad():
        net[0].weight.abs_()  # both channels active
    graph = import_model(net, (1, 8, 8))
    assert sorted(n.kind for n in graph.nodes if isinstance(n.op, ann.ACTIVATIONS)) == ["QCFS", "ReLU"]
    x = np.random.default_rng(0).random((10, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = net.double()(torch.from_numpy(x).double()).numpy()
    assert np.allclose(forward(graph, x, dtype=torch.float64), want, atol=1e-9)
    q = quantize(convert(graph, x[:8]), x[:8], 4)
    (row,), _ = verify(deploy(q), x[8:], targets=("sim",))
    assert row.exact and row.spikes > 0, row.line()
    net = net.float()
    net[1] = Masked()
    with pytest.raises(UnsupportedOpError, match=r"unsupported op where at node 'where'.*inside Masked '1'"):
        import_model(net, (1, 8, 8))
