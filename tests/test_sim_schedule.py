"""``sim``'s scheduling: chunks of steps and the fused IF loop compute what stepping does.

Stepping the whole network one step at a time with the general per-process models (``chunk=1,
fast=False``) is the plain reading of Lava's semantics; every other schedule must give the very
same integers: readout, every spike, the counts and the overflow events.
"""

import numpy as np
import pytest

from spikeport.targets.sim import SimNet, components, simulate
from spikeport.targets.sim_layout import channels_last_order
from spikeport.targets.sim_models import FastIF, LIFModel
from spikeport.toolchain.hardware.profiles import LOIHI2
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.procnet import (
    COSProcess,
    CurrentSource,
    DenseProcess,
    GradedProcess,
    LIFProcess,
    ProcessNet,
)
from spikeport.toolchain.ir.snn import COS, Graded
from spikeport.toolchain.passes.lowering import lower
from spikeport.toolchain.passes.methods import apply_method
from spikeport.toolchain.passes.quantize import quantize


def assert_same(a, b):
    assert np.array_equal(a.readout, b.readout)
    assert np.array_equal(a.final, b.final)
    assert a.spikes.keys() == b.spikes.keys()
    for k in a.spikes:
        assert np.array_equal(a.spikes[k], b.spikes[k]), k
    for k in a.spike_counts:
        assert np.array_equal(a.spike_counts[k], b.spike_counts[k]), k
    assert a.overflow == b.overflow


LOOPS = ("compiled", "torch", "general")  # the fast IF populations' two implementations, and none


def run_as(mode, net, cur, **kw):
    return simulate(net, cur, fast=mode != "general", loop="auto" if mode == "general" else mode, **kw)


def schedules(net, cur, **kw):
    # the plain reading also keeps the network's own neuron order (no channels-last renumbering)
    plain = simulate(net, cur, record=True, chunk=1, fast=False, prepared=SimNet.build(net, channels_last=False), **kw)
    for chunk in (1, 2, 5, None):
        for mode in LOOPS:
            yield chunk, mode, plain, run_as(mode, net, cur, record=True, chunk=chunk, **kw)


@pytest.mark.parametrize("bundle,T", [("mlp", 3), ("cnn", 4), ("resnet", 2)])
def test_every_schedule_equals_stepping(request, bundle, T):
    b = request.getfixturevalue(bundle)
    q = b.q(T)
    x = b.data.x_test[:6]
    net = lower(q)
    for chunk, mode, plain, got in schedules(net, encode(q, x)):
        assert got.spikes and sum(int(s.sum()) for s in got.spikes.values()) > 0
        assert_same(plain, got), (chunk, mode)


@pytest.mark.parametrize("method", ["ftbc", "cos", "tpp", "graded"])
def test_every_schedule_equals_stepping_for_the_seed_methods(mlp, method):
    T = 3
    f = apply_method(mlp.snn, method, T, mlp.model.graph, mlp.calib, mlp.data.y_train[:256])
    q = quantize(f, mlp.calib, T)
    net = lower(q)
    for _, _, plain, got in schedules(net, encode(q, mlp.data.x_test[:5]), sample_ids=np.arange(5) + 11):
        assert_same(plain, got)


