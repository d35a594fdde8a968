"""QCFS training recipe (``spikeport train``): the model zoo's checkpoints are made with it.

SGD with momentum 0.9, weight decay 5e-4 and a cosine learning-rate schedule, as in the QCFS
authors' code; light random-shift augmentation for image inputs. The recipe is deterministic for
a given seed on one machine (single-threaded CPU training).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spikeport.models.data import SPLIT_SEED, load_dataset
from spikeport.models.qcfs import QCFS
from spikeport.models.zoo import ARCHITECTURES, build_model, save_checkpoint


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


def train(cfg: TrainConfig, progress: bool = True) -> tuple[nn.Module, dict]:
    """Train ``cfg.arch`` on its bundled data set; returns (model, meta for the checkpoint)."""
    from tqdm import tqdm

    builder, dataset, flat = ARCHITECTURES[cfg.arch]
    data = load_dataset(dataset, flat=flat)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.arch, levels=cfg.levels, **cfg.arch_kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(data.x_train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs * steps_per_epoch)
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    shift = cfg.shift_augment if cfg.shift_augment is not None else data.x_train.shape[-1] // 14
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=f"train {cfg.arch}", disable=not progress)
    for _epoch in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            xb = _shift(x_train[idx], shift, gen)
            loss = loss_fn(model(xb), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        bar.set_postfix(loss=f"{total / len(order):.4f}")
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
        "train_seconds": round(seconds, 1),
        "torch_version": str(torch.__version__),
        "trained_on": _dt.date.today().isoformat(),
        "recipe": "spikeport.models.train (SGD momentum 0.9, cosine schedule, QCFS activations)",
    }
    return model.eval(), meta


def train_and_save(cfg: TrainConfig, out: Path, progress: bool = True) -> dict:
    torch.set_num_threads(1)
    model, meta = train(cfg, progress=progress)
    arch_kwargs = {"levels": cfg.levels, **cfg.arch_kwargs}
    save_checkpoint(out, cfg.arch, arch_kwargs, model, meta)
    return meta
