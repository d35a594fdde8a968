"""``spikeport lava-env``: the Lava environment and lava-dl's ground-truth traces."""

from __future__ import annotations

from spikeport.cli.args import add_command

EXAMPLE = "spikeport lava-env --python ~/.pyenv/versions/3.10.13/bin/python"


def register(sub) -> None:
    p = add_command(sub, "lava-env", "create the Lava environment (Python 3.10, lava-nc 0.10, lava-dl 0.6) "
                    "and fetch lava-dl's ground-truth traces, in spikeport's cache folder; idempotent", EXAMPLE)
    p.add_argument("--python", default=None, help="a Python 3.10 interpreter (default: pyenv's 3.10, then python3.10)")
    p.set_defaults(run=run)


def run(args) -> int:
    from spikeport.lava_env import create

    env, netx = create(args.python)
    print(f"Lava environment: {env}\nlava-dl ground-truth traces: {netx}")
    return 0
