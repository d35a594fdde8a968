"""The quantization report: what integer rounding did to each layer, and what the chip will do.

Per layer, with a per-channel drill-down:
- weight rounding error: SMAPE and maximum, per projection and per output channel;
- clipped weights, the chosen exponent, and how much of the 8-bit mantissa range is used;
- threshold and bias before and after rounding;
- membrane head-room: the largest |U| seen on the calibration samples against Lava's 24-bit limit;
- firing: the mean rate, and the share of neurons saturated (a spike every step) or silent;
- cumulative error: the float SNN's spike counts against the integer SNN's, layer by layer from
  the input, so the layer where they part is visible.

For the whole network: messages, payloads and synaptic operations per inference (counted by
:mod:`spikeport.toolchain.costs.metrics`, as eval, bench and lowlat count them), and an energy estimate
from published per-operation figures. Every source is named in the report. SMAPE follows BrainChip
quantizeml: mean(|a - b| / ((|a| + |b|) / 2)) over the entries that are not both zero.
"""

from __future__ import annotations

import numpy as np

from spikeport.reports.html import STYLE, json_default, png, table
from spikeport.toolchain.costs.metrics import count_work
from spikeport.toolchain.costs.resources import estimate
from spikeport.toolchain.files import write_atomic
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.ir.snn import INPUT
from spikeport.toolchain.oracle.reference import run_reference


