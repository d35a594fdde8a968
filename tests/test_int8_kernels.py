"""oneDNN's int8 synapse kernels (``targets.int8_kernels``): exact against float64 on weights and
inputs at the ends of their ranges, refused by their probe when they are not, admitted layer by
layer on each layer's own geometry and weights (and refused there, recorded, with float32 in
their place, when wrong there only), and ``sim`` with them equal to ``sim`` without them on
every layer and step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeport.targets import int8_kernels
from spikeport.targets.int8_kernels import Int8Conv, Int8Linear, byte_form, probe, refused, resolve
from spikeport.targets.sim import SimNet, simulate
from spikeport.targets.sim_models import ConvMatrix, ConvModel, DenseModel, MatrixOp
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.hardware.lava_rules import lava_weights
from spikeport.toolchain.hardware.profiles import LOIHI2
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.passes.lowering import deploy, lower

CPU = torch.device("cpu")
BITS = LOIHI2.weight_bits  # the weight register Lava's Dense and Conv models clip to


@pytest.fixture
def exact_here():
    """The kernels pass their probe on this CPU; where they do not, ``sim`` must not use them."""
    why = probe()
    if why is not None:
        assert not resolve(None, CPU)
        with pytest.raises(SpikeportError, match="int8=True"):
            resolve(True, CPU)
        pytest.skip(f"int8 kernels refused on this CPU, as they must be: {why}")


@pytest.fixture
def fresh_verdicts(monkeypatch):
    """The per-layer verdicts of this test only (they are cached per process, and a planted fault
    must be checked afresh)."""
    monkeypatch.setattr(int8_kernels, "_verdicts", {})


def test_byte_form_takes_out_the_common_power_of_two():
    w = lava_weights(np.random.default_rng(0).integers(-300, 300, (8, 4, 3, 3)), "mixed", 8, BITS)  # even, -256..254
    m, k = byte_form(w)
    assert m.dtype == np.int8 and k == 1 and np.array_equal(m.astype(np.int64) << k, w)
    m, k = byte_form(np.array([[12, -40], [0, 8]]))
    assert k == 2 and m.tolist() == [[3, -10], [0, 2]]
    assert byte_form(np.array([[255, 1]])) is None  # 8-bit excitatory weights need 9 signed bits
    assert byte_form(np.array([[0.5, 1.0]])) is None
    assert byte_form(np.zeros((2, 3)))[1] == 0


def _kernel(rng, cin: int, cout: int, k: int, groups: int) -> np.ndarray:
    """An 8-bit mixed-sign Conv kernel as Lava processes it, with both ends of its range (-256, 254)."""
    w = lava_weights(rng.integers(-300, 300, (k, k, cin // groups, cout)), "mixed", 8, BITS).transpose(3, 2, 0, 1)
    w[0] = -256
    w[-1] = 254
    return w


@pytest.mark.parametrize("cin,cout,k,stride,padding,dilation,groups,top", [
    (16, 8, 3, 1, 1, 1, 1, 1), (6, 9, 3, 2, 1, 1, 3, 1), (8, 8, 1, 2, 0, 1, 1, 1),
    (4, 4, 3, 1, 2, 2, 4, 1), (32, 16, 3, 1, 1, 1, 1, 4),
    # geometries the probe does not run: depthwise, 1x1 and 5x5 with odd channel counts, dilation 2
    (7, 7, 3, 1, 1, 1, 7, 4), (5, 3, 1, 1, 0, 1, 1, 1), (9, 6, 5, 2, 2, 1, 3, 4), (5, 11, 3, 1, 2, 2, 1, 1)])
def test_int8_convolution_is_admitted_and_equals_float64(exact_here, fresh_verdicts, cin, cout, k, stride, padding,
                                                          dilation, groups, top):
    rng = np.random.default_rng(cin * cout + k)
    w = _kernel(rng, cin, cout, k, groups)
    x = rng.integers(0, top + 1, (5, cin, 9, 9))  # top 4: sum-pooled 2x2 counts
    kernel = Int8Conv.of(w, (stride, stride), (padding, padding), (dilation, dilation), groups, top)
    assert kernel is not None and refused() == []  # its own check (inputs up to top) admits it
    got = kernel(torch.as_tensor(x))
    want = F.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64), None,
                    stride, padding, dilation, groups)
    assert got.dtype == torch.float32 and torch.equal(got.double(), want) and want.abs().max() > 500


def _matrix(rng, n_out: int, n_in: int) -> np.ndarray:
    w = np.asfortranarray(lava_weights(rng.integers(-300, 300, (n_out, n_in)), "mixed", 8, BITS))  # as transposed
    w[:, 0] = -256
    return w


@pytest.mark.parametrize("n_out,n_in", [(300, 256), (259, 255), (1000, 70), (67, 1001)])
def test_int8_matrix_product_is_admitted_and_equals_float64(exact_here, fresh_verdicts, n_out, n_in):
    rng = np.random.default_rng(n_in)
    w = _matrix(rng, n_out, n_in)
    x = rng.random((40, n_in)) < 0.5
    lin = Int8Linear.of(w)
    assert lin is not None and refused() == [] and Int8Linear.of(w[:10, :10]) is None  # small ones stay float32
    want = torch.as_tensor(x, dtype=torch.float64) @ torch.as_tensor(w, dtype=torch.float64).T
    assert torch.equal(lin(torch.as_tensor(x)).double(), want)


def test_each_layers_kernel_is_checked_once_per_process(exact_here, fresh_verdicts, monkeypatch):
    checked = []
    real = int8_kernels.mismatch
    monkeypatch.setattr(int8_kernels, "mismatch", lambda kernel, w, top: checked.append(top) or real(kernel, w, top))
    w = _kernel(np.random.default_rng(0), 8, 8, 3, 1)
    assert all(Int8Conv.of(w, (1, 1), (1, 1), (1, 1), 1) is not None for _ in range(3)) and checked == [1]
    Int8Conv.of(w, (1, 1), (1, 1), (1, 1), 1, 4)  # other inputs,
    Int8Conv.of(w, (2, 2), (1, 1), (1, 1), 1)  # another geometry,
    w[1, 0, 0, 0] += 2
    Int8Conv.of(w, (1, 1), (1, 1), (1, 1), 1)  # other weights: each checked on its own
    assert checked == [1, 4, 1, 1] and refused() == []


def _convs(sn: SimNet) -> list[ConvModel]:
    """sim's convolutions, as synapses or as the matrices they run (``ConvMatrix``)."""
    return [s for s in sn.synapses if isinstance(s, ConvModel)] + [
        m.conv for s in sn.synapses if isinstance(s, DenseModel) for _, m in s.blocks if isinstance(m, ConvMatrix)]


