"""``spikeport bench --suite families``: the CNN families users bring, at their published widths,
through both importers (torch.fx and an ONNX export), converted, quantized and verified on ``sim``
against ``torch_int`` (every layer, step and neuron), with their size, a Loihi 2 resource estimate,
``sim``'s time per sample-step and its peak memory; the small members of the test suite also in Lava.

Weights are random (BatchNorm statistics too, ``models.families.randomize_batchnorm``) and the
inputs uniform noise: this measures what converts and how exactly it runs, not accuracy. Max-pools
run as spikeport's spiking max-pool.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from spikeport.api import import_model, verify
from spikeport.models.families import FAMILIES, randomize_batchnorm
from spikeport.quality.perf import MemoryProbe
from spikeport.targets.sim import SimTarget
from spikeport.toolchain.costs.resources import estimate
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.quantize import quantize

# label: (family, constructor arguments, input shape); torchvision's widths
FULL = {
    "ResNet-18 (CIFAR stem)": ("resnet18", {}, (3, 32, 32)),
    "ResNet-18 (ImageNet stem)": ("resnet18", {"stem": "imagenet"}, (3, 32, 32)),
    "ResNet-34 (CIFAR stem)": ("resnet34", {}, (3, 32, 32)),
    "ResNet-20 (CIFAR, option A)": ("resnet_cifar_a", {}, (3, 32, 32)),
    "VGG-11-BN": ("vgg11_bn", {}, (3, 32, 32)),
    "VGG-16-BN": ("vgg16_bn", {}, (3, 32, 32)),
    "MobileNetV2": ("mobilenet_v2", {"first_stride": 1}, (3, 32, 32)),
    "SqueezeNet 1.1": ("squeezenet1_1", {}, (3, 32, 32)),
    "GoogLeNet inception block": ("inception", {}, (3, 32, 32)),
    "DenseNet-121 block": ("densenet_block", {}, (3, 32, 32)),
    "ShuffleNetV2 units": ("shufflenet_v2_units", {}, (3, 32, 32)),
    "MNASNet head": ("mnasnet_head", {}, (3, 32, 32)),
}
# the members the Lava tests run (tests/test_families.py), run here in Lava as well
SMALL_IN_LAVA = {
    "ResNet-18 (CIFAR stem), width 8": ("resnet18", {"width": 8}, (3, 32, 32)),
    "DenseNet block, growth 4": ("densenet_block", {"growth": 4}, (3, 32, 32)),
    "SqueezeNet 1.1, width 0.25": ("squeezenet1_1", {"width": 0.25}, (3, 32, 32)),
}


@dataclass
class CoverageRow:
    network: str
    importer: str
    input_shape: tuple[int, ...]
    imported: bool = False
    converted: bool = False
    sim_exact: bool | None = None
    lava_exact: bool | None = None
    populations: int = 0
    neurons: int = 0
    synapses: int = 0
    loihi2_cores: int = 0
    loihi2_chips: int = 0
    sim_ms_per_sample_step: float | None = None
    sim_peak_mib: float | None = None
    error: str = ""


def _build(family: str, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(FAMILIES[family](**kwargs))


def _export(module: torch.nn.Module, shape: tuple[int, ...], path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, *shape),), str(path), dynamo=False, verbose=False)


def cover(label: str, family: str, kwargs: dict, shape: tuple[int, ...], T: int = 4, lava: bool = False,
          samples: int = 2, calib: int = 8, memory: MemoryProbe | None = None) -> list[CoverageRow]:
    """One family member through both importers; ``lava`` also runs the torch import in Lava.
    ``memory`` queues the peak-memory measurement (run it after every timing: it slows the
    allocator down for the rest of the process)."""
    rng = np.random.default_rng(0)
    x = rng.random((calib + samples, *shape)).astype(np.float32)
    module = _build(family, kwargs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for importer in ("torch", "onnx"):
            row = CoverageRow(label, importer, shape)
            rows.append(row)
            try:
                if importer == "torch":
                    graph = import_model(module, shape, maxpool="spiking")
                else:
                    _export(module, shape, Path(tmp) / "m.onnx")
                    graph = import_model(Path(tmp) / "m.onnx", maxpool="spiking")
                row.imported = True
                q = quantize(convert(graph, x[:calib]), x[:calib], T)
                row.converted = True
                dep = deploy(q)
                res = estimate(dep.net)
                row.populations, row.neurons, row.synapses = len(q.populations), res.neurons, res.synapses
                row.loihi2_cores, row.loihi2_chips = res.cores, res.chips
                targets = ("sim", "lava") if lava and importer == "torch" else ("sim",)
                checks, _ = verify(dep, x[calib:], targets=targets)
                row.sim_exact = all(c.exact for c in checks if c.target == "sim")
                if "lava" in targets:
                    row.lava_exact = all(c.exact for c in checks if c.target == "lava")
                if importer == "torch":
                    sim = SimTarget(batch=samples)
                    sim.run(dep, x[calib:])  # builds the models (and on first use, numba compiles)
                    t0 = time.perf_counter()
                    sim.run(dep, x[calib:])
                    row.sim_ms_per_sample_step = 1e3 * (time.perf_counter() - t0) / (samples * T)
                    if memory is not None:
                        memory.measure(row.__dict__, "sim_peak_mib", lambda dep=dep, sim=sim: sim.run(dep, x[calib:]))
            except Exception as exc:  # a row per failure: the table shows what does not go through
                row.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return rows


def large_resnet(T: int = 4, batch: int = 8, memory: MemoryProbe | None = None) -> dict:
    """ResNet-18 with the ImageNet stem at 3x224x224 in sim: time and peak memory per sample."""
    shape = (3, 224, 224)
    x = np.random.default_rng(0).random((8 + batch, *shape)).astype(np.float32)
    t0 = time.perf_counter()
    q = quantize(convert(import_model(_build("resnet18", {"stem": "imagenet"}), shape, maxpool="spiking"), x[:8]),
                 x[:8], T)
    compile_s = time.perf_counter() - t0
    sim = SimTarget(batch=batch)
    t0 = time.perf_counter()
    dep = deploy(q)  # the lowering, once
    sim.compile(dep)  # sim's models
    compile_s += time.perf_counter() - t0
    res = estimate(dep.net)
    sim.run(dep, x[8:8 + 1])  # the compiled IF loop's machine code, on first use
    t0 = time.perf_counter()
    sim.run(dep, x[8:])
    seconds = time.perf_counter() - t0
    row = {"network": "ResNet-18 (ImageNet stem)", "input_shape": list(shape), "T": T, "batch": batch,
           "neurons": res.neurons, "synapses": res.synapses, "loihi2_cores": res.cores, "loihi2_chips": res.chips,
           "compile_s": compile_s, "sim_s_per_sample": seconds / batch,
           "sim_ms_per_sample_step": 1e3 * seconds / (batch * T)}
    if memory is not None:
        memory.measure(row, "sim_peak_mib", lambda: sim.run(dep, x[8:]))
    return row


def bench_families(T: int = 4, lava: bool = True, large: bool = True,
                   log: Callable[[str], None] = lambda s: None) -> dict:
    rows: list[CoverageRow] = []
    memory = MemoryProbe()  # measured at the end, after every timing
    for label, (family, kwargs, shape) in FULL.items():
        log(label)
        rows += cover(label, family, kwargs, shape, T, memory=memory)
    if lava:
        for label, (family, kwargs, shape) in SMALL_IN_LAVA.items():
            log(f"{label} (Lava)")
            rows += [r for r in cover(label, family, kwargs, shape, T=3, lava=True, samples=1) if r.importer == "torch"]
    big = None
    if large:
        log("ResNet-18 at 3x224x224")
        big = large_resnet(T, memory=memory)
    log("peak memory")
    memory.run()
    out = {"T": T, "rows": [asdict(r) for r in rows]}
    if big is not None:
        big["sim_peak_mib_per_sample"] = big["sim_peak_mib"] / big["batch"] if big["sim_peak_mib"] is not None else None
        out["large"] = big
    return out


def _mark(v: bool | None) -> str:
    return "" if v is None else "exact" if v else "DIFFERS"


def coverage_table(res: dict) -> str:
    lines = ["| network | importer | input | import | convert | sim = torch_int | Lava | populations | neurons | "
             "synapses | Loihi 2 cores | chips | sim ms / sample-step | sim peak MiB |",
             "|" + "---|" * 14]
    for r in res["rows"]:
        ms = f"{r['sim_ms_per_sample_step']:.1f}" if r["sim_ms_per_sample_step"] is not None else ""
        mem = f"{r['sim_peak_mib']:.0f}" if r["sim_peak_mib"] is not None else ""
        lines.append(f"| {r['network']} | {r['importer']} | {'x'.join(map(str, r['input_shape']))} | "
                     f"{'ok' if r['imported'] else 'FAIL'} | {'ok' if r['converted'] else 'FAIL'} | "
                     f"{_mark(r['sim_exact'])} | {_mark(r['lava_exact'])} | {r['populations']} | {r['neurons']:,} | "
                     f"{r['synapses']:,} | {r['loihi2_cores']} | {r['loihi2_chips']} | {ms} | {mem} |"
                     + (f" {r['error']}" if r["error"] else ""))
    if "large" in res:
        g = res["large"]
        mem = f"{g['sim_peak_mib']:.0f} MiB ({g['sim_peak_mib_per_sample']:.0f} MiB per sample)" \
            if g["sim_peak_mib"] is not None else "n/a"
        lines += ["", f"{g['network']} at {'x'.join(map(str, g['input_shape']))}, T={g['T']}, batch {g['batch']}: "
                  f"{g['neurons']:,} neurons, {g['synapses']:,} synapses, {g['loihi2_cores']} Loihi 2 cores on "
                  f"{g['loihi2_chips']} chip(s); sim {g['sim_s_per_sample']:.2f} s per sample "
                  f"({g['sim_ms_per_sample_step']:.0f} ms per sample-step), peak memory {mem}; "
                  f"import, convert, quantize and lower for sim {g['compile_s']:.0f} s"]
    return "\n".join(lines)
