"""Architectures of the model zoo and the checkpoint format.

A checkpoint is a plain ``torch.save`` of a dict of tensors and builtins, so it loads with
``torch.load(..., weights_only=True)``::

    {"format": "spikeport-checkpoint/1", "arch": str, "arch_kwargs": dict,
     "state_dict": dict[str, Tensor], "meta": dict,   # meta: how it was trained, its accuracy
                                                      # (tensors float32, or float16 where meta["storage"] says so)
     "pools": "average"}   # optional: the architecture with average_pools() applied (spikeport finetune)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from spikeport.models.qcfs import QCFS
from spikeport.toolchain.errors import SpikeportError
from spikeport.toolchain.files import atomic_path

CHECKPOINT_FORMAT = "spikeport-checkpoint/1"
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"


def _named(*layers: tuple[str, nn.Module]) -> nn.Sequential:
    """A Sequential whose layers have names: they become the names of the populations and of every
    row of spikeport's reports (``act2``, ``fc``), where a plain Sequential would give ``6``, ``13``."""
    return nn.Sequential(OrderedDict(layers))


def mlp_digits(levels: int = 8, hidden: int = 128) -> nn.Module:
    """64 -> 128 -> 128 -> 10 with BatchNorm and QCFS; for scikit-learn digits (flat input)."""
    return _named(
        ("fc1", nn.Linear(64, hidden)), ("bn1", nn.BatchNorm1d(hidden)), ("act1", QCFS(levels)),
        ("fc2", nn.Linear(hidden, hidden)), ("bn2", nn.BatchNorm1d(hidden)), ("act2", QCFS(levels)),
        ("fc3", nn.Linear(hidden, 10)),
    )


def cnn_mnist(levels: int = 8, width: int = 16) -> nn.Module:
    """Three conv-BN-QCFS blocks (28x28x16, 14x14x32, 7x7x64) with avg-pool, then a linear readout."""
    w = width
    return _named(
        ("conv1", nn.Conv2d(1, w, 3, padding=1)), ("bn1", nn.BatchNorm2d(w)), ("act1", QCFS(levels)),
        ("pool1", nn.AvgPool2d(2)),
        ("conv2", nn.Conv2d(w, 2 * w, 3, padding=1)), ("bn2", nn.BatchNorm2d(2 * w)), ("act2", QCFS(levels)),
        ("pool2", nn.AvgPool2d(2)),
        ("conv3", nn.Conv2d(2 * w, 4 * w, 3, padding=1)), ("bn3", nn.BatchNorm2d(4 * w)), ("act3", QCFS(levels)),
        ("flatten", nn.Flatten()), ("drop", nn.Dropout(0.2)), ("fc", nn.Linear(4 * w * 7 * 7, 10)),
    )


def maxpool_cnn_mnist(levels: int = 8, width: int = 16) -> nn.Module:
    """cnn_mnist with 2x2 max-pools instead of average pools: the network users bring most often
    (LeNet/VGG style) and the test bed of spikeport's max-pool options (README, max-pool table)."""
    w = width
    return _named(
        ("conv1", nn.Conv2d(1, w, 3, padding=1)), ("bn1", nn.BatchNorm2d(w)), ("act1", QCFS(levels)),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(w, 2 * w, 3, padding=1)), ("bn2", nn.BatchNorm2d(2 * w)), ("act2", QCFS(levels)),
        ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(2 * w, 4 * w, 3, padding=1)), ("bn3", nn.BatchNorm2d(4 * w)), ("act3", QCFS(levels)),
        ("flatten", nn.Flatten()), ("drop", nn.Dropout(0.2)), ("fc", nn.Linear(4 * w * 7 * 7, 10)),
    )


