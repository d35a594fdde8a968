"""Writes a :class:`ProcessNet` as a spikeport Lava package: a folder a Lava user loads with only
lava-nc and numpy (``runtime/spikeport_lava.py``, copied into the folder, documents the format and
loads it), and the samples the worker streams through it.

``network.json`` holds the structure and scalar parameters, ``arrays.npz`` the arrays (weights in
PyTorch layout, sparse matrices as ``<key>.data/.indices/.indptr/.shape``); nothing is pickled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from scipy import sparse

from spikeport.targets import method_kernels
from spikeport.targets.lava import runtime
from spikeport.toolchain.files import write_atomic
from spikeport.toolchain.hardware import prng
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.procnet import (
    ConvProcess,
    COSProcess,
    GradedProcess,
    MaxPoolProcess,
    ProcessNet,
    TPPProcess,
)
from spikeport.toolchain.ir.snn import INPUT, ConvSynapse, SNNGraph

FORMAT = "spikeport-lava-package/1"
RUNTIME = Path(runtime.__file__).resolve().parent
LOADER_FILES = (RUNTIME / "spikeport_lava.py", RUNTIME / "neuron_procs.py", RUNTIME / "run_example.py",
                Path(method_kernels.__file__), Path(prng.__file__))


class _Arrays:
    """The arrays of a package, under the keys network.json names."""

    def __init__(self) -> None:
        self.items: dict[str, np.ndarray] = {}

    def put(self, key: str, value) -> str:
        if sparse.issparse(value):
            m = sparse.csr_matrix(value)
            self.items[key + ".data"] = m.data.astype(np.int64 if m.dtype.kind in "iu" else np.float64)
            self.items[key + ".indices"] = m.indices.astype(np.int64)
            self.items[key + ".indptr"] = m.indptr.astype(np.int64)
            self.items[key + ".shape"] = np.asarray(m.shape, dtype=np.int64)
        else:
            self.items[key] = np.asarray(value)
        return key


def _lif(p, i: int, arr: _Arrays) -> dict:
    if isinstance(p, COSProcess):
        return {"kind": "cos", "name": p.name, "shape": list(p.shape), "theta": p.theta, "v_init": p.v_init,
                "rho": p.rho, "S": p.S, "start": p.start, "period": p.period}
    if isinstance(p, TPPProcess):
        return {"kind": "tpp", "name": p.name, "shape": list(p.shape), "theta": p.theta, "v_init": p.v_init,
                "T": p.T, "start": p.start, "period": p.period, "seed": p.seed, "layer": p.layer}
    if isinstance(p, GradedProcess):
        return {"kind": "graded", "name": p.name, "shape": list(p.shape), "theta": p.theta, "v_init": p.v_init,
                "levels": p.levels, "start": p.start, "period": p.period, "length": p.length}
    if isinstance(p, MaxPoolProcess):
        return {"kind": "maxpool", "name": p.name, "shape": list(p.shape), "src": p.src, "in_shape": list(p.in_shape),
                "index": arr.put(f"lif{i}.index", p.index.astype(np.int64)), "start": p.start, "period": p.period,
                "length": p.length}
    bias = np.asarray(p.bias_mant)
    return {"kind": "lif", "name": p.name, "shape": list(p.shape), "du": p.du, "dv": p.dv, "vth": p.vth,
            "bias_mant": arr.put(f"lif{i}.bias", bias.astype(np.int64)) if bias.ndim else int(bias),
            "bias_exp": p.bias_exp, "reset_interval": p.reset_interval, "reset_offset": p.reset_offset}


def _synapse(s, i: int, arr: _Arrays) -> dict:
    if isinstance(s, ConvProcess):
        return {"kind": "conv", "name": s.name, "src": s.src, "dst": s.dst,
                "weight": arr.put(f"syn{i}.w", s.weight.astype(np.int64)), "in_shape": list(s.in_shape),
                "out_shape": list(s.out_shape), "stride": list(s.stride), "padding": list(s.padding),
                "dilation": list(s.dilation), "groups": s.groups, "num_message_bits": s.num_message_bits}
    w = s.weights if sparse.issparse(s.weights) else np.asarray(s.weights, dtype=np.int64)
    return {"kind": "dense", "name": s.name, "src": s.src, "dst": s.dst, "weights": arr.put(f"syn{i}.w", w),
            "sparse": bool(s.sparse or np.any(s.delay)), "weight_exp": s.weight_exp,
            "num_weight_bits": s.num_weight_bits, "sign_mode": s.sign_mode, "num_message_bits": s.num_message_bits,
            "delay": int(s.delay) if np.ndim(s.delay) == 0 else arr.put(f"syn{i}.delay", np.asarray(s.delay)),
            "max_delay": int(np.max(s.delay))}


def _encoders(snn: SNNGraph, arr: _Arrays) -> list[dict]:
    """The analog input projections (float), one per input layer, for the loader's ``encode``."""
    out = []
    for p in snn.populations:
        for pr in p.inputs:
            if pr.source != INPUT:
                continue
            syn = pr.synapse
            entry = {"layer": p.name, "in_shape": list(syn.in_shape), "out_shape": list(syn.out_shape),
                     "unit": float(pr.unit) if pr.unit is not None else 1.0}
            w = syn.weight if sparse.issparse(syn.weight) else np.asarray(syn.weight, dtype=np.float64)
            if isinstance(syn, ConvSynapse):
                entry.update(kind="conv", stride=list(syn.stride), padding=list(syn.padding),
                             dilation=list(syn.dilation), groups=syn.groups)
            else:
                entry["kind"] = "matrix"
            arr.put(f"encoder{len(out)}.w", w)
            out.append(entry)
    return out


