"""The netx-compatible form of an integer SNN: neurons lava-dl's netx can express, written as a
``.net`` file that ``netx.hdf5.Network`` loads (``spikeport export MODEL --netx DIR --reset zero``).

netx builds every layer from Lava's CUBA LIF with the bias added to v and no recurrent conv
connection, so spikeport's soft-reset IF (reset by subtraction through a self-connection, bias and
the analog input current into u) has no exact netx form. The nearest form, layer by layer:

* every neuron is ``iDecay = 4096`` (u keeps nothing: it is this step's synaptic input),
  ``vDecay = 0`` (v integrates u and the bias) and fires when ``v > vThMant << 6``, then v = 0:
  an integrate-and-fire neuron that resets to zero. ``vThMant = theta - v_init - 1`` keeps the
  first spike where spikeport's neuron has it; after a spike the residue ``v - theta`` is lost,
  which is what this form costs (measured by :func:`reset_cost`).
* the first layer is netx's ``input`` layer: a neuron driven by its bias, which the host sets per
  sample to the first layer's current ``round(W x / unit) + b`` (:func:`input_bias`), as
  lava-dl's PilotNet example sets ``bias_mant`` to the image.
* netx holds integer weights in [-256, 254] with bias and synaptic input on the same 2**6 scale,
  so a layer whose weights carry an exponent ``e`` is divided by ``2**(e - 1)``: weights become
  ``2 * mantissa`` exactly, thresholds stay exact (powers of two), biases are rounded to the new
  unit (``rounded_biases`` counts those that moved).
* the readout is the same neuron with ``vThMant = 2**17``: v can never pass it, so v sums the
  logits over the window; read ``v >> 6`` at the window's last step.
* layer k (the input layer is 1) takes a sample's window from step k on: Lava's
  ``reset_interval = T`` with netx's per-block offsets clears each layer at its window's first
  step, so samples follow each other every T steps with no flush step.

Only a chain of IF layers has this form: COS, TPP, FTBC's time-varying bias, spiking max-pools and
residual or concatenated inputs are refused with the layer named.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeport.interop.netx import (
    BIAS_RANGE,
    NETX_BIAS_EXP,
    NETX_PROFILE,
    NetxNetwork,
    check_range,
    read_netx,
    write_netx,
)
from spikeport.targets.lava import runtime
from spikeport.targets.sim import SimTarget, simulate
from spikeport.toolchain.errors import UnsupportedOpError
from spikeport.toolchain.files import write_atomic
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.procnet import ConvProcess, DenseProcess, LIFProcess, ProcessNet
from spikeport.toolchain.ir.snn import IF, INPUT, ConvSynapse, DenseSynapse, SNNGraph
from spikeport.toolchain.passes.lowering import deploy


@dataclass
class ZeroResetForm:
    """The netx network and what the conversion changed."""

    nx: NetxNetwork
    T: int
    shift: dict[str, int]  # layer -> k: its membrane is in units of 2**k of spikeport's
    rounded_biases: dict[str, int] = field(default_factory=dict)  # layer -> biases moved by the rounding

    @property
    def depth(self) -> int:
        """The readout's depth: its window is steps depth .. depth + T - 1."""
        return len(self.nx.layers)


