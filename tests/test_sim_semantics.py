"""``sim`` against Lava 0.10's documented fixed-point arithmetic (unit vectors from lava-nc's own
tests and docs/lava-semantics.md), independently of the PyTorch reference."""

import numpy as np
import pytest
from scipy import sparse

from spikeport.targets.sim import simulate
from spikeport.toolchain.hardware.lava_rules import lava_weights
from spikeport.toolchain.hardware.profiles import LOIHI2
from spikeport.toolchain.ir.procnet import ConvProcess, CurrentSource, DenseProcess, LIFProcess, ProcessNet


def single(lif: LIFProcess, impulse: int = 0, steps: int = 8, extra: tuple = ()) -> ProcessNet:
    """One LIF (the 'readout', so its u is recorded) with an optional impulse into a_in at step 1."""
    sources = [CurrentSource("imp", lif.name, start=1, value=np.full(lif.size, impulse), quench=0)]
    return ProcessNet(T=1, period=steps + 1, lifs=[lif, *extra], synapses=[], sources=sources, readout=lif.name,
                     profile=LOIHI2)


def v_trace(net: ProcessNet, steps: int) -> np.ndarray:
    return simulate(net, {}, record=True, steps=steps)


def test_bias_driven_lif_spikes_at_5_and_10():
    lif = LIFProcess("n", (1,), du=0, dv=0, vth=8, bias_mant=2, bias_exp=6)
    other = LIFProcess("o", (1,), du=0, dv=0, vth=1 << 17)
    net = ProcessNet(T=1, period=20, lifs=[lif, other], synapses=[], sources=[], readout="o", profile=LOIHI2)
    tr = simulate(net, {}, record=True, steps=12)
    assert list(np.flatnonzero(tr.spikes["n"][:, 0, 0]) + 1) == [5, 10]


def test_current_decay_halves_u():
    lif = LIFProcess("n", (1,), du=2047, dv=0, vth=1 << 17)
    tr = simulate(single(lif, impulse=128), {}, steps=8)
    # the readout trace holds u >> 6
    assert list(tr.readout[:, 0, 0] << 6) == [8192, 4096, 2048, 1024, 512, 256, 128, 64]


def test_voltage_decay_matches_lava():
    from spikeport.targets import sim_models as simmod

    lif = LIFProcess("n", (1,), du=0, dv=2048, vth=1 << 17)
    model = simmod.LIFModel(lif, 1, LOIHI2, simmod.torch.device("cpu"))
    vs = []
    for t in range(1, 9):
        a = simmod.torch.tensor([[128 if t == 1 else 0]])
        model.step(t, a)
        vs.append(int(model.v[0, 0]))
    assert vs == [8192, 12286, 14331, 15351, 15859, 16111, 16235, 16295]


def test_bias_exponent():
    from spikeport.targets import sim_models as simmod

    lif = LIFProcess("n", (1,), du=0, dv=0, vth=1 << 17, bias_mant=4095, bias_exp=5)
    model = simmod.LIFModel(lif, 1, LOIHI2, simmod.torch.device("cpu"))
    model.step(1, simmod.torch.zeros((1, 1), dtype=simmod.torch.int64))
    assert int(model.v[0, 0]) == 131040


def test_u_folds_once_at_24_bits_and_is_counted():
    lif = LIFProcess("n", (1,), du=-1, dv=4096, vth=1 << 17)
    tr = simulate(single(lif, impulse=(1 << 17) + 1), {}, steps=1)
    assert int(tr.readout[0, 0, 0]) == ((1 << 23) + 64 - (1 << 24)) >> 6
    assert tr.overflow["n"] >= 1


@pytest.mark.parametrize("w,mode,bits,want", [
    ([[3, -3, 255]], None, 8, [[2, -4, 254]]),  # mixed sign loses the LSB
    ([[3, 5, 255]], None, 8, [[3, 5, 255]]),  # excitatory keeps 8 bits
    ([[300, -300, 1]], None, 8, [[254, -256, 0]]),  # clipped, then truncated
    ([[255, 0]], None, 6, [[252, 0]]),  # exc, 6 bits: 2 LSBs dropped
    ([[-128, -3]], "inh", 8, [[-128, -3]]),
    ([[-256, -3]], "inh", 8, [[-255, -3]]),  # inhibitory range is [-255, 0]
])
def test_dense_weight_clipping_and_truncation(w, mode, bits, want):
    assert np.array_equal(lava_weights(np.array(w), mode, bits, LOIHI2.weight_bits), np.array(want))
    got = lava_weights(sparse.csr_matrix(np.array(w)), mode, bits, LOIHI2.weight_bits).toarray()
    assert np.array_equal(got, np.array(want))


