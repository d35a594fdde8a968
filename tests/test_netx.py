"""netx import and lava-dl's own ground truth, reproduced by sim; bad netx files."""

import h5py
import numpy as np
import pytest

from spikeport.cli import main
from spikeport.interop.netx import NETX_PROFILE, optimize_weight_bits, read_netx
from spikeport.quality.conformance import data_dir, run_suite
from spikeport.toolchain.errors import ModelFileError, UnsupportedOpError


@pytest.mark.parametrize("trace", ["tinynet", "dense", "pilotnet_lif", "ntidigits"])
def test_lava_dl_ground_truth_is_reproduced_exactly(trace):
    checks = run_suite([trace])
    assert checks and all(c.total > 0 for c in checks)
    bad = [c.line() for c in checks if not c.exact]
    assert not bad, bad


@pytest.mark.lava
@pytest.mark.parametrize("trace", ["tinynet", "pilotnet_lif", "ntidigits"])
def test_lava_runs_the_same_net_files_equal_to_sim(trace):
    from spikeport.quality.conformance import lava_vs_sim

    # ntidigits: the first 600 of its 3000 steps carry 1170 of its 1184 input spikes (Lava takes a
    # minute for all 3000 with u and v recorded; `spikeport conformance --lava` runs them)
    checks = lava_vs_sim(trace, data_dir(), steps=600 if trace == "ntidigits" else None)
    assert len(checks) >= 9
    bad = [c.line() for c in checks if not c.exact]
    assert not bad, bad


def test_conformance_command(capsys):
    code = main(["conformance", "--only", "tinynet,dense", "--json"])
    out = capsys.readouterr().out
    import json

    rows = json.loads(out)
    assert code == 0 and [r["name"] for r in rows] == ["tinynet output spikes", "dense block spikes (2000 steps)"]
    assert all(r["exact"] and r["matched"] == r["total"] for r in rows)


def test_netx_structure_of_pilotnet():
    nx = read_netx(data_dir() / "gts/pilotnet_lif/network.net", reset_interval=16)
    shapes = [nx.net.lif(n).shape for n in nx.layers]
    assert shapes[0] == (3, 66, 200) and len(nx.layers) == 10 and shapes[-1] == (1,)
    assert [nx.net.lif(n).reset_offset for n in nx.layers] == list(range(1, 11))
    last = nx.net.lif(nx.layers[-1])
    assert last.vth == 131071 and last.du == 4095  # iDecay 4096 -> du 4095


@pytest.mark.parametrize("w,want_bits,want_exp", [
    (np.array([[2, -4, 254]]), 8, 0),  # mixed and even: full width, exponent 0, lossless
    (np.array([[3, 5, 100]]), 7, -1),
])
def test_netx_weight_optimisation_round_trips(w, want_bits, want_exp):
    from spikeport.toolchain.hardware.lava_rules import lava_weights

    wl, bits, exp = optimize_weight_bits("x", w)
    assert (bits, exp) == (want_bits, want_exp)
    back = lava_weights(wl, None, bits, NETX_PROFILE.weight_bits)
    shifted = back << exp if exp > 0 else back >> -exp
    assert np.array_equal(shifted, w)


def _write(path, layers):
    with h5py.File(path, "w") as f:
        g = f.create_group("layer")
        for i, cfg in enumerate(layers):
            lg = g.create_group(str(i))
            for k, v in cfg.items():
                if isinstance(v, dict):
                    ng = lg.create_group(k)
                    for kk, vv in v.items():
                        ng.create_dataset(kk, data=vv)
                else:
                    lg.create_dataset(k, data=v)


NEURON = {"type": np.bytes_("CUBA"), "iDecay": 4096, "vDecay": 1024, "vThMant": 80}


