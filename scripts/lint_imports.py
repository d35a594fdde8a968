"""Check the layering contracts of pyproject.toml with import-linter (``make lint`` runs this).

import-linter (through grimp) reads a package from the file system, top-level packages only, but
spikeport's subpackages live in the top-level folders the project keeps (``toolchain/``,
``targets/``, ``models/``, installed as ``spikeport.toolchain`` ... by setuptools' package-dir
mapping). So this script lays out the package as it is installed, copying the ``.py`` files of
every mapped folder into a temporary tree, and runs ``lint-imports`` on that tree with the
contracts of ``pyproject.toml``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage(tmp: Path) -> None:
    mapping: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items()):  # parents first: "spikeport" before "spikeport.toolchain"
        dest = tmp.joinpath(*package.split("."))
        for src in (ROOT / folder).rglob("*.py"):
            rel = src.relative_to(ROOT / folder)
            if rel.parts[0] in mapping.get(package, "") or any(p.startswith(".") for p in rel.parts):
                continue
            target = dest / rel
            if target.exists():  # a folder mapped into this one already placed it
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="spikeport-lint-imports-") as tmp:
        stage(Path(tmp))
        env = {**os.environ, "PYTHONPATH": tmp}
        lint = Path(sys.executable).with_name("lint-imports")
        cmd = [str(lint) if lint.is_file() else "lint-imports", str(ROOT / "pyproject.toml"),
               "--no-cache"]
        return subprocess.run(cmd, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
