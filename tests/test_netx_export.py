"""Issue 14: the netx-compatible export (reset to zero) loads in lava-dl's netx and equals sim."""

import numpy as np
import pytest

from spikeport.api import prepare
from spikeport.interop.netx import read_netx
from spikeport.interop.netx_export import (
    export_netx,
    input_bias,
    lava_mismatches,
    reset_cost,
    reset_zero_form,
    run_export_in_lava,
)
from spikeport.toolchain.errors import UnsupportedOpError


@pytest.fixture(scope="module")
def mlp():
    return prepare("mlp_digits", calib=256)


@pytest.mark.lava
@pytest.mark.parametrize("name", ["mlp_digits", "cnn_mnist"])
def test_netx_export_runs_in_lava_netx_equal_to_sim(name, tmp_path):
    """The export's own script (lava-nc, lava-dl's netx loader and numpy only) streams samples
    through the written file; every layer's spikes and the readout equal sim on the same file."""
    T, n = 4, 3
    p = prepare(name, calib=256)
    q = p.quantize(p.snn, T)
    d = p.data
    info = export_netx(tmp_path / "nx", q, name, d.x_test[:n], d.y_test[:n], d.x_test[:64], d.y_test[:64])
    assert info["samples"] == 64 and 0.5 < info["reset_zero"] <= 1.0
    saved, stdout = run_export_in_lava(tmp_path / "nx")
    assert "equal to spikeport's sim on this file: True" in stdout, stdout
    nx = read_netx(tmp_path / "nx" / "network.net", reset_interval=T)
    bias = input_bias(q, d.x_test[:n])
    assert lava_mismatches(saved, nx, bias, T) == []
    # planted faults: one spike flipped in Lava's record, one threshold changed in the file's network
    layer = next(k for k in saved if k.startswith("spikes."))
    flipped = dict(saved, **{layer: saved[layer].copy()})
    flipped[layer][T, 0] ^= 1  # sample 1's window
    assert any("sample 1" in m and "1 spike values differ" in m for m in lava_mismatches(flipped, nx, bias, T))
    shifted = dict(saved, readout_v=saved["readout_v"].copy())
    shifted["readout_v"][2 * T + len(nx.layers) + T - 2, 0] += 64  # sample 2's answer, one unit more
    assert [m for m in lava_mismatches(shifted, nx, bias, T) if m.startswith("sample 2: readout")]
    first_hidden = nx.net.lif(nx.layers[1])
    first_hidden.vth += 1
    assert lava_mismatches(saved, nx, bias, T)


def test_netx_form_refuses_what_netx_cannot_hold(mlp):
    res = prepare("resnet_digits", calib=64)
    with pytest.raises(UnsupportedOpError, match="residual"):
        reset_zero_form(res.quantize(res.snn, 4))
    for method, words in [("cos", "no COS neuron"), ("tpp", "no TPP neuron")]:
        q = mlp.compile(4, method).snn
        with pytest.raises(UnsupportedOpError, match=words):
            reset_zero_form(q)
    q = mlp.quantize(mlp.snn, 4)
    q.populations[1].time_bias = np.arange(4).reshape(4, 1) * np.ones((1, 128), dtype=np.int64)  # as FTBC makes
    with pytest.raises(UnsupportedOpError, match="'act2': a bias that changes from step to step"):
        reset_zero_form(q)


def test_netx_form_is_exact_in_units_and_costs_little_on_the_mlp(mlp):
    T = 8
    q = mlp.quantize(mlp.snn, T)
    form = reset_zero_form(q)
    for p, lif in zip(q.populations, form.nx.net.lifs):
        assert (lif.du, lif.dv) == (4095, 0)  # netx iDecay 4096, vDecay 0: reset-to-zero IF
        k = form.shift[p.name]
        if p.kind == "if":  # threshold exact in the layer's new unit
            assert (lif.vth + 1) * 2 ** k + int(p.v_init) == int(p.threshold)
    cost = reset_cost(q, mlp.data.x_test[:200], mlp.data.y_test[:200])
    assert cost["soft_reset"] > 0.9 and cost["reset_zero"] > 0.9
