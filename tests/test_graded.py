"""Graded spikes (issue 15): one step equals the QCFS ANN; every target exact; honest energy."""

import numpy as np
import pytest

from spikeport.api import prepare, verify
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.ir.interpret import forward
from spikeport.toolchain.ir.snn import Graded
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.lowering import deploy


@pytest.fixture(scope="module")
def mlp():
    return prepare("mlp_digits", calib=256)


def test_one_graded_step_is_the_qcfs_ann(mlp):
    """With theta = lambda / L, v_init = theta / 2 and payloads capped at L, T = 1 computes exactly
    QCFS's rounding: the float SNN's logits equal the ANN's (the bias counted once)."""
    g = mlp.method("graded", 1)
    assert g.neuron == Graded(8) and g.meta["graded_levels"] == 8
    x = mlp.data.x_test[:64]
    ann = forward(mlp.model.graph, x)
    snn = run_reference(g, x, 1).final
    np.testing.assert_allclose(snn, ann, rtol=1e-4, atol=1e-4)
    binary = run_reference(mlp.snn, x, 1).final  # the binary IF network at T = 1 is far off
    assert np.abs(binary - ann).max() > 10 * np.abs(snn - ann).max()


@pytest.mark.lava
@pytest.mark.parametrize("name,T", [("cnn_mnist", 1), ("resnet_digits", 2)])
def test_graded_spikes_are_exact_on_sim_and_lava(name, T):
    p = prepare(name, calib=256)
    q = p.quantize(p.method("graded", T), T)
    rows, traces = verify(deploy(q), p.data.x_test[:6], targets=("sim", "lava"))
    assert len(rows) == 3 and all(r.exact for r in rows), [r.line() for r in rows]
    assert rows[0].spikes > rows[0].samples  # payloads were compared, not just 0/1
    assert int(traces["sim"].spike_counts[q.hidden[0].name].max()) > q.hidden[0].size  # payloads > 1 occur


def test_graded_energy_charges_messages_and_reports_payloads(mlp):
    from spikeport.reports.quantization import quantization_report

    T = 2
    g = mlp.method("graded", T)
    q = mlp.quantize(g, T)
    net = quantization_report(deploy(q, g), mlp.data.x_test[:32])["network"]
    assert net["payload_per_inference"] > net["spikes_per_inference"] > 0  # payloads of several thresholds
    assert "graded" in net["energy_sources"]


def test_graded_spikes_refuse_what_they_cannot_run(mlp):
    mp = prepare("maxpool_cnn_mnist", calib=64, maxpool="spiking")
    with pytest.raises(SpikeportError, match="max-pool"):
        mp.method("graded", 1)
    relu = prepare("mlp_digits", calib=64)
    relu.snn.meta["qcfs_levels"] = {}
    with pytest.raises(SpikeportError, match="pass levels"):
        relu.method("graded", 1)
    with pytest.raises(SpikeportError, match="graded spikes replace the IF neuron"):
        from spikeport.toolchain.passes.methods import graded_spikes
        graded_spikes(mlp.method("cos", 2))
