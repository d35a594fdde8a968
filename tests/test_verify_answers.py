"""Verification round two (issue 24): verify judges what users read, not only the recorded frames: the
answer (final, predictions), the spike counts, the unrecorded and streamed passes, the lowering's
timing against the graph's, with counts over every chunk and honest labels. Each blind spot is shown
closed by planting its fault (the mutants of ``spikeport mutants``) in the real code."""

import dataclasses
import json

import numpy as np
import pytest

from spikeport.api import prepare, run, verify
from spikeport.cli import main
from spikeport.quality.mutants import MUTANTS
from spikeport.targets.lava.runner import LavaRunner
from spikeport.toolchain.passes.lowering import deploy, lower
from spikeport.toolchain.verification.compare import compare_frames
from spikeport.toolchain.verification.timing import graph_timing

PLANTED = {m.name: m for m in MUTANTS}


@pytest.mark.parametrize("mutant, check", [("answer-early", "final"), ("unrecorded-early", "unrecorded pass"),
                                           ("stream-5th", "streamed pass (8 samples)"),
                                           ("counts+1", "spike counts"), ("latency+1", "timing vs graph")])
def test_a_fault_outside_the_recorded_frames_is_caught(mlp, mutant, check):
    q, x = mlp.q(4), mlp.data.x_test[:6]  # fewer than 8: the passes repeat samples to stream 8
    (row,), _ = verify(deploy(q), x, targets=("sim",))
    assert row.exact and [c.name for c in row.checks] == [
        "final", "predictions", "spike counts", "timing vs graph", "unrecorded pass", "streamed pass (8 samples)"]
    with PLANTED[mutant].plant():
        (row,), _ = verify(deploy(q), x, targets=("sim",))
    assert not row.exact
    failed = [c.name for c in row.checks if not c.exact]
    assert failed[0] == check or (check == "final" and failed[:2] == ["final", "predictions"]), row.line()
    assert f"DIVERGES in {failed[0]}" in row.line() or row.first_divergence is not None


def test_the_answer_and_counts_alone_fail_even_where_every_frame_matches(mlp):
    with PLANTED["answer-early"].plant():
        (row,), _ = verify(deploy(mlp.q(3)), mlp.data.x_test[:10], targets=("sim",))
    assert row.first_divergence is None and not row.exact  # the frames were right, the answer was not
    assert "DIVERGES in final" in row.line() and "first at sample 0" in row.line()


def test_a_window_split_between_chunks_of_sims_loop_is_verified(mlp):
    q, x = mlp.q(20), mlp.data.x_test[:8]  # T=20 > sim's 8-step chunk: windows split between calls
    (row,), _ = verify(deploy(q), x, targets=("sim",))
    assert row.exact, row.line()
    with PLANTED["chunk-subtraction"].plant():
        (row,), _ = verify(deploy(q), x, targets=("sim",))
    assert not row.exact and row.first_divergence["layer"] == q.hidden[0].name


def test_lava_is_held_to_its_answer_and_an_unrecorded_stream(mlp, monkeypatch):
    q, x = mlp.q(3), mlp.data.x_test[:4]
    rows, _ = verify(deploy(q), x, targets=("lava",))
    (row,) = rows
    assert row.exact, row.line()
    assert "unrecorded pass (streamed)" in [c.name for c in row.checks]
    real = LavaRunner._frames

    def early(*args):
        tr = real(*args)
        tr.final = tr.readout[tr.readout_start + tr.T - 2].copy()
        return tr

    monkeypatch.setattr(LavaRunner, "_frames", staticmethod(early))
    (row,), _ = verify(deploy(q), x, targets=("lava",))
    assert not row.exact and "DIVERGES in final" in row.line()


@pytest.mark.parametrize("method", ["qcfs", "ftbc", "cos", "tpp", "graded"])
def test_the_lowerings_timing_is_the_graphs(method):
    p = prepare("resnet_digits", calib=64)  # a skip connection: the longest path decides
    for T in (1, 3):
        q = p.quantize(p.method(method, T, rho=2), T)
        assert lower(q).timing == graph_timing(q), (method, T)


