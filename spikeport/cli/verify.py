"""``spikeport verify``: torch_int, sim and Lava compared spike for spike."""

from __future__ import annotations

from spikeport.cli.args import (
    SIM_KERNELS,
    add_command,
    model_args,
    positive,
    prepare,
    print_checks,
    seconds,
    sim_kernels_arg,
)

EXAMPLE = "spikeport verify cnn_mnist --T 8 --samples 16 --targets sim,lava --method cos"


def register(sub) -> None:
    p = add_command(sub, "verify", "compare torch_int, sim and lava spike for spike (exit 1 on any mismatch)", EXAMPLE)
    model_args(p)
    p.add_argument("--T", type=positive, default=8)
    p.add_argument("--samples", type=positive, default=16, help="first N test samples")
    p.add_argument("--targets", default="sim,lava", help="comma-separated: sim, lava")
    sim_kernels_arg(p)
    p.add_argument("--timeout", type=seconds, default=900.0, help="seconds before a Lava worker is stopped")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.api import verify

    p, snn = prepare(args)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    bad = [t for t in targets if t not in ("sim", "lava")]
    if bad:
        from spikeport.toolchain.errors import SpikeportError
        raise SpikeportError(f"unknown verification target(s) {bad}; choose from sim, lava")
    rows, _ = verify(p.deploy(snn, args.T, args.profile), p.data.x_test[:args.samples], targets=targets,
                     target_options={"lava": {"timeout": args.timeout},
                                     "sim": {"device": args.device, "int8": SIM_KERNELS[args.sim_kernels]}},
                     device=args.device)
    return print_checks(rows, args.json)
