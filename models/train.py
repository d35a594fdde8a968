"""QCFS training recipe (``spikeport train``): the model zoo's checkpoints are made with it.

With ``noise=True`` it is the NQ recipe (Huang et al., TNNLS 2025): the same training plus
Gaussian noise on every QCFS activation, whose standard deviation per layer is refitted after
every epoch from the measured gap between the ANN and its converted SNN at ``noise_T`` steps
(sigma = 0 in the first epoch). Everything else, including the budget, is the plain recipe's,
so an NQ checkpoint and its QCFS twin differ only in the noise.

SGD with momentum 0.9, weight decay 5e-4 and a cosine learning-rate schedule, as in the QCFS
authors' code; light random-shift augmentation for 28x28 inputs. The last ``val_samples`` of the
training split are held out for model selection: every few epochs the network is converted and
its float SNN is run at ``T = select_T`` (default: the QCFS level count L) on them, and the best
epoch of the best seed is kept. Why: two seeds of the same recipe can give ANNs of equal accuracy
whose SNNs differ by 20 points at T=8 (the layer after the first fires too often when its input
spikes arrive unevenly); selecting on held-out training data, never on the test split, avoids
shipping the unlucky one. The recipe is deterministic for a given seed on one machine.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikeport.models.data import SPLIT_SEED, Dataset, load_dataset
from spikeport.models.qcfs import QCFS
from spikeport.models.zoo import ARCHITECTURES, average_pools, build_model, save_checkpoint
from spikeport.toolchain.convert import convert
from spikeport.toolchain.import_torch import import_torch
from spikeport.toolchain.interpret import run_graph
from spikeport.toolchain.passes import normalize
from spikeport.toolchain.reference import run_reference


@dataclass
class TrainConfig:
    arch: str
    levels: int = 8
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    seed: int = 0
    shift_augment: int | None = None  # random translation in pixels; None: 2 for 28x28, 0 for 8x8
    val_samples: int = 500  # held out of the training split for model selection (0: no selection)
    noise: bool = False  # NQ: Gaussian noise on the activations, sigma per layer refitted every epoch
    noise_T: int = 4  # NQ: time steps of the SNN whose gap to the ANN sets sigma
    select_T: int | None = None  # time steps of the selection metric; None: levels
    eval_every: int = 5
    maxpool: str = "spiking"  # how the selection metric converts MaxPool2d (spikeport's passes.MAXPOOL_MODES)
    arch_kwargs: dict = field(default_factory=dict)


def set_activation_mode(model: nn.Module, mode: str) -> None:
    """Switch every QCFS activation between ``quantized`` and ``clip`` (unquantized)."""
    for m in model.modules():
        if isinstance(m, QCFS):
            m.mode = mode


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        out = model(torch.from_numpy(x[i:i + batch]))
        correct += int((out.argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / len(x)


def _shift(xb: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift <= 0 or xb.dim() != 4:
        return xb
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def snn_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, T: int, maxpool: str = "spiking") -> float:
    """Accuracy of the converted float SNN (the selection metric)."""

    snn = convert(normalize(import_torch(model.eval(), tuple(x.shape[1:])), maxpool=maxpool), x[:256])
    return float((run_reference(snn, x, T).predictions == y).mean())


def _fit_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, x: torch.Tensor, y: torch.Tensor,
               batch_size: int, shift: int, gen: torch.Generator) -> float:
    """One epoch of SGD over (x, y) in a random order with random shifts; the mean loss."""
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(len(x), generator=gen)
    total = 0.0
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        loss = loss_fn(model(_shift(x[idx], shift, gen)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item() * len(idx)
    return total / len(order)


@torch.no_grad()
def nq_sigmas(model: nn.Module, x: np.ndarray, T: int, maxpool: str = "spiking") -> dict[str, float]:
    """NQ (Huang et al.): per QCFS layer, the standard deviation of the gap between the ANN
    activation (no noise) and the converted SNN's rate (spike count * threshold / T) on held-out
    training samples. The next epoch trains with Gaussian noise of that size on the activation."""

    was_training = model.training
    graph = normalize(import_torch(model.eval(), tuple(x.shape[1:])), maxpool=maxpool)
    snn = convert(graph)
    trace = run_reference(snn, x, T, record=True)
    acts = run_graph(graph, x, keep={p.name for p in snn.neurons})
    out = {}
    for p in snn.neurons:
        rate = trace.spikes[p.name].sum(0).astype(np.float64) * p.threshold / T
        gap = acts[p.name].reshape(len(x), -1).numpy() - rate
        out[p.name] = float(gap.std())
    model.train(was_training)
    return out


def train(cfg: TrainConfig, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train ``cfg.arch`` on its bundled data set; returns (model, meta for the checkpoint)."""
    from tqdm import tqdm

    _, dataset, flat = ARCHITECTURES[cfg.arch]
    data = load_dataset(dataset, flat=flat)
    n_fit = len(data.x_train) - cfg.val_samples
    x_val, y_val = data.x_train[n_fit:], data.y_train[n_fit:]
    select_T = cfg.select_T or cfg.levels
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.arch, levels=cfg.levels, **cfg.arch_kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-n_fit // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps_per_epoch)
    x_train, y_train = torch.from_numpy(data.x_train[:n_fit]), torch.from_numpy(data.y_train[:n_fit])
    shift = cfg.shift_augment if cfg.shift_augment is not None else data.x_train.shape[-1] // 14
    t0 = time.perf_counter()
    best: tuple[float, int, dict] | None = None
    history, noise_history = [], []
    bar = tqdm(range(cfg.epochs), desc=f"train {cfg.arch} seed {cfg.seed}", disable=not progress)
    for epoch in bar:
        loss = _fit_epoch(model, opt, sched, x_train, y_train, cfg.batch_size, shift, gen)
        bar.set_postfix(loss=f"{loss:.4f}")
        if cfg.noise:
            sigmas = nq_sigmas(model, x_val, cfg.noise_T, cfg.maxpool)
            for name, sigma in sigmas.items():
                model.get_submodule(name).noise_std = sigma
            noise_history.append({"epoch": epoch + 1, **sigmas})
        last = epoch == cfg.epochs - 1
        if cfg.val_samples and ((epoch + 1) % cfg.eval_every == 0 or last):
            val = snn_accuracy(model, x_val, y_val, select_T, cfg.maxpool)
            history.append({"epoch": epoch + 1, "val_snn_acc": val})
            if best is None or val >= best[0]:
                best = (val, epoch + 1, copy.deepcopy(model.state_dict()))
    if best is not None:
        model.load_state_dict(best[2])
    seconds = time.perf_counter() - t0
    acc = accuracy(model, data.x_test, data.y_test)
    set_activation_mode(model, "clip")
    acc_clip = accuracy(model, data.x_test, data.y_test)
    set_activation_mode(model, "quantized")
    meta = {
        "dataset": dataset,
        "split_seed": SPLIT_SEED,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "ann_test_acc": acc,
        "ann_clip_test_acc": acc_clip,  # same weights, unquantized activations (the large-T limit)
        "train_config": asdict(cfg),
        "selection": {
            "metric": f"float SNN accuracy at T={select_T} on the last {cfg.val_samples} training samples "
                      "(held out from fitting)",
            "history": history, "chosen_epoch": best[1] if best else cfg.epochs,
            "val_snn_acc": best[0] if best else None},
        "nq_sigmas": noise_history if cfg.noise else None,
        "train_seconds": round(seconds, 1),
        "torch_version": str(torch.__version__),
        "trained_on": _dt.date.today().isoformat(),
        "recipe": "spikeport.models.train (SGD momentum 0.9, cosine schedule, QCFS activations)",
    }
    return model.eval(), meta


