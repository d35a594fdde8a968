"""The seed methods: their invariants, and their integer exactness on every target."""

import numpy as np
import pytest
import torch

from spikeport.api import verify
from spikeport.models.zoo import CHECKPOINT_DIR, load_checkpoint
from spikeport.targets.method_kernels import COSKernel, TPPKernel
from spikeport.toolchain.hardware.prng import prng_u32
from spikeport.toolchain.oracle.neurons import Excursion, cos_initial_potential, permute_in_time, run_cos, run_tpp
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.methods import apply_method, ftbc_step_error
from spikeport.toolchain.passes.quantize import quantize


def test_prng_is_the_same_in_python_numpy_and_torch():
    sample = np.arange(5).reshape(-1, 1)
    neuron = np.arange(300)
    a = prng_u32(11, 3, sample, neuron, 7)
    b = prng_u32(11, 3, torch.as_tensor(sample), torch.as_tensor(neuron), 7).numpy()
    c = np.array([[prng_u32(11, 3, int(s), int(n), 7) for n in neuron] for s in sample[:, 0]])
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 2 ** 32
    assert len(np.unique(a)) == a.size  # no collisions among these 1,500 draws
    many = prng_u32(0, 0, np.arange(200).reshape(-1, 1), np.arange(500), 1) / 2 ** 32
    assert abs(many.mean() - 0.5) < 0.01 and np.histogram(many, 10)[0].min() > 9000


@pytest.mark.parametrize("T", [1, 4, 9])
def test_tpp_membrane_of_n_thresholds_gives_n_spikes(T):
    theta, B, N = 64, 3, 40
    n = np.random.default_rng(T).integers(0, T + 1, (B, N))
    # reference: the whole input arrives at step 0, so v = n * theta exactly
    cur = lambda t: torch.as_tensor(n * theta if t == 0 else np.zeros((B, N)), dtype=torch.int64)  # noqa: E731
    for seed in range(4):
        s = run_tpp(cur, T, (B, N), theta, 0, True, Excursion(0, None), "cpu", seed, 2, torch.arange(B))
        assert np.array_equal(s.sum(0).numpy(), n)
    k = TPPKernel(np, prng_u32, (B, N), theta, 0, T, 5, 2, np.arange(N))  # the pipelined kernel too
    k.reset()
    counts = sum(k.step(j, n * theta if j == 0 else 0, np.arange(B).reshape(-1, 1)).astype(int)
                 for j in range(2 * T))
    assert np.array_equal(counts, n)


def test_tpp_saturates_and_stays_silent():
    cur = lambda t: torch.tensor([[10 ** 6, -500]])  # noqa: E731
    s = run_tpp(cur, 6, (1, 2), 100, 0, True, Excursion(0, None), "cpu", 0, 0, torch.arange(1))
    assert s[:, 0, 0].all() and not s[:, 0, 1].any()


def test_cos_shift_is_the_prescribed_one():
    theta, v0 = 16, 8
    # neuron 0: fires at step 0 (m = 20) then is driven negative -> one spike too many
    # neuron 1: never fires although v ends >= theta is impossible; give it a late large input:
    #           it ends the pre-run with v >= theta only if it fired... use a quiet neuron instead
    # neuron 2: fires every step (no quiet sample) and ends >= theta -> shifted up by S * theta
    seq = [[12, 2, 40], [-9, 1, 40], [-9, 1, 40]]
    cur = lambda t: torch.tensor([seq[t] if t < 3 else [0, 0, 40]], dtype=torch.int64)  # noqa: E731
    S = 5
    s = run_cos(cur, S, 3, (1, 3), theta, v0, True, Excursion(v0, None), "cpu")
    # neuron 0 pre-run: m = 20 (spike, v = 4), m = -5, m = -14 -> lower; shift = max(16, 20 - 16 + 1) = 16
    # real run from 8 - 16 = -8: m = 4, -5, -14, ... never fires
    assert s[:, 0, 0].sum() == 0
    # neuron 1: m = 10, 11, 12: quiet, v < theta -> unchanged; real run equals the plain IF: no spike in 5 steps
    assert s[:, 0, 1].sum() == 0
    # neuron 2: forced to fire at every real step
    assert s[:, 0, 2].all()
    v = cos_initial_potential(torch.tensor([-14, 12]), torch.tensor([1, 0]), torch.tensor([20, 0]),
                              torch.tensor([0, 12]), torch.tensor([True, True]), theta, v0, S, True)
    assert v.tolist() == [v0 - 16, v0]
    vf = cos_initial_potential(torch.tensor([-0.9, 1.2]), torch.tensor([1, 1]), torch.tensor([3.0, 1.5]),
                               torch.tensor([0.2, 0.9]), torch.tensor([True, True]), 1.0, 0.5, S, False)
    assert vf.tolist() == pytest.approx([0.5 - (3.0 - 0.999), 0.5 + 1.0])  # authors' constants


def test_cos_kernel_and_reference_agree_on_random_input():
    rng = np.random.default_rng(0)
    theta, v0, rho, S = 32, 16, 3, 6
    a = rng.integers(-25, 45, (S, 4, 50))
    ref = run_cos(lambda t: torch.as_tensor(a[t]), S, rho, (4, 50), theta, v0, True, Excursion(v0, None), "cpu")
    k = COSKernel(np, (4, 50), theta, v0, rho, S)
    k.reset()
    out = [k.step(j, a[j] if j < S else np.zeros((4, 50), np.int64)) for j in range(rho + S)]
    assert np.array_equal(np.stack(out[rho:]), ref.numpy())


