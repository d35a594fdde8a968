"""``spikeport lowlat``: every configuration for very few time steps side by side, and the one to
deploy at each T.

A configuration is a trained network of a family (the bundled model and its twins trained at other
QCFS levels L, plainly or with NQ's noise: ``cnn_mnist``, ``cnn_mnist_nq``, ``cnn_mnist_l4``,
``cnn_mnist_nq_l4``, ...) and a method on top of it: ``qcfs``, ``ftbc``, ``cos`` (rho = L, as COS is
designed), ``tpp``, ``graded`` (graded spikes) and ``ftbc+tpp`` (TPP neurons on the FTBC-calibrated
network). Methods combine with NQ by running on an ``*_nq`` twin.

For each configuration and T, integer ``sim`` gives the accuracy on held-out training samples (the
last 500 of the training split, which no checkpoint was fitted on; FTBC calibrates on the rest) and
on the test split, the latency in pipelined steps (every hop, COS's pre-run and TPP's accumulation
counted), and the messages, synaptic operations and energy per inference on the held-out samples
(counted by :mod:`spikeport.toolchain.costs.metrics` at the profile's Loihi figures, as the quantization
report counts them: one synaptic operation per message and target, a graded spike one message).
The recommendation for each T is the configuration with the best held-out accuracy (ties: less
energy), over all and among binary-spike ones (a chip or a toolchain without graded spikes); the
test split never chooses. The held-out samples also chose
each checkpoint's epoch and seed, so their accuracies are optimistic for every twin alike. The
recommended configurations are verified spike for spike, ``sim`` and Lava against ``torch_int``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spikeport.api import ann_accuracy, prepare, run, verify
from spikeport.models.zoo import CHECKPOINT_DIR
from spikeport.reports.html import STYLE, json_default, png, table
from spikeport.toolchain.costs.metrics import count_work
from spikeport.toolchain.hardware.profiles import get_profile
from spikeport.toolchain.ir.snn import SNNGraph
from spikeport.toolchain.passes.methods import apply_method

PROFILE = "loihi2"  # the target every configuration is quantized for
HELD_OUT = 500  # the last training samples: the zoo's recipe never fits them (models/train.py)
METHODS = ("qcfs", "ftbc", "cos", "tpp", "ftbc+tpp", "graded")


def family(base: str) -> list[str]:
    """The bundled checkpoints of ``base``'s family: itself, its NQ twin and the twins at other L."""
    names = [base, f"{base}_nq"] + [f"{base}{nq}_l{L}" for L in (4, 2) for nq in ("", "_nq")]
    return [n for n in names if (CHECKPOINT_DIR / f"{n}.pt").is_file()]


def energy(q: SNNGraph, trace) -> dict:
    """Messages, synaptic operations and energy (uJ) per inference from a recorded ``sim`` trace."""
    w = count_work(q, trace).per_inference(q.profile.energy)
    return {k: w[k] for k in ("messages", "synops", "energy_uJ")}


def _variant(prep, method: str, T: int, levels: int, fit: tuple[np.ndarray, np.ndarray],
             ftbc: dict[int, SNNGraph]) -> SNNGraph:
    """The float SNN of one configuration; ``ftbc`` caches the FTBC calibration per T (ftbc and
    ftbc+tpp share it)."""
    graph, (x_fit, y_fit) = prep.model.graph, fit
    if method in ("ftbc", "ftbc+tpp"):
        if T not in ftbc:
            ftbc[T] = apply_method(prep.snn, "ftbc", T, graph=graph, calib_x=x_fit, calib_y=y_fit,
                                   device=prep.device)
        return apply_method(ftbc[T], "tpp", T, seed=0) if method == "ftbc+tpp" else ftbc[T]
    return apply_method(prep.snn, method, T, rho=levels, seed=0)


