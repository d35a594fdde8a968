"""``spikeport conformance``: lava-dl's own ground-truth traces reproduced with sim."""

from __future__ import annotations

from spikeport.cli.args import add_command, print_checks

EXAMPLE = "spikeport conformance --json"


def register(sub) -> None:
    p = add_command(sub, "conformance", "reproduce lava-dl 0.6.0's own ground-truth traces with sim (exit 1 "
                    "on any mismatch)", EXAMPLE)
    p.add_argument("--only", default=None, help="comma-separated subset of tinynet, dense, pilotnet_lif, ntidigits")
    p.add_argument("--lava", action="store_true", help="also run every .net file through lava-dl's netx in Lava "
                   "and compare it with sim")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.quality.conformance import SUITE, run_suite
    from spikeport.toolchain.errors import SpikeportError

    names = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = [n for n in names or [] if n not in SUITE]
    if unknown:
        raise SpikeportError(f"unknown conformance trace(s) {unknown}; choose from {sorted(SUITE)}")
    return print_checks(run_suite(names, lava=args.lava), args.json)