def test_a_convolution_wrong_off_the_probes_geometry_is_refused_and_sim_stays_exact(exact_here, fresh_verdicts,
                                                                                   monkeypatch, resnet):
    """The int8 convolution wrong only where groups > 1 (the probe's has one group, and passes),
    planted: the residual net's grouped 1x1 convolution is refused by its own check, runs on
    float32, and says so; its other convolutions stay on int8; sim equals the reference."""
    from spikeport.api import run
    from spikeport.toolchain.verification.compare import compare

    real = Int8Conv.__call__
    monkeypatch.setattr(Int8Conv, "__call__", lambda self, x: real(self, x) + float(self.geometry[3] > 1))
    assert probe.__wrapped__() is None
    q, x = resnet.q(3), resnet.data.x_test[:24]
    net = lower(q)
    with pytest.warns(RuntimeWarning, match="int8 kernel refused, float32 runs this layer: conv 8->8 channels, "
                                            "1x1 kernel.*groups 8, inputs up to 1: .* differ from float64"):
        sn = SimNet.build(net, int8=True)
    grouped = [c for c in _convs(sn) if c.p.groups > 1]
    assert grouped and all(c.int8 is None for c in grouped)
    assert any(c.int8 is not None for c in _convs(sn))
    (line,) = refused()
    assert "groups 8" in line and line in int8_kernels.describe()  # what `spikeport info` says too
    v = compare(run(deploy(q), x, "torch_int", record=True), simulate(net, encode(q, x), record=True, prepared=sn),
                net.timing)
    assert v.exact


