"""Issue 25: one count of the work of an inference, and one description of the target. eval, the
perf bench, the quantization report and lowlat give the same synaptic operations on a graded-spike
network, where counting payloads instead of messages would give more; chip limits and energy
figures come from the profile the network was quantized for."""

import dataclasses
import json

import numpy as np
import pytest

from spikeport.api import prepare, run
from spikeport.cli import main
from spikeport.quality.perf import chip_work
from spikeport.reports.quantization import quantization_report
from spikeport.studies.lowlat import energy
from spikeport.toolchain.costs.metrics import count_work, fan_out, synaptic_ops
from spikeport.toolchain.costs.resources import estimate
from spikeport.toolchain.hardware.profiles import LOIHI2
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.lowering import deploy, lower

T, N = 2, 24


@pytest.fixture(scope="module")
def mlp():
    return prepare("mlp_digits", calib=256)


@pytest.fixture(scope="module")
def graded(mlp):
    return mlp.method("graded", T), mlp.quantize(mlp.method("graded", T), T)


def test_a_graded_spike_is_one_message_to_each_target(graded):
    """By hand: one neuron of the first hidden layer sends payload 3 once; it reaches every target its
    column of weights holds, once each."""
    _, q = graded
    first, second = q.hidden[0], q.populations[1]
    spikes = {p.name: np.zeros((T, 1, p.size), dtype=np.uint8) for p in q.hidden}
    spikes[first.name][0, 0, 5] = 3
    out = q.readout.size
    trace = Trace("hand", T, np.zeros((1, out)), np.zeros((T, 1, out)), spikes=spikes)
    work = count_work(q, trace)
    targets = int(fan_out(second.inputs[0].synapse)[5])
    assert second.inputs[0].source == first.name and targets > 0
    assert (work.messages[0], work.payloads[0], work.synops[0]) == (1, 3, targets)
    assert work.neuron_updates == sum(p.size for p in q.populations) * T


def test_eval_bench_report_and_lowlat_count_the_same_synops(mlp, graded, tmp_path):
    g, q = graded
    x = mlp.data.x_test[:N]
    assert main(["eval", "mlp_digits", "--target", "sim", "--T", str(T), "--method", "graded", "--calib", "256",
                 "--samples", str(N), "--out", str(tmp_path)]) == 0
    records = [json.loads(ln) for ln in (tmp_path / "results.jsonl").read_text().splitlines()[1:]]
    eval_synops = np.array([r["synops"] for r in sorted(records, key=lambda r: r["index"])], dtype=np.float64)
    net = quantization_report(deploy(q, g), x)["network"]
    sim = run(deploy(q), x, "sim", record=True)
    ll, bench = energy(q, sim), chip_work(q, sim)
    ref = run_reference(q, x, T, record=True)
    np.testing.assert_array_equal(eval_synops, count_work(q, ref).synops)  # per sample, against the oracle's run
    per_inference = eval_synops.mean()
    assert net["synops_per_inference"] == pytest.approx(per_inference, rel=1e-12)
    assert ll["synops"] == pytest.approx(per_inference, rel=1e-12)
    assert bench["synops_per_sample"] == pytest.approx(per_inference, rel=1e-12)
    assert ll["energy_uJ"] == pytest.approx(net["snn_energy_uJ"], rel=1e-12)
    messages = np.mean([r["spikes"] for r in records])
    assert net["spikes_per_inference"] == ll["messages"] == bench["spikes_per_sample"] == pytest.approx(messages)
    assert net["payload_per_inference"] == pytest.approx(np.mean([r["payload"] for r in records]))
    # the drift this fixes: weighting each spike by its payload counts more operations
    S = q.steps(T)
    by_payload = synaptic_ops(q, {p.name: ref.window_counts(p.name, S) for p in q.hidden}).mean()
    assert by_payload > 1.2 * per_inference and net["payload_per_inference"] > 1.2 * messages


def test_on_binary_spikes_messages_are_payloads(mlp):
    q = mlp.quantize(mlp.snn, T)
    work = count_work(q, run(deploy(q), mlp.data.x_test[:N], "sim", record=True))
    assert work.messages.sum() > 0
    np.testing.assert_array_equal(work.messages, work.payloads)


def test_limits_and_energy_come_from_the_profile_the_network_carries(mlp):
    """A profile with smaller cores and cheaper operations: the estimate and the report follow it,
    with no other argument passed."""
    small = dataclasses.replace(LOIHI2, limits=dataclasses.replace(LOIHI2.limits, neurons_per_core=16),
                                energy=dataclasses.replace(LOIHI2.energy, synop_pJ=1.0, neuron_update_pJ=0.0))
    x = mlp.data.x_test[:N]
    q, q_small = mlp.quantize(mlp.snn, T), mlp.quantize(mlp.snn, T, small)
    assert q_small.profile is small
    cores = {p.name: p.size for p in q.populations}
    assert [r.cores for r in estimate(lower(q_small)).layers] == [-(-n // 16) for n in cores.values()]
    assert estimate(lower(q)).cores == len(cores)  # the stock limits: one core per layer here
    net = quantization_report(deploy(q_small, mlp.snn), x)["network"]
    assert net["snn_energy_uJ"] == pytest.approx(net["synops_per_inference"] * 1e-6)
    assert net["energy_sources"]["loihi"]["synop_pJ"] == 1.0
