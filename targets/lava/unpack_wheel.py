"""Unpack one folder of a wheel (a zip file), refusing any member that would land outside it.

Used by ``make lava-env`` to take lava-dl's ground-truth traces out of its wheel. Runs with any
Python 3 and the standard library only. A member whose path is absolute, climbs out with ``..``,
or is a symbolic link stops the unpacking with a message naming it; nothing is written then.

    python unpack_wheel.py WHEEL PREFIX DEST    # e.g. PREFIX tests/lava/lib/dl/netx/
"""

from __future__ import annotations

import shutil
import stat
import sys
import zipfile
from pathlib import Path, PurePosixPath


def safe_members(z: zipfile.ZipFile, prefix: str) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The members under ``prefix`` with their paths relative to it; raises on an unsafe one."""
    out = []
    for info in z.infolist():
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = PurePosixPath(name[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts or "\\" in name or ":" in rel.parts[0]:
            raise ValueError(f"unsafe path in archive: {name!r}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"symbolic link in archive: {name!r}")
        out.append((info, rel))
    if not out:
        raise ValueError(f"nothing under {prefix!r} in the archive")
    return out


def unpack(wheel: str, prefix: str, dest: str) -> int:
    dest_path = Path(dest)
    with zipfile.ZipFile(wheel) as z:
        members = safe_members(z, prefix)  # every member is checked before anything is written
        tmp = dest_path.with_name(dest_path.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        for info, rel in members:
            target = tmp.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        shutil.rmtree(dest_path, ignore_errors=True)
        tmp.rename(dest_path)
    return len(members)


if __name__ == "__main__":
    try:
        n = unpack(*sys.argv[1:4])
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        sys.exit(f"unpack_wheel: {sys.argv[1] if len(sys.argv) > 1 else ''}: {exc}")
    print(f"unpacked {n} files into {sys.argv[3]}")