def train_and_save(cfg: TrainConfig, out: Path, seeds: tuple[int, ...] | None = None,
                   progress: bool = True) -> dict:
    """Train one model per seed and save the one with the best selection metric."""
    torch.set_num_threads(1)
    runs = []
    for seed in seeds or (cfg.seed,):
        model, meta = train(dataclasses.replace(cfg, seed=seed), progress=progress)
        runs.append((meta["selection"]["val_snn_acc"] or 0.0, -seed, model, meta))
    _, _, model, meta = max(runs, key=lambda r: (r[0], r[1]))
    meta["selection"]["seeds"] = {str(-r[1]): r[0] for r in runs}
    arch_kwargs = {"levels": cfg.levels, **cfg.arch_kwargs}
    save_checkpoint(out, cfg.arch, arch_kwargs, model, meta)
    return meta


def finetune(model: nn.Module, data: Dataset, epochs: int = 3, lr: float = 0.01, batch_size: int = 64,
             seed: int = 0, progress: bool = True) -> tuple[nn.Module, dict]:
    """Replace the max-pools of ``model`` by average pools (:func:`~spikeport.models.zoo.average_pools`,
    what ``--maxpool average`` substitutes) and train it ``epochs`` more epochs on ``data``'s training
    split (SGD, cosine schedule from ``lr``, the training recipe's augmentation). Returns the model
    (changed in place) and what was done, with its test accuracy before and after."""
    from tqdm import tqdm

    average_pools(model)
    before = accuracy(model, data.x_test, data.y_test)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * -(-len(x) // batch_size)))
    shift = data.x_train.shape[-1] // 14 if data.x_train.ndim == 4 else 0
    t0 = time.perf_counter()
    losses = []
    for _ in tqdm(range(epochs), desc="finetune", disable=not progress):
        losses.append(_fit_epoch(model, opt, sched, x, y, batch_size, shift, gen))
    model.eval()
    return model, {"finetune": {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                                "losses": losses, "ann_test_acc_substituted": before,
                                "ann_test_acc": accuracy(model, data.x_test, data.y_test),
                                "seconds": round(time.perf_counter() - t0, 1),
                                "recipe": "max-pools replaced by average pools (count_include_pad=False), then SGD"}}
