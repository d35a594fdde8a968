"""Property-based cross-checks: random integer networks (dense and conv; random widths, kernels,
strides, paddings, dilations, depthwise groups and skip projections; mantissas at the ends of the
8-bit range; thresholds 2**1 .. 2**16; inputs from gentle to far beyond the head-room) must run
identically on the integer reference, ``sim`` and Lava (see ``toolchain/fuzz.py`` for the exact
property). Hypothesis draws the case seeds, derandomized, so CI runs the same sample every time;
``spikeport fuzz --cases N`` runs more."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeport.cli import main
from spikeport.quality.fuzz import check, random_case

SEEDS = st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(seed=SEEDS)
def test_random_networks_run_identically_on_torch_int_and_sim(seed):
    o = check(random_case(seed), lava=False)
    assert o.exact, o.line()


@pytest.mark.lava
@settings(max_examples=5, derandomize=True, deadline=None)
@given(seed=SEEDS)
def test_random_networks_run_identically_in_lava(seed):
    o = check(random_case(seed), lava=True)
    assert o.exact, o.line()
    assert o.values > 0


def test_cases_cover_what_they_claim():
    cases = [random_case(s) for s in range(300)]
    syns = [pr for c in cases for p in c.snn.populations for pr in p.inputs]
    convs = [pr.synapse for pr in syns if type(pr.synapse).__name__ == "ConvSynapse"]
    assert {s.stride[0] for s in convs} == {1, 2} and {s.dilation[0] for s in convs} == {1, 2}
    assert any(s.groups > 1 for s in convs) and any(s.padding[0] > 0 for s in convs)
    mant = np.concatenate([pr.synapse.weight.ravel() for pr in syns if pr.source != "input"])
    assert mant.min() == -128 and mant.max() == 127
    assert any(len(p.inputs) > 1 for c in cases for p in c.snn.populations)  # skip projections
    thetas = {p.threshold for c in cases for p in c.snn.hidden}
    assert min(thetas) == 2 and max(thetas) == 1 << 16
    outcomes = [check(c, lava=False) for c in cases[:80]]
    beyond = sum(not o.in_headroom for o in outcomes)
    assert 0 < beyond < len(outcomes)  # both regimes occur


def test_the_fuzzer_catches_a_wrong_simulator(monkeypatch):
    """An off-by-one threshold in sim's fused IF loop must show up as a disagreement."""
    from spikeport.targets import sim_models

    real = sim_models.FastIF.__init__

    def off_by_one(self, lif, self_syn):
        real(self, lif, self_syn)
        self.thr = self.thr + 64  # one weight unit (u holds 64x) too high

    monkeypatch.setattr(sim_models.FastIF, "__init__", off_by_one)
    found = [o for o in (check(random_case(s), lava=False) for s in range(40)) if not o.exact]
    assert found
    assert any("sim vs torch_int: DIVERGES" in o.problem for o in found)  # against the reference
    assert any("sim (fused loop) vs sim (general models)" in o.problem for o in found)  # against itself


def test_fuzz_command_reports_cases_and_disagreements(capsys):
    assert main(["fuzz", "--cases", "12", "--seed", "100", "--lava-every", "0"]) == 0
    out = capsys.readouterr().out
    assert "12 cases" in out and "0 disagreements" in out


def test_damaged_files_of_every_kind_give_clear_errors(capsys):
    """Truncated, bit-flipped, zeroed and random versions of every kind of file spikeport reads:
    each is accepted (a flipped bit in a weight can still make a valid file) or refused with a
    SpikeportError that names the file; never another exception, a hang or a crash."""
    assert main(["fuzz", "--files", "16", "--cases", "0", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "96 damaged files, 0 without a clear error" in out
    for kind in ("onnx", "checkpoint", "netx", "nir", "config", "results"):
        line = next(ln for ln in out.splitlines() if ln.startswith(kind))
        assert "0 FAILED" in line and "clear error" in line


def test_an_hdf5_file_that_hangs_the_library_is_refused(monkeypatch):
    """Found by the file fuzzer: h5py never returns from reading one of this damaged file's
    datasets. read_netx and read_nir try every file in a child process first."""
    from pathlib import Path

    from spikeport.interop import h5guard
    from spikeport.interop.netx import read_netx
    from spikeport.interop.nir import read_nir
    from spikeport.toolchain.errors import ModelFileError

    path = Path(__file__).parent / "data" / "hangs_hdf5.net"
    monkeypatch.setattr(h5guard, "TIME_LIMIT", 4.0)
    with pytest.raises(ModelFileError, match=r"hangs_hdf5\.net: reading this netx file did not finish within 4 s"):
        read_netx(path)
    with pytest.raises(ModelFileError, match=r"hangs_hdf5\.net: reading this NIR file did not finish"):
        read_nir(path)


@pytest.mark.lava
def test_beyond_the_headroom_only_streamed_sim_reproduces_lavas_leak_between_samples():
    """Case 0 drives its first layer past the head-room: in Lava's stream, sample 1 leaks into
    sample 2. sim run side by side misses that; sim streamed reproduces every spike."""
    from spikeport.api import run
    from spikeport.quality.fuzz import same_frames

    c = random_case(0)
    lava = run(c.snn, c.x, c.T, "lava", record=True)
    side = run(c.snn, c.x, c.T, "sim", record=True)
    streamed = run(c.snn, c.x, c.T, "sim", record=True, stream=True)
    assert sum(side.overflow.values()) > 0
    assert same_frames(lava, streamed)[0]
    assert not same_frames(lava, side)[0]
    assert np.array_equal(lava.final[:1], side.final[:1])  # the first sample has no predecessor