def _chain(snn: SNNGraph) -> None:
    """Refuse what a netx chain of CUBA layers cannot hold, naming the layer."""
    if not snn.integer:
        raise UnsupportedOpError("the netx form is made from an integer network; quantize first")
    if snn.profile != NETX_PROFILE:
        raise UnsupportedOpError(f"netx files hold the {NETX_PROFILE.name} profile's integers; this network is "
                                 f"quantized for {snn.profile.name}")
    if not isinstance(snn.neuron, IF):
        raise UnsupportedOpError(f"netx has no {type(snn.neuron).__name__} neuron (only the IF baseline and NQ "
                                 "export to netx; use --lava for COS and TPP)")
    prev = INPUT
    for p in snn.populations:
        where = f"layer {p.name!r}"
        if p.kind == "maxpool":
            raise UnsupportedOpError(f"{where}: a spiking max-pool; netx has no max-pool neuron (use --maxpool "
                                     "average, or --lava)")
        if p.time_bias is not None and np.any(p.time_bias):
            raise UnsupportedOpError(f"{where}: a bias that changes from step to step (FTBC); netx biases are "
                                     "constant (use --lava)")
        if len(p.inputs) != 1 or p.inputs[0].source != prev:
            got = ", ".join(repr(pr.source) for pr in p.inputs)
            raise UnsupportedOpError(f"{where}: reads {got}; a netx network is a chain where each layer reads only "
                                     f"the one before ({prev!r}); residual and concatenated inputs need --lava")
        if not isinstance(p.inputs[0].synapse, (ConvSynapse, DenseSynapse)):
            raise UnsupportedOpError(f"{where}: a {type(p.inputs[0].synapse).__name__}; netx layers are conv or "
                                     "dense")
        prev = p.name


def _round_shift(a: np.ndarray, k: int) -> np.ndarray:
    """a / 2**k rounded half up (exact for k <= 0)."""
    a = np.asarray(a, dtype=np.int64)
    return a << -k if k <= 0 else (a + (1 << (k - 1))) >> k


def _fits(layer: str, what: str, value, lo: int, hi: int) -> None:
    check_range(repr(layer), what, value, lo, hi, UnsupportedOpError)


def reset_zero_form(snn: SNNGraph) -> ZeroResetForm:
    """The netx-expressible network nearest to integer ``snn`` at its T (see the module docstring)."""
    _chain(snn)
    T = int(snn.T)
    profile = snn.profile
    no_memory = profile.decay_unit - 1  # du: u = this step's input (netx iDecay = du + 1 = 4096)
    lifs: list[LIFProcess] = []
    syns: list[ConvProcess | DenseProcess] = []
    shift: dict[str, int] = {}
    rounded: dict[str, int] = {}
    first = snn.populations[0]
    for depth, p in enumerate(snn.populations, start=1):
        where = f"layer {p.name!r}"
        pr = p.inputs[0]
        k = 0 if pr.source == INPUT else pr.weight_exp - 1  # weights become 2 * mantissa
        shift[p.name] = k
        exact = np.broadcast_to(np.asarray(p.bias, dtype=np.int64), p.shape).reshape(-1)
        bias = _round_shift(exact, k)
        moved = int(np.sum((bias << k) != exact)) if k > 0 else 0
        if moved:
            rounded[p.name] = moved
        if p.kind == "readout":
            vth = profile.u_limit  # v saturates at 2**23 - 1 < vth << 6: never fires
        else:
            theta, v_init = int(_round_shift(int(p.threshold), k)), int(_round_shift(int(p.v_init), k))
            if k > 0 and (theta << k) != int(p.threshold):
                raise UnsupportedOpError(f"{where}: threshold {int(p.threshold)} is not a multiple of 2**{k}")
            vth = theta - v_init - 1
            _fits(p.name, "vThMant (theta - v_init - 1)", vth, 0, profile.u_limit)
        _fits(p.name, "the bias", bias, *BIAS_RANGE)
        lifs.append(LIFProcess(p.name, p.shape, du=no_memory, dv=0, vth=vth,
                               bias_mant=bias if p is not first else 0, bias_exp=NETX_BIAS_EXP,
                               reset_interval=T, reset_offset=depth % T))
        if pr.source == INPUT:
            continue
        w = 2 * np.asarray(pr.synapse.weight, dtype=np.int64)
        _fits(p.name, "a weight", w, -256, 254)
        if isinstance(pr.synapse, ConvSynapse):
            s = pr.synapse
            syns.append(ConvProcess(f"{p.name}.syn", pr.source, p.name, w, s.in_shape, s.out_shape, s.stride,
                                    s.padding, s.dilation, s.groups))
        else:
            syns.append(DenseProcess(f"{p.name}.syn", pr.source, p.name, w, weight_exp=0, sign_mode="mixed"))
    names = [p.name for p in snn.populations]
    net = ProcessNet(lifs, syns, [], readout=names[-1], T=1, period=T, profile=profile,
                     meta={"netx_form": "reset-zero"})
    nx = NetxNetwork(net, names, tuple(first.shape), input_layer=first.name)
    return ZeroResetForm(nx, T, shift, rounded)