def test_a_matrix_product_wrong_off_the_probes_shape_is_refused_and_falls_back(exact_here, fresh_verdicts,
                                                                               monkeypatch):
    """The int8 matrix product wrong on every shape but the probe's 256x256, planted: a 257-input
    layer's check refuses it, and its product (float32 now) is float64's."""
    real = Int8Linear.__call__
    monkeypatch.setattr(Int8Linear, "__call__", lambda self, x: real(self, x) + float(self.shape != (256, 256)))
    assert probe.__wrapped__() is None
    rng = np.random.default_rng(2)
    w = _matrix(rng, 300, 257)
    x = torch.as_tensor(rng.random((40, 257)) < 0.5)
    with pytest.warns(RuntimeWarning, match="linear 257->300, inputs up to 1"):
        op = MatrixOp(w, CPU, 1, int8=True)
    assert op.int8 is None and refused() == [f"linear 257->300, inputs up to 1: {3 * 300} of {3 * 300} sums "
                                             "differ from float64's"]
    assert torch.equal(op(x), (x.double() @ torch.as_tensor(w, dtype=torch.float64).T).long())


def test_the_probe_refuses_kernels_that_lose_odd_weights():
    """What oneDNN does on CPUs without VNNI (weights halved against 16-bit saturation), planted:
    the probe must say so, and ``sim`` then keeps float32."""
    from spikeport.quality.mutants import odd_weights_lost

    with odd_weights_lost():
        why = probe.__wrapped__()
    assert why is not None and "differs from float64" in why
    assert probe.__wrapped__() == probe()  # and the unplanted kernels' verdict does not depend on the call


def test_each_layers_check_refuses_kernels_that_lose_odd_weights(exact_here, fresh_verdicts):
    """The same fault on a CPU whose probe passed: each layer's check compares against the
    layer's own weights, so it refuses the kernel too."""
    from spikeport.quality.mutants import odd_weights_lost

    w = _kernel(np.random.default_rng(3), 16, 8, 3, 1)
    with odd_weights_lost(), pytest.warns(RuntimeWarning, match="conv 16->8 channels, 3x3 kernel"):
        assert Int8Conv.of(w, (1, 1), (1, 1), (1, 1), 1) is None
    assert len(refused()) == 1


def test_resolve_follows_the_setting(monkeypatch):
    assert resolve(False, CPU) is False
    with pytest.raises(SpikeportError, match="CPU kernels"):
        resolve(True, torch.device("meta"))
    assert resolve(None, torch.device("meta")) is False
    # a CPU without int8 dot-product instructions: float32 by default, int8 only when asked
    monkeypatch.setattr(int8_kernels, "has_int8_dot_product", lambda: False)
    assert resolve(None, CPU) is False and int8_kernels.describe().startswith("float32 (this CPU lacks")
    assert resolve(True, CPU) is (probe() is None)
    # kernels the probe refuses: never used, and asking for them is an error that says why
    monkeypatch.setattr(int8_kernels, "has_int8_dot_product", lambda: True)
    monkeypatch.setattr(int8_kernels, "probe", lambda: "oneDNN's int8 convolution differs from float64 on this CPU")
    assert resolve(None, CPU) is False and "differs from float64" in int8_kernels.describe()
    with pytest.raises(SpikeportError, match="int8=True: oneDNN's int8 convolution differs"):
        resolve(True, CPU)


