"""``spikeport methods``: the seed methods side by side on a bundled model.

For every T: the ANN, QCFS, QCFS+FTBC, QCFS+COS, TPP (mean and spread over seeds), graded spikes,
the NQ-trained twin and the permutation diagnostic, as float (``torch_float``) and integer rows (``torch_int`` and
``sim`` on the whole test split, ``lava`` on a subset). Integer targets are checked against each
other: sim's and torch_int's summed logits must agree on every test sample, their spikes on a
subset (every layer, step and neuron), and Lava must equal both where it runs.

Latency is reported honestly: ``latency`` is the number of steps from a sample's first input to
its last readout step in the pipelined (Lava) network, which counts every layer's hop and every
method's own delay (COS: rho per layer, TPP: T per layer). For COS the papers' "T" excludes the
pre-run; the table shows T + rho next to it.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from spikeport.api import Prepared, accuracy, ann_accuracy, prepare, run, run_float, verify
from spikeport.models.zoo import CHECKPOINT_DIR
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.snn import SNNGraph
from spikeport.toolchain.oracle.reference import run_reference

METHOD_ORDER = ["qcfs", "ftbc", "cos", "tpp", "graded", "nq", "permute"]


@dataclass
class MethodTable:
    model: str
    dataset: str
    levels: int | None
    n_test: int
    rows: list[dict] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: dict = field(default_factory=dict)

    def add(self, method: str, target: str, T: int | None, accs: list[float], n: int, **extra) -> None:
        self.rows.append({"method": method, "target": target, "T": T, "acc": float(np.mean(accs)),
                          "acc_std": float(np.std(accs)) if len(accs) > 1 else None, "runs": len(accs), "n": n,
                          **extra})

    def markdown(self) -> str:
        """One row per (method, target), one column per T; TPP as mean ± std."""
        Ts = sorted({r["T"] for r in self.rows if r["T"] is not None})
        keyed: dict[tuple, dict] = {}
        for r in self.rows:
            keyed.setdefault((r["method"], r["target"], r["n"]), {})[r["T"]] = r
        head = "| method | target | n | " + " | ".join(f"T={t}" for t in Ts) + " |"
        lines = [head, "|" + "---|" * (3 + len(Ts))]
        order = {m: i for i, m in enumerate(["ann", *METHOD_ORDER])}
        targets = {t: i for i, t in enumerate(["ann", "torch_float", "torch_int", "sim", "lava"])}
        for (method, target, n), cells in sorted(keyed.items(), key=lambda kv: (
                order.get(kv[0][0].split(" ")[0], 99), kv[0][0], targets[kv[0][1]], -kv[0][2])):
            if None in cells:
                vals = [f"{100 * cells[None]['acc']:.2f}"] + [""] * (len(Ts) - 1)
            else:
                vals = []
                for t in Ts:
                    r = cells.get(t)
                    if r is None:
                        vals.append("")
                    elif r["acc_std"] is not None:
                        vals.append(f"{100 * r['acc']:.2f} ± {100 * r['acc_std']:.2f}")
                    else:
                        vals.append(f"{100 * r['acc']:.2f}")
            lines.append(f"| {method} | {target} | {n} | " + " | ".join(vals) + " |")
        lat = {}
        for r in self.rows:
            if "latency" in r and r["target"] == "sim":
                lat.setdefault(r["method"].split(" ")[0], {})[r["T"]] = r["latency"]
        if lat:
            lines += ["", "| method | " + " | ".join(f"T={t}" for t in Ts) + " |", "|" + "---|" * (1 + len(Ts))]
            for m in sorted(lat, key=lambda m: order.get(m, 99)):
                lines.append(f"| {m} latency (steps, pipelined) | " +
                             " | ".join(str(lat[m].get(t, "")) for t in Ts) + " |")
        return "\n".join(lines)


def _integer_rows(table: MethodTable, label: str, dep: Deployment, x, y, verify_samples: int,
                  tick: Callable[[int], None], oracle_samples: int | None = None) -> tuple[float, float]:
    """sim on the whole split and torch_int on the first ``oracle_samples`` (default: all; their logits
    must agree on every one), spikes verified on the first ``verify_samples``; returns (torch_int acc,
    sim acc)."""
    n_oracle = len(x) if oracle_samples is None else min(oracle_samples, len(x))
    T = dep.T
    t0 = time.perf_counter()
    ti = run(dep, x[:n_oracle], "torch_int")
    t_int = time.perf_counter() - t0
    tick(n_oracle)
    t0 = time.perf_counter()
    ts = run(dep, x, "sim")
    t_sim = time.perf_counter() - t0
    tick(len(x))
    same = bool(np.array_equal(ti.final, ts.final[:n_oracle]))
    rows, _ = verify(dep, x[:verify_samples], targets=("sim",))
    what = "every test sample" if n_oracle == len(x) else f"the first {n_oracle} test samples"
    table.checks.append({"method": label, "T": T, "check": f"sim vs torch_int logits, {what}",
                         "exact": same, "samples": n_oracle})
    table.checks += [{"method": label, "T": T, "check": "spikes", **r.to_dict()} for r in rows]
    latency = dep.timing.latency
    a_int, a_sim = accuracy(ti, y[:n_oracle]), accuracy(ts, y)
    table.add(label, "torch_int", T, [a_int], n_oracle, seconds=t_int)
    table.add(label, "sim", T, [a_sim], len(x), latency=latency, seconds=t_sim)
    return a_int, a_sim


def nq_twin(model: str) -> str:
    """The NQ-trained twin's name: ``cnn_mnist_l4`` -> ``cnn_mnist_nq_l4``, ``cnn_mnist`` -> ``cnn_mnist_nq``."""
    m = re.fullmatch(r"(.+)_l(\d+)", model)
    return f"{m.group(1)}_nq_l{m.group(2)}" if m else f"{model}_nq"