@pytest.mark.parametrize("loop", ["compiled", "torch"])
def test_the_fused_loop_hands_steps_near_the_wrap_to_the_general_model(monkeypatch, loop):
    """Input currents that push u past 2**23 in the middle of the window: the steps the fused loop
    cannot vouch for (the torch loop: by a bound proved beforehand; the compiled loop: by checking
    every partial sum) must fold exactly as Lava folds them, with the overflow events counted the
    same way, and the fused loop must take over again where it can."""
    n = 5
    value = np.array([10, 20, -30, 5, 40])
    schedule = np.zeros((12, n), dtype=np.int64)
    schedule[4:7] = [40_000, 70_000, -90_000, 1000, 131_000]  # a_in units: u moves by 64x that
    lif = LIFProcess("h", (n,), du=-1, dv=4096, vth=(1 << 17) - 1)
    ro = LIFProcess("o", (n,), du=-1, dv=4096, vth=1 << 17)
    self_conn = DenseProcess("h.reset", "h", "h", -128 * np.eye(n, dtype=np.int64), weight_exp=3, sign_mode="inh")
    out = DenseProcess("h.out", "h", "o", 2 * np.eye(n, dtype=np.int64))
    src = CurrentSource("h.bias", "h", start=1, value=value, quench=1 << 15, length=12, schedule=schedule)
    net = ProcessNet(T=12, period=14, lifs=[lif, ro], synapses=[self_conn, out], sources=[src], readout="o",
                     profile=LOIHI2)
    plain = simulate(net, {}, record=True, steps=14, chunk=1, fast=False)
    assert plain.overflow["h"] > 0  # the case is real: u does fold

    fused_steps, general_steps, idle_steps = [], [], []
    run, run_compiled, step, idle = FastIF.run, FastIF.run_compiled, LIFModel.step, FastIF.idle
    monkeypatch.setattr(FastIF, "idle", lambda self, t0, count, prev: (lambda quiet: (
        idle_steps.extend(range(t0, t0 + count)) if quiet else None, quiet)[1])(idle(self, t0, count, prev)))
    monkeypatch.setattr(FastIF, "run", lambda self, t0, inputs, j0, j1, *r: (
        fused_steps.extend(range(t0 + j0, t0 + j1)), run(self, t0, inputs, j0, j1, *r))[1])

    def compiled(self, t0, a, consts, j0, *rest):
        done, last = run_compiled(self, t0, a, consts, j0, *rest)
        fused_steps.extend(range(t0 + j0, t0 + j0 + done))
        return done, last

    monkeypatch.setattr(FastIF, "run_compiled", compiled)
    monkeypatch.setattr(LIFModel, "step", lambda self, t, a: (
        general_steps.append(t) if self.p.name == "h" else None, step(self, t, a))[1])
    for chunk in (1, 4, None):
        for steps in (fused_steps, general_steps, idle_steps):
            steps.clear()
        assert_same(plain, simulate(net, {}, record=True, steps=14, chunk=chunk, loop=loop))
        assert fused_steps[:4] == [1, 2, 3, 4] and 6 in general_steps
        assert sorted(fused_steps + general_steps + idle_steps) == list(range(1, 15))  # each step once


def test_populations_that_feed_each_other_run_as_one_group():
    names = ["a", "b", "c", "d"]
    edges = [("a", "b"), ("b", "c"), ("c", "b"), ("c", "d"), ("d", "d")]
    assert components(names, edges) == [["a"], ["b", "c"], ["d"]]


def test_a_loop_between_two_populations_equals_stepping():
    a = LIFProcess("a", (3,), du=0, dv=0, vth=40)
    b = LIFProcess("b", (3,), du=100, dv=200, vth=30)
    o = LIFProcess("o", (3,), du=-1, dv=4096, vth=1 << 17)
    syns = [DenseProcess("ab", "a", "b", np.array([[60, 0, 0], [0, 90, 0], [30, 30, 30]])),
            DenseProcess("ba", "b", "a", np.array([[-20, 10, 0], [0, -40, 5], [7, 0, -9]]) * 2, weight_exp=-1),
            DenseProcess("bo", "b", "o", np.eye(3, dtype=np.int64) * 3)]
    src = CurrentSource("kick", "a", start=1, value=np.array([9, 14, 21]), quench=0, length=30)
    net = ProcessNet(T=30, period=40, lifs=[a, b, o], synapses=syns, sources=[src], readout="o", profile=LOIHI2)
    plain = simulate(net, {}, record=True, steps=32, chunk=1, fast=False)
    assert plain.spikes["a"].sum() > 0 and plain.spikes["b"].sum() > 0
    for chunk in (3, None):
        assert_same(plain, simulate(net, {}, record=True, steps=32, chunk=chunk))


@pytest.mark.parametrize("bundle,T,method", [("mlp", 3, "qcfs"), ("mlp", 3, "tpp"), ("mlp", 3, "cos"),
                                             ("cnn", 2, "qcfs"), ("resnet", 2, "qcfs")])
