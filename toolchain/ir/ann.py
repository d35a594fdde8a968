"""The float graph IR: what the importers (torch.fx, ONNX) produce and the converter consumes.

A :class:`Graph` is a list of :class:`Node` in topological order. Each node holds one op, a plain
dataclass with numpy parameters in PyTorch layout (NCHW activations, (out, in, kH, kW) kernels),
the names of the nodes it reads, and its output shape without the batch axis. The interpreter that
evaluates a graph lives in :mod:`spikeport.toolchain.ir.interpret`; the IR itself has no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

Pair = tuple[int, int]


@dataclass
class Input:
    shape: tuple[int, ...]  # without the batch axis, e.g. (1, 28, 28) or (64,)


@dataclass
class Conv2d:
    weight: np.ndarray  # (C_out, C_in / groups, kH, kW)
    bias: np.ndarray | None  # (C_out,)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1


@dataclass
class Linear:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray | None  # (out,)


@dataclass
class BatchNorm:
    """Inference-mode batch norm over axis 1: ``(x - mean) / sqrt(var + eps) * gamma + beta``."""

    mean: np.ndarray
    var: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    eps: float = 1e-5


@dataclass
class ReLU:
    pass


@dataclass
class QCFS:
    """``lam * clip(floor(z * levels / lam + 1/2) / levels, 0, 1)``: becomes an IF neuron, threshold lam.

    ``levels == 0`` is the unquantized clip ``lam * clip(z / lam, 0, 1)`` (a clipped ReLU). ``lam``
    is one number, or one per channel as imported (``passes.uniform_thresholds`` turns those into
    one threshold with the per-channel factors folded into the weights around it).
    """

    lam: float | np.ndarray
    levels: int


@dataclass
class AvgPool2d:
    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True


@dataclass
class MaxPool2d:
    """Not convertible to IF neurons as it is: replaced by AvgPool2d (opt-in), or run as spikeport's
    spiking max-pool (``maxpool="spiking"``)."""

    kernel: Pair
    stride: Pair
    padding: Pair = (0, 0)
    ceil_mode: bool = False


@dataclass
class Flatten:
    """Flatten everything after the batch axis (C, H, W order, as torch.flatten(x, 1))."""


@dataclass
class Add:
    """Element-wise sum of two or more inputs (residual connections)."""


@dataclass
class Identity:
    """Dropout and identity layers; removed by :func:`passes.remove_identities`."""


@dataclass
class Concat:
    """Concatenation of two or more (C, H, W) inputs along the channels (torch.cat(.., 1), ONNX Concat)."""


@dataclass
class Select:
    """A rearrangement of the features: ``out.flat = in.flat[index]``, shaped ``shape``. Channel
    shuffles, channel splits (chunk, split), strided slices (``x[:, :, ::2, ::2]``) and
    reshape/transpose chains that return to a (C, H, W) or flat layout all become one Select, found
    by running them on an index map."""

    index: np.ndarray  # (prod(shape),) int64 positions in the flattened input
    shape: tuple[int, ...]


@dataclass
class Embed:
    """The input placed at channels ``offset`` .. of ``channels`` (zeros elsewhere): input i of a
    Concat, which the converter makes when it splits a concatenation into one synapse per input, or a
    zero padding of the channels (``F.pad(x, (0, 0, 0, 0, p, p))``, ONNX Pad), which the importers make
    (:func:`~spikeport.toolchain.passes.normalize.zero_padding`)."""

    offset: int
    channels: int


Op = (Input | Conv2d | Linear | BatchNorm | ReLU | QCFS | AvgPool2d | MaxPool2d | Flatten | Add | Identity | Concat
      | Select | Embed)

def unique_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base#2``, ``base#3``, ... : the first not in ``taken`` (a module called twice
    becomes two nodes, its second call named ``path#2``)."""
    if base not in taken:
        return base
    k = 2
    while f"{base}#{k}" in taken:
        k += 1
    return f"{base}#{k}"


ACTIVATIONS = (ReLU, QCFS)
LINEAR_OPS = (Conv2d, Linear, BatchNorm, AvgPool2d, Flatten, Add, Identity, Concat, Select, Embed)


@dataclass
class Node:
    name: str
    op: Op
    inputs: list[str] = field(default_factory=list)
    shape: tuple[int, ...] | None = None  # output shape without the batch axis (shape inference)
    source: str = ""  # where it came from: torch module path or ONNX node name, for messages

    @property
    def kind(self) -> str:
        return type(self.op).__name__


@dataclass
class Graph:
    nodes: list[Node]
    name: str = "model"

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"two nodes are named {n.name!r}: node names must be unique")
            seen.add(n.name)

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def users(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def summary(self) -> str:
        rows = [f"{n.name:<24} {n.kind:<10} {list(n.inputs)!s:<30} {n.shape}" for n in self.nodes]
        return "\n".join(rows)


def staircase(y, levels: int):
    """QCFS's rounding of y in [0, 1] to ``levels`` steps: floor(y * L + 1/2) / L (numpy or torch;
    an explicit floor, which every ONNX exporter writes as Floor)."""
    floor = torch.floor if isinstance(y, torch.Tensor) else np.floor
    return floor(y * levels + 0.5) / levels


def qcfs(z, lam: float, levels: int):
    """The QCFS activation ``lam * clip(floor(z * L / lam + 1/2) / L, 0, 1)`` on numpy arrays or torch
    tensors; ``levels == 0`` is the unquantized clip ``lam * clip(z / lam, 0, 1)``. The one definition:
    the interpreter, the activation probe and the zoo's trainable ``QCFS`` module all use it."""
    y = (z / lam).clip(0.0, 1.0)
    return (staircase(y, levels) if levels > 0 else y) * lam
