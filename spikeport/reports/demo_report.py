"""Reports a machine can read (``report.json``) and a person can open (``report.html``)."""

from __future__ import annotations

import datetime as _dt
import html
import json
import platform
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from spikeport.models.data import SPLIT_SEED, Dataset
from spikeport.reports.html import STYLE, accuracy_plot, json_default, png, table
from spikeport.reports.quantization import html_section
from spikeport.toolchain.files import write_atomic
from spikeport.toolchain.ir.snn import SNNGraph

TARGET_ORDER = ["ann", "torch_float", "torch_int", "sim", "lava"]


@dataclass
class Report:
    created: str
    model: dict
    data: dict
    profile: str
    accuracy: list[dict] = field(default_factory=list)
    verification: list[dict] = field(default_factory=list)
    quantization: dict[str, list[dict]] = field(default_factory=dict)  # per T
    overflow: list[dict] = field(default_factory=list)
    firing: list[dict] = field(default_factory=list)
    lava: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    snn_summary: str = ""
    methods: dict = field(default_factory=dict)  # spikeport.studies.methods_table.MethodTable as a dict
    quantization_report: dict = field(default_factory=dict)  # spikeport.reports.quantization at one T
    methods_markdown: str = ""

    @classmethod
    def new(cls, loaded, data: Dataset, profile: str, calib_samples: int) -> Report:
        import torch

        meta = loaded.meta
        return cls(
            created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            model={"name": loaded.name, "arch": meta.get("arch"), "checkpoint": meta,
                   "qcfs_levels": meta.get("train_config", {}).get("levels")},
            data={"dataset": data.name, "n_train": len(data.x_train), "n_test": len(data.x_test),
                  "split": f"numpy default_rng({SPLIT_SEED}) permutation; the last {len(data.x_test)} are the "
                           "test split", "calibration_samples": calib_samples,
                  "calibration_from": "the first training samples"},
            profile=profile,
            environment={"spikeport": version("spikeport"), "python": platform.python_version(),
                         "torch": torch.__version__, "numpy": np.__version__, "machine": platform.machine()})

    def add_accuracy(self, method: str, target: str, T: int | None, acc: float, n: int) -> None:
        self.accuracy.append({"method": method, "target": target, "T": T, "acc": acc, "n": n})

    def add_overflow(self, target: str, T: int, overflow: dict[str, int]) -> None:
        self.overflow.append({"target": target, "T": T, "events": dict(overflow),
                              "total": int(sum(overflow.values()))})

    def add_rates(self, T: int, counts: dict[str, np.ndarray], snn: SNNGraph) -> None:
        for p in snn.hidden:
            if p.name in counts:
                rate = float(np.mean(counts[p.name])) / (p.size * T)
                self.firing.append({"T": T, "population": p.name, "rate": rate,
                                    "spikes_per_sample": float(np.mean(counts[p.name]))})


def accuracy_table(report: Report) -> str:
    """Text table: one row per (method, target, samples), one column per T."""
    Ts = sorted({r["T"] for r in report.accuracy if r["T"] is not None})
    rows: dict[tuple, dict] = {}
    for r in report.accuracy:
        key = (r["method"], r["target"], r["n"])
        rows.setdefault(key, {})[r["T"]] = r["acc"]
    head = f"{'method':<8} {'target':<12} {'n':>5} " + " ".join(f"{'T=' + str(t):>7}" for t in Ts)
    lines = [head, "-" * len(head)]
    for (method, target, n), accs in sorted(rows.items(), key=lambda kv: (TARGET_ORDER.index(kv[0][1]), -kv[0][2])):
        if None in accs:
            cells = f"{100 * accs[None]:>7.2f}  (ANN, no T)"
        else:
            cells = " ".join(f"{100 * accs[t]:>7.2f}" if t in accs else f"{'':>7}" for t in Ts)
        lines.append(f"{method:<8} {target:<12} {n:>5} {cells}")
    return "\n".join(lines)


def _plots(report: Report) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for target in TARGET_ORDER[1:]:
        pts = sorted((r["T"], r["acc"]) for r in report.accuracy if r["target"] == target and r["method"] == "qcfs"
                     and r["T"] is not None and r["n"] == report.data["n_test"])
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", label=target)
    graded = sorted((r["T"], r["acc"]) for r in report.accuracy if r["target"] == "sim" and r["method"] == "graded"
                    and r["n"] == report.data["n_test"])
    if graded:
        ax.plot([p[0] for p in graded], [100 * p[1] for p in graded], marker="s", ls="--", label="graded spikes (sim)")
    for r in report.accuracy:
        if r["target"] == "ann":
            ax.axhline(100 * r["acc"], ls="--" if r["method"] == "qcfs" else ":", color="gray",
                       label=f"ANN ({r['method']})")
    lava = [r for r in report.accuracy if r["target"] == "lava"]
    for r in lava:
        ax.scatter([r["T"]], [100 * r["acc"]], marker="*", s=120, color="black", zorder=5,
                   label=f"lava (n={r['n']})")
    out["accuracy"] = accuracy_plot(fig, ax, "time steps T", "test accuracy (%)")
    if report.quantization:
        fig, ax = plt.subplots(figsize=(6.4, 3.0))
        Ts = sorted(report.quantization, key=int)
        layers = [q["population"] for q in report.quantization[Ts[0]]]
        width = 0.8 / len(Ts)
        for i, T in enumerate(Ts):
            used = [100 * q["headroom_used"] for q in report.quantization[T]]
            ax.bar(np.arange(len(layers)) + i * width, used, width, label=f"T={T}")
        ax.axhline(100 / 1.25, color="red", ls="--", lw=1, label="quantizer target")
        ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, layers)
        ax.set_ylabel("calibrated |U| / head-room (%)")
        ax.legend(fontsize=7, ncol=3)
        ax.grid(alpha=0.3, axis="y")
        out["headroom"] = png(fig)
        plt.close(fig)
    rows = [r for r in report.methods.get("rows", []) if r["target"] == "sim" and r["T"] is not None
            and r["n"] == report.methods.get("n_test")]
    if rows:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for m in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["T"], r["acc"], r["acc_std"] or 0.0) for r in rows if r["method"] == m)
            ax.errorbar([p[0] for p in pts], [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts],
                        marker="o", capsize=3, label=m)
        ann = [r for r in report.methods["rows"] if r["method"] == "ann"]
        if ann:
            ax.axhline(100 * ann[0]["acc"], ls="--", color="gray", label="ANN")
        out["methods"] = accuracy_plot(fig, ax, "time steps T (COS adds rho, TPP doubles it: see the latency table)",
                                       "integer SNN on sim (%)")
    return out


