"""``spikeport methods``: the seed methods side by side."""

from __future__ import annotations

from pathlib import Path

from spikeport.cli.args import add_command, nonnegative, positive, steps, write_table

EXAMPLE = "spikeport methods cnn_mnist --T 1,2,4,8 --out out/methods"


def register(sub) -> None:
    p = add_command(sub, "methods", "the seed methods side by side: QCFS, FTBC, COS, TPP, NQ, permutation "
                    "diagnostic", EXAMPLE)
    p.add_argument("model", nargs="?", default="cnn_mnist", help="a bundled model (its NQ twin is <model>_nq)")
    p.add_argument("--T", type=steps, default=(1, 2, 4, 8, 16, 32), help="time steps, e.g. 1,2,4,8")
    p.add_argument("--rho", type=positive, default=4, help="COS pre-run length")
    p.add_argument("--tpp-seeds", type=positive, default=5, help="TPP seeds (mean and spread)")
    p.add_argument("--lava-T", type=steps, default=(2, 8), help="T values also run in Lava")
    p.add_argument("--lava-samples", type=nonnegative, default=16, help="test samples per Lava run (0: none)")
    p.add_argument("--verify-samples", type=positive, default=100, help="samples verified spike for spike")
    p.add_argument("--samples", type=positive, default=None, help="use only the first N test samples")
    p.add_argument("--out", type=Path, default=Path("out/methods"), help="folder for methods.json and methods.md")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.studies.methods_table import compare_methods

    table = compare_methods(args.model, Ts=args.T, rho=args.rho, tpp_seeds=args.tpp_seeds, lava_Ts=args.lava_T,
                            lava_samples=args.lava_samples, verify_samples=args.verify_samples,
                            test_samples=args.samples)
    return write_table(table, args.out, "methods")
