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

The CIFAR recipe (:func:`recipe`, for ``resnet20_cifar10`` and ``vgg16_cifar10``) is the same loop
with what makes a 300-epoch GPU recipe fit a short budget: batch 256, SGD with Nesterov momentum and
a one-cycle schedule (linear warm-up over the first 15 %, then cosine to zero), label smoothing 0.1,
pad-4 random crops and horizontal flips, no weight decay on BatchNorm and biases, all 50,000
training images (no held-out selection: the last epoch is kept), and on a GPU bfloat16 autocast for
the convolutions with the QCFS staircase kept in float32 (``QCFS`` casts its input up), channels-last
memory. ``budget_seconds`` picks the epoch count that fits a wall-clock budget on the machine at hand
(timed on the first steps, the NQ refits included); the count is recorded, and ``--epochs N``
reproduces the schedule.
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
import torch.nn.functional as F
from torch import nn

from spikeport.models.data import SPLIT_SEED, Dataset, load_dataset
from spikeport.models.qcfs import QCFS
from spikeport.models.zoo import ARCHITECTURES, average_pools, build_model, load_checkpoint, save_checkpoint
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.frontends.import_torch import import_torch
from spikeport.toolchain.ir.interpret import run_graph
from spikeport.toolchain.oracle.reference import run_reference
from spikeport.toolchain.passes.convert import convert
from spikeport.toolchain.passes.normalize import normalize


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
    # the CIFAR recipe's settings (the defaults are the MNIST recipe's, unchanged)
    data: str | None = None  # a data set name or path; None: the architecture's own
    augment: str = "shift"  # "shift" (random translation), "crop_flip" (pad-4 crop, horizontal flip), "none"
    schedule: str = "cosine"  # or "onecycle": linear warm-up over `warmup` of the steps, then cosine
    warmup: float = 0.15
    label_smoothing: float = 0.0
    nesterov: bool = False
    decay_all: bool = True  # weight decay on every parameter; False: not on BatchNorm and biases
    noise_every: int = 1  # NQ: refit the noise every this many epochs
    noise_samples: int = 512  # NQ with val_samples=0: training samples the gap is measured on
    device: str = "cpu"
    bf16: bool = False  # autocast convolutions and products to bfloat16 (CUDA); the staircase stays float32
    float16_storage: bool = False  # the checkpoint stores float16 weights; accuracy is measured after that
    budget_seconds: float | None = None  # choose the epoch count (at most `epochs`) to fit this wall time
    init: str | None = None  # start from this checkpoint's weights (a continuation: a second, shorter schedule)


CIFAR_ARCHS = ("resnet20_cifar10", "vgg16_cifar10")


def recipe(arch: str, levels: int, **overrides) -> TrainConfig:
    """The recipe each zoo architecture is trained with: the MNIST recipe's defaults, or the CIFAR
    recipe (module docstring) for the CIFAR networks; ``overrides`` are TrainConfig fields."""
    if arch in CIFAR_ARCHS:
        cuda = str(overrides.get("device", "cpu")).startswith("cuda")
        base = {"epochs": 200, "batch_size": 256, "lr": 0.1, "val_samples": 0, "augment": "crop_flip",
                "schedule": "onecycle", "label_smoothing": 0.1, "nesterov": True, "decay_all": False,
                "noise_every": 5, "bf16": cuda, "float16_storage": arch == "vgg16_cifar10"}
        return TrainConfig(arch, levels=levels, **{**base, **overrides})
    return TrainConfig(arch, levels=levels, **overrides)


