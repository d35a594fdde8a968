"""Issue 15: the low-latency configurations (twins at other L, combined methods) verify on every
target, and the recommendation never looks at the test split."""

import numpy as np
import pytest

from spikeport.api import prepare, verify
from spikeport.studies.lowlat import family, pareto, recommend, study
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.methods import apply_method


def _row(held_out, test, latency=3, energy=1.0, T=1, method="qcfs"):
    return {"model": "m", "L": 8, "trained": "qcfs", "method": method, "T": T, "held_out": held_out, "test": test,
            "latency": latency, "energy_uJ": energy, "messages": 1.0}


def test_recommendation_uses_held_out_accuracy_only():
    rows = [_row(0.95, 0.99, method="a"), _row(0.97, 0.90, method="b"), _row(0.97, 0.91, energy=0.5, method="c")]
    assert recommend(rows, [1])[1]["method"] == "c"  # best held-out, then less energy; test never chooses
    front = pareto([_row(0.9, 0.9, 3, 1.0), _row(0.9, 0.95, 3, 1.0), _row(0.9, 0.99, 9, 2.0), _row(0.9, 0.8, 4, 2.0)])
    assert [r["test"] for r in front] == [0.95, 0.99]


def test_the_zoo_holds_the_twins_with_their_levels():
    names = family("mlp_digits")
    assert names == ["mlp_digits", "mlp_digits_nq", "mlp_digits_l4", "mlp_digits_nq_l4", "mlp_digits_l2",
                     "mlp_digits_nq_l2"]
    for name in names[2:]:
        cfg = prepare(name, calib=64).model.meta["train_config"]
        assert cfg["levels"] == int(name[-1]) and cfg["noise"] == ("_nq" in name)


@pytest.mark.lava
@pytest.mark.parametrize("name,method", [("mlp_digits", "ftbc+tpp"), ("mlp_digits_l4", "cos"),
                                         ("mlp_digits_nq_l2", "graded"), ("mlp_digits_nq_l4", "ftbc")])
def test_combined_configurations_are_exact_on_sim_and_lava(name, method):
    T = 2
    p = prepare(name, calib=256)
    levels = p.model.meta["train_config"]["levels"]
    if method.startswith("ftbc"):  # a fixed alpha, so that the time bias is not zero
        s = apply_method(p.snn, "ftbc", T, graph=p.model.graph, calib_x=p.data.x_train[:512], alpha=0.5)
        assert any(np.any(q.time_bias) for q in s.neurons)
        s = apply_method(s, "tpp", T, seed=3) if method == "ftbc+tpp" else s
    else:
        s = apply_method(p.snn, method, T, rho=levels)
    q = p.quantize(s, T)
    rows, _ = verify(deploy(q), p.data.x_test[:5], targets=("sim", "lava"))
    assert all(r.exact for r in rows), [r.line() for r in rows]


def test_study_runs_every_configuration_of_the_family():
    res = study("mlp_digits", Ts=(1,), methods=("qcfs", "graded"), lava_samples=0, test_samples=60, progress=False)
    assert len(res["rows"]) == 6 * 2 and len(res["anns"]) == 6
    pick = res["recommended"]["1"]
    assert pick["held_out"] == max(r["held_out"] for r in res["rows"])
    assert all(r["latency"] >= 3 and r["energy_uJ"] > 0 and r["messages"] > 0 for r in res["rows"])
