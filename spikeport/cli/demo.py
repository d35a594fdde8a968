"""``spikeport demo``: the main job on the bundled MNIST-5k CNN (accuracy vs T, verification, report)."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import MODEL_HELP, add_command, ints, nonnegative, positive, steps

EXAMPLE = "spikeport demo --out out/demo"


def register(sub) -> None:
    p = add_command(sub, "demo", "the main job on the bundled MNIST-5k CNN: accuracy vs T, verification, "
                    "report", EXAMPLE)
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="folder for report.json and report.html")
    p.add_argument("--model", default="cnn_mnist", help=MODEL_HELP)
    p.add_argument("--T", type=steps, default=(1, 2, 4, 8, 16), help="time steps, e.g. 1,2,4,8")
    p.add_argument("--lava-T", type=positive, default=8, help="T of the Lava run")
    p.add_argument("--lava-samples", type=nonnegative, default=16, help="test samples streamed through Lava (0: none)")
    p.add_argument("--samples", type=positive, default=None, help="use only the first N test samples")
    p.add_argument("--methods-T", type=ints, default=(1, 2, 4),
                   help="T values of the seed-methods table (0: leave it out)")
    p.add_argument("--methods-samples", type=positive, default=500,
                   help="test samples of the seed-methods table (spikeport methods runs them all)")
    p.add_argument("--tpp-seeds", type=positive, default=1, help="TPP seeds in the methods table")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.demo import all_exact, demo

    report = demo(args.out, model=args.model, Ts=args.T, lava_T=args.lava_T, lava_samples=args.lava_samples,
                  test_samples=args.samples, lava=args.lava_samples > 0,
                  methods_Ts=tuple(t for t in args.methods_T if t > 0), tpp_seeds=args.tpp_seeds,
                  methods_samples=args.methods_samples)
    return 0 if all_exact(report) else 1