def test_bad_netx_files_name_the_layer_and_field(tmp_path):
    src = data_dir() / "tiny.net"
    cut = tmp_path / "cut.net"
    cut.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(ModelFileError, match=r"cut\.net is not a readable HDF5"):
        read_netx(cut)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_netx(tmp_path / "none.net")
    _write(tmp_path / "pool.net", [{"type": [np.bytes_("input")], "shape": [4]}, {"type": [np.bytes_("pool")]}])
    with pytest.raises(UnsupportedOpError, match=r"layer 1 \(pool\.net\): layer type 'pool'"):
        read_netx(tmp_path / "pool.net")
    _write(tmp_path / "chain.net", [{"type": [np.bytes_("input")], "shape": [4]},
                                    {"type": [np.bytes_("dense")], "shape": [3], "weight": np.ones((3, 5)),
                                     "neuron": NEURON}])
    with pytest.raises(ModelFileError, match=r"layer 1 \(chain\.net\): weight \(3, 5\) does not chain"):
        read_netx(tmp_path / "chain.net")
    _write(tmp_path / "vth.net", [{"type": [np.bytes_("input")], "shape": [4]},
                                  {"type": [np.bytes_("dense")], "shape": [3], "weight": np.ones((3, 4)),
                                   "neuron": {**NEURON, "vThMant": 1 << 20}}])
    with pytest.raises(ModelFileError, match=r"layer 1 \(vth\.net\): neuron/vThMant = 1048576 is outside"):
        read_netx(tmp_path / "vth.net")
    _write(tmp_path / "delay.net", [{"type": [np.bytes_("input")], "shape": [4]},
                                    {"type": [np.bytes_("dense")], "shape": [3], "weight": np.ones((3, 4)),
                                     "neuron": NEURON, "delay": np.array([1, 70, 2])}])
    with pytest.raises(ModelFileError, match=r"layer 1 \(delay\.net\): delay = 70 is outside the hardware range"):
        read_netx(tmp_path / "delay.net")
    _write(tmp_path / "dv.net", [{"type": [np.bytes_("input")], "shape": [4]},
                                 {"type": [np.bytes_("dense")], "shape": [3], "weight": np.ones((3, 4)),
                                  "neuron": {**NEURON, "vDecay": 5000}}])
    with pytest.raises(ModelFileError, match=r"neuron/vDecay = 5000"):
        read_netx(tmp_path / "dv.net")
    _write(tmp_path / "sdnn.net", [{"type": [np.bytes_("input")], "shape": [4]},
                                   {"type": [np.bytes_("dense")], "shape": [3], "weight": np.ones((3, 4)),
                                    "neuron": {**NEURON, "type": np.bytes_("SDNN")}}])
    with pytest.raises(UnsupportedOpError, match="neuron type 'SDNN'"):
        read_netx(tmp_path / "sdnn.net")


@pytest.mark.lava
@pytest.mark.parametrize("trace", ["tinynet", "pilotnet_lif", "ntidigits"])
def test_written_netx_files_load_in_lava_dl_and_equal_sim(trace, tmp_path):
    from spikeport.interop.netx import write_netx
    from spikeport.quality.conformance import NET_FILES, _whc_to_flat, run_netx
    from spikeport.targets.lava.runner import run_netx_file

    d = data_dir()
    file, steps, reset, num_layers, (kind, data) = NET_FILES[trace]
    steps = min(steps, 200)
    nx = read_netx(d / file, reset_interval=reset, num_layers=num_layers)
    out = write_netx(nx, tmp_path / "out.net")
    back = read_netx(out, reset_interval=reset)
    arr = np.load(d / data)
    bias = _whc_to_flat(arr) if kind == "bias" else None
    spikes = arr[:, :steps] if kind == "spikes" else None
    for n in (nx, back):
        if bias is not None:
            n.net.lif(n.input_layer).bias_mant = bias
    ref = run_netx(nx.net, steps, spikes_in=spikes)
    again = run_netx(back.net, steps, spikes_in=spikes)
    lava = run_netx_file(out, steps, reset_interval=reset, input_bias=bias, spikes_in=spikes)
    assert len(lava) == len(nx.layers) == len(back.layers)
    for a, b, lv in zip(nx.layers, back.layers, lava):
        assert np.array_equal(ref.spikes[a], again.spikes[b])
        assert np.array_equal(lv["spikes"], ref.spikes[a][:, 0])