def input_bias(snn: SNNGraph, x: np.ndarray) -> np.ndarray:
    """Per sample, the bias of the netx input layer (n, N) in PyTorch flat order: the first layer's
    analog current ``round(W x / unit)`` (as spikeport's hosts compute it) plus its own bias."""
    first = snn.populations[0]
    cur = encode(snn, x)[first.name].reshape(len(x), -1)
    out = cur + np.broadcast_to(np.asarray(first.bias, dtype=np.int64), first.shape).reshape(-1)
    _fits(first.name, "the input layer's bias (host current + bias)", out, *BIAS_RANGE)
    return out


def run_netx_sim(nx: NetxNetwork, bias: np.ndarray, T: int, batch: int = 64,
                 record: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run a reset-zero netx network (as :func:`read_netx` builds it from the file) on ``sim``,
    one sample per row of ``bias``: (readout ``v >> 6`` at the end of its window (n, n_out),
    {layer: spikes (steps, n, N)} if ``record``)."""
    steps = len(nx.layers) + T - 1
    readout = nx.net.readout
    finals, spikes = [], {}
    for i in range(0, len(bias), batch):
        part = bias[i:i + batch]
        lifs = [dataclasses.replace(p, bias_mant=part) if p.name == nx.input_layer else p for p in nx.net.lifs]
        net = ProcessNet(lifs, nx.net.synapses, [], readout=readout, T=1, period=nx.net.period,
                         profile=nx.net.profile)
        tr = simulate(net, {}, record=record, steps=steps, batch=len(part), record_state=(readout,))
        finals.append(tr.meta["v"][readout][steps - 1] >> net.profile.act_shift)
        for k, v in tr.spikes.items():
            spikes.setdefault(k, []).append(v)
    return np.concatenate(finals), {k: np.concatenate(v, axis=1) for k, v in spikes.items()}


def reset_cost(snn: SNNGraph, x: np.ndarray, y: np.ndarray, path=None, batch: int = 64,
               form: ZeroResetForm | None = None) -> dict:
    """Accuracy of the integer soft-reset network and of its netx form on ``x`` at its T (integer
    ``sim`` both). With ``path`` the netx form is the one read back from that ``.net`` file; ``form``
    is ``reset_zero_form(snn)`` where the caller has it already."""
    T = int(snn.T)
    form = form or reset_zero_form(snn)
    nx = read_netx(path, reset_interval=T) if path is not None else form.nx
    final, _ = run_netx_sim(nx, input_bias(snn, x), T, batch)
    soft = SimTarget(batch=batch).run(deploy(snn), x)
    return {"T": T, "samples": len(x), "soft_reset": float(np.mean(soft.predictions == y)),
            "reset_zero": float(np.mean(final.argmax(axis=1) == y)), "rounded_biases": form.rounded_biases,
            "shift": form.shift}


README = """# {model}: a netx export (reset to zero)

`network.net` is a lava-dl netx network (HDF5) made by spikeport from `{model}` at T = {T}: every
neuron is netx's CUBA LIF with `iDecay = 4096`, `vDecay = 0` (an integrate-and-fire neuron that
resets to zero), the first layer is netx's `input` layer driven by its bias, the last layer never
fires and its `v >> 6` sums the logits. It is the nearest form netx can hold of spikeport's
soft-reset network, not the same network: measured on {samples} test samples with spikeport's
bit-accurate `sim`, soft reset {soft:.1%}, this file {zero:.1%}.

