"""Conversion and quantization invariants."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from spikeport.api import import_model
from spikeport.toolchain.errors import QuantizationError, SpikeportError
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.interpret import forward, run_graph
from spikeport.toolchain.ir.snn import INPUT, ConvSynapse
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import depths
from spikeport.toolchain.passes.quantize import quantize


def test_first_layer_counts_equal_qcfs_when_T_equals_L(cnn):
    """Constant analog input, v0 = theta/2, soft reset: after T = L steps the spike count is exactly
    the QCFS level floor(z L / lam + 1/2) clipped to [0, L] (the QCFS equivalence)."""
    x = cnn.data.x_test[:20]
    first = cnn.snn.populations[0]
    levels = cnn.snn.meta["qcfs_levels"][first.name]
    tr = run_reference(cnn.snn, x, T=levels, record=True)
    z = run_graph(cnn.model.graph, x)[cnn.model.graph.node(first.name).inputs[0]].numpy().reshape(len(x), -1)
    want = np.clip(np.floor(z * levels / first.threshold + 0.5), 0, levels)
    got = tr.spikes[first.name].sum(0)
    assert np.mean(got == want) > 0.999  # float32 ties at exact half levels may differ


def test_float_snn_converges_to_the_unquantized_ann(mlp):
    x, y = mlp.data.x_test, mlp.data.y_test
    clip_acc = float((forward(mlp.model.graph, x, clip_qcfs=True).argmax(1) == y).mean())
    acc = float((run_reference(mlp.snn, x, T=64).predictions == y).mean())
    assert abs(acc - clip_acc) < 0.01


def test_structure_of_the_cnn_snn(cnn):
    pops = cnn.snn.populations
    assert [p.kind for p in pops] == ["if", "if", "if", "readout"]
    assert [p.shape for p in pops] == [(16, 28, 28), (32, 14, 14), (64, 7, 7), (10,)]
    # avg-pool + conv became one strided conv (exactness checked numerically by the composer)
    syn = pops[1].inputs[0].synapse
    assert isinstance(syn, ConvSynapse) and syn.stride == (2, 2) and syn.padding == (2, 2)
    assert syn.weight.shape == (32, 16, 6, 6)  # 2x2 pool then 3x3 conv: a 6x6 kernel at stride 2
    assert pops[0].inputs[0].source == INPUT
    for p in pops[:-1]:
        assert p.v_init == pytest.approx(p.threshold / 2)


def test_relu_thresholds_come_from_the_activation_percentile():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    g = import_model(net, (6,))
    x = np.random.default_rng(0).normal(size=(500, 6)).astype(np.float32)
    snn = convert(g, x, percentile=99.0)
    with torch.no_grad():
        h = torch.relu(net[0](torch.from_numpy(x))).numpy()
    assert snn.populations[0].threshold == pytest.approx(np.percentile(h[h > 0], 99.0), rel=1e-5)
    with pytest.raises(SpikeportError, match="need calibration samples"):
        convert(g)


def test_model_ending_in_an_activation_is_refused():
    g = import_model(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (4,))
    with pytest.raises(SpikeportError, match=r"ends with ReLU.*last layer must be linear"):
        convert(g, np.ones((4, 4), np.float32))


@pytest.mark.parametrize("T", [1, 8, 32])
def test_quantized_integers_respect_the_profile(cnn, T):
    q = cnn.q(T)
    assert q.integer and q.T == T
    for p in q.populations:
        if p.kind == "if":
            k = int(p.threshold).bit_length() - 1
            assert p.threshold == 1 << k and p.v_init == 1 << (k - 1) and 3 <= k <= 16
        assert p.bias.dtype == np.int64
        for pr in p.inputs:
            if pr.source == INPUT:
                assert pr.unit > 0
                continue
            w = pr.synapse.weight
            assert w.dtype == np.int64 and w.min() >= -128 and w.max() <= 127
            assert 0 <= pr.weight_exp <= 7
    for layer in q.meta["quantization"]:
        assert layer["headroom_used"] <= 1 / 1.25 + 1e-9


def test_integer_snn_tracks_the_float_snn(mlp):
    x, y = mlp.data.x_test, mlp.data.y_test
    for T in (2, 8):
        f = run_reference(mlp.snn, x, T)
        i = run_reference(mlp.q(T), x, T)
        assert abs(float((f.predictions == y).mean()) - float((i.predictions == y).mean())) <= 0.01
        assert sum(i.overflow.values()) == 0


def test_encode_rounds_the_analog_current(mlp):
    q = mlp.q(4)
    x = mlp.data.x_test[:3]
    cur = encode(q, x)
    first = q.populations[0]
    w = first.inputs[0].synapse.weight
    want = np.round(x.astype(np.float64) @ w.T / first.inputs[0].unit)
    assert np.array_equal(cur[first.name], want.astype(np.int64))


def test_weights_that_cannot_fit_the_target_are_an_error(mlp):
    snn = copy.deepcopy(mlp.snn)
    layer = snn.populations[1]
    layer.inputs[0].synapse.weight[0, 0] = 1e6 * layer.threshold  # needs a 2**20 weight exponent
    want = rf"layer '{layer.name}' cannot fit loihi2 at T=4.*largest weight 1e\+06 thresholds"
    with pytest.raises(QuantizationError, match=want):
        quantize(snn, mlp.calib, 4)


def test_depths_follow_the_longest_path(resnet):
    d = depths(resnet.q(4))
    assert d == {"act1": 1, "block.act1": 2, "block.act2": 3, "fc": 4}