def _methods_html(report: Report, plots: dict[str, str]) -> str:
    if not report.methods:
        return ""
    tables, current = [], []
    for ln in [*report.methods_markdown.splitlines(), ""]:
        if ln.startswith("|"):
            if not ln.startswith("|---"):
                current.append([c.strip() for c in ln.strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    html_tables = "".join(table(t[1:], t[0]) for t in tables)
    img = f'<img src="{plots["methods"]}" alt="methods against T">' if "methods" in plots else ""
    return ("<h2>Seed methods</h2><p>Integer accuracy of each method on sim (whole test split); torch_int rows are "
            "identical by the checks below. COS's latency includes its pre-run, TPP's its accumulation phase. "
            f"Integer checks: {len(report.methods['checks'])}, all exact: {report.methods['notes'].get('all_checks_exact')}."
            f"</p>{img}{html_tables}")


def to_html(report: Report) -> str:
    plots = _plots(report)
    ver_rows, ver_cls = [], []
    for v in report.verification:
        d = v["first_divergence"]
        where = "—" if d is None else (f"layer {d['layer']}, step {d['step']}, sample {d['sample']}, neuron "
                                       f"{d['neuron']}: expected {d['expected']}, got {d['got']}")
        ver_rows.append([v["target"], v["against"], v["steps"], v["samples"], v["layers"], f"{v['values']:,}",
                         f"{v['spikes']:,}", "exact" if v["exact"] else "MISMATCH", where])
        ver_cls.append("ok" if v["exact"] else "bad")
    q_html = []
    for T, layers in report.quantization.items():
        rows = []
        for q in layers:
            exps = ", ".join(f"{p['source']}: 2^{p['weight_exp']} ({p['clipped']} clipped, rms err "
                             f"{100 * p['rel_rms_error']:.2f}%)" if not p.get("analog") else "analog input"
                             for p in q["projections"])
            rows.append([q["population"], q["kind"], "x".join(map(str, q["shape"])),
                         f"{q['threshold_float']:.4g}" if q["kind"] == "if" else "—",
                         f"2^{q['threshold_exp']}" if q["threshold_exp"] is not None else "—",
                         f"{q['unit']:.3g}", f"{100 * q['headroom_used']:.1f}%", exps])
        q_html.append(f"<h3>T = {T}</h3>" + table(
            rows, ["population", "kind", "shape", "threshold", "integer threshold", "membrane unit",
                   "head-room used", "incoming weights (exponent)"]))
    ovf = [o for o in report.overflow if o["total"]]
    ovf_html = ("<p class='ok'>No membrane overflow on any target.</p>" if not ovf else
                table([[o["target"], o["T"], o["total"], json.dumps(o["events"])] for o in ovf],
                       ["target", "T", "events", "per layer"]))
    acc = "<pre>" + html.escape(accuracy_table(report)) + "</pre>"
    ck = report.model.get("checkpoint", {})
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>spikeport report: {html.escape(report.model['name'])}</title>
<style>{STYLE}</style></head><body>
<h1>spikeport report: {html.escape(report.model['name'])}</h1>
<p>Created {report.created} · data set <b>{html.escape(report.data['dataset'])}</b> ({report.data['n_test']} test samples,
{html.escape(report.data['split'])}) · target profile <b>{report.profile}</b> · ANN trained with QCFS L={report.model.get('qcfs_levels')}
(ANN test accuracy {100 * ck.get('ann_test_acc', float('nan')):.2f}%, unquantized activations {100 * ck.get('ann_clip_test_acc', float('nan')):.2f}%).</p>
<h2>Accuracy</h2><img src="{plots['accuracy']}" alt="accuracy against T">{acc}
<h2>Verification (spike for spike, as integers)</h2>{table(ver_rows, ['target', 'against', 'T', 'samples', 'layers', 'values', 'spikes', 'result', 'first divergence'], ver_cls)}
{_methods_html(report, plots)}
{html_section(report.quantization_report) if report.quantization_report else ""}
<h2>Quantization choices per T</h2>{'<img src="' + plots['headroom'] + '" alt="head-room">' if 'headroom' in plots else ''}{''.join(q_html)}
<h2>Overflow</h2>{ovf_html}
<h2>Spiking network</h2><pre>{html.escape(report.snn_summary)}</pre>
<h2>Timings</h2>{table([[k, f'{v:.2f}'] for k, v in report.timings.items()], ['stage', 'seconds'])}
<h2>Environment</h2><pre>{html.escape(json.dumps(report.environment, indent=1))}</pre>
</body></html>"""


def write_report(report: Report, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "report.json", json.dumps(asdict(report), indent=1, default=json_default))
    write_atomic(out / "report.html", to_html(report))