def smape(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    den = (np.abs(a) + np.abs(b)) / 2
    keep = den > 0
    return float(np.mean(np.abs(a - b)[keep] / den[keep])) if keep.any() else 0.0


def _per_channel(w_float: np.ndarray, w_deq: np.ndarray, mant: np.ndarray, limit: int) -> list[dict]:
    rows = []
    for c in range(w_float.shape[0]):
        rows.append({"channel": c, "smape": smape(w_float[c], w_deq[c]),
                     "max_abs_error": float(np.abs(w_float[c] - w_deq[c]).max()),
                     "clipped": int(np.sum(np.abs(mant[c]) >= limit))})
    return rows


def ann_macs(graph: ann.Graph) -> int:
    macs = 0
    for n in graph.nodes:
        if isinstance(n.op, ann.Conv2d):
            co, cig, kh, kw = n.op.weight.shape
            macs += co * cig * kh * kw * int(np.prod(n.shape[1:]))
        elif isinstance(n.op, ann.Linear):
            macs += int(np.prod(n.op.weight.shape))
    return macs


def quantization_report(deployment: Deployment, x: np.ndarray, graph: ann.Graph | None = None) -> dict:
    """Report for the deployment's integer SNN against the float SNN it was quantized from, measured on
    ``x`` (``graph``: the ANN, for its multiply-accumulates)."""
    snn, q, T = deployment.float_graph(), deployment.snn, deployment.T
    ft = run_reference(snn, x, T, record=True)
    it = run_reference(q, x, T, record=True)
    S = snn.steps(T)
    limit = q.profile.u_limit  # Lava folds u beyond 2**23 = 2**17 weight units
    layers = []
    qinfo = {r["population"]: r for r in q.meta["quantization"]}
    for pf, pq in zip(snn.populations, q.populations):
        if pq.kind == "maxpool":  # nothing quantized: its spikes are its source's, pooled
            continue
        info = qinfo[pq.name]
        unit = info["unit"]
        projections = []
        for prf, prq in zip(pf.inputs, pq.inputs):
            if prf.source == INPUT:
                projections.append({"source": "input", "analog": True,
                                    "note": "computed on the host in float64, rounded to the membrane unit"})
                continue
            mant = np.asarray(prq.synapse.weight)
            deq = mant * (2.0 ** prq.weight_exp) * unit
            wf = np.asarray(prf.synapse.weight, dtype=np.float64)
            limit_m = 127
            projections.append({
                "source": prq.source, "weight_exp": prq.weight_exp, "weights": int(mant.size),
                "smape": smape(wf, deq), "max_abs_error": float(np.abs(wf - deq).max()),
                "clipped": int(np.sum(np.abs(np.rint(wf / unit / 2.0 ** prq.weight_exp)) > limit_m)),
                "clipped_share": float(np.mean(np.abs(np.rint(wf / unit / 2.0 ** prq.weight_exp)) > limit_m)),
                "mantissa_range_used": float(np.abs(mant).max() / limit_m) if mant.size else 0.0,
                "zero_share": float(np.mean(mant == 0)),  # weights that rounded away entirely
                "per_channel": _per_channel(wf.reshape(wf.shape[0], -1), deq.reshape(deq.shape[0], -1),
                                            mant.reshape(mant.shape[0], -1), limit_m),
            })
        bias_deq = np.asarray(pq.bias, dtype=np.float64) * unit
        entry = {
            "population": pq.name, "kind": pq.kind, "shape": list(pq.shape), "origin": pq.origin, "unit": unit,
            "threshold_float": float(pf.threshold), "threshold_int": int(pq.threshold),
            "threshold_dequantized": float(pq.threshold) * unit,
            "bias_smape": smape(pf.bias, bias_deq), "bias_max_abs_error": float(np.abs(pf.bias - bias_deq).max()),
            "projections": projections,
            "headroom_peak_U": float(it.meta["peak"][pq.name]), "headroom_limit": limit,
            "headroom_used": float(it.meta["peak"][pq.name]) / limit,
        }
        if pq.kind == "if":
            cf = ft.spikes[pf.name].sum(0).astype(np.float64)  # (B, N) counts over the layer's S steps
            ci = it.spikes[pq.name].sum(0).astype(np.float64)
            entry.update({
                "rate_mean": float(ci.mean() / S),
                "silent_share": float(np.mean(ci == 0)), "saturated_share": float(np.mean(ci == S)),
                "rate_histogram": np.histogram(ci / S, bins=10, range=(0, 1))[0].tolist(),
                "cumulative_error": float(np.mean(np.abs(cf - ci)) / S),
                "count_mismatch_share": float(np.mean(cf != ci)),
            })
        else:
            rf, ri = ft.final, it.final.astype(np.float64) * unit
            entry.update({"cumulative_error": float(np.mean(np.abs(rf - ri)) / (np.abs(rf).mean() + 1e-12)),
                          "prediction_agreement": float(np.mean(rf.argmax(1) == ri.argmax(1)))})
        layers.append(entry)
    e = q.profile.energy  # the figures of the target the integers were made for
    work = count_work(q, it).per_inference(e)  # a graded spike: one message, whatever its payload
    host_macs = sum(int(np.prod(p.shape)) * pr.synapse.fan_in for p in q.populations for pr in p.inputs
                    if pr.source == INPUT)
    network = {
        "T": T, "steps_per_layer": S, "samples": len(x),
        "synops_per_inference": work["synops"], "spikes_per_inference": work["messages"],
        "payload_per_inference": work["payloads"],
        "neuron_updates_per_inference": int(work["neuron_updates"]),
        "host_macs_per_inference": int(host_macs),
        "energy_sources": e.to_dict(),
        "snn_energy_uJ": work["energy_uJ"],
        "host_energy_uJ": host_macs * e.host_mac_pJ * 1e-6,
    }
    if graph is not None:
        macs = ann_macs(graph)
        network.update({"ann_macs_per_inference": macs, "ann_energy_uJ": macs * e.host_mac_pJ * 1e-6})
    worst = max((entry for entry in layers if entry["kind"] == "if"), key=lambda r: r["cumulative_error"])
    reasons = []
    if worst["silent_share"] > 0.5:
        reasons.append(f"{100 * worst['silent_share']:.0f}% of its neurons stay silent")
    if worst["saturated_share"] > 0.05:
        reasons.append(f"{100 * worst['saturated_share']:.0f}% fire at every step")
    wmax = max((p["smape"] for p in worst["projections"] if not p.get("analog")), default=0.0)
    reasons.append(f"weight SMAPE {100 * wmax:.1f}%")
    reasons.append(f"head-room {100 * worst['headroom_used']:.0f}% used")
    summary = [f"layer {worst['population']!r} drifts most from the float SNN: "
               f"{100 * worst['count_mismatch_share']:.1f}% of its spike counts differ ({', '.join(reasons)})"]
    rough = [(p["smape"], entry["population"], p) for entry in layers for p in entry["projections"]
             if not p.get("analog")]
    if rough:
        sm, name, p = max(rough, key=lambda r: r[0])
        if sm > 0.2:
            summary.append(f"layer {name!r} rounds its weights from {p['source']!r} hardest: SMAPE {100 * sm:.0f}%, "
                           f"{100 * p['zero_share']:.0f}% of them round to zero (exponent {p['weight_exp']}: "
                           "a few large weights set the scale for many small ones)")
    resources = estimate(deployment.net)
    summary.append(resources.lines()[0] + ("" if not resources.problems else
                                          f"; does not fit: {'; '.join(resources.problems)}"))
    return {"summary": summary, "layers": layers, "network": network, "resources": resources.to_dict()}


def _plots(r: dict) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    layers = r["layers"]
    names = [entry["population"] for entry in layers]
    x = np.arange(len(names))
    fig, ax = plt.subplots(1, 3, figsize=(11, 3.0))
    wsm = [max((p["smape"] for p in entry["projections"] if not p.get("analog")), default=0.0) for entry in layers]
    ax[0].bar(x, [100 * v for v in wsm], color="tab:orange")
    ax[0].set_title("weight rounding (SMAPE %)")
    ax[1].bar(x, [100 * entry.get("count_mismatch_share", 0.0) for entry in layers], color="tab:red")
    ax[1].set_title("spike counts ≠ float SNN (%)")
    ax[2].bar(x, [100 * entry["headroom_used"] for entry in layers], color="tab:blue")
    ax[2].axhline(100, color="black", lw=1)
    ax[2].set_title("peak |U| / 24-bit limit (%)")
    for a in ax:
        a.set_xticks(x, names)
        a.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    out["layers"] = png(fig)
    plt.close(fig)
    hidden = [entry for entry in layers if "rate_histogram" in entry]
    if hidden:
        fig, ax = plt.subplots(1, len(hidden), figsize=(3.2 * len(hidden), 2.6), squeeze=False)
        for a, entry in zip(ax[0], hidden):
            a.bar(np.linspace(0.05, 0.95, 10), entry["rate_histogram"], width=0.09)
            a.set_title(f"{entry['population']}: silent {100 * entry['silent_share']:.0f}%, "
                        f"saturated {100 * entry['saturated_share']:.0f}%", fontsize=9)
            a.set_xlabel("spikes per step")
        ax[0][0].set_ylabel("neuron-samples")
        fig.tight_layout()
        out["rates"] = png(fig)
        plt.close(fig)
    return out


def html_section(r: dict) -> str:
    """The report as an HTML section (plots, summary, per-layer and per-channel tables)."""
    import html

    plots = _plots(r)
    net = r["network"]
    e = net["energy_sources"]
    rows = []
    for entry in r["layers"]:
        for p in entry["projections"]:
            if p.get("analog"):
                rows.append([entry["population"], "input (analog)", "—", "—", "—", "—", "—"])
                continue
            rows.append([entry["population"], p["source"], f"2^{p['weight_exp']}", f"{100 * p['smape']:.2f}%",
                         f"{p['max_abs_error']:.3g}", f"{p['clipped']} ({100 * p['clipped_share']:.2f}%)",
                         f"{100 * p['mantissa_range_used']:.0f}%"])
    neurons = [[entry["population"], f"{entry['threshold_float']:.4g} → {entry['threshold_int']}",
                f"{100 * entry['bias_smape']:.2f}%", f"{entry['headroom_peak_U']:.0f} / {entry['headroom_limit']}",
                f"{100 * entry.get('rate_mean', 0):.1f}%", f"{100 * entry.get('silent_share', 0):.0f}%",
                f"{100 * entry.get('saturated_share', 0):.0f}%",
                f"{100 * entry.get('count_mismatch_share', entry.get('cumulative_error', 0)):.2f}%"]
               for entry in r["layers"]]
    drill = []
    for entry in r["layers"]:
        for p in entry["projections"]:
            if p.get("analog"):
                continue
            worst = sorted(p["per_channel"], key=lambda c: -c["smape"])[:5]
            drill.append(f"<details><summary>{html.escape(entry['population'])} ← {html.escape(p['source'])}: "
                         f"worst channels</summary>" + table(
                             [[c["channel"], f"{100 * c['smape']:.2f}%", f"{c['max_abs_error']:.3g}", c["clipped"]]
                              for c in worst], ["channel", "SMAPE", "max error", "clipped"]) + "</details>")
    energy = (f"<p>Per inference at T={net['T']}: {net['synops_per_inference']:,.0f} synaptic operations, "
              f"{net['spikes_per_inference']:,.0f} spikes, {net['neuron_updates_per_inference']:,} neuron updates → "
              f"<b>{net['snn_energy_uJ']:.3g} µJ</b> on {html.escape(e['loihi']['chip'])} "
              f"({e['loihi']['synop_pJ']} pJ per synaptic op, {e['loihi']['neuron_update_pJ']} pJ per neuron update; "
              f"{html.escape(e['loihi']['source'])}), plus {net['host_macs_per_inference']:,} host MACs for the "
              f"analog first layer ({net['host_energy_uJ']:.3g} µJ).")
    if "ann_macs_per_inference" in net:
        energy += (f" The ANN: {net['ann_macs_per_inference']:,} MACs → <b>{net['ann_energy_uJ']:.3g} µJ</b> at "
                   f"{e['mac']['mac_pJ']} pJ per MAC ({html.escape(e['mac']['device'])}; "
                   f"{html.escape(e['mac']['source'])}).")
    energy += (" Estimates from per-operation figures, not measurements: memory traffic and static power are "
               "excluded.</p>")
    imgs = "".join(f'<img src="{v}" alt="{k}">' for k, v in plots.items())
    res = r.get("resources")
    if res is not None:
        chip = res["chip"]
        energy += (f"<h3>Loihi 2 resources (estimate, {res['weight_bits']}-bit weights)</h3><p>{res['neurons']:,} "
                   f"neurons, {res['synapses']:,} synapses, {res['synaptic_memory_bytes'] / 1024:,.0f} KiB of synaptic "
                   f"memory: <b>{res['cores']} neuro cores on {res['chips']} chip(s)</b>. Limits per core: "
                   f"{chip['neurons_per_core']:,} neurons, {chip['synaptic_memory_bits'] // 8 // 1024} KB of synaptic "
                   f"memory; per chip: {chip['cores_per_chip']} cores ({html.escape(chip['source'])}).</p>"
                   + table([[x["name"], f"{x['neurons']:,}", f"{x['synapses']:,}", f"{x['fan_in']:,}",
                             f"{x['fan_out']:,}", x["cores"], x["limited_by"]] for x in res["layers"]],
                           ["layer", "neurons", "synapses", "largest fan-in", "largest fan-out", "cores", "limited by"])
                   + "".join(f"<p>Does not fit: {html.escape(m)}</p>" for m in res["problems"])
                   + "".join(f"<p>Note: {html.escape(m)}</p>" for m in res.get("notes", [])))
    summary = "".join(f"<li>{html.escape(s)}</li>" for s in r["summary"])
    return (f"<h2>Quantization report (T={net['T']}, {net['samples']} samples)</h2><ul class='summary'>{summary}</ul>"
            f"{imgs}{energy}"
            + table(neurons, ["layer", "threshold float → int", "bias SMAPE", "peak |U| / limit", "rate",
                              "silent", "saturated", "counts ≠ float"])
            + table(rows, ["layer", "from", "exponent", "weight SMAPE", "max error", "clipped", "mantissa used"])
            + "".join(drill))


def write_qreport(r: dict, out) -> None:
    """``out/quantization.json`` and a standalone ``out/quantization.html``."""
    import json
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "quantization.json", json.dumps(r, indent=1, default=json_default))
    write_atomic(out / "quantization.html", f"<!doctype html><html><head><meta charset='utf-8'><title>spikeport "
                                           f"quantization report</title><style>{STYLE}</style></head><body>"
                                           f"{html_section(r)}</body></html>")
