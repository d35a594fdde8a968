"""``spikeport lava-env``: create the Lava environment and fetch lava-dl's ground-truth traces.

Lava 0.10 and lava-dl 0.6 run only on Python 3.10 with numpy < 2 (their last releases; the projects
are archived), so Lava gets a virtual environment of its own, beside spikeport's:

- ``<cache>/lava-env``: a Python 3.10 venv with lava-nc 0.10.0, numpy < 2, h5py, and lava-dl 0.6.0
  without its dependencies (netx imports without torch);
- ``<cache>/lava-dl/netx``: the ``tests/lava/lib/dl/netx/`` folder of the lava-dl wheel, which holds
  real Loihi ground-truth traces (``spikeport conformance``).

``<cache>`` is :func:`spikeport.targets.lava.environment.cache_dir` (``~/.cache/spikeport`` by
default). The command is idempotent: a finished step leaves a stamp and is skipped next time. The
Python 3.10 interpreter is ``--python``, else ``pyenv prefix 3.10.13`` (or 3.10), else ``python3.10``
on the PATH. The wheel is unpacked by :func:`unpack`, which refuses any member that would land
outside the target folder (absolute, climbing or symbolic-link paths) before anything is written.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from spikeport.targets.lava.environment import lava_env_dir, netx_data_dir
from spikeport.toolchain.errors import SpikeportError

LAVA_PACKAGES = ("lava-nc==0.10.0", "numpy<2", "h5py")
LAVA_DL = "lava-dl==0.6.0"
NETX_PREFIX = "tests/lava/lib/dl/netx/"


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


def find_python310(given: str | None = None) -> str:
    """A Python 3.10 interpreter: ``given``, pyenv's 3.10.13 (or any 3.10), or python3.10 on the PATH."""
    candidates: list[str] = [given] if given else []
    if not given:
        for version in ("3.10.13", "3.10"):
            res = subprocess.run(["pyenv", "prefix", version], capture_output=True, text=True) \
                if shutil.which("pyenv") else None
            if res is not None and res.returncode == 0 and res.stdout.strip():
                candidates.append(str(Path(res.stdout.strip().splitlines()[0]) / "bin" / "python"))
        candidates += [p for p in [shutil.which("python3.10")] if p]
    for c in candidates:
        res = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 10))"], capture_output=True,
                             text=True) if Path(c).is_file() or shutil.which(c) else None
        if res is not None and res.stdout.strip() == "True":
            return c
    raise SpikeportError("no Python 3.10 interpreter found (Lava 0.10 needs one): pass --python /path/to/python3.10"
                         + (f" ({given} is not Python 3.10)" if given else " or install it with pyenv"))


def _pip(python: Path, *args: str) -> None:
    res = subprocess.run([str(python), "-m", "pip", "-q", *args], capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
        raise SpikeportError(f"pip {' '.join(args)} failed in the Lava environment: {last}")


def create(python: str | None = None, env_dir: Path | None = None, netx_dir: Path | None = None,
           log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Create (or complete) the Lava environment and unpack lava-dl's traces; returns both folders."""
    env_dir = Path(env_dir or lava_env_dir())
    netx_dir = Path(netx_dir or netx_data_dir())
    venv_python = env_dir / "bin" / "python"
    stamp = env_dir / ".spikeport-stamp"
    want = " ".join((*LAVA_PACKAGES, LAVA_DL))
    if not (stamp.is_file() and stamp.read_text() == want and venv_python.is_file()):
        base = find_python310(python)
        log(f"lava-env: creating {env_dir} with {base}")
        res = subprocess.run([base, "-m", "venv", str(env_dir)], capture_output=True, text=True)
        if res.returncode != 0:
            raise SpikeportError(f"cannot create a venv in {env_dir}: {res.stderr.strip()[-300:]}")
        _pip(venv_python, "install", "--upgrade", "pip")
        _pip(venv_python, "install", *LAVA_PACKAGES)
        _pip(venv_python, "install", "--no-deps", LAVA_DL)
        stamp.write_text(want)
    else:
        log(f"lava-env: {env_dir} is ready")
    if not (netx_dir / ".stamp").is_file():
        with tempfile.TemporaryDirectory(prefix="spikeport-lava-dl-") as tmp:
            log(f"lava-env: fetching the {LAVA_DL} wheel for its ground-truth traces")
            _pip(venv_python, "download", "--no-deps", LAVA_DL, "-d", tmp)
            wheel = next(Path(tmp).glob("lava_dl-*.whl"), None)
            if wheel is None:
                raise SpikeportError(f"pip download {LAVA_DL} gave no wheel")
            netx_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                n = unpack(str(wheel), NETX_PREFIX, str(netx_dir))
            except (ValueError, OSError, zipfile.BadZipFile) as exc:
                raise SpikeportError(f"{wheel.name}: {exc}") from exc
            (netx_dir / ".stamp").write_text(LAVA_DL)
            log(f"lava-env: unpacked {n} files into {netx_dir}")
    else:
        log(f"lava-env: {netx_dir} is ready")
    return env_dir, netx_dir
