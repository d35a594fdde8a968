"""Issue 16: the benchmark peers run the same network as spikeport's torch_float."""

from spikeport.quality.peers import available, bench_peers, peers_table
from spikeport.quality.perf import bundled_cnn, random_resnet18


def test_peers_run_the_same_network_and_agree_with_torch_float():
    assert all(available().values())  # installed by `make env` (pip --no-deps)
    res = bench_peers([bundled_cnn(16)], T=4, batch=16, repeat=1)
    row = res["rows"][0]
    assert row["sim_us"] > 0 and row["torch_float_us"] > 0
    for peer in ("spikingjelly", "snntorch"):  # same layers, thresholds, soft reset, v0 = theta / 2
        assert row[f"{peer}_us"] > 0 and row[f"{peer}_agrees"] >= 0.9, row
    assert "| cnn_mnist | 4 | 16 |" in peers_table(res)
    # the convolutions and products are part of sim's time; on int8 kernels sim is timed on float32 ones too
    assert 0 < row["sim_synapse_us"] < row["sim_us"]
    assert row["sim_kernels"] in ("int8", "float32") and (row["sim_kernels"] == "int8") == ("sim_float32_us" in row)


def test_peers_build_residual_networks():
    """ResNet-18's residual additions and 1x1 downsampling shortcuts run in both peers, which agree
    with torch_float; sim is verified against torch_int on the same samples."""
    res = bench_peers([random_resnet18(8, width=8)], T=4, batch=8, repeat=1)
    row = res["rows"][0]
    assert row["sim_exact"] and row["sim_values"] > 0
    for peer in ("spikingjelly", "snntorch"):
        assert row[f"{peer}_agrees"] >= 0.75, row
