"""The layering contract of pyproject.toml holds, and fails on a planted violation."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = "compiler below, runtimes and zoo beside each other, applications on top"
CYCLES = "no import cycles between sibling modules"
FLOW = "the compiler's folders along its data flow"
spec = importlib.util.spec_from_file_location("lint_imports", ROOT / "scripts" / "lint_imports.py")
lint_imports = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lint_imports)


def _lint(tree: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)


def test_the_tree_keeps_the_layering_contract(tmp_path):
    lint_imports.stage(tmp_path)
    res = _lint(tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("where, line, broken", [
    ("spikeport/toolchain/passes/quantize.py", "import spikeport.targets.sim", LAYERS),  # compiler -> runtime
    ("spikeport/targets/sim.py", "import spikeport.models.zoo", LAYERS),  # runtime -> zoo
    ("spikeport/models/zoo.py", "import spikeport.api", LAYERS),  # zoo -> application
    ("spikeport/targets/base.py", "import spikeport.targets.registry", CYCLES),  # registry <-> base
    ("spikeport/toolchain/ir/snn.py", "import spikeport.toolchain.passes.quantize", FLOW),  # IR -> a pass
    # the oracle -> what judges it
    ("spikeport/toolchain/oracle/reference.py", "import spikeport.toolchain.verification.compare", FLOW),
])
def test_a_planted_violation_breaks_the_contract(tmp_path, where, line, broken):
    lint_imports.stage(tmp_path)
    path = tmp_path / where
    path.write_text(path.read_text() + f"\n{line}  # planted\n")
    res = _lint(tmp_path)
    assert res.returncode != 0
    assert f"{broken} BROKEN" in res.stdout, res.stdout[-3000:]
