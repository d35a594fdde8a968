"""``spikeport run``: the accuracy of one target on the test split."""

from __future__ import annotations

import json

from spikeport.cli.args import SIM_KERNELS, add_command, model_args, positive, prepare, sim_kernels_arg

EXAMPLE = "spikeport run cnn_mnist --target sim --T 2 --method ftbc"


def register(sub) -> None:
    p = add_command(sub, "run", "accuracy of one target on the test split", EXAMPLE)
    model_args(p)
    p.add_argument("--target", default="sim", choices=["torch_float", "torch_int", "sim", "lava"])
    p.add_argument("--T", type=positive, default=8)
    p.add_argument("--samples", type=positive, default=None, help="first N test samples (default: all)")
    p.add_argument("--stream", action="store_true", help="sim: run the samples one after another as Lava "
                   "streams them (differs from side by side only where membranes leave the head-room)")
    sim_kernels_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.api import accuracy, run, run_float

    p, snn = prepare(args)
    x, y = p.data.x_test[:args.samples], p.data.y_test[:args.samples]
    options = {} if args.target == "lava" else {"device": args.device}
    if args.stream:
        if args.target != "sim":
            from spikeport.toolchain.errors import SpikeportError
            raise SpikeportError("--stream applies to the sim target")
        options["stream"] = True
    if args.target == "sim":
        options["int8"] = SIM_KERNELS[args.sim_kernels]
    if args.target == "torch_float":  # the float SNN on the reference: nothing to quantize or lower
        trace = run_float(snn, x, args.T, device=args.device)
    else:
        trace = run(p.deploy(snn, args.T, args.profile), x, args.target, **options)
    acc = accuracy(trace, y)
    overflow = int(sum(trace.overflow.values()))
    if args.json:
        print(json.dumps({"target": args.target, "T": args.T, "acc": acc, "n": len(x), "overflow": overflow}))
    else:
        print(f"{args.target} T={args.T}: accuracy {100 * acc:.2f}% on {len(x)} test samples"
              + (f" ({overflow} membrane overflow events)" if overflow else ""))
    return 0
