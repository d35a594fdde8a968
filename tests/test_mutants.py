"""Every planted fault is caught by verify or the fuzzer (``spikeport mutants``), and the unmutated
code passes the same checks."""

import json

from spikeport.cli import main
from spikeport.quality.mutants import MUTANTS


def test_every_mutant_is_caught(capsys):
    code = main(["mutants", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["baseline_failure"] is None
    assert out["missed"] == [], out
    assert out["mutants"] == out["caught"] == len(MUTANTS) >= 30
    assert code == 0