def average_pools(model: nn.Module) -> nn.Module:
    """Replace every MaxPool2d of ``model`` (in place) by the AvgPool2d that ``--maxpool average``
    substitutes: same window, averaging only the elements the max would see. Fine-tuning the result
    (``spikeport finetune``) recovers most of what the substitution costs."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.MaxPool2d):
            if child.dilation not in (1, (1, 1)):
                raise SpikeportError(f"MaxPool2d {name!r}: dilation {child.dilation} has no average-pool equivalent")
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode,
                                              count_include_pad=False))
        else:
            average_pools(child)
    return model


class ResBlock(nn.Module):
    """conv-BN-QCFS-conv-BN, plus the shortcut, then QCFS. Where the block changes the channel count or
    strides, the shortcut is a 1x1 conv + BN (as the QCFS authors' ResNet-20 writes it), else the input."""

    def __init__(self, channels: int, levels: int, out_channels: int | None = None, stride: int = 1) -> None:
        super().__init__()
        cout = out_channels or channels
        self.conv1 = nn.Conv2d(channels, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = QCFS(levels)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = QCFS(levels)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cout != channels:
            self.shortcut = _named(("conv", nn.Conv2d(channels, cout, 1, stride=stride, bias=False)),
                                   ("bn", nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))) + skip)


def resnet_digits(levels: int = 8, width: int = 8) -> nn.Module:
    """A small residual CNN for 8x8 digits: stem conv, one residual block, avg-pool, linear."""
    return _named(
        ("conv1", nn.Conv2d(1, width, 3, padding=1)), ("bn1", nn.BatchNorm2d(width)), ("act1", QCFS(levels)),
        ("block", ResBlock(width, levels)), ("pool", nn.AvgPool2d(2)), ("flatten", nn.Flatten()),
        ("fc", nn.Linear(width * 16, 10)),
    )


def vgg_mnist(levels: int = 8, width: int = 32) -> nn.Module:
    """VGG-style: six 3x3 conv-BN-QCFS layers (w, w, 2w, 2w, 4w, 4w channels at 28, 28, 14, 14, 7, 7
    pixels) with avg-pools, then a linear readout. ``spikeport bench`` runs it with random weights."""
    w = width
    chans = [(1, w), (w, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w)]
    layers: list[tuple[str, nn.Module]] = []
    for i, (cin, cout) in enumerate(chans, start=1):
        layers += [(f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(cout)),
                   (f"act{i}", QCFS(levels))]
        if i in (2, 4):
            layers.append((f"pool{i // 2}", nn.AvgPool2d(2)))
    return _named(*layers, ("flatten", nn.Flatten()), ("fc", nn.Linear(4 * w * 7 * 7, 10)))


def resnet20_cifar(levels: int = 4, width: int = 16, num_classes: int = 10) -> nn.Module:
    """ResNet-20 as the QCFS authors define it for CIFAR: a 3x3 stem, three stages of three residual
    blocks (w, 2w, 4w channels at 32, 16, 8 pixels; 1x1 conv shortcuts where the shape changes),
    global average pooling and a linear readout. 0.27 M weights at width 16."""
    w = width
    stages: list[tuple[str, nn.Module]] = []
    cin = w
    for s, cout in enumerate((w, 2 * w, 4 * w), start=1):
        for b in range(3):
            stages.append((f"layer{s}_{b}", ResBlock(cin, levels, cout, stride=2 if s > 1 and b == 0 else 1)))
            cin = cout
    return _named(
        ("conv1", nn.Conv2d(3, w, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(w)), ("act1", QCFS(levels)),
        *stages, ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("fc", nn.Linear(4 * w, num_classes)),
    )


VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_cifar(levels: int = 4, num_classes: int = 10, hidden: int = 512) -> nn.Module:
    """VGG-16 as the QCFS authors define it for CIFAR (13 3x3 conv-BN-QCFS layers in five stages, each
    stage closed by a 2x2 average pool, then three linear layers), with the hidden linear layers
    ``hidden`` wide instead of 4096: 15.2 M weights instead of 33.6 M, so that two checkpoints fit the
    repository (the 4096-wide classifier adds nothing measurable on 32x32 inputs)."""
    layers: list[tuple[str, nn.Module]] = []
    cin, i = 3, 0
    for s, stage in enumerate(VGG16_STAGES, start=1):
        for cout in stage:
            i += 1
            layers += [(f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1)), (f"bn{i}", nn.BatchNorm2d(cout)),
                       (f"act{i}", QCFS(levels))]
            cin = cout
        layers.append((f"pool{s}", nn.AvgPool2d(2)))
    return _named(*layers, ("flatten", nn.Flatten()),
                  ("fc1", nn.Linear(cin, hidden)), ("act14", QCFS(levels)),
                  ("fc2", nn.Linear(hidden, hidden)), ("act15", QCFS(levels)),
                  ("fc3", nn.Linear(hidden, num_classes)))