def compare_methods(model: str = "cnn_mnist", Ts: tuple[int, ...] = (1, 2, 4, 8, 16, 32), rho: int = 4,
                    tpp_seeds: int = 5, lava_Ts: tuple[int, ...] = (2, 8), lava_samples: int = 16,
                    verify_samples: int = 100, test_samples: int | None = None, calib_samples: int = 512,
                    progress: bool = True, baseline: bool = True, prepared: Prepared | None = None,
                    data: str | None = None, oracle_samples: int | None = None,
                    methods: tuple[str, ...] = tuple(METHOD_ORDER)) -> MethodTable:
    """Run every method on ``model`` and its NQ twin (:func:`nq_twin`) for every T. ``baseline=False``
    leaves out the rows of plain QCFS conversion and its permuted-order ablation (for a caller that
    has them already: the demo); ``prepared``: ``api.prepare(model)`` done already; ``data``: the data
    set (default: the model's); ``oracle_samples``: run the oracle (torch_int) on that many test samples
    only (sim runs them all; their logits must agree on those); ``methods``: a subset of METHOD_ORDER."""
    prep = prepared or prepare(model, data=data, calib=calib_samples)
    loaded, data_set, snn = prep.model, prep.data, prep.snn
    x, y = data_set.x_test[:test_samples], data_set.y_test[:test_samples]
    nq_name = nq_twin(model)
    nq = (prepare(nq_name, data=data, calib=calib_samples)
          if "nq" in methods and (CHECKPOINT_DIR / f"{nq_name}.pt").is_file() else None)
    table = MethodTable(model, data_set.name, loaded.meta.get("train_config", {}).get("levels"), len(x))
    table.add("ann", "ann", None, [ann_accuracy(loaded.graph, x, y)], len(x))
    table.add("ann (unquantized)", "ann", None, [ann_accuracy(loaded.graph, x, y, clip=True)], len(x))
    if nq is not None:
        table.add("ann (NQ-trained)", "ann", None, [ann_accuracy(nq.model.graph, x, y)], len(x))
    else:
        table.notes["nq"] = f"no bundled {nq_name} checkpoint"
    snn_nq = nq.snn if nq is not None else None
    n_methods = 5 + tpp_seeds + (1 if nq is not None else 0)
    total = len(Ts) * len(x) * (3 * n_methods + 2) + len(lava_Ts) * 15 * min(lava_samples, len(x)) // 4
    bar = tqdm(total=total, desc=f"methods {model}", unit="sample", disable=not progress, file=sys.stderr)
    tick = bar.update
    for T in Ts:
        variants: list[tuple[str, SNNGraph, dict]] = []
        if baseline and "qcfs" in methods:
            variants.append(("qcfs", snn, {}))
        if "ftbc" in methods:
            t0 = time.perf_counter()
            ftbc = prep.method("ftbc", T)
            table.timings[f"ftbc_calibration_T{T}_s"] = time.perf_counter() - t0
            variants.append(("ftbc", ftbc, {"alpha": ftbc.meta["ftbc"]["alpha"]}))
        if "cos" in methods:
            variants.append((f"cos (rho={rho})", prep.method("cos", T, rho=rho), {"T_plus_rho": T + rho}))
        if "graded" in methods:
            variants.append(("graded", prep.method("graded", T), {}))
        if snn_nq is not None:
            variants.append(("nq", snn_nq, {}))
        for label, s, extra in variants:
            bar.set_description(f"{model} T={T} {label}")
            t0 = time.perf_counter()
            acc = accuracy(run_float(s, x, T), y)
            table.add(label, "torch_float", T, [acc], len(x), seconds=time.perf_counter() - t0, **extra)
            tick(len(x))
            _integer_rows(table, label, prep.deploy(s, T), x, y, verify_samples, tick, oracle_samples)
        if "tpp" in methods:
            bar.set_description(f"{model} T={T} tpp")
            accs: dict[str, list[float]] = {"torch_float": [], "torch_int": [], "sim": []}
            for seed in range(tpp_seeds):
                s = prep.method("tpp", T, seed=seed)
                accs["torch_float"].append(accuracy(run_float(s, x, T), y))
                tick(len(x))
                sub = MethodTable(model, data_set.name, None, len(x))
                a_int, a_sim = _integer_rows(sub, f"tpp seed {seed}", prep.deploy(s, T), x, y, verify_samples, tick,
                                             oracle_samples)
                table.checks += sub.checks
                accs["torch_int"].append(a_int)
                accs["sim"].append(a_sim)
                latency = sub.rows[-1]["latency"]
                n_int = sub.rows[0]["n"]
            for target, vals in accs.items():
                table.add("tpp", target, T, vals, n_int if target == "torch_int" else len(x),
                          **({"latency": latency} if target == "sim" else {}))
        if baseline and "permute" in methods:
            bar.set_description(f"{model} T={T} permute")
            table.add("permute", "torch_float", T, [accuracy(run_reference(snn, x, T, permute_seed=0), y)], len(x))
            tick(len(x))
            q = prep.quantize(snn, T)
            table.add("permute", "torch_int", T, [accuracy(run_reference(q, x, T, permute_seed=0), y)], len(x))
            tick(len(x))
        if T in lava_Ts and lava_samples:
            n = min(lava_samples, len(x))
            for label, method in [("qcfs", "qcfs"), ("ftbc", "ftbc"), (f"cos (rho={rho})", "cos"), ("tpp", "tpp"),
                                  ("graded", "graded")]:
                if method not in methods:
                    continue
                s = snn if method == "qcfs" else prep.method(method, T, rho=rho, seed=0)
                bar.set_description(f"{model} T={T} lava {label}")
                t0 = time.perf_counter()
                rows, traces = verify(prep.deploy(s, T), x[:n], targets=("sim", "lava"))
                table.timings[f"lava_{label}_T{T}_s"] = time.perf_counter() - t0
                table.checks += [{"method": label, "T": T, "check": "spikes", **r.to_dict()} for r in rows]
                name = f"{label} (seed 0)" if label == "tpp" else label
                table.add(name, "lava", T, [accuracy(traces["lava"], y[:n])], n)
                table.add(name, "sim", T, [accuracy(traces["sim"], y[:n])], n)
                tick(3 * n // 4)
    bar.close()
    table.notes["all_checks_exact"] = all(c["exact"] for c in table.checks)
    return table


# The published CIFAR-10 figures beside which ``spikeport bench --suite cifar10`` puts its own (float SNNs,
# the papers' own ANNs and training). Sources: the QCFS paper (Bu et al., ICLR 2022, Tables 1-2; figures
# as recalled in the project's reference notes, not re-read from the PDF), the QCFS+FTBC rows of a third-
# party re-implementation and the NQ authors' README (hzp2022/ANN2SNN_NQ; its ANN column is the noisy ANN).
PUBLISHED_CIFAR10: dict[str, dict[str, dict]] = {
    "resnet20_cifar10": {
        "QCFS (paper, recalled)": {"ann": 91.77, 1: 62.43, 2: 73.20, 4: 83.75, 8: 89.55, 16: 91.62, 32: 92.24},
        "NQ (README)": {"ann": 85.18, 1: 65.99, 2: 77.30, 4: 84.54, 8: 87.43, 16: 88.26},
    },
    "vgg16_cifar10": {
        "QCFS (paper, recalled)": {"ann": 95.52, 1: 88.41, 2: 91.18, 4: 93.96, 8: 94.95, 16: 95.40, 32: 95.54},
        "QCFS+FTBC (third party)": {1: 89.47, 2: 91.96, 4: 94.29, 8: 95.28, 16: 95.46, 32: 95.52},
        "NQ (README)": {"ann": 95.21, 1: 88.46, 2: 91.93, 4: 94.80, 8: 95.48, 16: 95.70},
    },
}


def published_markdown(arch: str, Ts: tuple[int, ...]) -> str:
    """The published float-SNN figures for ``arch`` as a table with the columns of ours (T = ...)."""
    rows = PUBLISHED_CIFAR10.get(arch, {})
    if not rows:
        return ""
    lines = ["| published (float SNN, their ANN) | ANN | " + " | ".join(f"T={t}" for t in Ts) + " |",
             "|" + "---|" * (2 + len(Ts))]
    for name, r in rows.items():
        lines.append(f"| {name} | {r.get('ann', '')} | " + " | ".join(str(r.get(t, "")) for t in Ts) + " |")
    return "\n".join(lines)


def row_times(table: MethodTable) -> str:
    """Seconds per row (each method x target x T), for the CIFAR suite's time budget."""
    timed = [r for r in table.rows if "seconds" in r]
    lines = ["| method | target | T | n | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['target']} | {r['T']} | {r['n']} | {r['seconds']:.1f} |" for r in timed]
    return "\n".join(lines)


def relu_study(spec, data: str | None = None, mean: list[float] | None = None, std: list[float] | None = None,
               Ts: tuple[int, ...] = (4, 8, 16, 32, 64), percentiles: tuple[float, ...] = (99.0, 99.9, 99.99, 100.0),
               test_samples: int | None = 1000, held_out: int = 1000, oracle_samples: int = 100, calib: int = 256,
               log: Callable[[str], None] | None = None) -> dict:
    """A network trained elsewhere with plain ReLU, whose thresholds come from data: the integer SNN's
    accuracy (sim) against T with the default threshold percentile (99.9), with the percentile that does
    best on held-out training samples at that T (the last ``held_out`` of the training split, never
    used for calibration), and with FTBC on top of that; torch_int on the first ``oracle_samples`` must
    give sim's logits. Returns rows, the ANN's accuracy and, per row kind, the smallest T within 1 point."""
    from spikeport.toolchain.passes.convert import convert
    from spikeport.toolchain.passes.methods import apply_method

    log = log or (lambda _s: None)
    base = prepare(spec, data=data, calib=calib, mean=mean, std=std)
    graph, ds = base.model.graph, base.data
    x, y = ds.x_test[:test_samples], ds.y_test[:test_samples]
    xh, yh = ds.x_train[-held_out:], ds.y_train[-held_out:]
    ann = ann_accuracy(graph, x, y)
    snns = {pc: (base.snn if pc == 99.9 else convert(graph, base.calib, percentile=pc)) for pc in percentiles}
    rows, checks = [], []

    def test_row(kind: str, dep: Deployment, **extra) -> None:
        T = dep.T
        t0 = time.perf_counter()
        tr = run(dep, x, "sim")
        ti = run(dep, x[:oracle_samples], "torch_int")
        checks.append({"kind": kind, "T": T, "exact": bool(np.array_equal(ti.final, tr.final[:oracle_samples])),
                       "samples": min(oracle_samples, len(x))})
        rows.append({"kind": kind, "T": T, "acc": accuracy(tr, y), "n": len(x),
                     "seconds": round(time.perf_counter() - t0, 1), **extra})
        log(f"relu T={T} {kind}: {100 * rows[-1]['acc']:.2f}% ({rows[-1]['seconds']:.0f} s)")

    for T in Ts:
        deps = {pc: base.deploy(s, T) for pc, s in snns.items()}
        held = {pc: accuracy(run(dep, xh, "sim"), yh) for pc, dep in deps.items()}
        best = max(percentiles, key=lambda pc: (held[pc], -abs(pc - 99.9)))
        test_row("percentile 99.9", deps[99.9], held_out_acc=held.get(99.9))
        test_row("best percentile (held-out)", deps[best], percentile=best, held_out_acc=held[best])
        ftbc = apply_method(snns[best], "ftbc", T, graph=graph, calib_x=ds.x_train[:-held_out],
                            calib_y=ds.y_train[:-held_out])
        test_row("best percentile + FTBC", base.deploy(ftbc, T), percentile=best,
                 alpha=ftbc.meta["ftbc"]["alpha"])
    within = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        ok = [r["T"] for r in rows if r["kind"] == kind and ann - r["acc"] <= 0.01]
        within[kind] = min(ok) if ok else None
    return {"model": base.model.name, "dataset": ds.name, "ann_acc": ann, "n_test": len(x), "rows": rows,
            "checks": checks, "T_within_1_point": within, "all_checks_exact": all(c["exact"] for c in checks)}


def relu_markdown(res: dict) -> str:
    Ts = sorted({r["T"] for r in res["rows"]})
    lines = [f"{res['model']} on {res['dataset']}: ANN {100 * res['ann_acc']:.2f}% ({res['n_test']} test samples); "
             "integer SNN on sim", "", "| thresholds | " + " | ".join(f"T={t}" for t in Ts) + " | T within 1 point |",
             "|" + "---|" * (2 + len(Ts))]
    for kind, T1 in res["T_within_1_point"].items():
        cells = {r["T"]: r for r in res["rows"] if r["kind"] == kind}
        vals = [f"{100 * cells[t]['acc']:.2f}" + (f" (p{cells[t]['percentile']:g})" if "percentile" in cells[t]
                                                  and kind.startswith("best percentile (") else "") for t in Ts]
        lines.append(f"| {kind} | " + " | ".join(vals) + f" | {T1 if T1 else f'> {Ts[-1]}'} |")
    return "\n".join(lines)
