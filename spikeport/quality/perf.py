"""``spikeport bench`` (suite ``perf``): how fast ``sim``, the PyTorch reference and Lava run the
same integer network on the same inputs, measured side by side in one process.

Networks: the bundled MNIST-5k CNN (``cnn_mnist``) and a VGG-style network of six conv layers
(``vgg_mnist``) with random weights (seeded; BatchNorm statistics set from 512 training images so
that every layer fires), both on MNIST-5k test images.

Figures (per network, at one T and one batch size):

* throughput in sample-steps per second (samples x T, the window every target must compute) for
  ``sim``, ``torch_int`` (the zero-delay reference), ``lava`` and the float ANN's forward pass per
  sample as the floor, with the ratios between them. Lava streams one sample every ``period``
  steps; its steady rate is ``period`` x its time per step over T, the time per step measured
  after the first step (which compiles the network and starts its processes). Its wall time per
  sample-step (process start, compilation, the run and reading back, over the samples streamed)
  is given too;
* synaptic operations: event-driven (spikes x fan-out, what a chip does) and dense (the
  multiply-accumulates ``sim``'s convolutions and matrix products execute), per second, the
  dense rate also as a share of this machine's float32 matrix-multiply rate measured in the run;
* peak memory of the ``sim`` run (growth of the resident set, see ``MemoryProbe``);
* conversion, quantization and each calibration method's time;
* exactness: ``sim`` against Lava on the samples both ran, every layer, step and neuron.

Scaling tables: ``sim`` cost against T, batch size and network width.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from spikeport.api import dataset_for, import_model, load_model, run, verify
from spikeport.models.data import load_dataset
from spikeport.models.families import resnet18
from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint, vgg_mnist
from spikeport.targets.sim import SimTarget
from spikeport.toolchain.costs.metrics import count_work
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.snn import INPUT, SNNGraph
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.methods import apply_method
from spikeport.toolchain.passes.quantize import quantize


# -- measuring --------------------------------------------------------------------------------------
def best_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` runs (the machine is shared: the minimum is the least disturbed)."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


class MemoryProbe:
    """Peak memory of a call: growth of the resident set's high-water mark (Linux, glibc).

    The allocator keeps freed memory for reuse, which would hide a call's own peak; so the probe
    first tells glibc to serve every allocation above 64 KiB with its own mapping and to return
    freed memory at once. That slows allocation down, so probes run after every timing. Later
    calls of ``measure`` queue work that ``run`` performs; elsewhere the figures are None.
    """

    def __init__(self) -> None:
        self.queue: list[tuple[dict, str, Callable[[], object]]] = []

    def measure(self, row: dict, key: str, fn: Callable[[], object]) -> None:
        row[key] = None
        self.queue.append((row, key, fn))

    def run(self) -> None:
        import ctypes
        import gc

        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = libc.mallopt(-3, 1 << 16) == 1 and libc.mallopt(-1, 1 << 16) == 1  # M_MMAP_, M_TRIM_THRESHOLD
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except (OSError, AttributeError):
            ok = False
        for row, key, fn in self.queue:
            if not ok:
                continue
            gc.collect()
            libc.malloc_trim(0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
            base = _status_kb("VmRSS")
            fn()
            row[key] = (_status_kb("VmHWM") - base) / 1024
        self.queue.clear()


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


def matmul_gflops(n: int = 2048, repeat: int = 5) -> float:
    """This machine's float32 dense matrix-multiply rate (GFLOP/s), measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t, _ = best_time(lambda: a @ b, repeat)
    return 2 * n ** 3 / t / 1e9


# -- networks ---------------------------------------------------------------------------------------
@dataclass
class Network:
    name: str
    module: torch.nn.Module  # the float ANN (eval mode)
    graph: object  # its imported IR graph
    x_calib: np.ndarray
    x: np.ndarray  # the benchmark inputs (test images)
    notes: str = ""


