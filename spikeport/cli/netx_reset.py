"""``spikeport netx-reset``: the netx form (reset to zero) against spikeport's soft reset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from spikeport.cli.args import add_command, nonnegative, positive, steps

EXAMPLE = "spikeport netx-reset mlp_digits cnn_mnist --T 4,8,16"


def register(sub) -> None:
    p = add_command(sub, "netx-reset", "the netx form (reset to zero) against spikeport's soft reset: "
                    "accuracy at each T, and the written .net file in lava-dl's netx compared with sim", EXAMPLE)
    p.add_argument("models", nargs="*", default=["mlp_digits", "cnn_mnist"], help="bundled models or checkpoints")
    p.add_argument("--T", type=steps, default=(4, 8, 16), help="time steps, e.g. 4,8,16")
    p.add_argument("--samples", type=positive, default=None, help="use only the first N test samples")
    p.add_argument("--lava-samples", type=nonnegative, default=4, help="samples run through lava-dl's netx (0: none)")
    p.add_argument("--out", type=Path, default=Path("out/netx_reset"), help="folder for the exports, "
                   "netx_reset.json and netx_reset.md")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.interop.netx_export import reset_table
    from spikeport.toolchain.files import write_atomic

    res = reset_table(args.models, args.T, args.out, samples=args.samples, lava_samples=args.lava_samples,
                      log=lambda s: print(s, file=sys.stderr, flush=True))
    write_atomic(args.out / "netx_reset.json", json.dumps(res["rows"], indent=1))
    write_atomic(args.out / "netx_reset.md", res["markdown"] + "\n")
    print(res["markdown"])
    return 1 if any(r["lava_exact"] is False for r in res["rows"]) else 0
