"""``spikeport demo``: the main job on a bundled model, end to end, with a report.

convert -> quantize (per T, calibrated on training samples) -> run the float and integer PyTorch
reference and ``sim`` on the whole test split for every T, verifying sim against the integer
reference spike for spike -> run Lava on a subset at one T, verified against both -> accuracy
table, ``report.json`` and ``report.html``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from spikeport.api import accuracy, ann_accuracy, prepare, run_float, verify
from spikeport.reports.demo_report import Report, accuracy_table, write_report
from spikeport.reports.quantization import quantization_report
from spikeport.studies.methods_table import compare_methods


def demo(out: Path, model: str = "cnn_mnist", Ts: tuple[int, ...] = (1, 2, 4, 8, 16), lava_T: int = 8,
         lava_samples: int = 16, calib_samples: int = 512, test_samples: int | None = None,
         lava: bool = True, progress: bool = True, methods_Ts: tuple[int, ...] = (1, 2, 4),
         tpp_seeds: int = 1, methods_samples: int | None = 500) -> Report:
    """``methods_samples``: the seed-methods table runs on the first that many test samples, without
    the QCFS rows the accuracy table already has (``spikeport methods`` runs everything)."""
    t_start = time.perf_counter()
    prep = prepare(model, calib=calib_samples)
    loaded, data, calib, snn = prep.model, prep.data, prep.calib, prep.snn
    x, y = data.x_test[:test_samples], data.y_test[:test_samples]
    report = Report.new(loaded, data, profile="loihi2", calib_samples=len(calib))
    report.timings["load_convert_s"] = time.perf_counter() - t_start
    report.add_accuracy("qcfs", "ann", None, ann_accuracy(loaded.graph, x, y), len(x))
    report.add_accuracy("clip", "ann", None, ann_accuracy(loaded.graph, x, y, clip=True), len(x))
    report.snn_summary = snn.summary()
    n_lava = min(lava_samples, len(x)) if lava else 0
    total = len(Ts) * 3 * len(x) + (2 * n_lava if lava_T in Ts else 0)
    bar = tqdm(total=total, desc="demo", unit="sample", disable=not progress, file=sys.stderr)
    for T in Ts:
        bar.set_description(f"T={T} torch_float")
        t0 = time.perf_counter()
        tf = run_float(snn, x, T)
        report.timings[f"torch_float_T{T}_s"] = time.perf_counter() - t0
        report.add_accuracy("qcfs", "torch_float", T, accuracy(tf, y), len(x))
        bar.update(len(x))
        t0 = time.perf_counter()
        dep = prep.deploy(snn, T)  # quantized and lowered once for every run below
        q = dep.snn
        report.timings[f"quantize_T{T}_s"] = time.perf_counter() - t0
        report.quantization[str(T)] = q.meta["quantization"]
        bar.set_description(f"T={T} torch_int+sim verify")
        t0 = time.perf_counter()
        rows, traces = verify(dep, x, targets=("sim",), progress=lambda n: bar.update(2 * n))
        report.timings[f"torch_int_sim_verify_T{T}_s"] = time.perf_counter() - t0
        report.verification += [r.to_dict() for r in rows]
        for name in ("torch_int", "sim"):
            report.add_accuracy("qcfs", name, T, accuracy(traces[name], y), len(x))
            report.add_overflow(name, T, traces[name].overflow)
        report.add_rates(T, traces["sim"].spike_counts, q)
        if lava and T == lava_T and n_lava:
            bar.set_description(f"T={T} lava ({n_lava} samples)")
            t0 = time.perf_counter()
            rows, traces = verify(dep, x[:n_lava], targets=("sim", "lava"),
                                  progress=lambda n: bar.update(2 * n))
            report.timings[f"lava_T{T}_s"] = time.perf_counter() - t0
            report.verification += [r.to_dict() for r in rows if r.target == "lava"]
            report.add_accuracy("qcfs", "lava", T, accuracy(traces["lava"], y[:n_lava]), n_lava)
            report.add_accuracy("qcfs", "sim", T, accuracy(traces["sim"], y[:n_lava]), n_lava)
            report.lava = {"T": T, "samples": n_lava, **{k: v for k, v in traces["lava"].meta.items()
                                                         if isinstance(v, int | float)}}
        if T == lava_T:
            t0 = time.perf_counter()
            report.quantization_report = quantization_report(dep, calib[:256], loaded.graph)
            report.timings[f"quantization_report_T{T}_s"] = time.perf_counter() - t0
    bar.close()
    if methods_Ts:
        t0 = time.perf_counter()
        n_methods = len(x) if methods_samples is None else min(methods_samples, len(x))
        table = compare_methods(model, Ts=methods_Ts, tpp_seeds=tpp_seeds, lava_Ts=(), verify_samples=50,
                                test_samples=n_methods, calib_samples=calib_samples, progress=progress,
                                baseline=False, prepared=prep)
        report.methods = asdict(table)
        report.methods_markdown = table.markdown()
        for r in table.rows:  # graded spikes reach the ANN at T = 1: they join the accuracy rows
            if r["method"] == "graded":
                report.add_accuracy("graded", r["target"], r["T"], r["acc"], r["n"])
        report.timings["methods_s"] = time.perf_counter() - t0
    report.timings["total_s"] = time.perf_counter() - t_start
    write_report(report, out)
    print(accuracy_table(report))
    for line in report.quantization_report.get("summary", []):
        print(f"quantization (T={lava_T}): {line}")
    if report.methods_markdown:
        print("\nseed methods (spikeport methods for the full table, with Lava):")
        print(report.methods_markdown)
    for v in report.verification:
        print(("  ok   " if v["exact"] else "  FAIL ") + _verification_line(v))
    print(f"report: {out / 'report.html'} and {out / 'report.json'}")
    return report


def _verification_line(v: dict) -> str:
    s = f"{v['target']} vs {v['against']} T={v['steps']}: {v['samples']} samples, {v['values']:,} values"
    if v["exact"]:
        return s + f", {v['spikes']:,} spikes, exact"
    d = v["first_divergence"]
    return s + (f", first divergence at layer {d['layer']!r} step {d['step']} sample {d['sample']} "
                f"neuron {d['neuron']}: expected {d['expected']}, got {d['got']}")


def all_exact(report: Report) -> bool:
    return all(v["exact"] for v in report.verification) and report.methods.get("notes", {}).get(
        "all_checks_exact", True)