def spike_source_net(syn, n_in: int, n_out: int, delay_steps: int = 6) -> ProcessNet:
    """A layer that fires every neuron at step 1 (huge bias, one step) feeding ``syn`` into a readout."""
    src = LIFProcess("src", (n_in,), du=4095, dv=4096, vth=0)
    out = LIFProcess("out", (n_out,), du=-1, dv=4096, vth=1 << 17)
    sources = [CurrentSource("kick", "src", start=1, value=np.full(n_in, 1), quench=0)]
    return ProcessNet(T=1, period=20, lifs=[src, out], synapses=[syn], sources=sources, readout="out", profile=LOIHI2)


def test_dense_exponent_and_one_step_delay():
    syn = DenseProcess("d", "src", "out", np.array([[255, 0]]), weight_exp=2, num_weight_bits=6)
    tr = simulate(spike_source_net(syn, 2, 1), {}, steps=4)
    # (255 >> 2) << 2 = 252 (exc, 6 bits), << 2 = 1008; the source fires at step 1, arrives at step 2
    assert list(tr.readout[:, 0, 0]) == [0, 1008, 1008, 1008]


def test_delay_sparse_arrives_after_one_plus_delay_steps():
    syn = DenseProcess("d", "src", "out", sparse.csr_matrix(np.array([[4, 6]])), sign_mode="exc", delay=3,
                       sparse=True)
    tr = simulate(spike_source_net(syn, 2, 1), {}, steps=6)
    assert list(tr.readout[:, 0, 0]) == [0, 0, 0, 0, 10, 10]


def test_conv_output_wraps_at_24_bits():
    w = np.array([1 << 23, 1 << 23, 7], dtype=np.int64).reshape(1, 1, 1, 3)  # sum 2**24 + 7
    syn = ConvProcess("c", "src", "out", w, (1, 1, 3), (1, 1, 1))
    tr = simulate(spike_source_net(syn, 3, 1), {}, steps=2)
    assert int(tr.readout[1, 0, 0]) == 7


def test_graded_input_spikes_are_weighted_by_their_value():
    syn = DenseProcess("d", "input", "out", np.array([[3, 4]]), sign_mode="exc", num_message_bits=8)
    out = LIFProcess("out", (1,), du=-1, dv=4096, vth=1 << 17)
    net = ProcessNet(T=1, period=10, lifs=[out], synapses=[syn], sources=[], readout="out", profile=LOIHI2)
    spikes = np.zeros((4, 1, 2))
    spikes[0, 0] = [5, 2]  # graded payloads 5 and 2 at step 1
    tr = simulate(net, {}, steps=3, spikes_in=spikes)
    assert list(tr.readout[:, 0, 0]) == [0, 3 * 5 + 4 * 2, 3 * 5 + 4 * 2]


def test_per_synapse_delays_arrive_one_plus_delay_steps_later():
    w = np.array([[2, 0], [0, 4]])
    d = np.array([[3, 0], [0, 1]])
    syn = DenseProcess("d", "input", "out", w, sign_mode="exc", delay=d)
    out = LIFProcess("out", (2,), du=-1, dv=4096, vth=1 << 17)
    net = ProcessNet(T=1, period=10, lifs=[out], synapses=[syn], sources=[], readout="out", profile=LOIHI2)
    spikes = np.zeros((6, 1, 2))
    spikes[0, 0] = [1, 1]
    tr = simulate(net, {}, steps=6, spikes_in=spikes)
    assert list(tr.readout[:, 0, 0]) == [0, 0, 0, 0, 2, 2] and list(tr.readout[:, 0, 1]) == [0, 0, 4, 4, 4, 4]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("cin,cout,k,stride,size", [(64, 64, 3, 1, 14), (16, 32, 4, 2, 28), (8, 8, 6, 2, 8)])
