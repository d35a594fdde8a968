"""spikeport: a trained ANN -> calibrated integer SNN -> Lava / Loihi-style targets, verified spike for
spike against the PyTorch reference.

    import spikeport as sp
    p = sp.prepare("cnn_mnist")                        # load, pick the data set, convert
    dep = p.compile(T=8, method="qcfs")                # float SNN, integer SNN, process network: once
    trace = sp.run(dep, p.data.x_test, target="sim")   # torch_float | torch_int | sim | lava
    rows, _ = sp.verify(dep, p.data.x_test[:32], targets=("sim", "lava"))

    model = sp.load_model("cnn_mnist")                 # the same, step by step: .pt, .onnx or bundled
    data = sp.dataset_for(model)
    snn = sp.convert(model.graph, data.x_train[:512])  # IF neurons, thresholds, readout
    q = sp.quantize(snn, data.x_train[:512], T=8)      # integers under the loihi2 profile, for T=8
    dep = sp.deploy(q, snn)                            # lowered once to Lava processes
    work = sp.count_work(q, sp.run(dep, data.x_test[:32], target="sim", record=True))
    work.per_inference(q.profile.energy)               # messages, payloads, synops, neuron updates, uJ
"""

from importlib.metadata import version

__version__ = version("spikeport")

from spikeport.api import (
    Prepared,
    accuracy,
    ann_accuracy,
    dataset_for,
    import_model,
    load_model,
    prepare,
    run,
    run_float,
    verify,
)
from spikeport.models.data import load_dataset
from spikeport.models.train import finetune
from spikeport.models.zoo import average_pools, load_checkpoint
from spikeport.toolchain.costs.metrics import count_work
from spikeport.toolchain.costs.resources import estimate
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.deployment import Deployment
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.lowering import deploy, lower
from spikeport.toolchain.passes.methods import apply_method
from spikeport.toolchain.passes.quantize import quantize

__all__ = [
    "Deployment",
    "Prepared",
    "SpikeportError",
    "__version__",
    "accuracy",
    "ann_accuracy",
    "apply_method",
    "average_pools",
    "convert",
    "count_work",
    "dataset_for",
    "deploy",
    "encode",
    "estimate",
    "finetune",
    "import_model",
    "load_checkpoint",
    "load_dataset",
    "load_model",
    "lower",
    "prepare",
    "quantize",
    "run",
    "run_float",
    "verify",
]
