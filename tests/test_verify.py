"""sim against the integer PyTorch reference, spike for spike, and the verifier's own behaviour."""

import dataclasses

import numpy as np
import pytest

from spikeport.api import run, verify
from spikeport.targets.sim import simulate
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.oracle.lava_model import run_oracle
from spikeport.toolchain.passes.lowering import deploy, lower
from spikeport.toolchain.verification.compare import READOUT, compare


@pytest.mark.parametrize("T", [1, 3, 8])
def test_sim_equals_reference_on_the_mlp_test_split(mlp, T):
    rows, traces = verify(deploy(mlp.q(T)), mlp.data.x_test, targets=("sim",))
    (row,) = rows
    assert row.exact, row.line()
    assert row.samples == 360 and row.spikes > 0
    assert np.array_equal(traces["sim"].final, traces["torch_int"].final)


@pytest.mark.parametrize("T", [2, 5])
def test_sim_equals_reference_on_the_residual_net(resnet, T):
    (row,), _ = verify(deploy(resnet.q(T)), resnet.data.x_test[:120], targets=("sim",))
    assert row.exact, row.line()
    assert row.shifts == {"act1": 0, "block.act1": 1, "block.act2": 2, READOUT: 3}


def test_sim_equals_reference_on_the_cnn(cnn):
    (row,), _ = verify(deploy(cnn.q(8)), cnn.data.x_test[:24], targets=("sim",))
    assert row.exact, row.line()
    assert row.layers == 4 and row.shifts[READOUT] == 3


def test_a_flipped_spike_is_reported_as_the_first_divergence(mlp):
    q, x = mlp.q(4), mlp.data.x_test[:10]
    ref = run(deploy(q), x, "torch_int", record=True)
    sim = run(deploy(q), x, "sim", record=True)
    layer = q.populations[1].name
    shift = sim.window_start[layer]
    sim.spikes[layer][shift + 2, 7, 33] ^= 1
    v = compare(ref, sim, lower(q).timing)
    assert not v.exact
    d = v.first_divergence
    assert (d["layer"], d["step"], d["sample"], d["neuron"]) == (layer, 3, 7, 33)
    assert d["expected"] == int(ref.spikes[layer][2, 7, 33]) and d["got"] == 1 - d["expected"]
    assert v.shifts[layer] == shift  # the lowering's promise, which the runner kept


def test_an_unbalanced_residual_graph_is_caught(resnet):
    """Without the skip path's delay the two inputs of the add-layer arrive a step apart."""
    q = resnet.q(4)
    net = lower(q)
    skip = next(s for s in net.synapses if getattr(s, "delay", 0) > 0)
    net.synapses[net.synapses.index(skip)] = dataclasses.replace(skip, delay=0)
    x = resnet.data.x_test[:40]
    bad = simulate(net, encode(q, x), record=True)
    bad.target = "sim (unbalanced)"
    v = compare(run(deploy(q), x, "torch_int", record=True), bad, net.timing)
    assert not v.exact and v.first_divergence["layer"] == "block.act2"


def test_verification_reports_overflow_instead_of_hiding_it(mlp):
    """Running a graph quantized for T=2 at T=64 leaves the calibrated head-room; the runners say so."""
    q = dataclasses.replace(mlp.q(2), T=64)  # the T=2 integers, said to run for 64 steps
    dep = deploy(q)
    tr = run(dep, mlp.data.x_test[:50], "sim")
    ref = run(dep, mlp.data.x_test[:50], "torch_int")
    assert sum(ref.overflow.values()) > 0  # the reference counts excursions beyond the head-room
    # sim counts Lava's folds, saturations and wrapped Conv outputs, as the plain Lava model does
    oracle = run_oracle(dep.net, encode(q, mlp.data.x_test[:50]), stream=False)
    assert sum(oracle.overflow.values()) > 0
    assert {k: int(v) for k, v in tr.overflow.items()} == oracle.overflow


def _silent_layer_cases(count: int) -> list:
    """Fuzz cases whose last hidden layer never fires in the reference (verification used to be blind there)."""
    from spikeport.quality.fuzz import random_case

    found = []
    for seed in range(400):
        case = random_case(seed)
        ref = run(deploy(case.snn), case.x, "torch_int", record=True)
        last = case.snn.hidden[-1].name
        if not ref.spikes[last].any() and not sum(ref.overflow.values()):
            found.append((case, ref))
        if len(found) == count:
            break
    assert len(found) == count
    return found


def test_a_silent_layer_made_to_fire_and_a_readout_offset_are_caught():
    """Issue 11: a layer silent in the reference accepted anything, because each layer's shift was
    searched freely. Now every recorded step is compared at the promised offset."""
    for case, ref in _silent_layer_cases(3):
        last = case.snn.hidden[-1].name
        timing = lower(case.snn).timing
        sim = run(deploy(case.snn), case.x, "sim", record=True)
        assert compare(ref, sim, timing).exact
        fires = dataclasses.replace(sim, spikes={**sim.spikes, last: np.ones_like(sim.spikes[last])})
        v = compare(ref, fires, timing)
        assert not v.exact and v.first_divergence["layer"] == last, v.line()
        shifted = dataclasses.replace(sim, readout=sim.readout + 1000)
        v = compare(ref, shifted, timing)
        assert not v.exact and v.first_divergence["layer"] == READOUT and v.first_divergence["got"] == 1000


def test_a_layer_recorded_one_step_late_is_a_timing_divergence(mlp):
    """Issue 11: delaying one hidden layer's spikes by a step (its consumer used spikes that did not
    exist yet) was reported exact, found at shift 2 against the promised 1."""
    q, x = mlp.q(4), mlp.data.x_test[:40]
    ref = run(deploy(q), x, "torch_int", record=True)
    sim = run(deploy(q), x, "sim", record=True)
    timing = lower(q).timing
    layer = q.hidden[-1].name
    late = np.zeros_like(sim.spikes[layer])
    late[1:] = sim.spikes[layer][:-1]
    v = compare(ref, dataclasses.replace(sim, spikes={**sim.spikes, layer: late}), timing)
    assert not v.exact
    d = v.first_divergence
    assert d["layer"] == layer and d["matches_at"] == timing.output_start[layer] + 1, v.line()
    assert "TIMING" in v.line() and f"matches the reference at step {timing.output_start[layer] + 1}" in v.line()
