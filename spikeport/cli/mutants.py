"""``spikeport mutants``: planted faults in sim, each caught by verify or the fuzzer."""

from __future__ import annotations

import json

from spikeport.cli.args import add_command

EXAMPLE = "spikeport mutants --json"


def register(sub) -> None:
    p = add_command(sub, "mutants", "plant faults in sim and show that verify and the fuzzer catch each "
                    "(exit 1 if one is missed)", EXAMPLE)
    p.add_argument("--json", action="store_true", help="print {mutants, caught, missed} as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.quality.mutants import run_mutants

    results, baseline = run_mutants(log=None if args.json else lambda r: print(r.line(), flush=True))
    missed = [r.name for r in results if r.caught_by is None]
    if args.json:
        print(json.dumps({"mutants": len(results), "caught": len(results) - len(missed), "missed": missed,
                          "baseline_failure": None if baseline is None else list(baseline)}, indent=1))
    else:
        if baseline is not None:
            print(f"the unmutated code fails {baseline[0]}: {baseline[1]}")
        print(f"{len(results)} mutants, {len(results) - len(missed)} caught, {len(missed)} missed")
    return 1 if missed or baseline is not None else 0