def test_streamed_samples_equal_side_by_side_samples_within_the_headroom(request, bundle, T, method):
    """Streaming (a window every period, state carried over, as in Lava) equals running the samples
    side by side from clean states, as long as the flush steps can silence every layer."""
    b = request.getfixturevalue(bundle)
    snn = b.snn if method == "qcfs" else apply_method(b.snn, method, T, b.model.graph, b.calib,
                                                      b.data.y_train[:256])
    q = quantize(snn, b.calib, T)
    net = lower(q)
    cur, ids = encode(q, b.data.x_test[:5]), np.arange(5) + 40
    side = simulate(net, cur, record=True, sample_ids=ids)
    assert sum(side.overflow.values()) == 0
    for chunk in (1, 3, None):
        streamed = simulate(net, cur, record=True, sample_ids=ids, stream=True, chunk=chunk)
        # a frame's steps outside the windows show the neighbouring samples in a stream: compare the windows
        r0 = side.readout_start
        assert np.array_equal(side.readout[r0:r0 + T], streamed.readout[r0:r0 + T])
        assert np.array_equal(side.final, streamed.final)
        for k, w0 in side.window_start.items():
            assert np.array_equal(side.spikes[k][w0:w0 + T], streamed.spikes[k][w0:w0 + T]), k
            assert np.array_equal(side.spike_counts[k], streamed.spike_counts[k]), k


@pytest.mark.parametrize("bundle,T", [("cnn", 2), ("mlp", 20)])
def test_the_compiled_cos_loop_equals_the_kernel(request, bundle, T):
    """COS on the CPU runs its compiled loop (``method_loops``); sim's general models run ``COSKernel``,
    the kernel Lava's process runs too: equal at every step, side by side and streamed, also where
    chunks split a window (T=20: windows of 24 steps, chunks of 8)."""
    b = request.getfixturevalue(bundle)
    q = quantize(apply_method(b.snn, "cos", T), b.calib, T)
    net = lower(q)
    cur, ids = encode(q, b.data.x_test[:4]), np.arange(4)
    for stream in (False, True):
        kernel = simulate(net, cur, record=True, fast=False, sample_ids=ids, stream=stream)
        loop = simulate(net, cur, record=True, sample_ids=ids, stream=stream)
        assert sum(int(s.sum()) for s in loop.spikes.values()) > 0
        assert_same(kernel, loop)


def test_the_compiled_loops_equal_the_kernels_on_the_fuzzers_cos_and_graded_networks():
    """The fuzzer's random COS and graded-spike networks (inputs far from the trained models': both of
    COS's shifts, payloads at their cap), with several samples a stream."""
    from spikeport.quality.fuzz import random_case

    cases = [c for c in map(random_case, range(60)) if isinstance(c.snn.neuron, COS | Graded)]
    assert sum(isinstance(c.snn.neuron, COS) for c in cases) >= 5
    assert sum(isinstance(c.snn.neuron, Graded) for c in cases) >= 3
    for c in cases:
        net, cur, ids = lower(c.snn), encode(c.snn, c.x), np.arange(len(c.x))
        for stream in (False, True):
            assert_same(simulate(net, cur, record=True, fast=False, sample_ids=ids, stream=stream),
                        simulate(net, cur, record=True, sample_ids=ids, stream=stream))


def kernel_and_loop(kernel, loop, a, rng: np.random.Generator):
    """``kernel`` stepped as sim's general model steps it (a window every ``loop.p.period`` steps from
    ``loop.p.start``, j = 0 restarting it) and ``loop`` run in chunks of random lengths, on input
    ``a`` (steps, B, N): both outputs, int64."""
    import torch

    steps = len(a)
    want = torch.zeros(a.shape, dtype=torch.int64)
    kernel.reset()
    for t in range(1, steps + 1):
        if t >= loop.p.start:
            j = (t - loop.p.start) % loop.p.period
            if j == 0:
                kernel.reset()
            want[t - 1] = kernel.step(j, a[t - 1])
    got, t = [], 1
    while t <= steps:
        k = min(int(rng.integers(1, 2 * loop.p.period)), steps - t + 1)
        got.append(loop.run(loop.positions(t, k), a[t - 1:t - 1 + k].contiguous()))
        t += k
    return want, torch.cat(got).to(torch.int64)