def test_netx_export_of_a_converted_net_names_what_netx_cannot_hold(capsys):
    code = main(["export", "cnn_mnist", "--netx", "/tmp/never-written.net", "--T", "4"])
    err = capsys.readouterr().err
    assert code == 2
    assert "reset by subtraction on a conv layer" in err and "analog input current" in err
    assert "layer 'act3'" in err


def test_nir_round_trip(tmp_path, mlp, resnet, cnn):
    import json

    from spikeport.interop.nir import export_nir, read_nir, to_nir

    for b in (mlp, resnet, cnn):
        path = export_nir(b.snn, tmp_path / "m.nir", integer=b.q(4))
        g, want = read_nir(path), to_nir(b.snn)
        assert sorted(g.nodes) == sorted(want.nodes) and sorted(map(tuple, g.edges)) == sorted(want.edges)
        for k, node in want.nodes.items():
            assert type(g.nodes[k]) is type(node)
            for attr in ("weight", "bias", "v_threshold", "stride", "padding"):
                if hasattr(node, attr):
                    got, exp = np.asarray(getattr(g.nodes[k], attr)), np.asarray(getattr(node, attr))
                    assert np.allclose(got, exp), (k, attr)
        first = b.snn.hidden[0]
        assert g.nodes[first.name].metadata["spikeport"]["v_init"] == pytest.approx(first.v_init)
        side = json.loads((tmp_path / "m.nir.spikeport.json").read_text())
        assert side["neuron"]["reset"] == "subtract threshold" and side["integer"]["T"] == 4


def test_bad_nir_files(tmp_path, mlp):
    from spikeport.interop.nir import export_nir, read_nir

    path = export_nir(mlp.snn, tmp_path / "m.nir")
    cut = tmp_path / "cut.nir"
    cut.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelFileError, match=r"cut\.nir is not a readable NIR file"):
        read_nir(cut)
    (tmp_path / "junk.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(ModelFileError, match=r"junk\.nir is not a readable NIR file"):
        read_nir(tmp_path / "junk.nir")
    with pytest.raises(ModelFileError, match="does not exist"):
        read_nir(tmp_path / "missing.nir")


@pytest.mark.parametrize("damage, message", [
    ("nan", r"weight has 1 NaN/Inf value"),
    ("fraction", r"weight = .* is not an integer"),
    ("range", r"weight = .* is outside the hardware range \[-256, 255\]"),
    ("mixed", r"weight \(mixed signs\) = 255 is outside the hardware range \[-256, 254\]"),
    ("delay", r"delay = 70 is outside the hardware range \[0, 62\]"),
    ("vth", r"neuron/vThMant = 0.5 is not an integer"),
])
def test_netx_values_outside_the_hardware_ranges_are_refused(tmp_path, damage, message):
    """Issue 11: NaN, fractional and out-of-range dense weights were read silently (NaN cast and
    clipped to -256, fractions truncated). Now one line names the file, the layer and the field."""
    import shutil

    path = tmp_path / f"nt_{damage}.net"
    shutil.copy(data_dir() / "gts/ntidigits/ntidigits.net", path)
    with h5py.File(path, "r+") as f:
        layer = f["layer"]["2"]
        w = layer["weight"][()].astype(np.float64)
        edits = {"nan": ("weight", np.where(np.arange(w.size).reshape(w.shape) == 3, np.nan, w)),
                 "fraction": ("weight", w + 0.5), "range": ("weight", w * 100),
                 "mixed": ("weight", np.where(w == w.max(), 255.0, w)),
                 "delay": ("delay", np.full_like(layer["delay"][()], 70)),
                 "vth": ("neuron/vThMant", np.float64(0.5))}
        key, value = edits[damage]
        del layer[key]
        layer[key] = value
    with pytest.raises(ModelFileError, match=message) as err:
        read_netx(path, num_layers=5)
    assert path.name in str(err.value) and "layer 2" in str(err.value) and "\n" not in str(err.value)
