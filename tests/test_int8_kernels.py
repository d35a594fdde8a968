"""oneDNN's int8 synapse kernels (``targets.int8_kernels``): exact against float64 on weights and
inputs at the ends of their ranges, refused by their probe when they are not, and ``sim`` with
them equal to ``sim`` without them on every layer and step."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikeport.targets import int8_kernels
from spikeport.targets.int8_kernels import Int8Conv, Int8Linear, byte_form, probe, resolve
from spikeport.targets.sim import SimNet, simulate
from spikeport.targets.sim_models import ConvMatrix, ConvModel, DenseModel, lava_weights
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.lowering import lower
from spikeport.toolchain.reference import encode

CPU = torch.device("cpu")


@pytest.fixture
def exact_here():
    """The kernels pass their probe on this CPU; where they do not, ``sim`` must not use them."""
    why = probe()
    if why is not None:
        assert not resolve(None, CPU)
        with pytest.raises(SpikeportError, match="int8=True"):
            resolve(True, CPU)
        pytest.skip(f"int8 kernels refused on this CPU, as they must be: {why}")


def test_byte_form_takes_out_the_common_power_of_two():
    w = lava_weights(np.random.default_rng(0).integers(-300, 300, (8, 4, 3, 3)), "mixed", 8)  # even, -256..254
    m, k = byte_form(w)
    assert m.dtype == np.int8 and k == 1 and np.array_equal(m.astype(np.int64) << k, w)
    m, k = byte_form(np.array([[12, -40], [0, 8]]))
    assert k == 2 and m.tolist() == [[3, -10], [0, 2]]
    assert byte_form(np.array([[255, 1]])) is None  # 8-bit excitatory weights need 9 signed bits
    assert byte_form(np.array([[0.5, 1.0]])) is None
    assert byte_form(np.zeros((2, 3)))[1] == 0


@pytest.mark.parametrize("cin,cout,k,stride,padding,dilation,groups,top", [
    (16, 8, 3, 1, 1, 1, 1, 1), (6, 9, 3, 2, 1, 1, 3, 1), (8, 8, 1, 2, 0, 1, 1, 1),
    (4, 4, 3, 1, 2, 2, 4, 1), (32, 16, 3, 1, 1, 1, 1, 4)])
def test_int8_convolution_equals_float64(exact_here, cin, cout, k, stride, padding, dilation, groups, top):
    rng = np.random.default_rng(cin * cout + k)
    w = lava_weights(rng.integers(-300, 300, (k, k, cin // groups, cout)), "mixed", 8).transpose(3, 2, 0, 1)
    w[0] = -256  # both ends of the range
    w[-1] = 254
    x = rng.integers(0, top + 1, (5, cin, 9, 9))  # top 4: sum-pooled 2x2 counts
    got = Int8Conv.of(w, (stride, stride), (padding, padding), (dilation, dilation), groups)(torch.as_tensor(x))
    want = F.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64), None,
                    stride, padding, dilation, groups)
    assert got.dtype == torch.float32 and torch.equal(got.double(), want) and want.abs().max() > 1000


def test_int8_matrix_product_equals_float64(exact_here):
    rng = np.random.default_rng(1)
    w = np.asfortranarray(lava_weights(rng.integers(-300, 300, (300, 256)), "mixed", 8))  # as a transpose comes
    w[:, 0] = -256
    x = rng.random((40, 256)) < 0.5
    lin = Int8Linear.of(w)
    assert lin is not None and Int8Linear.of(w[:10, :10]) is None  # small products stay in float32
    want = torch.as_tensor(x, dtype=torch.float64) @ torch.as_tensor(w, dtype=torch.float64).T
    assert torch.equal(lin(torch.as_tensor(x)).double(), want)


def test_the_probe_refuses_kernels_that_lose_odd_weights():
    """What oneDNN does on CPUs without VNNI (weights halved against 16-bit saturation), planted:
    the probe must say so, and ``sim`` then keeps float32."""
    from spikeport.quality.mutants import odd_weights_lost

    with odd_weights_lost():
        why = probe.__wrapped__()
    assert why is not None and "differs from float64" in why
    assert probe.__wrapped__() == probe()  # and the unplanted kernels' verdict does not depend on the call


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
    net = lower(cnn.q(T), T)
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
def test_sim_with_int8_kernels_equals_sim_without(exact_here, request, bundle):
    """Every layer, step and neuron, the readout and the overflow counts: the same integers, on
    networks with pooled convolutions (sum-pooled counts up to 4), residual delays and dense layers."""
    b = request.getfixturevalue(bundle)
    T = 3
    q = b.q(T)
    net = lower(q, T)
    cur = encode(q, b.data.x_test[:12])
    with_int8, without = SimNet.build(net, int8=True), SimNet.build(net, int8=False)
    used = [s for s in with_int8.synapses if _on_int8(s)]
    assert used or bundle == "mlp"  # the digits MLP's matrices are below LINEAR_MIN_WEIGHTS
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