def set_activation_mode(model: nn.Module, mode: str) -> None:
    """Switch every QCFS activation between ``quantized`` and ``clip`` (unquantized)."""
    for m in model.modules():
        if isinstance(m, QCFS):
            m.mode = mode


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Test accuracy of ``model`` (float32, on the device its weights are on)."""
    model.eval()
    dev = next(model.parameters()).device
    correct = 0
    for i in range(0, len(x), batch):
        out = model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch])).to(dev))
        correct += int((out.argmax(1).cpu().numpy() == y[i:i + batch]).sum())
    return correct / len(x)


def _shift(xb: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    if max_shift <= 0 or xb.dim() != 4:
        return xb
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
    return torch.roll(xb, shifts=(dy, dx), dims=(2, 3))


def _crop_flip(xb: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per sample: a random ``pad``-pixel crop of the zero-padded image, mirrored with probability 1/2.
    The random numbers come from the CPU generator, so the augmentation is the same on every device."""
    n, c, h, w = xb.shape
    dev = xb.device
    off = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).to(dev)
    flip = (torch.rand(n, generator=gen) < 0.5).to(dev)
    rows = off[0][:, None] + torch.arange(h, device=dev)
    cols = off[1][:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(xb, (pad, pad, pad, pad))
    return padded[torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _augment(xb: torch.Tensor, cfg: TrainConfig, shift: int, gen: torch.Generator) -> torch.Tensor:
    if cfg.augment == "crop_flip" and xb.dim() == 4:
        return _crop_flip(xb, 4, gen)
    if cfg.augment == "shift":
        return _shift(xb, shift, gen)
    return xb


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.decay_all:
        groups: list[dict] = [{"params": list(model.parameters())}]
    else:  # no decay on BatchNorm's affine parameters and biases (1-d); QCFS's lambda (0-d) keeps it
        decay = [p for p in model.parameters() if p.dim() != 1]
        groups = [{"params": decay}, {"params": [p for p in model.parameters() if p.dim() == 1], "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, total_steps),
                                                   pct_start=cfg.warmup, anneal_strategy="cos",
                                                   div_factor=10.0, final_div_factor=1e3,
                                                   cycle_momentum=False)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, total_steps))


def _fit_epoch(model: nn.Module, opt: torch.optim.Optimizer, sched, x: torch.Tensor, y: torch.Tensor,
               batch_size: int, shift: int, gen: torch.Generator, cfg: TrainConfig | None = None,
               max_steps: int | None = None) -> float:
    """One epoch of SGD over (x, y) in a random order with the recipe's augmentation; the mean loss.
    ``max_steps`` stops early (the budget probe)."""
    cfg = cfg or TrainConfig("")
    model.train()
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    order = torch.randperm(len(x), generator=gen)
    dev = x.device
    channels_last = dev.type == "cuda" and x.dim() == 4
    total = torch.zeros((), dtype=torch.float64, device=dev)  # summed on the device: no sync per step
    seen = 0
    for step, i in enumerate(range(0, len(order), batch_size)):
        if max_steps is not None and step >= max_steps:
            break
        idx = order[i:i + batch_size].to(dev)
        xb = _augment(x[idx], cfg, shift, gen)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = loss_fn(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach().double() * len(idx)
        seen += len(idx)
    return float(total) / max(1, seen)


@torch.no_grad()
def snn_accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, T: int, maxpool: str = "spiking") -> float:
    """Accuracy of the converted float SNN (the selection metric)."""

    snn = convert(normalize(import_torch(model.eval(), tuple(x.shape[1:])), maxpool=maxpool), x[:256])
    return float((run_reference(snn, x, T).predictions == y).mean())


@torch.no_grad()
def nq_sigmas(model: nn.Module, x: np.ndarray, T: int, maxpool: str = "spiking") -> dict[str, float]:
    """NQ (Huang et al.): per QCFS layer, the standard deviation of the gap between the ANN
    activation (no noise) and the converted SNN's rate (spike count * threshold / T) on held-out
    training samples. The next epoch trains with Gaussian noise of that size on the activation."""

    was_training = model.training
    dev = next(model.parameters()).device
    cpu_model = copy.deepcopy(model).cpu().eval() if dev.type != "cpu" else model.eval()
    graph = normalize(import_torch(cpu_model, tuple(x.shape[1:])), maxpool=maxpool)
    snn = convert(graph)
    trace = run_reference(snn, x, T, record=True, device=dev)
    acts = run_graph(graph, x, keep={p.name for p in snn.neurons}, device=dev)
    out = {}
    for p in snn.neurons:
        rate = trace.spikes[p.name].sum(0).astype(np.float64) * p.threshold / T
        gap = acts[p.name].reshape(len(x), -1).cpu().numpy() - rate
        out[p.name] = float(gap.std())
    model.train(was_training)
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _choose_epochs(cfg: TrainConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, shift: int,
                   x_noise: np.ndarray | None, t_start: float) -> dict:
    """The epoch count (at most ``cfg.epochs``) that fits ``cfg.budget_seconds``: a throwaway copy of the
    model is timed on 15 + 40 steps of the recipe (on this machine, under whatever else runs beside it),
    plus one NQ refit; 15 % is kept in reserve. ``t_start``: when the run began (data loading and the
    probe count against the budget)."""
    probe = copy.deepcopy(model)
    opt = _optimizer(probe, cfg)
    sched = _scheduler(opt, cfg, 10_000)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    dev = x.device
    _fit_epoch(probe, opt, sched, x, y, cfg.batch_size, shift, gen, cfg, max_steps=15)
    _sync(dev)
    t0 = time.perf_counter()
    _fit_epoch(probe, opt, sched, x, y, cfg.batch_size, shift, gen, cfg, max_steps=40)
    _sync(dev)
    per_step = (time.perf_counter() - t0) / min(40, -(-len(x) // cfg.batch_size))
    refit = 0.0
    if cfg.noise and x_noise is not None:
        t0 = time.perf_counter()
        nq_sigmas(probe, x_noise, cfg.noise_T, cfg.maxpool)
        refit = time.perf_counter() - t0
    del probe, opt
    per_epoch = per_step * -(-len(x) // cfg.batch_size) + (refit / cfg.noise_every if cfg.noise else 0.0)
    left = float(cfg.budget_seconds or 0) * 0.85 - (time.perf_counter() - t_start)
    epochs = max(1, min(cfg.epochs, int(left // per_epoch)))
    return {"budget_seconds": cfg.budget_seconds, "seconds_per_step": round(per_step, 5),
            "seconds_per_nq_refit": round(refit, 3), "estimated_seconds_per_epoch": round(per_epoch, 3),
            "epochs": epochs}


def train(cfg: TrainConfig, progress: bool = True, log=None) -> tuple[nn.Module, dict]:
    """Train ``cfg.arch`` on its data set (``cfg.data`` or the architecture's own) on ``cfg.device``;
    returns (model on the CPU, meta for the checkpoint). ``log``: a callable given a line every epoch."""
    from tqdm import tqdm

    t_start = time.perf_counter()
    _, dataset, flat = ARCHITECTURES[cfg.arch]
    data = load_dataset(cfg.data or dataset, flat=flat)
    dev = torch.device(cfg.device)
    n_fit = len(data.x_train) - cfg.val_samples
    x_val, y_val = data.x_train[n_fit:], data.y_train[n_fit:]
    select_T = cfg.select_T or cfg.levels
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.arch, levels=cfg.levels, **cfg.arch_kwargs)
    if cfg.init:
        start, ckpt = load_checkpoint(cfg.init)
        if ckpt["arch"] != cfg.arch or ckpt["arch_kwargs"].get("levels") != cfg.levels:
            raise SpikeportError(f"{cfg.init}: a {ckpt['arch']} with L={ckpt['arch_kwargs'].get('levels')}, not the "
                                 f"{cfg.arch} with L={cfg.levels} asked for")
        model.load_state_dict(start.state_dict())
    model = model.to(dev)
    if dev.type == "cuda" and not flat:
        model = model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    x_train = torch.from_numpy(np.ascontiguousarray(data.x_train[:n_fit])).to(dev)
    y_train = torch.from_numpy(np.ascontiguousarray(data.y_train[:n_fit])).to(dev)
    shift = cfg.shift_augment if cfg.shift_augment is not None else data.x_train.shape[-1] // 14
    x_noise = x_val
    if cfg.noise and not cfg.val_samples:  # NQ measures its gap on a fixed sample of the training images
        pick = np.random.default_rng(cfg.seed).choice(n_fit, min(cfg.noise_samples, n_fit), replace=False)
        x_noise = data.x_train[np.sort(pick)]
    budget = None
    epochs = cfg.epochs
    if cfg.budget_seconds:
        budget = _choose_epochs(cfg, model, x_train, y_train, shift, x_noise, t_start)
        epochs = budget["epochs"]
    opt = _optimizer(model, cfg)
    steps_per_epoch = -(-n_fit // cfg.batch_size)
    sched = _scheduler(opt, cfg, epochs * steps_per_epoch)
    t0 = time.perf_counter()
    best: tuple[float, int, dict] | None = None
    history, noise_history = [], []
    deadline = t_start + cfg.budget_seconds if cfg.budget_seconds else None
    stopped_early = None
    bar = tqdm(range(epochs), desc=f"train {cfg.arch} seed {cfg.seed}", disable=not progress)
    for epoch in bar:
        loss = _fit_epoch(model, opt, sched, x_train, y_train, cfg.batch_size, shift, gen, cfg)
        bar.set_postfix(loss=f"{loss:.4f}")
        if log is not None:
            log(f"{cfg.arch} L={cfg.levels}{' nq' if cfg.noise else ''} epoch {epoch + 1}/{epochs} loss {loss:.4f} "
                f"{time.perf_counter() - t0:.0f} s")
        if cfg.noise and ((epoch + 1) % cfg.noise_every == 0 or cfg.noise_every == 1):
            sigmas = nq_sigmas(model, x_noise, cfg.noise_T, cfg.maxpool)
            for name, sigma in sigmas.items():
                model.get_submodule(name).noise_std = sigma
            noise_history.append({"epoch": epoch + 1, **sigmas})
        last = epoch == epochs - 1
        if cfg.val_samples and ((epoch + 1) % cfg.eval_every == 0 or last):
            val = snn_accuracy(model, x_val, y_val, select_T, cfg.maxpool)
            history.append({"epoch": epoch + 1, "val_snn_acc": val})
            if best is None or val >= best[0]:
                best = (val, epoch + 1, copy.deepcopy(model.state_dict()))
        now = time.perf_counter()
        if deadline is not None and not last and now + (now - t0) / (epoch + 1) > deadline:
            stopped_early = epoch + 1  # the budget ran out faster than the probe said: keep what there is
            if log is not None:
                log(f"budget spent: stopping after epoch {epoch + 1} of {epochs}")
            break
    if best is not None:
        model.load_state_dict(best[2])
    _sync(dev)
    seconds = time.perf_counter() - t0
    model = model.to(memory_format=torch.contiguous_format).eval()
    if cfg.float16_storage:  # measure the model as it is stored
        model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})
    acc = accuracy(model, data.x_test, data.y_test)
    set_activation_mode(model, "clip")
    acc_clip = accuracy(model, data.x_test, data.y_test)
    set_activation_mode(model, "quantized")
    meta = {
        "dataset": data.name,
        "split_seed": SPLIT_SEED,
        "n_train": len(data.x_train),
        "n_test": len(data.x_test),
        "ann_test_acc": acc,
        "ann_clip_test_acc": acc_clip,  # same weights, unquantized activations (the large-T limit)
        "train_config": asdict(cfg),
        "epochs_trained": stopped_early or epochs,
        "stopped_early": f"after epoch {stopped_early} of {epochs} (budget)" if stopped_early else None,
        "selection": {
            "metric": f"float SNN accuracy at T={select_T} on the last {cfg.val_samples} training samples "
                      "(held out from fitting)" if cfg.val_samples else "none: the last epoch is kept",
            "history": history, "chosen_epoch": best[1] if best else stopped_early or epochs,
            "val_snn_acc": best[0] if best else None},
        "nq_sigmas": noise_history if cfg.noise else None,
        "budget": budget,
        "train_seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_version": str(torch.__version__),
        "trained_on": _dt.date.today().isoformat(),
        "recipe": "spikeport.models.train (SGD momentum 0.9, " + (
            "one-cycle schedule, label smoothing, crop+flip, QCFS activations)" if cfg.schedule == "onecycle"
            else "cosine schedule, QCFS activations)"),
        "storage": "float16" if cfg.float16_storage else "float32",
    }
    return model.cpu().eval(), meta


def train_and_save(cfg: TrainConfig, out: Path, seeds: tuple[int, ...] | None = None,
                   progress: bool = True, log=None) -> dict:
    """Train one model per seed and save the one with the best selection metric."""
    if cfg.device == "cpu" and cfg.arch not in CIFAR_ARCHS:
        torch.set_num_threads(1)  # the small MNIST recipe: deterministic and as fast on one thread
    runs = []
    for seed in seeds or (cfg.seed,):
        model, meta = train(dataclasses.replace(cfg, seed=seed), progress=progress, log=log)
        runs.append((meta["selection"]["val_snn_acc"] or 0.0, -seed, model, meta))
    _, _, model, meta = max(runs, key=lambda r: (r[0], r[1]))
    meta["selection"]["seeds"] = {str(-r[1]): r[0] for r in runs}
    arch_kwargs = {"levels": cfg.levels, **cfg.arch_kwargs}
    save_checkpoint(out, cfg.arch, arch_kwargs, model, meta, float16=cfg.float16_storage)
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