def test_float32_convolutions_of_spikes_are_exact_integers(channels_last, cin, cout, k, stride, size):
    """sim (and the reference) convolve binary spikes with integer kernels in float32 and cast the
    result to integers without rounding: that is only right if the backend sums directly (no
    Winograd or FFT transforms). Checked against float64 on this machine's backend."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(cin + k)
    x = (torch.rand(64, cin, size, size, generator=gen) < 0.2).float()
    w = torch.randint(-(1 << 12), 1 << 12, (cout, cin, k, k), generator=gen).float()
    assert w.abs().sum((1, 2, 3)).max() < (1 << 24)  # the exact_dtype condition
    if channels_last:
        x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x, w, None, stride, 1)
    assert torch.equal(y.double(), F.conv2d(x.double(), w.double(), None, stride, 1))


def test_a_folded_pool_factors_into_sum_pool_and_small_conv_only_where_it_is_the_same_map():
    """``ops.factor_pool`` (sim's and the peers' pooled convolutions): a kernel constant on stride x
    stride blocks is a sum-pool and the small kernel; anything else is left alone."""
    import torch
    import torch.nn.functional as F

    from spikeport.targets.pool_factor import factor_pool

    rng = np.random.default_rng(0)
    small = rng.integers(-9, 10, (6, 4, 3, 3))
    folded = small.repeat(2, axis=2).repeat(2, axis=3)  # what folding a 2x2 average pool makes
    f = factor_pool(folded, (4, 14, 14), (2, 2), (2, 2))
    assert f is not None and f.pool == 2 and f.padding == (1, 1) and np.array_equal(f.weight, small)
    x = torch.as_tensor(rng.random((3, 4, 14, 14)) < 0.3, dtype=torch.float64)
    direct = F.conv2d(x, torch.as_tensor(folded, dtype=torch.float64), None, 2, 2)
    pooled = F.conv2d(F.avg_pool2d(x, 2, divisor_override=1), torch.as_tensor(small, dtype=torch.float64), None, 1, 1)
    assert torch.equal(direct, pooled)
    broken = folded.copy()
    broken[0, 0, 0, 1] += 1  # one block no longer constant
    assert factor_pool(broken, (4, 14, 14), (2, 2), (2, 2)) is None
    assert factor_pool(folded, (4, 15, 15), (2, 2), (2, 2)) is None  # odd image: the last row has no block
    assert factor_pool(folded, (4, 14, 14), (2, 2), (1, 1)) is None  # padding not a multiple of the stride
    assert factor_pool(folded, (4, 14, 14), (1, 1), (2, 2)) is None  # stride 1: nothing to pool


@pytest.mark.parametrize("k,stride,padding,groups,exp", [(1, 2, 0, 1, 0), (3, 1, 1, 1, -2), (3, 2, 1, 2, 1)])
def test_a_delayed_convolution_runs_as_a_convolution_with_the_matrix_integers(k, stride, padding, groups, exp):
    """Lowering turns a delayed convolution into a DelaySparse matrix and keeps the convolution
    beside it; sim runs the convolution (``ConvMatrix``). Lava's weight processing (clipping, the
    least significant bit of mixed-sign weights) on the kernel must give the matrix's integers, and
    the weight exponent's floor the same values."""
    import torch

    from spikeport.targets.sim_models import ConvMatrix, DenseModel
    from spikeport.toolchain.ir.snn import ConvSynapse
    from spikeport.toolchain.ir.synapses import conv_as_matrix

    rng = np.random.default_rng(k + stride)
    cin, cout, size = 4, 6, 8
    out = (size + 2 * padding - k) // stride + 1
    kernel = rng.integers(-300, 300, (cout, cin // groups, k, k))  # beyond 8 bits: Lava clips them
    syn = ConvSynapse(kernel, (cin, size, size), (cout, out, out), (stride, stride), (padding, padding),
                      groups=groups)
    conv = ConvProcess("c", "a", "b", kernel, syn.in_shape, syn.out_shape, syn.stride, syn.padding, groups=groups)
    as_conv = DenseProcess("c", "a", "b", conv_as_matrix(syn, kernel), weight_exp=exp, sign_mode="mixed", delay=2,
                           sparse=True, conv=conv)
    matrix = DenseModel(DenseProcess(**{**as_conv.__dict__, "conv": None}), torch.device("cpu"), LOIHI2)
    model = DenseModel(as_conv, torch.device("cpu"), LOIHI2)
    assert isinstance(model.blocks[0][1], ConvMatrix) and not isinstance(matrix.blocks[0][1], ConvMatrix)
    x = torch.as_tensor(rng.random((16, cin * size * size)) < 0.4, dtype=torch.float32)
    (d1, got), = model(x)
    (d2, want), = matrix(x)
    assert d1 == d2 == 2 and torch.equal(got.to(torch.int64), want.to(torch.int64)) and want.abs().sum() > 0
