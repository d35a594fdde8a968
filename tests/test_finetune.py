"""Max-pool substitution with a fine-tune (``spikeport finetune``), the checkpoint that records it,
and the families coverage bench on a small member."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from spikeport.models.data import load_dataset
from spikeport.models.train import finetune
from spikeport.models.zoo import average_pools, build_model, load_checkpoint, save_checkpoint
from spikeport.quality.coverage import cover, coverage_table
from spikeport.toolchain.errors import SpikeportError


def test_average_pools_replaces_every_maxpool_with_its_window():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.MaxPool2d(3, 2, 1, ceil_mode=True)), nn.MaxPool2d(2))
    average_pools(net)
    pools = [m for m in net.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 2 and not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    first = pools[0]
    assert (first.kernel_size, first.stride, first.padding, first.ceil_mode, first.count_include_pad) == \
        (3, 2, 1, True, False)
    with pytest.raises(SpikeportError, match="dilation"):
        average_pools(nn.Sequential(nn.MaxPool2d(2, dilation=2)))


def test_finetune_trains_the_substituted_model_and_the_checkpoint_remembers(tmp_path):
    data = load_dataset("digits")
    torch.manual_seed(0)
    # digits are 8x8, too small for the zoo's 28x28 architecture: a small max-pool net of our own
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    tuned, done = finetune(model, data, epochs=2, lr=0.05, progress=False)
    info = done["finetune"]
    assert not any(isinstance(m, nn.MaxPool2d) for m in tuned.modules())
    assert info["epochs"] == 2 and len(info["losses"]) == 2 and info["losses"][1] < info["losses"][0]
    assert info["ann_test_acc"] > info["ann_test_acc_substituted"]  # from random weights: training helps

    arch = build_model("maxpool_cnn_mnist", width=2)
    average_pools(arch)
    save_checkpoint(tmp_path / "ft.pt", "maxpool_cnn_mnist", {"width": 2}, arch, {"x": 1}, pools="average")
    loaded, ckpt = load_checkpoint(tmp_path / "ft.pt")
    assert ckpt["pools"] == "average"
    assert not any(isinstance(m, nn.MaxPool2d) for m in loaded.modules())
    x = torch.from_numpy(np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), arch.eval()(x).numpy(), rtol=1e-6)


def test_a_checkpoint_with_unknown_pools_is_refused(tmp_path):
    arch = build_model("maxpool_cnn_mnist", width=2)
    save_checkpoint(tmp_path / "bad.pt", "maxpool_cnn_mnist", {"width": 2}, arch, {}, pools="median")
    with pytest.raises(SpikeportError, match="unknown pools 'median'"):
        load_checkpoint(tmp_path / "bad.pt")


def test_coverage_row_of_a_small_family_member():
    rows = cover("densenet", "densenet_block", {"growth": 4}, (3, 16, 16), T=3)
    assert [r.importer for r in rows] == ["torch", "onnx"]
    for r in rows:
        assert r.imported and r.converted and r.sim_exact and not r.error, r
        assert r.neurons > 0 and r.synapses > 0 and r.loihi2_cores >= 1 and r.loihi2_chips == 1
    assert rows[0].sim_ms_per_sample_step > 0
    table = coverage_table({"T": 3, "rows": [vars(r) for r in rows]})
    assert "| densenet | torch | 3x16x16 | ok | ok | exact |" in table
