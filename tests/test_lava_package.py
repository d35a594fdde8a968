"""``spikeport export --lava``: a package a Lava user runs without spikeport. Its own example script
(lava-nc, numpy and the package's loader only) runs in the Lava environment; its readout and every
layer's spikes equal streamed ``sim`` in every window of every sample. Damaged packages get one line
from the loader."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikeport.api import prepare, run
from spikeport.cli import main
from spikeport.targets.lava.environment import lava_python
from spikeport.targets.lava.package import export_lava
from spikeport.toolchain.ir.trace import cut_frames
from spikeport.toolchain.passes.lowering import deploy, lower

pytestmark = pytest.mark.lava


def _run_example(folder: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    out = tmp_path / "lava_out.npz"
    res = subprocess.run([lava_python(), str(folder / "run_example.py"), "--save", str(out)], capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "accuracy" in res.stdout
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("model, method, T, n", [("cnn_mnist", "qcfs", 4, 3), ("resnet_digits", "qcfs", 3, 4),
                                                 ("mlp_digits", "tpp", 3, 4), ("mlp_digits", "cos", 2, 3)])
def test_the_package_runs_in_plain_lava_and_equals_sim(model, method, T, n, tmp_path):
    p = prepare(model, calib=256)
    q = p.quantize(p.method(method, T), T)
    x, y = p.data.x_test[:n], p.data.y_test[:n]
    folder = tmp_path / "pkg"
    export_lava(folder, deploy(q), model, method, x, y)
    lava = _run_example(folder, tmp_path)
    net = lower(q)
    sim = run(deploy(q), x, "sim", record=True, stream=True)
    P, F = net.period, net.frame
    timing = net.timing
    for name in sim.spikes:  # each layer's window of each sample (the schedules run on before and after)
        got = cut_frames(lava[f"spikes.{name}"], n, P, F)
        lo = timing.output_start[name] - 1
        window = slice(lo, lo + timing.length[name])
        assert np.array_equal(got[window], sim.spikes[name][window]), name
        assert got[window].any() or not sim.spikes[name][window].any()
    readout = cut_frames(lava["readout_u"], n, P, F) >> q.profile.act_shift
    lo = timing.input_start[net.readout] - 1
    assert np.array_equal(readout[lo:lo + T], sim.readout[lo:lo + T])
    assert np.array_equal(lava["predictions"], sim.final.argmax(1))


def test_export_command_writes_a_package_with_its_readme(tmp_path):
    assert main(["export", "resnet_digits", "--lava", str(tmp_path / "pkg"), "--T", "3", "--examples", "2",
                 "--calib", "128"]) == 0
    spec = json.loads((tmp_path / "pkg" / "network.json").read_text())
    assert spec["format"] == "spikeport-lava-package/1" and spec["T"] == 3
    assert spec["meta"]["model"] == "resnet_digits" and spec["encoders"][0]["kind"] == "conv"
    readme = (tmp_path / "pkg" / "README.md").read_text()
    assert "Loihi2HwCfg" in readme and "load(" in readme
    for f in ("spikeport_lava.py", "neuron_procs.py", "method_kernels.py", "prng.py", "run_example.py",
              "arrays.npz", "example_inputs.npz"):
        assert (tmp_path / "pkg" / f).is_file(), f


def test_damaged_packages_get_one_line_from_the_loader(tmp_path):
    p = prepare("mlp_digits", calib=128)
    good = tmp_path / "good"
    export_lava(good, deploy(p.quantize(p.snn, 2)), "mlp_digits", "qcfs", p.data.x_test[:1], p.data.y_test[:1])

    def copy(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(good, d)
        return d

    (copy("no_network") / "network.json").unlink()
    spec = json.loads((good / "network.json").read_text())
    (copy("old_format") / "network.json").write_text(json.dumps({**spec, "format": "spikeport-lava-package/0"}))
    (copy("not_json") / "network.json").write_text("{ broken")
    damaged = copy("damaged") / "arrays.npz"
    damaged.write_bytes(damaged.read_bytes()[:200])
    with zipfile.ZipFile(good / "arrays.npz") as zin, zipfile.ZipFile(copy("missing") / "arrays.npz", "w") as zout:
        for item in zin.namelist():
            if item != "syn0.w.npy":
                zout.writestr(item, zin.read(item))
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from spikeport_lava import read, PackageError\n"
              "for d in sys.argv[2:]:\n"
              "    try:\n        read(d); print('LOADED', d)\n"
              "    except PackageError as e:\n        print(str(e).replace(chr(10), ' '))\n")
    names = ["no_network", "old_format", "not_json", "damaged", "missing"]
    res = subprocess.run([lava_python(), "-c", script, str(good)] + [str(tmp_path / d) for d in names],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == len(names) and not any(ln.startswith("LOADED") for ln in lines)
    expected = ["no network.json", "format 'spikeport-lava-package/0'", "not readable JSON", "damaged",
                "['syn0.w'] missing"]
    for name, line, want in zip(names, lines, expected, strict=True):
        assert name in line and want in line, line
