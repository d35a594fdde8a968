"""``spikeport bench --suite peers``: ``sim`` beside the float simulators people use, on the same
network and inputs, in one run.

The peers (optional benchmark dependencies: ``pip install --no-deps spikingjelly snntorch loguru``,
``--no-deps`` because their requirements pull a CUDA build of torch) run the converted float SNN
that spikeport's ``torch_float`` runs: the same layers, the weights with spike amplitudes folded
in, the same thresholds, soft reset, initial potential theta / 2, the first layer's current
computed once per sample and fed at every step, the readout summed over T. Each in its idiomatic
CPU form:

* SpikingJelly 2.0, multi-step mode: ``layer.Conv2d``/``layer.Linear`` on (T, B, ...) tensors and
  ``neuron.IFNode(v_reset=None)`` (soft reset; 2.0 has one, torch, backend);
* snnTorch: per-step loop of ``Conv2d``/``Linear`` and ``snn.Leaky(beta=1, reset_mechanism="subtract")``.

``sim`` runs the integer network, bit-exact with Lava; the peers compute in float32. Their
predictions are compared with ``torch_float``'s (the same float network), so a wrong peer model
shows up as disagreement. Only chains of conv / dense layers are built (no residual connections).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spikeport.api import run
from spikeport.quality.perf import Network, best_time
from spikeport.targets.sim import SimTarget
from spikeport.toolchain.convert import convert
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.quantize import quantize
from spikeport.toolchain.snn import INPUT, ConvSynapse, DenseSynapse, SNNGraph

PEERS = ("spikingjelly", "snntorch")


def available() -> dict[str, bool]:
    return {p: importlib.util.find_spec(p) is not None for p in PEERS}


def _layers(snn: SNNGraph) -> list[dict]:
    """The chain as plain tensors: per population its synapse (conv or dense), bias and threshold."""
    out, prev = [], INPUT
    for p in snn.populations:
        if len(p.inputs) != 1 or p.inputs[0].source != prev or p.kind == "maxpool":
            raise SpikeportError(f"peers: layer {p.name!r} is not part of a plain chain (residual or pooled "
                                 "networks are not built for the peers)")
        syn = p.inputs[0].synapse
        if not isinstance(syn, (ConvSynapse, DenseSynapse)):
            raise SpikeportError(f"peers: layer {p.name!r} has a {type(syn).__name__}")
        out.append({"syn": syn, "w": torch.as_tensor(np.asarray(syn.weight), dtype=torch.float32),
                    "bias": torch.as_tensor(np.asarray(p.bias, dtype=np.float32)).reshape(1, *p.shape),
                    "theta": float(p.threshold), "shape": p.shape, "readout": p.kind == "readout"})
        prev = p.name
    return out


def _apply(layer: dict, s: torch.Tensor) -> torch.Tensor:
    syn = layer["syn"]
    if isinstance(syn, ConvSynapse):
        y = F.conv2d(s.reshape(len(s), *syn.in_shape), layer["w"], None, syn.stride, syn.padding, syn.dilation,
                     syn.groups)
    else:
        y = s.reshape(len(s), -1) @ layer["w"].T
    return y + layer["bias"]


def spikingjelly_runner(snn: SNNGraph, T: int) -> Callable[[torch.Tensor], torch.Tensor]:
    from spikingjelly.activation_based import functional, layer, neuron

    layers = _layers(snn)
    synapses, nodes = [], []
    for li in layers[1:]:
        syn = li["syn"]
        if isinstance(syn, ConvSynapse):
            m = layer.Conv2d(syn.in_shape[0], syn.out_shape[0], syn.weight.shape[2:], syn.stride, syn.padding,
                             syn.dilation, syn.groups, bias=False, step_mode="m")
        else:
            m = layer.Linear(int(np.prod(syn.in_shape)), int(np.prod(syn.out_shape)), bias=False, step_mode="m")
        m.weight.data = li["w"].clone()
        synapses.append(m)
    for li in layers[:-1]:
        nodes.append(neuron.IFNode(v_threshold=li["theta"], v_reset=None, step_mode="m"))

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        for n in nodes:
            functional.reset_net(n)
        for n, li in zip(nodes, layers):  # initial potential theta / 2, as spikeport's neurons
            n.v = torch.full((len(x), *li["shape"]), li["theta"] / 2)
        cur = _apply(layers[0], x).unsqueeze(0).expand(T, *([-1] * (x.dim())))  # the first layer's current
        s = nodes[0](cur.contiguous())
        for k, (syn, li) in enumerate(zip(synapses, layers[1:]), start=1):
            flat = s.flatten(2) if isinstance(li["syn"], DenseSynapse) else s
            y = syn(flat) + li["bias"]
            if li["readout"]:
                return y.sum(0)
            s = nodes[k](y)
        raise SpikeportError("peers: no readout")

    return forward


def snntorch_runner(snn: SNNGraph, T: int) -> Callable[[torch.Tensor], torch.Tensor]:
    import snntorch as snt

    layers = _layers(snn)
    cells = [snt.Leaky(beta=1.0, threshold=li["theta"], reset_mechanism="subtract") for li in layers[:-1]]

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        mems = [torch.full((len(x), *li["shape"]), li["theta"] / 2) for li in layers[:-1]]
        cur = _apply(layers[0], x)
        out = 0.0
        for _ in range(T):
            y = cur
            for k, cell in enumerate(cells):  # the hidden layers, then the readout's input
                s, mems[k] = cell(y, mems[k])
                y = _apply(layers[k + 1], s)
            out = out + y
        return out

    return forward


def bench_peers(networks: list[Network], T: int = 8, batch: int = 64, repeat: int = 3,
                log: Callable[[str], None] = lambda s: None) -> dict:
    """Per network: µs per sample-step of sim (integer), torch_float and each installed peer, the
    ratios to sim, and each peer's agreement with torch_float's predictions."""
    have = available()
    rows = [_measure(net, T, batch, repeat, have, log) for net in networks]
    return {"peers_installed": have, "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}


def _measure(net: Network, T: int, batch: int, repeat: int, have: dict[str, bool], log) -> dict:
    x = net.x[:batch]
    snn = convert(net.graph, net.x_calib)
    q = quantize(snn, net.x_calib, T)
    sim = SimTarget(batch=batch)
    sim.run(q, x, T)  # warm-up
    per = batch * T * 1e-6
    row: dict = {"network": net.name, "T": T, "batch": batch}
    log(f"peers: {net.name}: sim, torch_float")
    row["sim_us"] = best_time(lambda: sim.run(q, x, T), repeat)[0] / per
    ref = run(snn, x, T, "torch_float")
    row["torch_float_us"] = best_time(lambda: run(snn, x, T, "torch_float"), repeat)[0] / per
    xt = torch.as_tensor(x, dtype=torch.float32)
    for peer, make in (("spikingjelly", spikingjelly_runner), ("snntorch", snntorch_runner)):
        if not have[peer]:
            row[f"{peer}_us"] = None
            continue
        log(f"peers: {net.name}: {peer}")
        fn = make(snn, T)
        row[f"{peer}_agrees"] = float(np.mean(fn(xt).numpy().argmax(1) == ref.predictions))
        row[f"{peer}_us"] = best_time(lambda fn=fn: fn(xt), repeat)[0] / per
    peers = [row[f"{p}_us"] for p in PEERS if row.get(f"{p}_us")]
    row["fastest_peer_over_sim"] = min(peers) / row["sim_us"] if peers else None
    return row


def peers_table(res: dict) -> str:
    lines = ["| network | T | batch | sim (integer, bit-exact) | torch_float | SpikingJelly | snnTorch | "
             "fastest peer / sim |", "|---|---|---|---|---|---|---|---|"]

    def cell(r, key):
        v = r.get(f"{key}_us")
        agree = r.get(f"{key}_agrees")
        return "not installed" if v is None else f"{v:.0f} µs" + (f" (agrees {100 * agree:.0f} %)"
                                                                   if agree is not None else "")

    for r in res["rows"]:
        ratio = r["fastest_peer_over_sim"]
        lines.append(f"| {r['network']} | {r['T']} | {r['batch']} | {r['sim_us']:.0f} µs | {r['torch_float_us']:.0f} µs"
                     f" | {cell(r, 'spikingjelly')} | {cell(r, 'snntorch')} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} |")
    return "\n".join(lines) + "\n\nµs per sample-step (batch x T); agreement: predictions equal to torch_float's."