def write_package(folder: Path, net: ProcessNet, snn: SNNGraph | None = None, meta: dict | None = None,
                  loader: bool = True) -> dict:
    """Write ``net`` (and, with ``snn``, the input encoder) as a package in ``folder``; ``loader``
    copies the Lava-side loader and spikeport's own process models next to it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = _Arrays()
    lifs = [_lif(p, i, arr) for i, p in enumerate(net.lifs)]
    syns = [_synapse(s, i, arr) for i, s in enumerate(net.synapses)]
    srcs = [{"name": s.name, "dst": s.dst, "start": s.start, "length": s.length if s.length is not None else net.T,
             "pattern": arr.put(f"src{i}.pattern", s.pattern(net.T)), "adds_input": s.adds_input}
            for i, s in enumerate(net.sources)]
    timing = net.timing
    spec = {"format": FORMAT, "T": net.T, "period": net.period, "latency": net.latency, "frame": net.frame,
            "act_shift": net.profile.act_shift, "profile": net.profile.name, "readout": net.readout,
            "timing": {"input_start": timing.input_start, "output_start": timing.output_start,
                       "length": timing.length},
            "lifs": lifs, "synapses": syns, "sources": srcs, "meta": meta or {}}
    inputs = [s for s in net.synapses if s.src == "input"]
    if inputs:
        spec["spikes_in_size"] = int(np.shape(inputs[0].weights)[1])
    if snn is not None:
        spec["encoders"] = _encoders(snn, arr)
    spec["arrays"] = sorted(arr.items)
    np.savez(folder / "arrays.npz", **arr.items)
    write_atomic(folder / "network.json", json.dumps(spec, indent=1))
    if loader:
        for f in LOADER_FILES:
            shutil.copyfile(f, folder / f.name)
    return spec


README = """# {model}: a spikeport Lava package

{summary}

Load and run it with lava-nc 0.10 and numpy only (Python 3.10); `python run_example.py` runs the
{n_examples} example inputs in `example_inputs.npz` and prints the predictions. The core of it:

```python
import sys; sys.path.insert(0, "{folder}")
import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.source import RingBuffer
from lava.proc.monitor.process import Monitor
from spikeport_lava import encode, input_data, load, predictions

def main():
    x = np.load("{folder}/example_inputs.npz")["x"]     # your images, shaped {input_shape}
    net = load("{folder}")                              # one Lava process; stock LIF/Dense/Conv inside
    currents = encode(net, x)                           # the first layer's current, computed on the host
    for layer, port in net.input_ports.items():         # sample i enters at step i * {period} + 1
        RingBuffer(data=input_data(net, currents[layer], layer)).s_out.connect(port)
    steps = (len(x) - 1) * net.period + net.latency
    mon = Monitor()
    mon.probe(net.readout.u, steps)                     # u >> 6 is the summed logits
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    u = mon.get_data()[net.readout.name]["u"].reshape(steps, -1).astype(np.int64)
    net.stop()
    print(predictions(net, u, len(x)))                  # the class of each sample

if __name__ == "__main__":  # Lava starts its process models in interpreters that import this file
    main()
```

Connect your own source to `net.inp` instead (a current per step, Lava order (X, Y, C); sample i's
window is steps `i * {period} + {start}` .. `+ {length} - 1`), and your own sinks to
`net.layers[name].s_out`. The bias schedules inside repeat every {period} steps for ever, so the
network serves an open-ended stream; each layer resets itself at the start of its window.