def bundled_cnn(samples: int) -> Network:
    model = load_model("cnn_mnist")
    data = dataset_for(model)
    module, _ = load_checkpoint(CHECKPOINT_DIR / "cnn_mnist.pt")
    return Network("cnn_mnist", module.eval(), model.graph, data.x_train[:512], data.x_test[:samples],
                   "bundled checkpoint (ANN 97.9%)")


def _with_data_statistics(module: torch.nn.Module, x: np.ndarray) -> torch.nn.Module:
    """BatchNorm statistics from data, so that a randomly initialised network's every layer sees
    unit-variance input and fires."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    module.train()
    with torch.no_grad():
        module(torch.as_tensor(x, dtype=torch.float32))
    return module.eval()


def random_vgg(samples: int, width: int = 32, seed: int = 0) -> Network:
    data = load_dataset("mnist5k")
    torch.manual_seed(seed)
    module = _with_data_statistics(vgg_mnist(width=width), data.x_train[:512])
    graph = import_model(module, (1, 28, 28))
    return Network(f"vgg_mnist (width {width})", module, graph, data.x_train[:512], data.x_test[:samples],
                   f"random weights (seed {seed}), 6 conv layers of {width}-{4 * width} channels")


def random_resnet18(samples: int, width: int = 64, seed: int = 0) -> Network:
    """torchvision's ResNet-18 (CIFAR stem, widths 64-512 at ``width`` 64) on one-channel MNIST-5k
    images: 17 spiking conv layers with residual additions."""
    data = load_dataset("mnist5k")
    torch.manual_seed(seed)
    module = _with_data_statistics(resnet18(width=width, in_channels=1), data.x_train[:512])
    graph = import_model(module, (1, 28, 28))
    return Network(f"resnet18_mnist (width {width})", module, graph, data.x_train[:512], data.x_test[:samples],
                   f"random weights (seed {seed}), ResNet-18 CIFAR stem, widths {width}-{8 * width}")


# -- per-network figures ----------------------------------------------------------------------------
def dense_macs(q: SNNGraph) -> int:
    """Multiply-accumulates per sample-step of the synapses between spiking layers (what sim's
    convolutions and products execute; the analog input layer is computed once per sample)."""
    return sum(p.size * pr.synapse.fan_in for p in q.populations for pr in p.inputs if pr.source != INPUT)


def chip_work(q: SNNGraph, trace) -> dict[str, float]:
    """Synaptic operations (messages x fan-out, what a chip does) and messages per sample of a
    recorded run, counted as eval, the quantization report and lowlat count them."""
    work = count_work(q, trace)
    return {"synops_per_sample": float(work.synops.mean()), "spikes_per_sample": float(work.messages.mean())}


@dataclass
class NetworkFigures:
    network: str
    notes: str
    T: int
    batch: int
    lava_samples: int
    neurons: int
    dense_macs_per_step: int
    synops_per_sample: float
    spikes_per_sample: float
    convert_s: float
    quantize_s: float
    methods_s: dict[str, float]
    ann_us_per_sample: float
    sim_us_per_sample_step: float
    torch_int_us_per_sample_step: float
    sim_peak_mb: float | None = None
    lava_run_us_per_sample_step: float | None = None
    lava_wall_us_per_sample_step: float | None = None
    lava_startup_s: float | None = None
    lava_exact: bool | None = None
    lava_values_compared: int = 0
    derived: dict[str, float] = field(default_factory=dict)

    def derive(self, matmul: float) -> None:
        sim_s = self.sim_us_per_sample_step * 1e-6
        d = {
            "sim_sample_steps_per_s": 1 / sim_s,
            "sim_event_synops_per_s": self.synops_per_sample / self.T / sim_s,
            "sim_dense_gflops": 2 * self.dense_macs_per_step / sim_s / 1e9,
            "sim_over_ann": self.sim_us_per_sample_step / self.ann_us_per_sample,
            "torch_int_over_sim": self.torch_int_us_per_sample_step / self.sim_us_per_sample_step,
        }
        d["sim_dense_share_of_matmul"] = d["sim_dense_gflops"] / matmul
        if self.lava_run_us_per_sample_step:
            d["lava_sample_steps_per_s"] = 1e6 / self.lava_run_us_per_sample_step
            d["lava_event_synops_per_s"] = self.synops_per_sample / self.T / (self.lava_run_us_per_sample_step * 1e-6)
            d["sim_over_lava_run"] = self.lava_run_us_per_sample_step / self.sim_us_per_sample_step
            d["sim_over_lava_wall"] = self.lava_wall_us_per_sample_step / self.sim_us_per_sample_step
        self.derived = d


def measure_network(net: Network, T: int, batch: int, lava_samples: int, repeat: int, device: str,
                    methods: tuple[str, ...], log: Callable[[str], None], memory: MemoryProbe) -> NetworkFigures:
    x = net.x[:batch]
    log(f"{net.name}: convert, quantize, methods")
    convert_s, snn = best_time(lambda: convert(net.graph, net.x_calib, device=device), 1)
    quantize_s, q = best_time(lambda: quantize(snn, net.x_calib, T, device=device), 1)
    dep = deploy(q, snn)
    methods_s = {}
    labels = np.zeros(len(net.x_calib), dtype=np.int64)  # FTBC's alpha choice needs labels; speed only
    for m in methods:
        methods_s[m], _ = best_time(lambda m=m: apply_method(snn, m, T, net.graph, net.x_calib, labels,
                                                             device=device), 1)
    log(f"{net.name}: ANN, torch_int, sim at batch {batch}, T={T}")
    xt = torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        ann_s, _ = best_time(lambda: net.module(xt), repeat + 2)
    ref_s, _ = best_time(lambda: run_reference(q, x, T, batch=batch, device=device), repeat)
    sim = SimTarget(batch=batch, device=device)
    sim.run(dep, x)  # warm-up
    sim_s, _ = best_time(lambda: sim.run(dep, x), repeat)
    recorded = run(dep, x, "sim", record=True, device=device)
    per_step = batch * T * 1e-6
    fig = NetworkFigures(
        network=net.name, notes=net.notes, T=T, batch=batch, lava_samples=lava_samples,
        neurons=sum(p.size for p in q.hidden), dense_macs_per_step=dense_macs(q),
        **chip_work(q, recorded),
        convert_s=convert_s, quantize_s=quantize_s, methods_s=methods_s,
        ann_us_per_sample=ann_s / batch * 1e6, sim_us_per_sample_step=sim_s / per_step,
        torch_int_us_per_sample_step=ref_s / per_step)
    memory.measure(fig.__dict__, "sim_peak_mb", lambda: sim.run(dep, x))
    if lava_samples:
        log(f"{net.name}: Lava, {lava_samples} samples streamed (the same inputs)")
        lava = lava_figures(dep, x[:lava_samples], device)
        fig.lava_run_us_per_sample_step, fig.lava_wall_us_per_sample_step = lava["run_us"], lava["wall_us"]
        fig.lava_startup_s, fig.lava_exact, fig.lava_values_compared = lava["startup_s"], lava["exact"], lava["values"]
    return fig


def lava_figures(dep: Deployment, x: np.ndarray, device: str = "cpu") -> dict:
    """Lava on ``x`` streamed, verified against torch_int and sim in the same call: its steady time
    per sample-step (``run_us``: streaming puts one sample every ``period`` steps, and a step costs
    the run time over the steps after the first, which compiles the network and starts its
    processes), its wall time per sample-step (``wall_us``), the start-up, and the verdict."""
    T = dep.T
    rows, traces = verify(dep, x, targets=("sim", "lava"), device=device, target_options={"lava": {}})
    meta = traces["lava"].meta
    step_s = meta["lava_run_seconds"] / max(1, meta["lava_run_steps"])
    return {"run_us": step_s * dep.net.period / T * 1e6, "wall_us": meta["wall_seconds"] / (len(x) * T) * 1e6,
            "startup_s": meta["lava_startup_seconds"],
            "exact": all(r.exact for r in rows),  # sim and Lava against torch_int, Lava against sim
            # distinct values: Lava's frames against torch_int (the row against sim compares the same values again)
            "values": sum(r.values for r in rows if r.target == "lava" and r.against == "torch_int")}


# -- scaling ----------------------------------------------------------------------------------------
def sim_cost(q: SNNGraph, x: np.ndarray, batch: int, repeat: int, device: str, memory: MemoryProbe,
             row: dict) -> dict:
    dep, T = deploy(q), int(q.T)
    sim = SimTarget(batch=batch, device=device)
    sim.run(dep, x[:batch])
    t, _ = best_time(lambda: sim.run(dep, x[:batch]), repeat)
    row.update({"us_per_sample_step": t / (batch * T) * 1e6, "ms_per_batch": t * 1e3})
    memory.measure(row, "peak_mb", lambda: sim.run(dep, x[:batch]))
    return row


def scaling(cnn: Network, Ts: tuple[int, ...], batches: tuple[int, ...], widths: tuple[int, ...], T: int,
            batch: int, repeat: int, device: str, log: Callable[[str], None], memory: MemoryProbe) -> dict:
    snn = convert(cnn.graph, cnn.x_calib, device=device)
    out: dict[str, list[dict]] = {"T": [], "batch": [], "width": []}
    for t in Ts:
        log(f"scaling: cnn_mnist T={t}")
        out["T"].append(sim_cost(quantize(snn, cnn.x_calib, t), cnn.x, batch, repeat, device, memory,
                                 {"T": t, "batch": batch}))
    q = quantize(snn, cnn.x_calib, T)
    for b in batches:
        log(f"scaling: cnn_mnist batch {b}")
        out["batch"].append(sim_cost(q, cnn.x, b, repeat, device, memory, {"batch": b, "T": T}))
    for w in widths:
        log(f"scaling: vgg_mnist width {w}")
        net = random_vgg(batch, width=w)
        qv = quantize(convert(net.graph, net.x_calib, device=device), net.x_calib, T)
        xt = torch.as_tensor(net.x, dtype=torch.float32)
        with torch.no_grad():
            ann_s, _ = best_time(lambda net=net, xt=xt: net.module(xt), repeat + 2)
        row = sim_cost(qv, net.x, batch, repeat, device, memory,
                       {"width": w, "T": T, "batch": batch, "neurons": sum(p.size for p in qv.hidden),
                        "dense_macs_per_step": dense_macs(qv), "ann_us_per_sample": ann_s / len(net.x) * 1e6})
        row["sim_over_ann"] = row["us_per_sample_step"] / row["ann_us_per_sample"]
        out["width"].append(row)
    return out


# -- the suite --------------------------------------------------------------------------------------
@dataclass
class PerfConfig:
    T: int = 8
    batch: int = 64
    lava_samples: tuple[int, int] = (8, 2)  # CNN, VGG
    vgg_width: int = 32
    repeat: int = 3
    device: str = "cpu"
    methods: tuple[str, ...] = ("ftbc", "cos", "tpp")
    scaling_T: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    scaling_batch: tuple[int, ...] = (1, 8, 64, 256)
    scaling_width: tuple[int, ...] = (8, 16, 32, 64)

    @classmethod
    def quick(cls) -> PerfConfig:
        """A seconds-long run for the tests: every figure, tiny sizes."""
        return cls(T=2, batch=8, lava_samples=(1, 0), vgg_width=8, repeat=1, methods=("cos",),
                   scaling_T=(1, 2), scaling_batch=(1, 4), scaling_width=(4,))


def bench_perf(cfg: PerfConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    log("machine: float32 matmul rate")
    matmul = matmul_gflops()
    memory = MemoryProbe()
    nets = []
    for net, lava_n in ((bundled_cnn(max(cfg.batch, 64)), cfg.lava_samples[0]),
                        (random_vgg(max(cfg.batch, 64), cfg.vgg_width), cfg.lava_samples[1])):
        fig = measure_network(net, cfg.T, cfg.batch, lava_n, cfg.repeat, cfg.device, cfg.methods, log, memory)
        fig.derive(matmul)
        nets.append(fig)
    cnn = bundled_cnn(max((*cfg.scaling_batch, cfg.batch)))
    scale = scaling(cnn, cfg.scaling_T, cfg.scaling_batch, cfg.scaling_width, cfg.T, cfg.batch, cfg.repeat,
                    cfg.device, log, memory)
    log("peak memory of every sim run above (after the timings: the probe slows allocation down)")
    memory.run()
    return {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                        "torch": torch.__version__, "device": cfg.device, "matmul_gflops": matmul},
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "networks": [f.__dict__ for f in nets], "scaling": scale}


def _f(v, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def perf_tables(res: dict) -> str:
    m = res["machine"]
    lines = [f"machine: {m['cpu']}, {m['threads']} threads, torch {m['torch']}, device {m['device']}; "
             f"float32 matmul {m['matmul_gflops']:.0f} GFLOP/s", ""]
    lines += ["| network | T | batch | sim us/sample-step | torch_int | Lava run | Lava wall | ANN us/sample | "
              "sim/ANN | Lava/sim (run) | Lava/sim (wall) | sim exact vs Lava |",
              "|" + "---|" * 12]
    for n in res["networks"]:
        d = n["derived"]
        exact = "-" if n["lava_exact"] is None else \
            f"{'yes' if n['lava_exact'] else 'NO'} ({n['lava_samples']} samples, {n['lava_values_compared']:,} values)"
        lines.append(f"| {n['network']} | {n['T']} | {n['batch']} | {n['sim_us_per_sample_step']:.1f} | "
                     f"{n['torch_int_us_per_sample_step']:.1f} | {_f(n['lava_run_us_per_sample_step'], ',.0f')} | "
                     f"{_f(n['lava_wall_us_per_sample_step'], ',.0f')} | {n['ann_us_per_sample']:.1f} | "
                     f"{d['sim_over_ann']:.2f}x | {_f(d.get('sim_over_lava_run'), ',.0f')}x | "
                     f"{_f(d.get('sim_over_lava_wall'), ',.0f')}x | {exact} |")
    lines += ["", "| network | neurons | spikes/sample | event synops/sample | sim event synops/s | "
              "sim dense GFLOP/s | share of matmul | sim peak MiB | convert s | quantize s | methods s |",
              "|" + "---|" * 11]
    for n in res["networks"]:
        d = n["derived"]
        meth = ", ".join(f"{k} {v:.2f}" for k, v in n["methods_s"].items())
        lines.append(f"| {n['network']} | {n['neurons']:,} | {n['spikes_per_sample']:,.0f} | "
                     f"{n['synops_per_sample']:,.0f} | {d['sim_event_synops_per_s']:.3g} | "
                     f"{d['sim_dense_gflops']:.1f} | {100 * d['sim_dense_share_of_matmul']:.0f}% | "
                     f"{_f(n['sim_peak_mb'])} | {n['convert_s']:.2f} | {n['quantize_s']:.2f} | {meth} |")
    s = res["scaling"]
    lines += ["", "sim against T (cnn_mnist):", "", "| T | batch | us/sample-step | ms/batch | peak MiB |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['T']} | {r['batch']} | {r['us_per_sample_step']:.1f} | {r['ms_per_batch']:.1f} | "
              f"{_f(r['peak_mb'])} |" for r in s["T"]]
    lines += ["", "sim against batch size (cnn_mnist):", "",
              "| batch | T | us/sample-step | ms/batch | peak MiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['T']} | {r['us_per_sample_step']:.1f} | {r['ms_per_batch']:.1f} | "
              f"{_f(r['peak_mb'])} |" for r in s["batch"]]
    lines += ["", "sim against network width (vgg_mnist, random weights):", "",
              "| width | neurons | dense MACs/step | us/sample-step | ANN us/sample | sim/ANN | peak MiB |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['width']} | {r['neurons']:,} | {r['dense_macs_per_step']:,} | {r['us_per_sample_step']:.1f} | "
              f"{r['ann_us_per_sample']:.1f} | {r['sim_over_ann']:.2f}x | {_f(r['peak_mb'])} |" for r in s["width"]]
    return "\n".join(lines)
