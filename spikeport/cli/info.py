"""``spikeport info``: the imported graph, the spiking network and its quantization."""

from __future__ import annotations

from spikeport.cli.args import add_command, model_args, positive, prepare

EXAMPLE = "spikeport info model.onnx --data mnist5k"


def register(sub) -> None:
    p = add_command(sub, "info", "show the imported graph, the spiking network and its quantization", EXAMPLE)
    model_args(p)
    p.add_argument("--T", type=positive, default=8)
    p.set_defaults(run=run)


def run(args) -> int:
    p, snn = prepare(args)
    model = p.model
    print(f"# float graph ({model.name})\n{model.graph.summary()}\n\n# spiking network\n{snn.summary()}")
    dep = p.deploy(snn, args.T, args.profile)
    q = dep.snn
    print(f"\n# quantized for T={args.T} ({q.profile.name})")
    for layer in q.meta["quantization"]:
        exps = [p.get("weight_exp", "analog") for p in layer["projections"]]
        thr = f"2^{layer['threshold_exp']}" if layer["threshold_exp"] is not None else "-"
        print(f"{layer['population']:<14} threshold {thr:<6} weight exponents {exps!s:<14} "
              f"head-room used {100 * layer['headroom_used']:.1f}%")
    from spikeport.toolchain.costs.resources import estimate

    print(f"\n# resources at T={args.T} (an estimate from published chip limits)")
    print("\n".join(estimate(dep.net).lines()))
    from spikeport.targets.int8_kernels import describe

    print(f"\n# sim on this machine\nsynapse kernels: {describe()}")
    return 0
