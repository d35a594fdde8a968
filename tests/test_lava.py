"""The real Lava 0.10 (fixed_pt) in its Python 3.10 environment: equal to sim and the reference,
spike for spike, with samples streamed back to back through one compiled network."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikeport.api import verify
from spikeport.targets.lava.runner import WORKER, lava_python, run_lava, run_process
from spikeport.targets.sim import simulate
from spikeport.toolchain.errors import TargetError
from spikeport.toolchain.hardware.profiles import LOIHI2
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.procnet import CurrentSource, DenseProcess, LIFProcess, ProcessNet
from spikeport.toolchain.passes.lowering import deploy, lower

pytestmark = pytest.mark.lava


def test_lava_environment_is_real():
    out = subprocess.run([lava_python(), "-c", "import sys, lava, numpy; print(sys.version_info[:2], "
                          "numpy.__version__)"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("(3, 10)")


@pytest.mark.parametrize("bundle,T,n", [("mlp", 4, 6), ("resnet", 3, 4), ("cnn", 8, 3)])
def test_lava_equals_sim_and_reference(bundle, T, n, request):
    b = request.getfixturevalue(bundle)
    rows, traces = verify(deploy(b.q(T)), b.data.x_test[:n], targets=("sim", "lava"))
    by = {(r.target, r.against): r for r in rows}
    assert set(by) == {("sim", "torch_int"), ("lava", "torch_int"), ("lava", "sim")}
    for r in rows:
        assert r.exact, r.line()
        assert r.samples == n and r.spikes > 0
    assert np.array_equal(traces["lava"].final, traces["torch_int"].final)
    assert traces["lava"].meta["streamed_steps"] == (n - 1) * (T + 1) + traces["lava"].readout.shape[0]


def test_generic_lif_semantics_match_sim():
    """A hand-made network with leaky LIFs, a bias exponent and a mixed-sign Dense whose LSBs Lava
    drops: Lava and sim agree on every spike and every readout value."""
    rng = np.random.default_rng(3)
    a = LIFProcess("a", (12,), du=400, dv=300, vth=40, bias_mant=rng.integers(0, 60, 12), bias_exp=4)
    b = LIFProcess("b", (7,), du=1000, dv=2000, vth=25)
    r = LIFProcess("r", (3,), du=-1, dv=4096, vth=1 << 17)
    syns = [DenseProcess("ab", "a", "b", rng.integers(-255, 256, (7, 12)), weight_exp=1),
            DenseProcess("br", "b", "r", rng.integers(-255, 256, (3, 7)), num_weight_bits=5)]
    srcs = [CurrentSource("in", "a", start=1, value=np.zeros(12, np.int64), quench=0, adds_input=True)]
    net = ProcessNet(T=30, period=40, lifs=[a, b, r], synapses=syns, sources=srcs, readout="r", profile=LOIHI2)
    cur = {"a": rng.integers(-20, 80, (1, 12))}
    sim = simulate(net, cur, record=True)
    lava = run_lava(net, cur, record=True)
    assert sim.spikes["a"].sum() > 0 and sim.spikes["b"].sum() > 0
    for k in ("a", "b"):
        assert np.array_equal(sim.spikes[k], lava.spikes[k]), k
    assert np.array_equal(sim.readout, lava.readout)


def test_a_lava_model_exception_is_reported(mlp):
    """DelaySparse rejects delays above 63 inside its process model: Lava's own error reaches the user."""
    net = lower(mlp.q(2))
    net.synapses[-1] = dataclasses.replace(net.synapses[-1], delay=70, sparse=True)
    with pytest.raises(TargetError, match=r"the Lava worker failed.*between 0 and 63"):
        run_lava(net, encode(mlp.q(2), mlp.data.x_test[:1]))


def test_malformed_network_file_is_reported(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "net.json").write_text(json.dumps({"format": "something-else"}))
    res = run_process([lava_python(), str(WORKER), str(tmp_path / "net"), str(tmp_path / "out")], 120, "worker")
    assert res.returncode == 1
    err = json.loads((tmp_path / "out" / "error.json").read_text())
    assert "holds neither a spikeport Lava package nor a netx run" in err["message"]


def test_a_hanging_worker_is_stopped_with_all_its_processes(mlp, monkeypatch, lava_processes):
    """A real Lava run far longer than the time limit: stopped, with its forked children, and reported."""
    q = mlp.q(64)
    x = np.repeat(mlp.data.x_test[:1], 400, axis=0)  # 26,000 streamed steps
    processes = lava_processes()
    with pytest.raises(TargetError, match="did not finish within 8 s and was stopped"):
        run_lava(lower(q), encode(q, x), timeout=8, chunk=400)
    monkeypatch.undo()
    assert processes.leftovers() == []


def test_missing_lava_environment_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKEPORT_LAVA_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(TargetError, match="Lava environment was not found"):
        lava_python()


def test_the_lava_environment_has_no_torch_and_no_spikeport():
    """The worker depends on Lava and numpy only, so nothing torch-related can leak into the run."""
    for mod in ("torch", "spikeport"):
        res = subprocess.run([lava_python(), "-c", f"import {mod}"], capture_output=True, text=True)
        assert res.returncode != 0 and "No module named" in res.stderr
    assert Path(sys.executable).resolve() != Path(lava_python()).resolve()


def test_grouped_dilated_strided_conv_matches_lava():
    """Conv with groups, dilation, stride and padding between two leaky LIF layers: Lava equals sim."""
    from spikeport.toolchain.ir.procnet import ConvProcess

    rng = np.random.default_rng(5)
    a = LIFProcess("a", (4, 9, 9), du=500, dv=800, vth=20)
    b = LIFProcess("b", (6, 4, 5), du=300, dv=1000, vth=15)
    r = LIFProcess("r", (6 * 4 * 5,), du=-1, dv=4096, vth=1 << 17)
    conv = ConvProcess("ab", "a", "b", rng.integers(-60, 90, (6, 2, 3, 2)), (4, 9, 9), (6, 4, 5),
                       stride=(2, 2), padding=(1, 1), dilation=(2, 1), groups=2)
    readout = DenseProcess("br", "b", "r", np.eye(6 * 4 * 5, dtype=np.int64) * 2, sign_mode="exc")
    srcs = [CurrentSource("in", "a", start=1, value=np.zeros(4 * 81, np.int64), quench=0, adds_input=True)]
    net = ProcessNet(T=25, period=30, lifs=[a, b, r], synapses=[conv, readout], sources=srcs, readout="r",
                     profile=LOIHI2)
    cur = {"a": rng.integers(-5, 30, (1, 4 * 81))}
    sim = simulate(net, cur, record=True)
    lava = run_lava(net, cur, record=True)
    assert sim.spikes["b"].sum() > 0
    for k in ("a", "b"):
        assert np.array_equal(sim.spikes[k], lava.spikes[k]), k
    assert np.array_equal(sim.readout, lava.readout)