Run it with lava-nc 0.10, lava-dl 0.6 and numpy: `python run_netx_example.py` streams the
{n_examples} example inputs of `example_inputs.npz` through lava-dl's own loader and prints the
predictions (and whether they equal spikeport's sim on this file). The core of it:

```python
net = netx.hdf5.Network(net_config="network.net", reset_interval={T})
var = net.in_layer.neuron.bias_mant                   # the input: one bias per sample
var.init = bias[0].reshape(var.shape[::-1]).T           # PyTorch (C, H, W) flat -> Lava (W, H, C)
# ... probe net.layers[-1].neuron.v, then per sample: var.set(...) and run {T} steps
```

**Timing.** Sample i's bias holds for steps `i * {T} + 1 .. (i + 1) * {T}`; layer k (the input
layer is 1) takes the sample from step `i * {T} + k`, and `reset_interval = {T}` with netx's
per-block offsets clears each layer at the first step of its window, so no flush step is needed.
The readout's answer is `v >> 6` at step `i * {T} + {depth} + {T} - 1`.

**The input.** The input layer's bias is the first layer's current, computed on the host:
`round(W x / unit) + b` (W, b: the first layer's float weights and integer bias, unit: its
membrane unit), as spikeport's own Lava targets feed it. `example_inputs.npz` holds it for the
example images; for new images use spikeport's API (`spikeport.interop.netx_export.input_bias`).

