"""``spikeport lowlat``: every configuration for very few time steps, and the pick for each T."""

from __future__ import annotations

import sys
from pathlib import Path

from spikeport.cli.args import add_command, nonnegative, positive, steps

EXAMPLE = "spikeport lowlat cnn_mnist --T 1,2,4 --out out/lowlat"


def register(sub) -> None:
    p = add_command(sub, "lowlat", "every configuration for very few time steps (twins at L = 2, 4, 8, QCFS "
                    "and NQ; qcfs, ftbc, cos, tpp, ftbc+tpp, graded): held-out and test accuracy, latency, "
                    "energy; the pick for each T", EXAMPLE)
    p.add_argument("model", nargs="?", default="cnn_mnist", help="a bundled family: cnn_mnist or mlp_digits")
    p.add_argument("--T", type=steps, default=(1, 2, 4), help="time steps, e.g. 1,2,4")
    p.add_argument("--samples", type=positive, default=None, help="use only the first N test samples")
    p.add_argument("--lava-samples", type=nonnegative, default=16, help="samples verified in Lava per pick (0: none)")
    p.add_argument("--out", type=Path, default=Path("out/lowlat"), help="folder for lowlat.json, .md and .html")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.studies.lowlat import markdown, study, write

    res = study(args.model, Ts=args.T, lava_samples=args.lava_samples, test_samples=args.samples,
                log=lambda s: print(s, file=sys.stderr, flush=True))
    write(res, args.out)
    print(markdown(res))
    print(f"wrote {args.out / 'lowlat.html'}; picks verified spike for spike: {res['all_checks_exact']}")
    return 0 if res["all_checks_exact"] else 1
