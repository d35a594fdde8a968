"""``device`` runs conversion, calibration, the reference and ``sim`` through one code path; the
integers must not depend on it. This machine may have no GPU: the test then runs that path with
an explicit ``torch.device("cpu")`` (where a CUDA device exists it runs there too)."""

import numpy as np
import pytest
import torch

from spikeport.api import run, verify
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.passes.methods import apply_method
from spikeport.toolchain.passes.quantize import quantize

DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("method", ["ftbc", "tpp"])
def test_device_path_gives_the_same_integers(mlp, device, method):
    T, x = 3, mlp.data.x_test[:40]
    calib, y = mlp.data.x_train[:256], mlp.data.y_train[:256]

    def build(dev):
        kw = {} if dev is None else {"device": dev}
        snn = convert(mlp.model.graph, calib, **kw)
        f = apply_method(snn, method, T, mlp.model.graph, calib, y, **kw)
        return quantize(f, calib, T, **kw)

    base, q = build(None), build(device)
    for p0, p1 in zip(base.populations, q.populations, strict=True):
        assert p0.threshold == p1.threshold and np.array_equal(p0.bias, p1.bias)
        for a, b in zip(p0.inputs, p1.inputs, strict=True):
            assert np.array_equal(a.synapse.weight, b.synapse.weight)
    ref = run(deploy(base), x, "sim", record=True)
    for target in ("sim", "torch_int"):
        got = run(deploy(q), x, target, record=True, device=device)
        assert np.array_equal(got.final, ref.final)
    (row,), _ = verify(deploy(q), x, targets=("sim",), device=device)
    assert row.exact, row.line()
