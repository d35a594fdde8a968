"""``spikeport fuzz``: random integer networks on every target, and damaged input files."""

from __future__ import annotations

import json
import sys

from spikeport.cli.args import add_command, nonnegative

EXAMPLE = "spikeport fuzz --cases 500 --lava-every 10"


def register(sub) -> None:
    p = add_command(sub, "fuzz", "random integer networks on torch_int, sim and Lava, and damaged input "
                    "files: exit 1 on any disagreement or unclear error", EXAMPLE)
    p.add_argument("--cases", type=nonnegative, default=200, help="random networks (0: none)")
    p.add_argument("--files", type=nonnegative, default=0, help="damaged files per kind (onnx, checkpoint, netx, nir, "
                   "config, results)")
    p.add_argument("--seed", type=nonnegative, default=0, help="first case seed (case i uses seed + i)")
    p.add_argument("--lava-every", type=nonnegative, default=10, help="run every N-th case in Lava too (0: never)")
    p.add_argument("--verbose", action="store_true", help="a line per case, not only per disagreement")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    from spikeport.quality.fuzz import fuzz, summary

    status = 0
    if args.files > 0:
        status = _fuzz_files(args)
    if args.cases <= 0:
        return status
    bar = tqdm(total=args.cases, desc="fuzz", unit="case", file=sys.stderr)

    def log(o) -> None:
        bar.update(1)
        if args.verbose or not o.exact:
            tqdm.write(o.line())

    outcomes = fuzz(args.cases, seed=args.seed, lava_every=max(0, args.lava_every), log=log)
    bar.close()
    s = summary(outcomes)
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        print(f"{s['cases']} cases (seeds {args.seed}..{args.seed + args.cases - 1}), {s['lava_cases']} of them "
              f"also in Lava; {s['beyond_headroom_cases']} beyond the head-room; {s['independent_values']:,} values "
              f"compared against independent code ({s['beyond_headroom_independent_values']:,} of them beyond the "
              "head-room) "
              f"and {s['self_check_values']:,} in self-checks; {100 * s['silent_layer_share']:.1f}% of hidden layers "
              f"silent; {s['disagreements']} disagreements")
    return 1 if s["disagreements"] or status else 0


def _fuzz_files(args) -> int:
    from collections import Counter

    from tqdm import tqdm

    from spikeport.quality.filefuzz import KINDS, fuzz_files

    bar = tqdm(total=args.files * len(KINDS), desc="fuzz files", unit="file", file=sys.stderr)

    def log(o) -> None:
        bar.update(1)
        if args.verbose or o.result == "FAILED":
            tqdm.write(f"{o.result:<11} {o.kind:<10} {o.mutation}: {o.detail[:200]}")

    outcomes = fuzz_files(args.files, seed=args.seed, log=log)
    bar.close()
    counts = Counter((o.kind, o.result) for o in outcomes)
    for kind in KINDS:
        print(f"{kind:<10} {sum(v for (k, _), v in counts.items() if k == kind):>5} files: "
              + ", ".join(f"{counts[(kind, r)]} {r}" for r in ("accepted", "clear error", "FAILED")))
    failed = sum(o.result == "FAILED" for o in outcomes)
    print(f"{len(outcomes)} damaged files, {failed} without a clear error")
    return 1 if failed else 0