def test_mismatches_are_counted_over_every_chunk(mlp):
    q, x = mlp.q(3), mlp.data.x_test[:12]
    with PLANTED["readout+1"].plant():
        (one,), _ = verify(deploy(q), x, targets=("sim",), chunk=12)
        (three,), _ = verify(deploy(q), x, targets=("sim",), chunk=4)
    assert one.mismatches == three.mismatches and one.mismatches["readout"] > 0
    n = f"{one.mismatches['readout']:,} values differ in that layer"
    assert n in one.line() and n in three.line()
    final = {c.name: c for c in three.checks}["final"]
    assert final.total - final.matched == 12 * 10


def test_frame_comparisons_label_steps_inside_the_window(mlp):
    q, x = mlp.q(4), mlp.data.x_test[:4]
    sim = run(deploy(q), x, "sim", record=True)
    layer = q.hidden[0].name
    start = sim.window_start[layer]
    flipped = {**sim.spikes, layer: sim.spikes[layer].copy()}
    flipped[layer][start + 1, 0, 0] ^= 1
    v = compare_frames(sim, dataclasses.replace(sim, spikes=flipped, target="lava"), lower(q).timing)
    assert not v.exact and v.first_divergence["where"] == "in the window", v.line()


def test_a_reference_beyond_its_head_room_is_named(mlp):
    """Quantized for T=2, run at T=64: the reference itself leaves the head-room, and the report says
    where instead of reading like a target bug."""
    (row,), _ = verify(deploy(dataclasses.replace(mlp.q(2), T=64)), mlp.data.x_test[:30], targets=("sim",))
    assert not row.exact and row.headroom is not None
    assert f"the reference itself left its head-room at layer {row.headroom['layer']!r}" in row.line()


def test_eval_verify_every_checks_the_answer_it_writes(tmp_path):
    args = ["eval", "mlp_digits", "--target", "sim", "--T", "3", "--samples", "6", "--verify-every", "2"]
    assert main([*args, "--out", str(tmp_path / "ok")]) == 0
    with PLANTED["answer-early"].plant():
        main([*args, "--out", str(tmp_path / "bad")])
    for name, want in (("ok", True), ("bad", False)):
        recs = [json.loads(ln) for ln in (tmp_path / name / "results.jsonl").read_text().splitlines()[1:]]
        assert [r["verified_exact"] for r in recs if "verified_exact" in r] == [want] * 3


def test_verification_json_carries_every_check(mlp, capsys):
    code = main(["verify", "mlp_digits", "--T", "2", "--samples", "5", "--targets", "sim", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out[0]["exact"]
    assert {c["name"]: c["exact"] for c in out[0]["checks"]}["streamed pass (8 samples)"] is True
    assert np.all([c["exact"] for c in out[0]["checks"]])


def test_the_head_room_exit_named_does_not_depend_on_how_samples_are_cut(mlp):
    """The reference's batches and verify's chunks merge their exits by one rule (the least layer
    order, step, sample), so the exit named is the whole run's whatever the batch or chunk size.
    The samples are ordered so that the first chunk's exit is not the run's first."""
    dep = deploy(dataclasses.replace(mlp.q(2), T=64))
    x = mlp.data.x_test[:30]
    own = [run(dep, x[i:i + 1], "torch_int").meta["headroom"] for i in range(len(x))]
    key = [(h["order"], h["step"]) if h else (99, 0) for h in own]
    x = x[sorted(range(len(x)), key=lambda i: key[i], reverse=True)]  # the earliest exits last
    whole = run(dep, x, "torch_int").meta["headroom"]
    assert (whole["order"], whole["step"]) == min(key) < max(key)
    assert run(dep, x, "torch_int", batch=7).meta["headroom"] == whole
    for chunk in (7, 30):
        (row,), _ = verify(dep, x, targets=("sim",), chunk=chunk)
        assert row.headroom == whole, chunk
