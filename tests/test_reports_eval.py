"""The quantization report's numbers (checked against values computed here, independently), its
HTML, and the hardware-in-the-loop harness: resumable, verifiable, reproducible from its config."""

import base64
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spikeport.cli import main
from spikeport.evaluate import EvalConfig, Evaluation, summarize
from spikeport.reports.quantization import quantization_report, write_qreport
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.lowering import deploy


def test_report_numbers_match_an_independent_computation(cnn, tmp_path):
    T, x = 4, cnn.data.x_train[:64]
    q = cnn.q(T)
    r = quantization_report(deploy(q, cnn.snn), x, cnn.model.graph)
    # weights: recompute SMAPE and zeroed share for layer 'act2' from the raw arrays
    pf, pq = cnn.snn.population("act2"), q.population("act2")
    unit = next(e for e in q.meta["quantization"] if e["population"] == "act2")["unit"]
    wf = pf.inputs[0].synapse.weight
    wq = pq.inputs[0].synapse.weight * 2.0 ** pq.inputs[0].weight_exp * unit
    den = (np.abs(wf) + np.abs(wq)) / 2
    want = np.mean(np.abs(wf - wq)[den > 0] / den[den > 0])
    layer = next(e for e in r["layers"] if e["population"] == "act2")
    assert layer["projections"][0]["smape"] == pytest.approx(want, rel=1e-9)
    assert layer["projections"][0]["zero_share"] == pytest.approx(np.mean(pq.inputs[0].synapse.weight == 0))
    # firing: silent share and mean rate from a fresh integer run
    tr = run_reference(q, x, T, record=True)
    counts = tr.spikes["act2"].sum(0)
    assert layer["silent_share"] == pytest.approx(np.mean(counts == 0))
    assert layer["rate_mean"] == pytest.approx(counts.mean() / T)
    # synaptic ops: a spike of layer 'act1' reaches C_out targets per output position whose receptive field
    # covers it (counted here by sliding the 6x6, stride-2 window by hand)
    s2 = tr.spikes["act1"].sum(0).reshape(len(x), 16, 28, 28).astype(np.int64)
    syn = pq.inputs[0].synapse
    k = syn.weight.shape[-1]
    cover = np.zeros((28 + 2 * syn.padding[0], 28 + 2 * syn.padding[1]))
    for oy in range(14):
        for ox in range(14):
            cover[oy * 2:oy * 2 + k, ox * 2:ox * 2 + k] += 1
    cover = cover[syn.padding[0]:-syn.padding[0], syn.padding[1]:-syn.padding[1]] * syn.weight.shape[0]
    synops_2_to_6 = (s2 * cover[None, None]).sum(axis=(1, 2, 3))
    s6 = tr.spikes["act2"].sum(0).astype(np.int64)
    s10 = tr.spikes["act3"].sum(0).astype(np.int64)
    # layer 'act3': 3x3 conv, stride 1, padding... after the 2x2 pool: a 6x6 kernel at stride 2 from 14x14 to 7x7
    syn10 = q.population("act3").inputs[0].synapse
    k10, st, pd = syn10.weight.shape[-1], syn10.stride[0], syn10.padding[0]
    cover10 = np.zeros((14 + 2 * pd, 14 + 2 * pd))
    for oy in range(7):
        for ox in range(7):
            cover10[oy * st:oy * st + k10, ox * st:ox * st + k10] += 1
    fo10 = np.broadcast_to(cover10[pd:-pd, pd:-pd] * syn10.weight.shape[0], (32, 14, 14)).reshape(-1)
    fo13 = np.count_nonzero(q.population("fc").inputs[0].synapse.weight, axis=0)
    total = synops_2_to_6 + s6 @ fo10 + s10 @ fo13
    assert r["network"]["synops_per_inference"] == pytest.approx(total.mean())
    e = r["network"]["energy_sources"]
    assert "Davies" in e["loihi"]["source"] and "Horowitz" in e["mac"]["source"]
    assert r["network"]["snn_energy_uJ"] == pytest.approx(
        (total.mean() * 23.6 + r["network"]["neuron_updates_per_inference"] * 52.0) * 1e-6)
    write_qreport(r, tmp_path)
    html = (tmp_path / "quantization.html").read_text()
    pngs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(pngs) == 2
    import io

    import matplotlib.image as mpimg

    for b in pngs:  # every plot decodes to a real image
        img = mpimg.imread(io.BytesIO(base64.b64decode(b)), format="png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    assert "worst channels" in html and r["summary"][0] in html.replace("&#x27;", "'")
    res = r["resources"]  # the Loihi 2 estimate: every population, neurons as the network has them
    assert [x["name"] for x in res["layers"]] == [p.name for p in q.populations]
    assert res["neurons"] == sum(p.size for p in q.populations) and res["cores"] >= len(q.populations)
    assert "Loihi 2 resources" in html and "Intel Labs" in html


def test_report_command(capsys, tmp_path):
    assert main(["report", "mlp_digits", "--T", "4", "--samples", "50", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "drifts most" in out and "uJ on Loihi" in out
    r = json.loads((tmp_path / "quantization.json").read_text())
    assert {e["population"] for e in r["layers"]} == {"act1", "act2", "fc3"}


def _records(path):
    return [json.loads(ln) for ln in path.read_text().splitlines()[1:]]


def test_eval_resumes_after_being_killed(tmp_path):
    args = ["eval", "cnn_mnist", "--target", "sim", "--T", "4", "--chunk", "8", "--samples", "400"]
    full = tmp_path / "full"
    assert main([*args, "--out", str(full)]) == 0
    part = tmp_path / "part"
    said = tmp_path / "stderr.txt"
    with said.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "spikeport.cli", *args, "--out", str(part)],
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 120
    res = part / "results.jsonl"
    while time.time() < deadline:
        if res.is_file() and len(res.read_text().splitlines()) > 40:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(res.read_text().splitlines()) - 1
    assert 0 < n_before < 400, n_before
    with res.open("a") as f:  # as if the kill had cut a line in half
        f.write('{"index": 399, "lab')
    # resume with exactly the command the run printed when it started, from another folder
    command = re.search(r"resume \(or reproduce\) with: (spikeport eval .*)", said.read_text()).group(1)
    (tmp_path / "elsewhere").mkdir()
    cwd = os.getcwd()
    os.chdir(tmp_path / "elsewhere")
    try:
        assert main(shlex.split(command)[1:]) == 0
    finally:
        os.chdir(cwd)
    a, b = _records(full / "results.jsonl"), _records(res)
    key = lambda r: (r["index"], r["prediction"], r["spikes"], r["synops"])  # noqa: E731
    assert sorted(map(key, a)) == sorted(map(key, b)) and len(b) == 400
    sa, sb = summarize(full), summarize(part)
    assert sa["accuracy"] == sb["accuracy"] and sa["synops_per_sample"] == sb["synops_per_sample"]


@pytest.mark.lava
def test_eval_on_lava_verifies_every_nth_sample_and_reruns_from_its_config(tmp_path, capsys):
    out = tmp_path / "lava"
    code = main(["eval", "resnet_digits", "--target", "lava", "--T", "3", "--samples", "12", "--chunk", "6",
                 "--verify-every", "4", "--method", "cos", "--rho", "2", "--out", str(out)])
    assert code == 0
    recs = _records(out / "results.jsonl")
    assert [r["index"] for r in recs if "verified_exact" in r] == [0, 4, 8]
    assert all(r["verified_exact"] for r in recs if "verified_exact" in r)
    cfg = EvalConfig.from_toml(out / "config.toml")
    assert cfg.method == "cos" and cfg.rho == 2 and cfg.target == "lava"
    again = tmp_path / "again"
    sim_cfg = EvalConfig(**{**cfg.__dict__, "target": "sim"})
    Evaluation(sim_cfg, again, progress=False).run()
    assert [r["prediction"] for r in recs] == [r["prediction"] for r in _records(again / "results.jsonl")]


def test_eval_on_the_chip_says_what_is_missing(capsys, tmp_path):
    code = main(["eval", "mlp_digits", "--target", "loihi2_hw", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs Intel's Loihi 2 stack" in err[0]


def test_eval_refuses_a_results_file_from_another_config(tmp_path):
    Evaluation(EvalConfig("mlp_digits", T=2, samples=10), tmp_path, progress=False).run()
    from spikeport.toolchain.errors import SpikeportError

    with pytest.raises(SpikeportError, match="different configuration"):
        Evaluation(EvalConfig("mlp_digits", T=3, samples=10), tmp_path, progress=False).run()


def test_data_parallel_eval_with_torchrun_equals_one_process(tmp_path):
    """Two CPU processes (gloo) each take half the samples; the gathered results equal one process,
    including TPP, whose random numbers are keyed by the sample index."""
    args = ["eval", "mlp_digits", "--target", "sim", "--T", "3", "--method", "tpp", "--samples", "50",
            "--chunk", "8", "--verify-every", "5"]
    torchrun = Path(sys.executable).with_name("torchrun")
    res = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "spikeport.cli", *args,
                          "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.count("accuracy") == 1  # rank 0 speaks for both
    assert not list((tmp_path / "two").glob("results.part*"))  # merged and cleaned up
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two, one = _records(tmp_path / "two" / "results.jsonl"), _records(tmp_path / "one" / "results.jsonl")
    drop_wall = lambda recs: [{k: v for k, v in r.items() if k != "wall_s"} for r in recs]  # noqa: E731
    assert [r["index"] for r in two] == list(range(50))
    assert drop_wall(two) == drop_wall(one)
    assert sum(r.get("verified_exact", False) for r in two) == 10


@pytest.mark.parametrize("line, message", [("T = 0", "T = 0 must be 1 or more"),
                                           ("chunk = 0", "chunk = 0 must be 1 or more"),
                                           ('target = "gpu"', "target = 'gpu' is not one of"),
                                           ("samples = -5", "samples = -5 must be 0 or more")])
def test_impossible_config_values_are_refused_in_one_line(tmp_path, capsys, line, message):
    """Issue 11: a well-typed but impossible value (T = 0, chunk = 0) ended in an internal error."""
    key = line.split(" = ")[0]
    text = "\n".join(line if ln.startswith(f"{key} =") else ln
                     for ln in EvalConfig(model="mlp_digits", samples=4).to_toml().splitlines())
    path = tmp_path / "config.toml"
    path.write_text(text + "\n")
    assert main(["eval", "--config", str(path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and len(err.strip().splitlines()) == 1, err