def test_without_int8_kernels_sim_keeps_float32_throughout(monkeypatch, cnn):
    """The fallback a CPU without VNNI takes: no synapse on int8 kernels, the compiled loop's
    spikes in float32 (what the float kernels read), the same integers as with them."""
    from spikeport.targets import sim as sim_module

    T = 3
    net = lower(cnn.q(T))
    cur = encode(cnn.q(T), cnn.data.x_test[:6])
    monkeypatch.setattr(int8_kernels, "has_int8_dot_product", lambda: False)
    plain = SimNet.build(net)
    assert plain.int8 is False and not any(_on_int8(s) for s in plain.synapses)
    dtypes = set()
    run_compiled = sim_module._Run.run_compiled
    monkeypatch.setattr(sim_module._Run, "run_compiled", lambda self, n, a, e, m, t0, c, prev: (
        dtypes.add(None if c.spikes is None else c.spikes.dtype), run_compiled(self, n, a, e, m, t0, c, prev))[1])
    a = simulate(net, cur, record=True, prepared=plain)
    assert torch.float32 in dtypes and torch.bool not in dtypes
    if probe() is None:
        dtypes.clear()
        b = simulate(net, cur, record=True, prepared=SimNet.build(net, int8=True))
        assert torch.bool in dtypes and torch.float32 not in dtypes
        assert np.array_equal(a.readout, b.readout) and all(np.array_equal(a.spikes[k], b.spikes[k]) for k in a.spikes)


def _on_int8(s) -> bool:
    if isinstance(s, ConvModel):
        return s.int8 is not None
    return isinstance(s, DenseModel) and any(
        m.int8 is not None or (isinstance(m, ConvMatrix) and m.conv.int8 is not None) for _, m in s.blocks)


@pytest.mark.parametrize("bundle", ["cnn", "resnet", "mlp"])
def test_sim_with_int8_kernels_equals_sim_without(exact_here, fresh_verdicts, request, bundle):
    """Every layer, step and neuron, the readout and the overflow counts: the same integers, on
    networks with pooled convolutions (sum-pooled counts up to 4), residual delays, a grouped 1x1
    convolution and dense layers; every layer's kernel admitted."""
    b = request.getfixturevalue(bundle)
    T = 3
    q = b.q(T)
    net = lower(q)
    cur = encode(q, b.data.x_test[:12])
    with_int8, without = SimNet.build(net, int8=True), SimNet.build(net, int8=False)
    used = [s for s in with_int8.synapses if _on_int8(s)]
    assert used or bundle == "mlp"  # the digits MLP's matrices are below LINEAR_MIN_WEIGHTS
    assert refused() == []
    assert not any(_on_int8(s) for s in without.synapses)
    a = simulate(net, cur, record=True, prepared=with_int8)
    b_ = simulate(net, cur, record=True, prepared=without)
    assert sum(int(v.sum()) for v in a.spikes.values()) > 0
    assert np.array_equal(a.readout, b_.readout) and a.overflow == b_.overflow
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b_.spikes[k]), k


def test_info_says_what_sims_synapses_run_on(capsys):
    from spikeport.cli import main

    assert main(["info", "mlp_digits"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("synapse kernels: "))
    assert line.removeprefix("synapse kernels: ").startswith("int8" if resolve(None, CPU) else "float32")


def test_the_kernels_bench_compares_both_kernels(exact_here, capsys):
    import json

    from spikeport.cli import main

    assert main(["bench", "--suite", "kernels", "--quick", "--repeat", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res["rows"]) >= 6 and all(r["equal"] and r["float32_ms"] > 0 and r["int8_ms"] > 0 for r in res["rows"])
    assert res["sim_uses"].startswith("int8" if resolve(None, CPU) else "float32")


def test_the_cli_runs_sim_on_the_kernels_asked_for(capsys, monkeypatch):
    """``--sim-kernels``: float32 everywhere; int8 only where the probe passes, else one line that says why."""
    from spikeport.cli import main

    assert main(["verify", "mlp_digits", "--targets", "sim", "--samples", "4", "--T", "4",
                 "--sim-kernels", "float32"]) == 0
    assert "exact" in capsys.readouterr().out
    monkeypatch.setattr(int8_kernels, "probe", lambda: "oneDNN's int8 convolution differs from float64 on this CPU")
    assert main(["run", "mlp_digits", "--samples", "4", "--T", "4", "--sim-kernels", "int8"]) != 0
    assert "int8=True: oneDNN's int8 convolution differs" in capsys.readouterr().err
