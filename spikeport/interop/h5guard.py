"""Reading an HDF5 file (netx ``.net``, NIR) without trusting it.

A damaged HDF5 file can send the HDF5 C library into an endless loop: ``spikeport fuzz --files``
found a bit-flipped ``.net`` file whose variable-length string dataset never finishes reading,
and no Python signal can interrupt C code. So before a reader parses a file in-process, a child
process reads every dataset and attribute of it once, under a time limit, and refuses datasets
too large to be real. If the child hangs it is killed and the file is refused in one line; if it succeeds, the
same reads in-process are known to finish.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from spikeport.toolchain.errors import ModelFileError

TIME_LIMIT = 30.0  # seconds for reading the whole file
MAX_ELEMENTS = 1 << 28  # per dataset; netx and NIR files hold far less

_PROBE = """
import sys
import h5py
limit = int(sys.argv[2])
def check(name, obj):
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        if obj.size > limit:
            raise ValueError(f"dataset {name!r} claims {obj.size} elements")
        obj[()]
with h5py.File(sys.argv[1], "r") as f:
    check("/", f)
    f.visititems(check)
"""


def probe_hdf5(path: str | Path, what: str = "HDF5", timeout: float | None = None) -> None:
    """Raise :class:`ModelFileError` naming ``path`` unless every dataset of it reads in time
    (``timeout`` seconds, default ``TIME_LIMIT``)."""
    path = Path(path)
    timeout = TIME_LIMIT if timeout is None else timeout
    try:
        res = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(MAX_ELEMENTS)], capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModelFileError(f"{path}: reading this {what} file did not finish within {timeout:g} s (the HDF5 "
                             "library loops on it: damaged file?)") from None
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        kind = f"HDF5 {what}" if what == "netx" else what
        raise ModelFileError(f"{path} is not a readable {kind} file (truncated or corrupted?): {last}")
