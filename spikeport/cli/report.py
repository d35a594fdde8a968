"""``spikeport report``: the quantization report."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import add_command, model_args, positive, prepare

EXAMPLE = "spikeport report cnn_mnist --T 4 --out out/report"


def register(sub) -> None:
    p = add_command(sub, "report", "quantization report: per-layer and per-channel rounding, head-room, "
                    "firing, energy", EXAMPLE)
    model_args(p)
    p.add_argument("--T", type=positive, default=8)
    p.add_argument("--samples", type=positive, default=256, help="calibration samples the report measures on")
    p.add_argument("--out", type=Path, default=Path("out/report"), help="folder for quantization.json and .html")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.reports.quantization import quantization_report, write_qreport

    p, snn = prepare(args)
    r = quantization_report(p.deploy(snn, args.T, args.profile), p.data.x_train[:args.samples], p.model.graph)
    write_qreport(r, args.out)
    for line in r["summary"]:
        print(line)
    net = r["network"]
    print(f"per inference: {net['synops_per_inference']:,.0f} synaptic ops, {net['spikes_per_inference']:,.0f} spikes, "
          f"~{net['snn_energy_uJ']:.3g} uJ on Loihi" + (f" vs ~{net['ann_energy_uJ']:.3g} uJ for the ANN's MACs"
                                                        if "ann_energy_uJ" in net else ""))
    print(f"wrote {args.out / 'quantization.html'} and {args.out / 'quantization.json'}")
    return 0