**What changed against spikeport's network** (`netx_export.json`): after a spike the neuron keeps
nothing of `v - theta` (the soft reset's residue); a layer whose weights carried an exponent e is
in units of 2**(e - 1) (weights are exactly `2 * mantissa`, thresholds stay exact) and its biases
were rounded to that unit: {rounded}.

**On a Loihi 2 chip** (`Loihi2HwCfg`): netx builds stock processes, which lava-loihi runs; this was
not tested here (no hardware); the file is bit-exact against Lava's `fixed_pt` CPU models.
"""


def export_netx(folder: str | Path, snn: SNNGraph, model: str, x_examples: np.ndarray, y_examples: np.ndarray,
                x_cost: np.ndarray, y_cost: np.ndarray) -> dict:
    """Write the netx form of the integer ``snn`` (for its T) into ``folder``: ``network.net``,
    ``example_inputs.npz`` (with the logits spikeport's ``sim`` computes from the written file),
    ``run_netx_example.py``, its ``netx_import.py``, ``netx_export.json`` (the accuracy cost on
    ``x_cost``) and a README."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    T = int(snn.T)
    form = reset_zero_form(snn)
    path = write_netx(form.nx, folder / "network.net")
    back = read_netx(path, reset_interval=T)
    bias = input_bias(snn, x_examples)
    logits, _ = run_netx_sim(back, bias, T)
    np.savez(folder / "example_inputs.npz", T=np.int64(T), x=x_examples, y=y_examples, input_bias=bias,
             expected_logits=logits)
    here = Path(runtime.__file__).resolve().parent
    for name in ("run_netx_example.py", "netx_import.py"):
        shutil.copyfile(here / name, folder / name)
    cost = reset_cost(snn, x_cost, y_cost, path=path, form=form)
    info = {"format": "spikeport-netx-export/1", "model": model, "T": T, "depth": form.depth,
            "reset_interval": T, "layers": form.nx.layers, **cost}
    write_atomic(folder / "netx_export.json", json.dumps(info, indent=1))
    rounded = ", ".join(f"{k}: {v}" for k, v in form.rounded_biases.items()) or "none"
    write_atomic(folder / "README.md", README.format(model=model, T=T, samples=cost["samples"],
                                                     soft=cost["soft_reset"], zero=cost["reset_zero"],
                                                     n_examples=len(y_examples), depth=form.depth, rounded=rounded))
    return info


def lava_mismatches(saved: dict, nx: NetxNetwork, bias: np.ndarray, T: int) -> list[str]:
    """Compare a streamed Lava run of a netx export (``run_netx_example.py --save``) with ``sim`` on
    the same file, sample by sample (each from a clean state): every layer's spikes in each step of
    the sample's window and the readout's logits, as integers. Empty: equal."""
    logits, spikes = run_netx_sim(nx, bias, T, record=True)
    out = []
    for k, layer in enumerate(nx.layers):
        for i in range(len(bias)):
            lo = i * T + k  # 0-based first step of the window of layer k + 1 for sample i
            if layer == nx.net.readout:
                got = saved["readout_v"][lo + T - 1] >> nx.net.profile.act_shift
                if not np.array_equal(got, logits[i]):
                    out.append(f"sample {i}: readout logits {got.tolist()} in Lava, {logits[i].tolist()} in sim")
                continue
            got, want = saved[f"spikes.{k}"][lo:lo + T], spikes[layer][k:k + T, i]
            if got.shape != want.shape or not np.array_equal(got, want):
                bad = np.argwhere(got != want) if got.shape == want.shape else None
                where = f"first at window step {bad[0][0] + 1}, neuron {bad[0][1]}" if bad is not None else "shape"
                out.append(f"sample {i}, layer {layer}: {0 if bad is None else len(bad)} spike values differ ({where})")
    return out


def run_export_in_lava(folder: str | Path, timeout: float = 900.0) -> tuple[dict, str]:
    """Run an export's own ``run_netx_example.py`` in the Lava environment: (what it saved, stdout)."""
    from spikeport.targets.lava.environment import lava_python
    from spikeport.targets.lava.runner import run_process
    from spikeport.toolchain.errors import TargetError

    folder = Path(folder)
    out = folder / "lava_run.npz"
    res = run_process([lava_python(), str(folder / "run_netx_example.py"), "--save", str(out)], timeout,
                      f"lava-dl netx on {folder / 'network.net'}")
    if res.returncode != 0:
        raise TargetError(f"run_netx_example.py in {folder} failed: {res.stderr.strip().splitlines()[-1:]}")
    with np.load(out) as z:
        return {k: z[k] for k in z.files}, res.stdout


def reset_table(models: list[str], Ts: tuple[int, ...], out: Path, samples: int | None = None,
                lava_samples: int = 4, log=print) -> dict:
    """Soft reset against the netx form at each T: integer ``sim`` accuracy of both on the test
    split (the netx form read back from its written file), and, with ``lava_samples``, the file run
    by lava-dl's netx in Lava compared with sim on the same file, spike for spike."""
    from spikeport.api import prepare

    rows = []
    for name in models:
        p = prepare(name)
        x, y = p.data.x_test[:samples], p.data.y_test[:samples]
        for T in Ts:
            q = p.quantize(p.snn, T)
            folder = out / f"{name}_T{T}"
            info = export_netx(folder, q, name, x[:lava_samples], y[:lava_samples], x, y)
            row = {"model": name, "T": T, "samples": len(x), "soft_reset": info["soft_reset"],
                   "reset_zero": info["reset_zero"], "lava_samples": 0, "lava_exact": None}
            if lava_samples:
                saved, _ = run_export_in_lava(folder)
                nx = read_netx(folder / "network.net", reset_interval=T)
                bad = lava_mismatches(saved, nx, input_bias(q, x[:lava_samples]), T)
                row.update(lava_samples=lava_samples, lava_exact=not bad, lava_mismatches=bad[:5])
            log(f"netx-reset: {name} T={T}: soft {row['soft_reset']:.4f}, zero {row['reset_zero']:.4f}, "
                f"Lava exact {row['lava_exact']}")
            rows.append(row)
    lines = ["| model | T | soft reset (spikeport) | reset to zero (netx file) | change | Lava netx = sim |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lava = "not run" if r["lava_exact"] is None else f"{'exact' if r['lava_exact'] else 'DIFFERS'} " \
               f"({r['lava_samples']} samples)"
        lines.append(f"| {r['model']} | {r['T']} | {100 * r['soft_reset']:.1f} % | {100 * r['reset_zero']:.1f} % | "
                     f"{100 * (r['reset_zero'] - r['soft_reset']):+.1f} | {lava} |")
    return {"rows": rows, "markdown": "\n".join(lines)}