def study(base: str = "cnn_mnist", Ts: tuple[int, ...] = (1, 2, 4), methods: tuple[str, ...] = METHODS,
          lava_samples: int = 16, test_samples: int | None = None, progress: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Every configuration of ``base``'s family at every T; the recommendation per T."""
    rows, anns = [], []
    kept: dict[tuple, tuple[SNNGraph, np.ndarray]] = {}  # key(row) -> (integer network, test inputs)
    names = family(base)
    bar = tqdm(total=len(names) * len(Ts) * len(methods), desc=f"lowlat {base}", unit="config",
               disable=not progress, file=sys.stderr)
    for name in names:
        prep = prepare(name)
        d = prep.data
        cfg = prep.model.meta.get("train_config", {})
        levels = int(cfg.get("levels") or 8)
        trained = "nq" if cfg.get("noise") else "qcfs"
        fit = (d.x_train[:-HELD_OUT], d.y_train[:-HELD_OUT])
        x_val, y_val = d.x_train[-HELD_OUT:], d.y_train[-HELD_OUT:]
        x, y = d.x_test[:test_samples], d.y_test[:test_samples]
        calibrated: dict[int, SNNGraph] = {}
        anns.append({"model": name, "L": levels, "trained": trained, "ann_test": ann_accuracy(prep.model.graph, x, y),
                     "ann_held_out": ann_accuracy(prep.model.graph, x_val, y_val)})
        for T in Ts:
            for method in methods:
                bar.set_description(f"{name} T={T} {method}")
                t0 = time.perf_counter()
                dep = prep.deploy(_variant(prep, method, T, levels, fit, calibrated), T, PROFILE)
                val = run(dep, x_val, "sim", record=True)
                test = run(dep, x, "sim")
                rows.append({"model": name, "L": levels, "trained": trained, "method": method, "T": T,
                             "held_out": float(np.mean(val.predictions == y_val)),
                             "test": float(np.mean(test.predictions == y)), "latency": dep.timing.latency,
                             **energy(dep.snn, val), "seconds": time.perf_counter() - t0})
                kept[key(rows[-1])] = (dep, x)
                bar.update(1)
    bar.close()
    best = recommend(rows, Ts)
    binary = recommend([r for r in rows if r["method"] != "graded"], Ts)  # what a chip without graded spikes runs
    checks = []
    picks = {key(r): r for r in [*best.values(), *binary.values()]}
    for k, r in picks.items():
        if not lava_samples:
            break
        dep, x = kept[k]  # the very network the table measured
        ver, _ = verify(dep, x[:lava_samples], targets=("sim", "lava"))
        checks += [{"T": r["T"], "config": label(r), **v.to_dict()} for v in ver]
        log(f"lowlat: T={r['T']} {label(r)}: " + "; ".join(v.line() for v in ver))
    return {"base": base, "Ts": list(Ts), "held_out": HELD_OUT, "anns": anns, "rows": rows,
            "recommended": {str(T): r for T, r in best.items()},
            "recommended_binary": {str(T): r for T, r in binary.items()}, "checks": checks,
            "all_checks_exact": all(c["exact"] for c in checks),
            "energy_sources": get_profile(PROFILE).energy.to_dict()}


def key(r: dict) -> tuple:
    """What identifies a configuration's row: its T, trained network and method."""
    return r["T"], r["model"], r["method"]


def label(r: dict) -> str:
    trained = "NQ" if r["trained"] == "nq" else "QCFS"
    return f"{trained} L={r['L']} + {r['method']}"


def recommend(rows: list[dict], Ts) -> dict[int, dict]:
    """Per T: the best held-out accuracy, ties broken by energy."""
    return {T: max((r for r in rows if r["T"] == T), key=lambda r: (r["held_out"], -r["energy_uJ"])) for T in Ts}


def pareto(rows: list[dict]) -> list[dict]:
    """Configurations no other one beats on test accuracy, latency and energy at once."""
    def dominated(r):
        return any(o["test"] >= r["test"] and o["latency"] <= r["latency"] and o["energy_uJ"] <= r["energy_uJ"]
                   and (o["test"], -o["latency"], -o["energy_uJ"]) != (r["test"], -r["latency"], -r["energy_uJ"])
                   for o in rows)
    return [r for r in rows if not dominated(r)]


def markdown(res: dict) -> str:
    Ts = res["Ts"]
    best_ann = max(res["anns"], key=lambda a: a["ann_test"])
    lines = [f"Best ANN of the family: {best_ann['model']} {100 * best_ann['ann_test']:.1f} % "
             f"(held-out {100 * best_ann['ann_held_out']:.1f} %).", "",
             "| recommended at T | configuration | held-out | test | latency (steps) | messages | energy (uJ) |",
             "|---|---|---|---|---|---|---|"]
    for key, what in (("recommended", ""), ("recommended_binary", " (binary spikes)")):
        for T in Ts:
            r = res[key][str(T)]
            lines.append(f"| {T}{what} | {label(r)} | {100 * r['held_out']:.1f} % | {100 * r['test']:.1f} % | "
                         f"{r['latency']} | {r['messages']:,.0f} | {r['energy_uJ']:.3g} |")
    lines += ["", "| trained | L | ANN | method | " + " | ".join(f"T={T} test (held-out)" for T in Ts) + " |",
              "|---|---|---|---|" + "---|" * len(Ts)]
    anns = {a["model"]: a for a in res["anns"]}
    keyed: dict[tuple, dict] = {}
    for r in res["rows"]:
        keyed.setdefault((r["model"], r["method"]), {})[r["T"]] = r
    for (model, method), cells in keyed.items():
        a = anns[model]
        vals = [f"{100 * cells[T]['test']:.1f} ({100 * cells[T]['held_out']:.1f})" if T in cells else "" for T in Ts]
        lines.append(f"| {a['trained'].upper()} | {a['L']} | {100 * a['ann_test']:.1f} | {method} | " + " | ".join(vals)
                     + " |")
    return "\n".join(lines)


def plot(res: dict) -> str:
    """Test accuracy against pipelined latency, colour = energy per inference, the Pareto front
    (accuracy, latency, energy) circled, the picks named; the right panel zooms on the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    front = pareto(rows)
    best = max(a["ann_test"] for a in res["anns"])
    picks = {key(r): r for which in ("recommended", "recommended_binary") for r in res[which].values()}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, low in zip(axes, (0.0, 100 * best - 5)):
        shown = [r for r in rows if 100 * r["test"] >= low]
        sc = ax.scatter([r["latency"] for r in shown], [100 * r["test"] for r in shown],
                        c=[r["energy_uJ"] for r in shown], cmap="viridis", s=28, alpha=0.85,
                        vmin=min(r["energy_uJ"] for r in rows), vmax=max(r["energy_uJ"] for r in rows))
        on = [r for r in front if 100 * r["test"] >= low]
        ax.scatter([r["latency"] for r in on], [100 * r["test"] for r in on], s=90, facecolors="none",
                   edgecolors="red", label="Pareto front (accuracy, latency, energy)")
        ax.axhline(100 * best, color="gray", lw=1, ls="--", label=f"best ANN {100 * best:.1f} %")
        ax.set_xlabel("latency: steps from first input to answer (pipelined)")
        ax.grid(alpha=0.3)
    for i, r in enumerate(sorted(picks.values(), key=lambda r: (r["T"], r["latency"]))):
        axes[1].annotate(f"pick T={r['T']}: {label(r)}", (r["latency"], 100 * r["test"]), fontsize=7,
                         xytext=(8, -14 - 9 * (i % 3)), textcoords="offset points",
                         arrowprops={"arrowstyle": "-", "lw": 0.5})
    axes[0].set_ylabel("test accuracy (%), integer sim")
    axes[0].set_title("every configuration", fontsize=10)
    axes[1].set_title("within 5 points of the best ANN; the held-out picks named", fontsize=10)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.colorbar(sc, ax=axes, label="energy per inference (uJ, Loihi figures)")
    out = png(fig)
    plt.close(fig)
    return out


def write(res: dict, out: Path) -> None:
    import html

    from spikeport.toolchain.files import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "lowlat.json", json.dumps(res, indent=1, default=json_default))
    md = markdown(res)
    write_atomic(out / "lowlat.md", md + "\n")
    ordered = sorted(res["rows"], key=lambda r: (r["T"], -r["held_out"]))
    rows = [[label(r), r["T"], f"{100 * r['held_out']:.1f}", f"{100 * r['test']:.1f}", r["latency"],
             f"{r['messages']:,.0f}", f"{r['energy_uJ']:.3g}"] for r in ordered]
    best = {key(r) for r in [*res["recommended"].values(), *res["recommended_binary"].values()]}
    page = (f"<!doctype html><meta charset='utf-8'><title>spikeport lowlat {html.escape(res['base'])}</title>"
            f"<style>{STYLE}</style><h1>Very few time steps: {html.escape(res['base'])} and its twins</h1>"
            f"<p>Recommended per T on {res['held_out']} held-out training samples; test accuracy never chooses. "
            f"Energy: {html.escape(res['energy_sources']['loihi']['source'])}; "
            f"{html.escape(res['energy_sources']['graded']['assumption'])}.</p>"
            f"<img src='{plot(res)}'><pre>{html.escape(md)}</pre>"
            + table(rows, ["configuration", "T", "held-out %", "test %", "latency", "messages", "energy uJ"],
                    ["ok" if key(r) in best else "" for r in ordered]))
    write_atomic(out / "lowlat.html", page)
