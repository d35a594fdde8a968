"""``spikeport export``: the converted SNN as a Lava package, as NIR, or as lava-dl netx."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import add_command, model_args, nonnegative, positive, prepare

EXAMPLE = "spikeport export cnn_mnist --netx out/netx --reset zero --T 8"


def register(sub) -> None:
    p = add_command(sub, "export", "write the converted SNN as a Lava package, as NIR (details NIR cannot "
                    "hold go to a sidecar JSON), or check netx", EXAMPLE)
    model_args(p)
    p.add_argument("--T", type=positive, default=8, help="T the integer network is quantized for")
    p.add_argument("--lava", type=Path, default=None, help="folder for a Lava package: the network and a loader "
                   "that needs only lava-nc and numpy (see its README.md)")
    p.add_argument("--examples", type=nonnegative, default=16, help="test samples stored with the Lava package")
    p.add_argument("--nir", type=Path, default=None, help="NIR file to write")
    p.add_argument("--netx", type=Path, default=None, help="folder for a lava-dl netx export (network.net, an "
                   "example script, README); needs --reset zero unless the network is netx-exact")
    p.add_argument("--reset", choices=["subtract", "zero"], default="subtract",
                   help="netx: subtract (spikeport's neuron; lists what netx cannot hold) or zero (the nearest "
                   "netx form: reset-to-zero neurons; its accuracy cost is measured and reported)")
    p.add_argument("--samples", type=positive, default=1000, help="netx --reset zero: test samples the "
                   "accuracy cost is measured on")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.interop.netx import netx_obstacles
    from spikeport.interop.nir import export_nir
    from spikeport.toolchain.errors import SpikeportError, UnsupportedOpError

    if args.nir is None and args.netx is None and args.lava is None:
        raise SpikeportError("nothing to do: pass --lava DIR, --nir FILE and/or --netx DIR")
    p, snn = prepare(args)
    dep = p.deploy(snn, args.T, args.profile)
    q = dep.snn
    if args.lava is not None:
        from spikeport.targets.lava.package import export_lava

        spec = export_lava(args.lava, dep, p.model.name, args.method, p.data.x_test[:args.examples],
                           p.data.y_test[:args.examples])
        from spikeport.targets.lava.environment import lava_python

        try:
            python = lava_python()
        except SpikeportError:
            python = "<the Lava environment's python>"
        print(f"wrote the Lava package {args.lava} ({len(spec['lifs'])} populations, T={spec['T']}, a sample every "
              f"{spec['period']} steps); run it with: {python} {args.lava / 'run_example.py'}")
    if args.nir is not None:
        export_nir(snn, args.nir, integer=q)
        print(f"wrote {args.nir} and {args.nir}.spikeport.json")
    if args.netx is not None and args.reset == "zero":
        from spikeport.interop.netx_export import export_netx

        d = p.data
        info = export_netx(args.netx, q, p.model.name, d.x_test[:args.examples], d.y_test[:args.examples],
                           d.x_test[:args.samples], d.y_test[:args.samples])
        print(f"wrote {args.netx / 'network.net'} (lava-dl netx, reset to zero, T={args.T}, reset_interval={args.T}); "
              f"accuracy on {info['samples']} test samples (sim): soft reset {info['soft_reset']:.1%}, this file "
              f"{info['reset_zero']:.1%}; run it with: python {args.netx / 'run_netx_example.py'}")
    elif args.netx is not None:
        problems = netx_obstacles(q)
        if problems:
            raise UnsupportedOpError(f"netx cannot express this network exactly ({len(problems)} problem(s)): "
                                     + "; ".join(problems) + ". --reset zero writes the nearest netx form and "
                                     "measures what it costs")
    return 0