ARCHITECTURES: dict[str, tuple[Callable[..., nn.Module], str, bool]] = {
    # name: (builder, data set, flat input)
    "mlp_digits": (mlp_digits, "digits", True),
    "cnn_mnist": (cnn_mnist, "mnist5k", False),
    "resnet_digits": (resnet_digits, "digits", False),
    "vgg_mnist": (vgg_mnist, "mnist5k", False),
    "maxpool_cnn_mnist": (maxpool_cnn_mnist, "mnist5k", False),
    "resnet20_cifar10": (resnet20_cifar, "cifar10", False),
    "vgg16_cifar10": (vgg16_cifar, "cifar10", False),
}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """``arch``: a key of ARCHITECTURES (the NQ checkpoints use the same architectures)."""

    if arch not in ARCHITECTURES:
        raise SpikeportError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch][0](**kwargs)


def save_checkpoint(path: Path, arch: str, arch_kwargs: dict, model: nn.Module, meta: dict,
                    pools: str | None = None, float16: bool = False) -> None:
    """``pools="average"``: the model is ``arch`` with :func:`average_pools` applied. ``float16``: store the
    floating-point tensors as float16 (half the size; loading turns them back into float32)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if float16:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    extra = {"pools": pools} if pools else {}
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, "arch": arch, "arch_kwargs": arch_kwargs,
                    "state_dict": state, "meta": meta, **extra}, tmp)


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """Load a checkpoint safely (``weights_only=True``); returns (model in eval mode, checkpoint dict)."""

    path = Path(path)
    if not path.is_file():
        raise SpikeportError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpikeportError(f"checkpoint {path} cannot be read safely: {first}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise SpikeportError(f"{path} is not a spikeport checkpoint (format {CHECKPOINT_FORMAT})")
    arch, kwargs, state = ckpt.get("arch"), ckpt.get("arch_kwargs", {}), ckpt.get("state_dict")
    if arch not in ARCHITECTURES or not isinstance(kwargs, dict) or not isinstance(state, dict):
        raise SpikeportError(f"checkpoint {path} is damaged: architecture {arch!r}, its arguments or its weights "
                             "are missing or malformed")
    if ckpt.get("pools", "max") not in ("max", "average"):
        raise SpikeportError(f"checkpoint {path} is damaged: unknown pools {ckpt['pools']!r}")
    try:
        model = build_model(arch, **kwargs)
        if ckpt.get("pools") == "average":
            average_pools(model)
        model.load_state_dict({k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                               for k, v in state.items()})
    except (RuntimeError, TypeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpikeportError(f"checkpoint {path} does not match architecture {arch}: {first}") from exc
    return model.eval(), ckpt


def bundled_checkpoint(name: str) -> Path:
    """Path of a checkpoint that ships with spikeport (``models/checkpoints/<name>.pt``)."""

    path = CHECKPOINT_DIR / f"{name}.pt"
    if not path.is_file():
        have = sorted(p.stem for p in CHECKPOINT_DIR.glob("*.pt"))
        raise SpikeportError(f"{name!r} is not a bundled model ({', '.join(have)}); give a spikeport .pt "
                             "checkpoint or an .onnx file instead")
    return path
