"""The CNN families users bring (defined in models/families.py as torchvision defines them): each
through torch.fx and an ONNX export, converted, quantized, and ``sim`` equal to the integer
reference in every layer, step and neuron; two of them also in Lava."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from spikeport.api import import_model, verify
from spikeport.models.families import FAMILIES, randomize_batchnorm
from spikeport.toolchain.ir import ann
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.quantize import quantize

# small members of each family (widths scaled down), 3x32x32 inputs
CONFIGS = {
    "resnet18": ("resnet18", dict(width=8)),
    "resnet18_imagenet_stem": ("resnet18", dict(width=8, stem="imagenet")),
    "resnet34": ("resnet34", dict(width=4)),
    "vgg11_bn": ("vgg11_bn", dict(width=0.125)),
    "vgg16_bn": ("vgg16_bn", dict(width=0.125)),
    "mobilenet_v2": ("mobilenet_v2", dict(width_mult=0.25, first_stride=1)),
    "squeezenet1_1": ("squeezenet1_1", dict(width=0.25)),
    "inception": ("inception", dict(width=8)),
    "densenet_block": ("densenet_block", dict(growth=4)),
    "shufflenet_v2_units": ("shufflenet_v2_units", dict(width=8)),
    "mnasnet_head": ("mnasnet_head", dict(width=8)),
}
X = np.random.default_rng(0).random((10, 3, 32, 32)).astype(np.float32)


def build(name: str) -> torch.nn.Module:
    family, kwargs = CONFIGS[name]
    torch.manual_seed(0)
    return randomize_batchnorm(FAMILIES[family](**kwargs))


def integer_net(graph: ann.Graph, T: int = 4):
    return quantize(convert(graph, X[:8]), X[:8], T)


def export(module: torch.nn.Module, path, dynamo: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(X[:1]),), str(path), dynamo=dynamo, verbose=False)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_family_converts_and_runs_exactly_through_both_importers(name, tmp_path):
    module = build(name)
    graph = import_model(module, (3, 32, 32), maxpool="average")
    export(module, tmp_path / "m.onnx", dynamo=name in ("resnet18", "densenet_block", "shufflenet_v2_units"))
    onnx_graph = import_model(tmp_path / "m.onnx", maxpool="average")
    for g in (graph, onnx_graph):
        q = integer_net(g)
        (row,), _ = verify(deploy(q), X[8:10], targets=("sim",))
        assert row.exact, row.line()
        assert row.spikes > 0
    # both importers see the same network: same populations, thresholds and integer weights
    a, b = integer_net(graph), integer_net(onnx_graph)
    assert sorted(p.threshold for p in a.populations) == sorted(p.threshold for p in b.populations)
    assert sum(p.size for p in a.populations) == sum(p.size for p in b.populations)


def test_a_module_called_twice_is_two_nodes_with_unique_names():
    """torchvision's BasicBlock calls one self.relu twice; names used to collide (18 populations,
    10 distinct names) and sim computed another network than the reference."""
    graph = import_model(build("resnet18"), (3, 32, 32))
    names = [n.name for n in graph.nodes]
    assert len(names) == len(set(names))
    assert "layer1.0.relu" in names and "layer1.0.relu#2" in names
    with pytest.raises(ValueError, match="two nodes are named"):
        ann.Graph([graph.nodes[0], graph.nodes[0]])


def test_the_imagenet_stem_becomes_a_sparse_connection_not_a_dense_matrix():
    """A substituted 3x3/2 max-pool with padding and the next 3x3 conv do not fuse into one
    convolution; they used to need a 4096x16384 dense matrix and were refused."""
    from spikeport.toolchain.ir.snn import SparseSynapse
    from spikeport.toolchain.passes.compose import DENSE_SHARE

    q = integer_net(import_model(build("resnet18_imagenet_stem"), (3, 32, 32), maxpool="average"))
    sparse_inputs = [pr for p in q.populations for pr in p.inputs if isinstance(pr.synapse, SparseSynapse)]
    assert [pr.source for pr in sparse_inputs] == ["relu", "relu"]  # the stem into layer1.0 and its shortcut
    assert all(pr.synapse.weight.nnz < DENSE_SHARE * np.prod(pr.synapse.weight.shape) for pr in sparse_inputs)


def test_concatenation_adds_no_neurons():
    """Concat is lowered as the consumer's synapses split by input slice."""
    graph = import_model(build("densenet_block"), (3, 32, 32))
    snn = convert(graph, X[:8])
    acts = [n for n in graph.nodes if isinstance(n.op, ann.ACTIVATIONS)]
    assert len(snn.hidden) == len(acts)
    assert any(len(p.inputs) > 1 for p in snn.populations)  # one projection per concatenated input


@pytest.mark.lava
@pytest.mark.parametrize("name", ["resnet18", "densenet_block"])
def test_family_in_lava(name):
    q = integer_net(import_model(build(name), (3, 32, 32), maxpool="average"), T=3)
    rows, _ = verify(deploy(q), X[8:9], targets=("sim", "lava"))
    assert all(r.exact for r in rows), [r.line() for r in rows]


@pytest.mark.parametrize("name", ["resnet18_imagenet_stem", "vgg11_bn", "squeezenet1_1", "inception"])
def test_family_with_the_spiking_maxpool_through_both_importers(name, tmp_path):
    """Every max-pool kept as spikeport's spiking max-pool (SqueezeNet's ceil-mode pools of Fire
    concatenations, the inception block's 3x3/1 pool branch, the ImageNet stem's padded pool)."""
    module = build(name)
    export(module, tmp_path / "m.onnx", dynamo=False)
    for g in (import_model(module, (3, 32, 32), maxpool="spiking"),
              import_model(tmp_path / "m.onnx", maxpool="spiking")):
        q = integer_net(g)
        assert any(p.kind == "maxpool" for p in q.populations)
        (row,), _ = verify(deploy(q), X[8:10], targets=("sim",))
        assert row.exact and row.spikes > 0, row.line()
