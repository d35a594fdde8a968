"""The spiking max-pool: the graph rewrites that make every max-pool read spikes, its semantics
(a window's spike count is the largest count among its sources), and sim and Lava equal to the
integer reference spike for spike; planted faults in the gate are caught."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeport.api import import_model, verify
from spikeport.quality.mutants import MUTANTS, Checks
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.ir import ann
from spikeport.toolchain.ir.interpret import run_graph
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.quantize import quantize

X = np.random.default_rng(1).random((10, 1, 10, 10)).astype(np.float32)


def lenet() -> nn.Module:
    """Max-pool before the activation (ceil mode, padding) and after it."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(24, 3))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.2, 0.2)
    return net.eval()


class CatPool(nn.Module):
    """A max-pool of a channel concatenation (GoogLeNet, SqueezeNet)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(1, 2, 1)
        self.pool, self.fc = nn.MaxPool2d(2, 2), nn.Linear(5 * 5 * 5, 4)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        return self.fc(torch.flatten(self.pool(y), 1))


@pytest.mark.parametrize("make", [lenet, CatPool])
def test_rewrites_keep_the_function_and_make_every_pool_read_spikes(make):
    net = make().eval()
    graph = import_model(net, (1, 10, 10), maxpool="spiking")
    acts = {n.name for n in graph.nodes if isinstance(n.op, (*ann.ACTIVATIONS, ann.MaxPool2d))}
    for n in graph.nodes:
        if isinstance(n.op, ann.MaxPool2d):
            assert n.inputs[0] in acts, f"{n.name} reads {n.inputs[0]}"
    with torch.no_grad():
        want = net(torch.from_numpy(X)).numpy()
    got = run_graph(graph, X)[graph.output.name].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_pool_counts_the_largest_count_of_its_window():
    snn = convert(import_model(lenet(), (1, 10, 10), maxpool="spiking"), X[:8])
    tr = run_reference(snn, X, 8, record=True)
    pools = [p for p in snn.populations if p.kind == "maxpool"]
    assert len(pools) == 2
    for p in pools:
        syn = p.inputs[0].synapse
        counts = torch.as_tensor(tr.spikes[p.inputs[0].source].sum(0), dtype=torch.float32)
        want = F.max_pool2d(counts.reshape(len(X), *syn.in_shape), syn.kernel, syn.stride, syn.padding,
                            ceil_mode=syn.ceil_mode).reshape(len(X), -1)
        np.testing.assert_array_equal(tr.spikes[p.name].sum(0), want.numpy())
        assert tr.spikes[p.name].max() <= 1


def test_sim_equals_the_reference_with_pools_at_several_T():
    snn = convert(import_model(lenet(), (1, 10, 10), maxpool="spiking"), X[:8])
    for T in (1, 4, 9):
        q = quantize(snn, X[:8], T)
        (row,), _ = verify(deploy(q), X[8:], targets=("sim",))
        assert row.exact and row.spikes > 0, row.line()


def test_a_pool_of_the_analog_input_is_refused_by_name():
    net = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 2))
    graph = import_model(net, (1, 10, 10), maxpool="spiking")
    with pytest.raises(SpikeportError, match=r"MaxPool2d at '0'.*must follow a ReLU"):
        convert(graph, X[:4])


def test_unknown_mode_is_refused():
    with pytest.raises(SpikeportError, match="unknown max-pool mode 'max'"):
        import_model(lenet(), (1, 10, 10), maxpool="max")


def test_the_gate_mutant_is_caught():
    mutant = next(m for m in MUTANTS if m.name == "maxpool-keeps-firing")
    checks = Checks(network_cases=40, process_cases=0)
    checks.verify_runs = []
    with mutant.plant():
        caught = checks.run()
    assert caught is not None and "p" in caught[1]


@pytest.mark.lava
def test_pools_in_lava_equal_sim_and_the_reference():
    snn = convert(import_model(CatPool(), (1, 10, 10), maxpool="spiking"), X[:8])
    q = quantize(snn, X[:8], 5)
    rows, _ = verify(deploy(q), X[8:], targets=("sim", "lava"))
    assert all(r.exact for r in rows), [r.line() for r in rows]
    q = quantize(convert(import_model(lenet(), (1, 10, 10), maxpool="spiking"), X[:8]), X[:8], 4)
    rows, _ = verify(deploy(q), X[8:], targets=("sim", "lava"))
    assert all(r.exact for r in rows), [r.line() for r in rows]
