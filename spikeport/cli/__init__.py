"""The ``spikeport`` command line. Every subcommand's --help shows a working example.

Bad input ends with one line naming the problem and a non-zero exit status; ``--debug`` shows the
traceback instead.

One module per command (``spikeport.cli.run`` for ``spikeport run`` ...), each registering its own
parser; ``spikeport.cli.args`` holds what more than one of them uses.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from spikeport.cli import (
    bench,
    conformance,
    demo,
    eval,
    export,
    finetune,
    fuzz,
    info,
    lava_env,
    lowlat,
    maxpool,
    methods,
    mutants,
    netx_reset,
    report,
    run,
    train,
    verify,
)

# the order of the commands in `spikeport --help`
COMMANDS = (demo, run, verify, methods, maxpool, lowlat, netx_reset, conformance, bench, export, eval, report, fuzz,
            mutants, lava_env, info, train, finetune)
# the order of the examples in its epilog
EXAMPLES = tuple(m.EXAMPLE for m in (demo, run, verify, info, methods, train, finetune, maxpool, netx_reset, lowlat,
                                     conformance, bench, export, report, eval, fuzz, lava_env, mutants))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikeport", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Trained ANN -> integer SNN -> Lava / Loihi-style targets, verified spike for spike.",
        epilog="examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES))
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from spikeport.toolchain.errors import SpikeportError

    try:
        return args.run(args)
    except SpikeportError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"spikeport: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikeport: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug: still one line, the traceback behind --debug
        if args.debug:
            traceback.print_exc()
        print(f"spikeport: internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return 3