@pytest.mark.parametrize("seed", range(8))
def test_the_compiled_cos_loop_steps_as_the_kernel_on_any_input(seed):
    """Inputs up to three thresholds a step drive every branch of COS's pre-run (too many spikes,
    too few, none at all) and its replay; the loop, run in chunks of any length, repeating windows,
    equals ``COSKernel``."""
    import torch

    from spikeport.targets.method_kernels import COSKernel
    from spikeport.targets.method_loops import CompiledCOS

    rng = np.random.default_rng(seed)
    theta = int(rng.integers(1, 64))
    v_init, rho = int(rng.integers(0, theta + 1)), int(rng.integers(1, 7))
    S = int(rng.integers(rho, 13))
    start, B, N = int(rng.integers(1, 4)), 3, 40
    loop = CompiledCOS(COSProcess("cos", (N,), theta, v_init, rho, S, start, rho + S + 1), B)
    a = torch.as_tensor(rng.integers(-3 * theta, 3 * theta + 1, (start + 3 * loop.p.period, B, N)))
    want, got = kernel_and_loop(COSKernel(torch, (B, N), theta, v_init, rho, S), loop, a, rng)
    assert want.any() and torch.equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_graded_loop_steps_as_the_kernel_on_any_input(seed):
    """Inputs from below zero to past the cap: the graded loop, in chunks of any length over
    repeating windows, equals ``GradedKernel``."""
    import torch

    from spikeport.targets.method_kernels import GradedKernel
    from spikeport.targets.method_loops import CompiledGraded

    rng = np.random.default_rng(seed)
    theta, levels = int(rng.integers(1, 64)), int(rng.integers(1, 16))
    v_init, length = int(rng.integers(0, theta + 1)), int(rng.integers(1, 9))
    start, B, N = int(rng.integers(1, 4)), 3, 40
    loop = CompiledGraded(GradedProcess("graded", (N,), theta, v_init, levels, start,
                                        length + int(rng.integers(1, 4)), length), B)
    a = torch.as_tensor(rng.integers(-2 * theta, (levels + 2) * theta, (start + 3 * loop.p.period, B, N)))
    want, got = kernel_and_loop(GradedKernel(torch, (B, N), theta, v_init, levels, length), loop, a, rng)
    assert (want == levels).any() and (want == 0).any() and torch.equal(got, want)


def test_a_general_step_before_any_fused_step_invalidates_the_bound():
    """Found by ``spikeport fuzz`` (old case 6252): the first step was too large for the fused loop and
    went to the general model, but the loop kept its initial bound |u| <= 0 and so let the next
    step's fold through. Every general step now drops the bound. Case 77 of today's fuzzer shows the
    old bug when it is planted again, and is exact without it."""
    from unittest import mock

    import torch

    from spikeport.quality.fuzz import random_case
    from spikeport.targets import sim_models

    def old_sync(self):  # the bug: hand the state back but keep the bound
        if self.u is not None:
            self.lif.u = self.u.to(torch.int64)
            self.u = None

    c = random_case(77)
    net, cur = lower(c.snn), encode(c.snn, c.x)
    plain = simulate(net, cur, record=True, chunk=1, fast=False)
    assert plain.overflow["l0"] > 0
    for chunk in (1, None):
        for loop in ("compiled", "torch"):
            assert_same(plain, simulate(net, cur, record=True, chunk=chunk, loop=loop))
    with mock.patch.object(sim_models.FastIF, "sync", old_sync), pytest.raises(AssertionError):
        assert_same(plain, simulate(net, cur, record=True, chunk=1, loop="torch"))  # the bound is the torch loop's


def test_channels_last_order_renumbers_conv_layers_and_changes_nothing(cnn):
    """sim keeps the CNN's conv-connected layers in (H, W, C) order; what it reports (spikes, u and
    v at every step, counts, overflows) is in the network's order and equal to the plain run's."""
    q, x = cnn.q(4), cnn.data.x_test
    net = lower(q)
    order = channels_last_order(net)
    assert sorted(order) == ["act1", "act2", "act3"]  # 28x28, 14x14 and 7x7 images; not the readout
    _, h, w = net.lif("act1").shape
    assert order["act1"][1] == h * w  # position 1 holds channel 1 of pixel (0, 0)
    cur = encode(q, x[:6])
    kw = {"record": True, "record_state": ("act2",)}
    plain = simulate(net, cur, prepared=SimNet.build(net, channels_last=False), **kw)
    renumbered = simulate(net, cur, **kw)
    assert_same(plain, renumbered)
    for var in ("u", "v"):
        assert np.array_equal(plain.meta[var]["act2"], renumbered.meta[var]["act2"])
    assert plain.spikes["act2"].any() and plain.meta["u"]["act2"].any()


