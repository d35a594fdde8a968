"""The command line: exit codes, one-line errors, --debug, and a small demo run."""

import json
import subprocess
import sys
import warnings
from html.parser import HTMLParser

import pytest
import torch
from torch import nn

from spikeport.cli import main


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_shows_working_examples(capsys):
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    out = capsys.readouterr().out
    assert "spikeport verify cnn_mnist --T 8" in out


def test_verify_prints_exact_rows_and_exits_zero(capsys):
    code, out, _ = cli(capsys, "verify", "mlp_digits", "--T", "3", "--samples", "20", "--targets", "sim")
    assert code == 0
    assert "sim vs torch_int: exact (20 samples x 3 steps x 3 layers" in out


def test_run_reports_accuracy_as_json(capsys):
    code, out, _ = cli(capsys, "run", "mlp_digits", "--target", "sim", "--T", "8", "--json")
    assert code == 0
    row = json.loads(out)
    assert row["n"] == 360 and row["acc"] > 0.97 and row["overflow"] == 0


def export(net: nn.Module, shape, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(1, *shape),), str(path), dynamo=False)


@pytest.mark.parametrize("case", ["truncated", "unsupported", "nan", "shape", "no-data", "cannot-fit"])
def test_bad_input_is_one_line_and_nonzero(case, capsys, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    net = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    args = ["run", str(path), "--data", "digits"]
    expect = ""
    if case == "truncated":
        export(net, (64,), path)
        path.write_bytes(path.read_bytes()[:300])
        expect = "m.onnx is not a valid ONNX file"
    elif case == "unsupported":
        export(nn.Sequential(nn.Linear(64, 16), nn.Softplus(), nn.Linear(16, 10)), (64,), path)
        expect = "unsupported ONNX op Softplus"
    elif case == "nan":
        with torch.no_grad():
            net[2].weight[3, 3] = float("nan")
        export(net, (64,), path)
        expect = "weight has 1 NaN/Inf value(s)"
    elif case == "shape":
        export(net, (64,), path)
        args = ["run", str(path), "--data", "mnist5k"]
        expect = "shape mismatch"
    elif case == "no-data":
        export(net, (64,), path)
        args = ["run", str(path)]
        expect = "does not say which data set"
    elif case == "cannot-fit":
        from spikeport.models.qcfs import QCFS

        net = nn.Sequential(nn.Linear(64, 16), QCFS(8, 1.0), nn.Linear(16, 16), QCFS(8, 1.0), nn.Linear(16, 10))
        with torch.no_grad():
            net[2].weight[0, 0] = 1e7  # ten million thresholds: no 8-bit mantissa and exponent holds it
        export(net, (64,), path)
        expect = "cannot fit loihi2 at T=8"
    code, _, err = cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikeport: error:") and expect in lines[0], err
    code, _, err = cli(capsys, "--debug", *args)
    assert code == 2 and "Traceback" in err


def test_onnx_model_runs_end_to_end(capsys, tmp_path):
    from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint

    model, _ = load_checkpoint(CHECKPOINT_DIR / "mlp_digits.pt")
    export(model, (64,), tmp_path / "mlp.onnx")
    code, out, _ = cli(capsys, "verify", str(tmp_path / "mlp.onnx"), "--data", "digits", "--T", "4",
                       "--samples", "10", "--targets", "sim")
    assert code == 0 and "exact" in out


def test_lava_timeout_is_reported_not_hung(capsys):
    code, _, err = cli(capsys, "verify", "cnn_mnist", "--T", "8", "--samples", "2", "--targets", "lava",
                       "--timeout", "1")
    assert code == 2
    assert "did not finish within 1 s and was stopped" in err


def test_console_script_is_installed():
    res = subprocess.run([sys.executable, "-m", "spikeport.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "demo" in res.stdout


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        self.tables += tag == "table"


def test_small_demo_writes_reports(capsys, tmp_path):
    code, out, _ = cli(capsys, "demo", "--out", str(tmp_path), "--T", "2,4", "--lava-T", "4",
                       "--lava-samples", "3", "--samples", "60", "--methods-T", "2", "--tpp-seeds", "2")
    assert code == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    acc = {(r["method"], r["target"], r["T"], r["n"]) for r in rep["accuracy"]}
    assert ("qcfs", "ann", None, 60) in acc and ("qcfs", "lava", 4, 3) in acc
    assert {("qcfs", t, T, 60) for t in ("torch_float", "torch_int", "sim") for T in (2, 4)} <= acc
    rows = rep["verification"]
    assert {(r["target"], r["against"], r["steps"]) for r in rows} == {
        ("sim", "torch_int", 2), ("sim", "torch_int", 4), ("lava", "torch_int", 4), ("lava", "sim", 4)}
    for r in rows:
        assert set(r) >= {"target", "against", "exact", "samples", "steps", "layers", "spikes", "first_divergence"}
        assert r["exact"] and r["first_divergence"] is None
    p = _Parser()
    p.feed((tmp_path / "report.html").read_text())
    assert len(p.imgs) >= 3 and all(s.startswith("data:image/png;base64,") for s in p.imgs) and p.tables >= 4
    methods = {r["method"] for r in rep["methods"]["rows"]}  # QCFS's rows are the accuracy table's, not rerun
    assert methods >= {"ftbc", "cos (rho=4)", "tpp", "graded"} and not methods & {"qcfs", "permute"}
    assert rep["methods"]["notes"]["all_checks_exact"]
    assert "T=2" in out and "lava" in out


@pytest.mark.parametrize("method", ["ftbc", "cos", "tpp"])
def test_verify_with_a_method(method, capsys):
    code, out, _ = cli(capsys, "verify", "resnet_digits", "--T", "2", "--samples", "6", "--targets", "sim",
                       "--method", method)
    assert code == 0 and "sim vs torch_int: exact" in out


def test_methods_table_command(capsys, tmp_path):
    code, out, _ = cli(capsys, "methods", "mlp_digits", "--T", "1,2", "--tpp-seeds", "2", "--lava-T", "2",
                       "--lava-samples", "3", "--verify-samples", "10", "--samples", "40", "--out", str(tmp_path))
    assert code == 0 and "all exact: True" in out
    table = json.loads((tmp_path / "methods.json").read_text())
    methods = {r["method"] for r in table["rows"]}
    assert {"qcfs", "ftbc", "cos (rho=4)", "tpp", "graded", "nq", "permute", "ann"} <= methods
    tpp = [r for r in table["rows"] if r["method"] == "tpp" and r["target"] == "sim"]
    assert all(r["runs"] == 2 and r["acc_std"] is not None for r in tpp)
    lava = {(r["method"], r["T"]) for r in table["rows"] if r["target"] == "lava"}
    assert lava == {("qcfs", 2), ("ftbc", 2), ("cos (rho=4)", 2), ("tpp (seed 0)", 2), ("graded", 2)}
    assert (tmp_path / "methods.md").read_text().startswith("| method |")


@pytest.mark.lava
def test_bench_perf_produces_every_figure_and_checks_lava(capsys, tmp_path):
    """The perf suite at tiny sizes: every figure present and sane, sim equal to Lava (no timing
    assertions: the speed figures are for BENCHMARKS.md, not for tests)."""
    code, out, _ = cli(capsys, "bench", "--quick", "--json", "--out", str(tmp_path))
    assert code == 0
    res = json.loads(out)
    assert res == json.loads((tmp_path / "bench.json").read_text())
    assert "| cnn_mnist |" in (tmp_path / "bench.md").read_text()
    assert res["machine"]["matmul_gflops"] > 0
    cnn, vgg = res["networks"]
    assert cnn["lava_exact"] is True and cnn["lava_values_compared"] > 0 and vgg["lava_exact"] is None
    for n in (cnn, vgg):
        assert n["sim_us_per_sample_step"] > 0 and n["ann_us_per_sample"] > 0 and n["spikes_per_sample"] > 0
        assert n["synops_per_sample"] > n["spikes_per_sample"]  # every spike reaches several synapses
        assert set(n["methods_s"]) == {"cos"}
        assert n["derived"]["sim_dense_gflops"] > 0
    assert cnn["derived"]["sim_over_lava_run"] > 1
    s = res["scaling"]
    assert [r["T"] for r in s["T"]] == [1, 2] and [r["batch"] for r in s["batch"]] == [1, 4]
    assert s["width"][0]["neurons"] == 4 * (28 * 28 * 2 + 2 * 14 * 14 * 2 + 4 * 7 * 7 * 2)
    if sys.platform == "linux":
        assert all(r["peak_mb"] is not None and r["peak_mb"] >= 0 for rows in s.values() for r in rows)


def test_run_stream_flag(capsys):
    code, out, _ = cli(capsys, "run", "mlp_digits", "--T", "3", "--samples", "40", "--stream", "--json")
    assert code == 0
    streamed = json.loads(out)
    code, out, _ = cli(capsys, "run", "mlp_digits", "--T", "3", "--samples", "40", "--json")
    assert json.loads(out)["acc"] == streamed["acc"] and streamed["overflow"] == 0
    code, _, err = cli(capsys, "run", "mlp_digits", "--T", "3", "--target", "torch_int", "--stream")
    assert code == 2 and "--stream applies to the sim target" in err


def test_a_users_own_npz_data_and_input_normalisation(capsys, tmp_path):
    """Issue 13: run an ONNX model on the user's own .npz data; a model that expects normalised
    inputs gets (x - mean) / std folded into its first layer."""
    import numpy as np
    import torch

    from spikeport.models.data import load_dataset
    from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint

    d = load_dataset("digits", flat=True)
    raw = {"x_train": d.x_train * 4 + 1, "y_train": d.y_train, "x_test": d.x_test * 4 + 1, "y_test": d.y_test}
    np.savez(tmp_path / "mine.npz", **raw)
    module, _ = load_checkpoint(CHECKPOINT_DIR / "mlp_digits.pt")
    torch.onnx.export(module, (torch.zeros(1, 64),), str(tmp_path / "mlp.onnx"), dynamo=False)
    code, out, _ = cli(capsys, "run", str(tmp_path / "mlp.onnx"), "--data", str(tmp_path / "mine.npz"), "--mean", "1",
                       "--std", "4", "--target", "sim", "--T", "8", "--json")
    got = json.loads(out)
    code_ref, out_ref, _ = cli(capsys, "run", "mlp_digits", "--target", "sim", "--T", "8", "--json")
    assert code == code_ref == 0 and got["n"] == 360
    assert abs(got["acc"] - json.loads(out_ref)["acc"]) < 0.02  # the same network on the same digits


@pytest.mark.parametrize("damage, message", [
    ("missing", "missing array(s) ['y_test']"),
    ("labels", "y_train must be 1437 integer labels"),
    ("shape", "x_train samples are (64,) but x_test samples (63,)"),
    ("garbage", "not a readable .npz file"),
])
def test_bad_npz_files_get_one_clear_line(capsys, tmp_path, damage, message):
    import numpy as np

    from spikeport.models.data import load_dataset

    d = load_dataset("digits", flat=True)
    arrays = {"x_train": d.x_train, "y_train": d.y_train, "x_test": d.x_test, "y_test": d.y_test}
    path = tmp_path / "bad.npz"
    if damage == "missing":
        del arrays["y_test"]
    elif damage == "labels":
        arrays["y_train"] = arrays["y_train"][:-3].astype(np.float32)
    elif damage == "shape":
        arrays["x_test"] = arrays["x_test"][:, :63]
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:
        np.savez(path, **arrays)
    code, _, err = cli(capsys, "run", "mlp_digits", "--data", str(path), "--T", "2")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0] and "bad.npz" in lines[0], err