**Timing.** T = {T}; a sample's answer is the readout at step `i * {period} + {latency}`; layers
answer one step per synaptic hop (`network.json`, `timing`).

**On a Loihi 2 chip** (`Loihi2HwCfg`): the stock processes (LIFReset, Dense, Sparse, DelaySparse,
Conv, RingBuffer) have Loihi process models in Intel's lava-loihi; spikeport's own COS, TPP and
max-pool processes are CPU-only and would need neuron microcode. Input currents then come from the
host through an embedded input adapter instead of a RingBuffer. None of this was tested: spikeport
has no Loihi hardware; it is bit-exact against Lava's `fixed_pt` CPU models.

## Files

- `network.json`: format `{format}`; `lifs` (LIF / LIFReset parameters, or `cos`, `tpp`,
  `maxpool` processes), `synapses` (Dense/Sparse/DelaySparse: weights `2 * mantissa`, `weight_exp`,
  `num_weight_bits`, `sign_mode`, delays; Conv: the kernel, pre-shifted, PyTorch layout), `sources`
  (each layer's bias schedule: window, flush-step quench, `start`, `period`), `encoders` (the
  analog input projection, float, and the membrane unit its result is rounded to), `timing`, `meta`.
- `arrays.npz`: the arrays `network.json` names (PyTorch layout, sparse matrices as CSR parts).
- `spikeport_lava.py` (the loader), `neuron_procs.py`, `method_kernels.py`, `prng.py`: spikeport's
  own process models; `run_example.py` and `example_inputs.npz`.
"""


def write_readme(folder: Path, spec: dict, input_shape: tuple[int, ...], n_examples: int) -> None:
    meta = spec["meta"]
    first = next((s for s in spec["sources"] if s["adds_input"]), spec["sources"][0] if spec["sources"] else None)
    summary = (f"Exported by spikeport {meta.get('spikeport', '')} from `{meta.get('model', '?')}` "
               f"(method {meta.get('method', 'qcfs')}, T={spec['T']}, profile {spec['profile']}): "
               f"{len(spec['lifs'])} populations, {len(spec['synapses'])} synapse processes.")
    text = README.format(model=meta.get("model", "network"), summary=summary, n_examples=n_examples,
                         folder=str(folder), input_shape=tuple(input_shape), period=spec["period"],
                         start=first["start"] if first else 1, length=first["length"] if first else spec["T"],
                         T=spec["T"], latency=spec["latency"], format=spec["format"])
    write_atomic(Path(folder) / "README.md", text)


def write_samples(folder: Path, net: ProcessNet, currents: dict[str, np.ndarray], n_samples: int,
                  record: list[str], sample_ids: np.ndarray | None = None,
                  spikes_in: np.ndarray | None = None) -> dict:
    """What the worker streams through a package: each input layer's per-sample currents, the
    samples' ids (TPP) and external spikes, laid out sample after sample every period."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    steps = (n_samples - 1) * net.period + net.frame
    arrays = {"sample_ids": np.arange(n_samples) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)}
    for s in net.sources:
        if s.adds_input:
            arrays[f"input.{s.dst}"] = np.asarray(currents[s.dst], dtype=np.int64).reshape(n_samples, -1)
    if spikes_in is not None:  # (steps, samples, N) -> one stream, sample i from step i * period
        spikes_in = np.asarray(spikes_in, dtype=np.int64)
        stream = np.zeros((steps, spikes_in.shape[2]), dtype=np.int64)
        for i in range(n_samples):
            k = min(len(spikes_in), steps - i * net.period)
            stream[i * net.period:i * net.period + k] += spikes_in[:k, i]
        arrays["spikes_in"] = stream
    run = {"steps": steps, "n_samples": n_samples, "record": record, "spikes_in": spikes_in is not None}
    (folder / "run.json").write_text(json.dumps(run))
    np.savez(folder / "samples.npz", **arrays)
    return run


def export_lava(folder: Path, deployment: Deployment, model: str, method: str, x: np.ndarray,
                y: np.ndarray) -> dict:
    """``spikeport export --lava``: the deployment's process network as a package with its loader, a
    README and example inputs ``x`` (labels ``y``)."""
    from importlib.metadata import version

    folder = Path(folder)
    net, q = deployment.net, deployment.snn
    meta = {"model": model, "method": method, "spikeport": version("spikeport"), "input_shape": list(q.input_shape),
            "classes": int(q.readout.size)}
    spec = write_package(folder, net, q, meta)
    np.savez(folder / "example_inputs.npz", x=np.asarray(x, dtype=np.float32), y=np.asarray(y, dtype=np.int64))
    write_readme(folder, spec, q.input_shape, len(x))
    return spec
