"""``spikeport maxpool``: the three ways spikeport runs a max-pool network, side by side.

On a model with MaxPool2d layers (the bundled ``maxpool_cnn_mnist`` by default), for every T:

* ``average``: every max-pool replaced by average pooling over the elements the max would see
  (``--maxpool average``);
* ``average + finetune``: the same substitution in the PyTorch model, then a few epochs of
  training on the training split (``spikeport finetune``);
* ``spiking``: spikeport's spiking max-pool (``--maxpool spiking``), which keeps the max.

Each as the float SNN (``torch_float``) and as the integer SNN on ``torch_int`` and ``sim`` over the
whole test split (their logits must agree on every sample, their spikes on a subset), and on Lava
for the first ``lava_samples`` test samples (equal to sim and torch_int, spike for spike). The ANN
rows give the network with max-pools, with the substitution, and after the fine-tune.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

from spikeport.api import LoadedModel, accuracy, ann_accuracy, import_model, load_model, prepare, run_float, verify
from spikeport.models.data import load_dataset
from spikeport.models.train import finetune
from spikeport.models.zoo import ARCHITECTURES, bundled_checkpoint, load_checkpoint, save_checkpoint
from spikeport.studies.methods_table import MethodTable, _integer_rows

VARIANTS = ("average", "average + finetune", "spiking")


def compare_maxpool(model: str = "maxpool_cnn_mnist", Ts: tuple[int, ...] = (4, 8, 16), epochs: int = 3,
                    lava_samples: int = 16, verify_samples: int = 100, test_samples: int | None = None,
                    calib_samples: int = 512, out: Path | None = None, progress: bool = True) -> MethodTable:
    """The table above for ``model`` (a bundled name or a spikeport checkpoint with max-pools);
    the fine-tuned checkpoint is written to ``out / "finetuned.pt"`` when ``out`` is given."""
    path = Path(model) if str(model).endswith(".pt") else bundled_checkpoint(model)
    module, ckpt = load_checkpoint(path)
    _, dataset, flat = ARCHITECTURES[ckpt["arch"]]
    data = load_dataset(dataset, flat=flat)
    t0 = time.perf_counter()
    tuned, done = finetune(module, data, epochs=epochs, progress=progress)
    finetune_s = time.perf_counter() - t0
    if out is not None:
        save_checkpoint(Path(out) / "finetuned.pt", ckpt["arch"], ckpt["arch_kwargs"], tuned,
                        {**ckpt.get("meta", {}), **done}, pools="average")
    spiking = prepare(path, calib=calib_samples, maxpool="spiking")
    average = prepare(path, calib=calib_samples, maxpool="average")
    tuned_model = LoadedModel(import_model(tuned, data.input_shape), f"{path.stem} (fine-tuned)", dataset)
    finetuned = prepare(tuned_model, calib=calib_samples)
    x, y = data.x_test[:test_samples], data.y_test[:test_samples]
    table = MethodTable(path.stem, data.name, ckpt.get("meta", {}).get("train_config", {}).get("levels"), len(x))
    table.add("ann (max-pool)", "ann", None, [ann_accuracy(load_model(path, "spiking").graph, x, y)], len(x))
    table.add("ann (average substitution)", "ann", None, [ann_accuracy(average.model.graph, x, y)], len(x))
    table.add("ann (substitution + finetune)", "ann", None, [ann_accuracy(tuned_model.graph, x, y)], len(x))
    table.timings["finetune_s"] = finetune_s
    table.notes["finetune"] = done["finetune"]
    variants = dict(zip(VARIANTS, (average, finetuned, spiking), strict=True))
    n_lava = min(lava_samples, len(x))
    bar = tqdm(total=len(Ts) * len(VARIANTS) * (3 * len(x) + n_lava), desc=f"maxpool {path.stem}", unit="sample",
               disable=not progress, file=sys.stderr)
    for T in Ts:
        for label, prep in variants.items():
            bar.set_description(f"{path.stem} T={T} {label}")
            table.add(label, "torch_float", T, [accuracy(run_float(prep.snn, x, T), y)], len(x))
            bar.update(len(x))
            dep = prep.deploy(prep.snn, T)
            _integer_rows(table, label, dep, x, y, verify_samples, bar.update)
            if n_lava:
                t0 = time.perf_counter()
                rows, traces = verify(dep, x[:n_lava], targets=("sim", "lava"))
                table.timings[f"lava_{label}_T{T}_s"] = time.perf_counter() - t0
                table.checks += [{"method": label, "T": T, "check": "spikes", **r.to_dict()} for r in rows]
                table.add(label, "lava", T, [accuracy(traces["lava"], y[:n_lava])], n_lava)
                table.add(label, "sim", T, [accuracy(traces["sim"], y[:n_lava])], n_lava)
                bar.update(n_lava)
    bar.close()
    table.notes["all_checks_exact"] = all(c["exact"] for c in table.checks)
    return table