def test_permutation_keeps_every_neurons_count():
    s = torch.rand((8, 5, 30), generator=torch.Generator().manual_seed(0)) > 0.6
    p = permute_in_time(s, torch.Generator().manual_seed(1))
    assert torch.equal(p.sum(0), s.sum(0)) and not torch.equal(p, s)


@pytest.mark.parametrize("T", [1, 2, 4])
def test_ftbc_shrinks_the_mean_per_step_error_on_calibration_data(mlp, T):
    x = mlp.data.x_train[:600]
    before = ftbc_step_error(mlp.snn, mlp.model.graph, x, T)
    f = apply_method(mlp.snn, "ftbc", T, graph=mlp.model.graph, calib_x=np.concatenate([x, x]), alpha=0.2,
                     batches=6)
    after = ftbc_step_error(f, mlp.model.graph, x, T)
    for layer in before:  # mean |per-step, per-channel error| of every layer goes down
        assert np.abs(after[layer]).mean() < 0.85 * np.abs(before[layer]).mean(), layer
    assert f.hidden[0].time_bias.shape == (T, mlp.snn.hidden[0].size)


def test_ftbc_bias_is_per_step_and_channel_on_conv_layers(cnn):
    f = apply_method(cnn.snn, "ftbc", 2, graph=cnn.model.graph, calib_x=cnn.data.x_train[:400], alpha=0.2,
                     batches=2)
    assert [p.time_bias.shape for p in f.hidden] == [(2, 16, 1, 1), (2, 32, 1, 1), (2, 64, 1, 1)]
    assert all(np.abs(p.time_bias).max() > 0 for p in f.hidden)


def test_ftbc_auto_alpha_never_worse_than_qcfs_on_its_held_out_part(mlp):
    f = apply_method(mlp.snn, "ftbc", 2, graph=mlp.model.graph, calib_x=mlp.data.x_train, calib_y=mlp.data.y_train)
    choice = f.meta["ftbc"]["alpha_choice"]
    chosen = f.meta["ftbc"]["alpha"]
    assert choice["held_out_acc"][str(float(chosen))] >= choice["held_out_acc"]["0.0"]


@pytest.mark.parametrize("method,T,opts", [("ftbc", 3, {"alpha": 0.3}), ("cos", 2, {"rho": 4}),
                                           ("cos", 5, {"rho": 2}), ("tpp", 3, {"seed": 4})])
@pytest.mark.parametrize("bundle", ["mlp", "resnet"])
def test_every_method_is_exact_on_sim_and_the_reference(method, T, opts, bundle, request):
    b = request.getfixturevalue(bundle)
    if method == "ftbc":
        opts = {**opts, "graph": b.model.graph, "calib_x": b.data.x_train}
    q = quantize(apply_method(b.snn, method, T, **opts), b.calib, T)
    (row,), _ = verify(deploy(q), b.data.x_test[:60], targets=("sim",))
    assert row.exact, row.line()


@pytest.mark.lava
@pytest.mark.parametrize("method,T,opts", [("ftbc", 3, {"alpha": 0.3}), ("cos", 2, {"rho": 3}),
                                           ("tpp", 3, {"seed": 2})])
def test_every_method_is_exact_in_lava(method, T, opts, resnet):
    if method == "ftbc":
        opts = {**opts, "graph": resnet.model.graph, "calib_x": resnet.data.x_train}
    q = quantize(apply_method(resnet.snn, method, T, **opts), resnet.calib, T)
    rows, _ = verify(deploy(q), resnet.data.x_test[:4], targets=("sim", "lava"))
    assert len(rows) == 3 and all(r.exact for r in rows), [r.line() for r in rows]


def test_tpp_seeds_change_spikes_but_a_seed_reproduces_them(mlp):
    x, T = mlp.data.x_test[:20], 4
    a = run_reference(apply_method(mlp.snn, "tpp", T, seed=1), x, T, record=True)
    b = run_reference(apply_method(mlp.snn, "tpp", T, seed=1), x, T, record=True)
    c = run_reference(apply_method(mlp.snn, "tpp", T, seed=2), x, T, record=True)
    k = mlp.snn.hidden[0].name
    assert np.array_equal(a.spikes[k], b.spikes[k]) and not np.array_equal(a.spikes[k], c.spikes[k])


@pytest.mark.parametrize("name", ["mlp_digits"])
def test_nq_twin_differs_only_in_the_noise(name):
    _, plain = load_checkpoint(CHECKPOINT_DIR / f"{name}.pt")
    _, nq = load_checkpoint(CHECKPOINT_DIR / f"{name}_nq.pt")
    a, b = dict(plain["meta"]["train_config"]), dict(nq["meta"]["train_config"])
    assert a.pop("noise") is False and b.pop("noise") is True
    a.pop("seed"), b.pop("seed")
    assert a == b and plain["arch"] == nq["arch"]
    sig = nq["meta"]["nq_sigmas"]
    assert len(sig) == a["epochs"] and all(v > 0 for row in sig for k, v in row.items() if k != "epoch")