def pooled_network(hw: int, seed: int):
    """An integer network whose second layer reads the first through a 2x2 average pool folded
    into its convolution (a block-constant 4x4 kernel at stride 2, as conversion makes it), at
    ``hw`` x ``hw`` pixels: sim keeps 8x8 layers channels-last and 4x4 ones in (C, H, W) order."""
    from spikeport.toolchain.ir.snn import INPUT, ConvSynapse, DenseSynapse, Population, Projection, SNNGraph

    rng = np.random.default_rng(seed)
    c0, c1, c2, T = 2, 3, 4, 5
    first = ConvSynapse(rng.normal(size=(c1, c0, 3, 3)) * 300, (c0, hw, hw), (c1, hw, hw), padding=(1, 1))
    block = rng.integers(-60, 90, size=(c2, c1, 2, 2))
    side = hw // 2 + 1  # (hw + 2 * 2 - 4) / 2 + 1
    pooled = ConvSynapse(np.repeat(np.repeat(block, 2, axis=2), 2, axis=3), (c1, hw, hw), (c2, side, side),
                         stride=(2, 2), padding=(2, 2))
    n2 = int(np.prod(pooled.out_shape))
    readout = DenseSynapse(rng.integers(-50, 50, size=(3, n2)), pooled.out_shape, (3,))
    pops = [Population("a", (c1, hw, hw), "if", 256, 128, rng.integers(-40, 40, size=(c1, hw, hw)),
                       [Projection(INPUT, first, unit=1.0)]),
            Population("b", pooled.out_shape, "if", 128, 64, np.zeros(pooled.out_shape, np.int64),
                       [Projection("a", pooled)]),
            Population("out", (3,), "readout", 0, 0, np.zeros(3, np.int64), [Projection("b", readout)])]
    snn = SNNGraph((c0, hw, hw), pops, profile=LOIHI2, T=T)
    return snn, rng.random((6, c0, hw, hw)), T


@pytest.mark.parametrize("hw", [4, 8])
def test_the_compiled_loop_sum_pools_for_pooled_convolutions(monkeypatch, hw):
    """A layer read only through a pooled convolution hands the convolution its spikes already
    sum-pooled (``PoolPlan``), in either neuron order; with nothing recorded it keeps no spikes at
    all. Readout, counts and overflows equal stepping the plain models, recorded spikes too."""
    snn, x, _ = pooled_network(hw, seed=hw)
    net = lower(snn)
    cur = encode(snn, x)
    plain = simulate(net, cur, record=True, chunk=1, fast=False, prepared=SimNet.build(net, channels_last=False))
    assert plain.spikes["a"].sum() > 0 and plain.spikes["b"].sum() > 0
    assert ("a" in channels_last_order(net)) == (hw == 8)
    plans = []
    run_compiled = FastIF.run_compiled
    monkeypatch.setattr(FastIF, "run_compiled", lambda self, t0, a, consts, j0, spikes, pooled, plan, *r: (
        plans.append((self.lif.p.name, plan is not None, spikes is not None)),
        run_compiled(self, t0, a, consts, j0, spikes, pooled, plan, *r))[1])
    for chunk in (1, 3, None):
        plans.clear()
        assert_same(plain, simulate(net, cur, record=True, chunk=chunk, loop="compiled"))
        assert ("a", True, True) in plans  # pooled, and the spikes kept for the record
        plans.clear()
        quiet = simulate(net, cur, chunk=chunk, loop="compiled")
        assert ("a", True, False) in plans and ("a", True, True) not in plans  # pooled only
        assert np.array_equal(plain.readout, quiet.readout) and np.array_equal(plain.final, quiet.final)
        assert all(np.array_equal(plain.spike_counts[k], quiet.spike_counts[k]) for k in plain.spike_counts)
        assert plain.overflow == quiet.overflow


def test_the_compiled_loop_on_two_threads_equals_it_on_one(monkeypatch, cnn):
    """On one torch thread (as in the test workers) sim calls the compiled loop's serial build, on
    two the parallel one, whose jobs (blocks of neurons, whole pooled rows) must not share a sum."""
    import torch

    from spikeport.targets import sim_models

    calls = []
    parallel = sim_models.integrate_fire
    monkeypatch.setattr(sim_models, "integrate_fire", lambda *a: (calls.append(1), parallel(*a))[1])
    q, x = cnn.q(4), cnn.data.x_test[:16]
    net = lower(q)
    cur = encode(q, x)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = simulate(net, cur, record=True)
        assert not calls
        torch.set_num_threads(2)
        two = simulate(net, cur, record=True)
        quiet = simulate(net, cur)
    finally:
        torch.set_num_threads(threads)
    assert calls
    assert_same(one, two)
    assert np.array_equal(one.readout, quiet.readout)
    assert all(np.array_equal(one.spike_counts[k], quiet.spike_counts[k]) for k in one.spike_counts)
