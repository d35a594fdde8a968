"""The CIFAR suite's table machinery on small bundled networks: the oracle on a subset, a method subset,
NQ twins found by name, seconds per row; the plain-ReLU study (percentiles chosen on held-out data, FTBC,
the T within 1 point) with sim checked against torch_int."""

import numpy as np
import torch
from torch import nn

from spikeport.studies.methods_table import (
    compare_methods,
    nq_twin,
    published_markdown,
    relu_markdown,
    relu_study,
    row_times,
)


def test_nq_twins_are_found_by_name():
    assert nq_twin("cnn_mnist_l4") == "cnn_mnist_nq_l4" and nq_twin("cnn_mnist") == "cnn_mnist_nq"
    assert nq_twin("resnet20_cifar10_l8") == "resnet20_cifar10_nq_l8"


def test_method_subset_with_the_oracle_on_a_subset(tmp_path):
    table = compare_methods("mlp_digits_l4", Ts=(2,), tpp_seeds=1, lava_Ts=(), lava_samples=0, verify_samples=4,
                            test_samples=60, oracle_samples=20, methods=("qcfs", "graded", "nq"), progress=False)
    kinds = {(r["method"], r["target"]) for r in table.rows}
    assert ("nq", "sim") in kinds and ("graded", "sim") in kinds and not any(m.startswith("ftbc") for m, _ in kinds)
    ints = [r for r in table.rows if r["target"] == "torch_int"]
    assert ints and all(r["n"] == 20 for r in ints) and all(r["n"] == 60 for r in table.rows if r["target"] == "sim")
    logits = [c for c in table.checks if c["check"].startswith("sim vs torch_int logits")]
    assert logits and all(c["exact"] and c["samples"] == 20 for c in logits)
    assert "| qcfs | sim | 2 | 60 |" in row_times(table)
    assert "QCFS (paper, recalled)" in published_markdown("resnet20_cifar10", (1, 2))


def test_relu_study_picks_a_percentile_on_held_out_data_and_checks_sim_against_the_oracle(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.zeros(1, 64)
    torch.onnx.export(net, (x,), str(tmp_path / "relu.onnx"), dynamo=False)
    res = relu_study(str(tmp_path / "relu.onnx"), data="digits", Ts=(2, 4), percentiles=(99.0, 99.9, 100.0),
                     test_samples=40, held_out=50, oracle_samples=10, calib=64)
    assert res["all_checks_exact"] and len(res["rows"]) == 6
    best = [r for r in res["rows"] if r["kind"] == "best percentile (held-out)"]
    assert all(r["percentile"] in (99.0, 99.9, 100.0) for r in best)
    assert set(res["T_within_1_point"]) == {"percentile 99.9", "best percentile (held-out)", "best percentile + FTBC"}
    assert "T within 1 point" in relu_markdown(res) and np.isfinite(res["ann_acc"])
