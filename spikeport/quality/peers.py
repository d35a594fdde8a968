"""``spikeport bench --suite peers``: ``sim`` beside the float simulators people use, on the same
network and inputs, in one run.

The peers (optional benchmark dependencies: ``pip install --no-deps spikingjelly snntorch loguru``,
``--no-deps`` because their requirements pull a CUDA build of torch) run the converted float SNN
that spikeport's ``torch_float`` runs: the same layers, the weights with spike amplitudes folded
in, the same thresholds, soft reset, initial potential theta / 2, the first layer's current
computed once per sample and fed at every step, the readout summed over T. Each in its idiomatic
CPU form:

* SpikingJelly 2.0, multi-step mode: every synapse in a ``layer.SeqToANNContainer`` over (T, B, ...)
  tensors and ``neuron.IFNode(v_reset=None)`` (soft reset; 2.0 has one, torch, backend);
* snnTorch: per-step loop of the synapses and ``snn.Leaky(beta=1, reset_mechanism="subtract")``.

The synapses are the layers a user writes: an average pool the converter folded into the next
convolution is an ``AvgPool2d`` again (``ops.factor_pool``, which ``sim`` uses too), a residual
identity shortcut a per-channel scale. Any graph of conv and dense projections is built (chains,
residual blocks: ResNet-18); spiking max-pools and sparse synapses are not.

``sim`` runs the integer network, bit-exact with Lava; the peers compute in float32. Their
predictions are compared with ``torch_float``'s (the same float network), so a wrong peer model
shows up as disagreement; ``sim`` is verified against ``torch_int`` on the timed samples and, on a
few of them, against Lava in the same run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from spikeport.api import run, verify
from spikeport.quality.perf import Network, best_time, lava_figures
from spikeport.targets.pool_factor import factor_pool
from spikeport.targets.sim import SimTarget
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.ir.snn import INPUT, ConvSynapse, DenseSynapse, SNNGraph
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.quantize import quantize

PEERS = ("spikingjelly", "snntorch")


def available() -> dict[str, bool]:
    return {p: importlib.util.find_spec(p) is not None for p in PEERS}


class _Scale(torch.nn.Module):
    """A per-channel scale: a residual identity shortcut as a user writes it (``out + identity``)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = w.reshape(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def _synapse_module(syn) -> torch.nn.Module:
    """The synapse as the layers a user of the peer writes: an average pool the converter folded
    into the next convolution is a pool again (``ops.factor_pool``), an identity shortcut a scale."""
    if isinstance(syn, DenseSynapse):
        lin = torch.nn.Linear(int(np.prod(syn.in_shape)), int(np.prod(syn.out_shape)), bias=False)
        lin.weight.data = torch.as_tensor(np.asarray(syn.weight), dtype=torch.float32)
        return torch.nn.Sequential(torch.nn.Flatten(), lin)
    if not isinstance(syn, ConvSynapse):
        raise SpikeportError(f"peers: a {type(syn).__name__} is not built for the peers")
    w, mods, stride, padding = np.asarray(syn.weight), [], syn.stride, syn.padding
    co, cig, kh, kw = w.shape
    if (kh, kw) == (1, 1) and cig == 1 and syn.groups == co == syn.in_shape[0] and tuple(stride) == (1, 1):
        return _Scale(torch.as_tensor(w.reshape(-1), dtype=torch.float32))
    pooled = factor_pool(w, syn.in_shape, stride, padding, syn.dilation)
    if pooled is not None:  # average pool, then the conv with the pool's 1 / s² taken back
        mods.append(torch.nn.AvgPool2d(pooled.pool))
        w, stride, padding = pooled.weight * pooled.pool ** 2, (1, 1), pooled.padding
    conv = torch.nn.Conv2d(syn.in_shape[0], co, w.shape[2:], stride, padding, syn.dilation, syn.groups, bias=False)
    conv.weight.data = torch.as_tensor(w, dtype=torch.float32)
    return torch.nn.Sequential(*mods, conv)


def _layers(snn: SNNGraph) -> list[dict]:
    """Per population in topological order: its projections (source, torch module), bias and
    threshold. Any graph of conv and dense projections (chains, residual blocks); max-pool gates
    and sparse synapses are not built."""
    out = []
    for p in snn.populations:
        if p.kind == "maxpool":
            raise SpikeportError(f"peers: layer {p.name!r} is a spiking max-pool (not built for the peers)")
        out.append({"name": p.name, "inputs": [(pr.source, _synapse_module(pr.synapse)) for pr in p.inputs],
                    "bias": torch.as_tensor(np.asarray(p.bias, dtype=np.float32)).reshape(1, *p.shape),
                    "theta": float(p.threshold), "shape": p.shape, "readout": p.kind == "readout"})
    return out


def _current(layer: dict, x: torch.Tensor) -> torch.Tensor:
    """The input layer's current, computed once per sample (its projections all read the input)."""
    if any(src != INPUT for src, _ in layer["inputs"]):
        raise SpikeportError(f"peers: the first layer {layer['name']!r} reads spikes")
    return sum(m(x) for _, m in layer["inputs"]) + layer["bias"]


def spikingjelly_runner(snn: SNNGraph, T: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """SpikingJelly's multi-step form: every synapse in a ``SeqToANNContainer`` over (T, B, ...)
    tensors, ``IFNode(v_reset=None)`` (soft reset) per hidden layer."""
    from spikingjelly.activation_based import functional, layer, neuron

    layers = _layers(snn)
    synapses = {li["name"]: [(src, layer.SeqToANNContainer(m)) for src, m in li["inputs"]] for li in layers[1:]}
    nodes = {li["name"]: neuron.IFNode(v_threshold=li["theta"], v_reset=None, step_mode="m")
             for li in layers if not li["readout"]}

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        for li in layers[:-1]:  # initial potential theta / 2, as spikeport's neurons
            functional.reset_net(nodes[li["name"]])
            nodes[li["name"]].v = torch.full((len(x), *li["shape"]), li["theta"] / 2)
        cur = _current(layers[0], x)
        spikes = {layers[0]["name"]: nodes[layers[0]["name"]](cur.unsqueeze(0).expand(T, *cur.shape).contiguous())}
        for li in layers[1:]:
            y = sum(m(spikes[src]) for src, m in synapses[li["name"]]) + li["bias"]
            if li["readout"]:
                return y.sum(0)
            spikes[li["name"]] = nodes[li["name"]](y)
        raise SpikeportError("peers: no readout")

    return forward


def snntorch_runner(snn: SNNGraph, T: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """snnTorch's per-step form: a loop over T, ``Leaky(beta=1, reset_mechanism="subtract")`` per
    hidden layer."""
    import snntorch as snt

    layers = _layers(snn)
    cells = {li["name"]: snt.Leaky(beta=1.0, threshold=li["theta"], reset_mechanism="subtract")
             for li in layers if not li["readout"]}

    @torch.no_grad()
    def forward(x: torch.Tensor) -> torch.Tensor:
        mems = {li["name"]: torch.full((len(x), *li["shape"]), li["theta"] / 2) for li in layers[:-1]}
        cur = _current(layers[0], x)
        out = 0.0
        for _ in range(T):
            spikes = {}
            for li in layers:
                name = li["name"]
                y = cur if li is layers[0] else sum(m(spikes[src]) for src, m in li["inputs"]) + li["bias"]
                if li["readout"]:
                    out = out + y
                else:
                    spikes[name], mems[name] = cells[name](y, mems[name])
        return out

    return forward


def bench_peers(networks: list[Network], T: int = 8, batch: int = 64, repeat: int = 3,
                lava_samples: tuple[int, ...] = (), log: Callable[[str], None] = lambda s: None) -> dict:
    """Per network: µs per sample-step of sim (integer), torch_float and each installed peer, the
    ratios to sim, each peer's agreement with torch_float's predictions, sim's exactness against
    torch_int on the timed samples, and Lava on the first ``lava_samples[i]`` of them for network
    i (its steady rate, verified against torch_int and sim; none where the tuple ends)."""
    have = available()
    counts = tuple(lava_samples) + (0,) * (len(networks) - len(lava_samples))
    rows = [_measure(net, T, batch, repeat, n, have, log) for net, n in zip(networks, counts, strict=False)]
    return {"peers_installed": have, "torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}


def _measure(net: Network, T: int, batch: int, repeat: int, lava_samples: int, have: dict[str, bool], log) -> dict:
    x = net.x[:batch]
    snn = convert(net.graph, net.x_calib)
    q = quantize(snn, net.x_calib, T)
    sim = SimTarget(batch=batch)
    row: dict = {"network": net.name, "T": T, "batch": batch}
    t0 = time.perf_counter()
    dep = deploy(q, snn)  # lowered once per network
    sim.compile(dep)  # sim's models built once per deployment
    row["sim_compile_s"] = time.perf_counter() - t0
    sim.run(dep, x)  # warm-up
    per = batch * T * 1e-6
    log(f"peers: {net.name}: sim, torch_float")
    row["sim_us"] = best_time(lambda: sim.run(dep, x), repeat)[0] / per
    row["sim_kernels"] = "int8" if sim.compile(dep).int8 else "float32"  # (what the built SimNet resolved)
    if row["sim_kernels"] == "int8":  # the same sim on the float32 kernels the peers use, for comparison
        as_float = SimTarget(batch=batch, int8=False)
        as_float.run(dep, x)
        row["sim_float32_us"] = best_time(lambda: as_float.run(dep, x), repeat)[0] / per
    ref = run(dep, x, "torch_float")
    row["torch_float_us"] = best_time(lambda: run(dep, x, "torch_float"), repeat)[0] / per
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
    row["sim_synapse_us"] = synapse_time(lambda: sim.run(dep, x)) / per
    log(f"peers: {net.name}: sim against torch_int on the {len(x)} timed samples")
    checks, _ = verify(dep, x, targets=("sim",))
    row["sim_exact"], row["sim_values"] = all(c.exact for c in checks), sum(c.values for c in checks)
    if lava_samples:
        log(f"peers: {net.name}: Lava, {lava_samples} of them streamed")
        lava = lava_figures(dep, x[:lava_samples])
        row.update({"lava_samples": lava_samples, "lava_us": lava["run_us"], "lava_exact": lava["exact"],
                    "lava_values": lava["values"], "sim_over_lava": lava["run_us"] / row["sim_us"]})
    return row


SYNAPSE_OPS = ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::mm", "aten::addmm", "aten::bmm",
               "aten::avg_pool2d", "aten::_sparse_mm", "aten::addmm_", "onednn::qconv2d_pointwise",
               "onednn::qlinear_pointwise")


def synapse_time(call: Callable[[], object], repeat: int = 2) -> float:
    """Seconds one ``call`` of sim spends in its convolutions, sum-pools and matrix products
    (torch's profiler, own time of those operators, int8 or float32): the part every simulator of
    the same network computes; the rest is neurons, bookkeeping and Python. The least of
    ``repeat`` profiled calls (a first one was once charged 9x, the profiler's own start-up)."""
    from torch.profiler import ProfilerActivity, profile

    times = []
    for _ in range(repeat):
        prof = profile(activities=[ProfilerActivity.CPU])
        with _quiet_fd2():
            prof.start()
        try:
            call()
        finally:
            with _quiet_fd2():
                prof.stop()
        times.append(sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in SYNAPSE_OPS) * 1e-6)
    return min(times)


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """The profiler's C++ side prints a line to file descriptor 2 as it starts and as it stops,
    which no setting turns off: those two moments run with it pointed at /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peers_table(res: dict) -> str:
    lines = ["| network | T | batch | sim (integer, bit-exact) | sim on float32 kernels | sim compile (once) | "
             "torch_float | SpikingJelly | snnTorch | fastest peer / sim | sim's convolutions and products | "
             "sim = torch_int | Lava steady (= torch_int, sim) | Lava / sim |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def cell(r, key):
        v = r.get(f"{key}_us")
        agree = r.get(f"{key}_agrees")
        return "not installed" if v is None else f"{v:.0f} µs" + (f" (agrees {100 * agree:.0f} %)"
                                                                   if agree is not None else "")

    for r in res["rows"]:
        ratio, as_float = r["fastest_peer_over_sim"], r.get("sim_float32_us")
        lava, over = "not run", ""
        if r.get("lava_samples"):
            n = r['lava_samples']
            lava = f"{r['lava_us'] / 1e3:,.0f} ms ({n} sample{'s' * (n != 1)}, {_verdict(r['lava_exact'])})"
            over = f"{r['sim_over_lava']:,.0f}x"
        lines.append(f"| {r['network']} | {r['T']} | {r['batch']} | {r['sim_us']:.0f} µs ({r['sim_kernels']}) | "
                     f"{'(the same)' if as_float is None else f'{as_float:.0f} µs'} | {r['sim_compile_s']:.2f} s "
                     f"| {r['torch_float_us']:.0f} µs"
                     f" | {cell(r, 'spikingjelly')} | {cell(r, 'snntorch')} | "
                     f"{'' if ratio is None else f'{ratio:.2f}x'} | {r.get('sim_synapse_us', 0):.0f} µs | "
                     f"{_verdict(r['sim_exact'])} ({r['sim_values']:,} values) | {lava} | {over} |")
    return "\n".join(lines) + ("\n\nµs per sample-step (batch x T); agreement: predictions equal to torch_float's; "
                               "fastest peer / sim: how many times sim's time the faster peer takes; sim compile: "
                               "lowering (deploy) and building the models (SimTarget.compile), once per network and T, "
                               "not in sim's time, as the peers' construction is not in theirs; sim's kernels: "
                               "int8 where the CPU has int8 dot-product instructions and they prove exact "
                               "(targets/int8_kernels.py), float32 (the peers' kernels) elsewhere, and the same sim "
                               "on float32 kernels beside it; sim's convolutions and products: the part of sim's "
                               "time in the dense operations every simulator of the network runs (torch's "
                               "profiler).")


def _verdict(exact: bool) -> str:
    return "exact" if exact else "NOT EXACT"
