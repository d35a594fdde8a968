"""Where the Lava environment lives: the Python 3.10 interpreter that has lava-nc 0.10.

``SPIKEPORT_LAVA_PYTHON`` names the interpreter; otherwise it is ``<cache>/lava-env/bin/python``,
with ``<cache>`` = ``SPIKEPORT_CACHE`` or ``$XDG_CACHE_HOME/spikeport`` (default
``~/.cache/spikeport``). ``spikeport lava-env`` creates it there. Nothing depends on the folder
spikeport was installed from, so a ``pip install``ed spikeport works like a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from spikeport.toolchain.errors import TargetError


def cache_dir() -> Path:
    """spikeport's cache folder (the Lava environment, lava-dl's ground-truth traces)."""
    if os.environ.get("SPIKEPORT_CACHE"):
        return Path(os.environ["SPIKEPORT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "spikeport"


def lava_env_dir() -> Path:
    return cache_dir() / "lava-env"


def netx_data_dir() -> Path:
    """lava-dl's netx test data (its ground-truth traces), as ``spikeport lava-env`` unpacks it."""
    env = os.environ.get("SPIKEPORT_NETX_DATA")
    return Path(env).expanduser() if env else cache_dir() / "lava-dl" / "netx"


def lava_python() -> str:
    """The Lava environment's interpreter, or a :class:`TargetError` that says how to create it."""
    env = os.environ.get("SPIKEPORT_LAVA_PYTHON")
    candidate = Path(env).expanduser() if env else lava_env_dir() / "bin" / "python"
    if candidate.is_file():
        return str(candidate)
    raise TargetError(f"the Lava environment was not found ({candidate}); create it with `spikeport lava-env` "
                      "(or `make lava-env`), or point SPIKEPORT_LAVA_PYTHON at a Python 3.10 interpreter with "
                      "lava-nc 0.10")
