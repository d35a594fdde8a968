"""``spikeport bench``: speed of ``sim`` against real Lava, side by side in one run.

The ``netx`` suite runs lava-dl's pilotnet_lif (10 layers, 24 steps) and ntidigits (3 DelayDense
layers, 3,000 steps) through ``sim`` and through lava-dl's own netx loader in Lava 0.10, both
recording every layer's spikes, and reports wall times and their ratio. Lava's time is given
whole (process start, compile, run, reading results back) and for the run alone.
"""

from __future__ import annotations

import time

import numpy as np

from spikeport.interop.netx import read_netx
from spikeport.quality.conformance import NET_FILES, _whc_to_flat, data_dir, run_netx
from spikeport.targets.lava.runner import run_netx_file


def bench_netx(names: tuple[str, ...] = ("pilotnet_lif", "ntidigits"), repeat: int = 1) -> list[dict]:
    d = data_dir()
    rows = []
    for name in names:
        file, steps, reset, num_layers, (kind, data) = NET_FILES[name]
        arr = np.load(d / data)
        bias = _whc_to_flat(arr) if kind == "bias" else None
        spikes = arr if kind == "spikes" else None
        nx = read_netx(d / file, reset_interval=reset, num_layers=num_layers)
        if bias is not None:
            nx.net.lif(nx.input_layer).bias_mant = bias
        neurons = sum(nx.net.lif(n).size for n in nx.layers)
        sim_s = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run_netx(nx.net, steps, spikes_in=spikes)
            sim_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lava = run_netx_file(d / file, steps, reset_interval=reset, num_layers=num_layers, input_bias=bias,
                             spikes_in=spikes)
        lava_wall = time.perf_counter() - t0
        lava_run = lava[0]["run_seconds"]
        sim_best = min(sim_s)
        rows.append({"network": name, "layers": len(nx.layers), "neurons": neurons, "steps": steps,
                     "sim_s": sim_best, "lava_wall_s": lava_wall, "lava_run_s": lava_run,
                     "speedup_wall": lava_wall / sim_best, "speedup_run": lava_run / sim_best,
                     "sim_ms_per_step": 1000 * sim_best / steps, "lava_ms_per_step": 1000 * lava_run / steps})
    return rows


def table(rows: list[dict]) -> str:
    head = ("| network | layers | neurons | steps | sim (s) | Lava run (s) | Lava wall (s) | sim ms/step | "
            "Lava ms/step | Lava/sim (run) | Lava/sim (wall) |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['network']} | {r['layers']} | {r['neurons']:,} | {r['steps']} | {r['sim_s']:.2f} | "
                     f"{r['lava_run_s']:.2f} | {r['lava_wall_s']:.2f} | {r['sim_ms_per_step']:.2f} | "
                     f"{r['lava_ms_per_step']:.2f} | {r['speedup_run']:.1f}x | {r['speedup_wall']:.1f}x |")
    return "\n".join(lines)
