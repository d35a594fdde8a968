"""Synapses on oneDNN's integer kernels: u8 spikes x s8 weights, summed in 32 bits.

Spikes are small non-negative integers (0/1, or up to pool² once sum-pooled) and Lava's weights
are integers; after taking out their common power of two (8-bit mixed-sign weights are even) they
fit a signed byte. oneDNN's u8 x s8 convolution and matrix product accumulate in int32 and hand
the sum back as float32 times a per-channel scale (here that power of two): the exact integer
wherever the synapse's bound keeps every sum below 2**24, which is when ``sim`` uses float32 at
all. On CPUs with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX) these run 3-13x
faster than the float32 kernels the float simulators use on ResNet-18's 3x3 convolutions
(``spikeport bench --suite kernels``).

Without those instructions oneDNN's int8 kernels are slower than float32, and some of them halve
the weights to stay clear of 16-bit saturation, which would lose odd weights: so ``resolve``
(whether ``sim`` uses them at all) asks for the instructions *and* a ``probe`` that compares both
kernels against float64 on one geometry, weights and inputs at the ends of their ranges
(``int8=True`` drops the first condition, never the second). oneDNN picks its implementation by
geometry, so each layer's kernel is admitted on its own as well (``Int8Conv.of``,
``Int8Linear.of``): that kernel, with the layer's weights and geometry, against float64 on inputs
at the ends of the layer's range, once per process. A layer refused runs on float32, and says so
(a warning, ``refused()``, ``describe()``).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from spikeport.toolchain.errors import SpikeportError

U8_MAX = 255
S8_MIN, S8_MAX = -128, 127
LINEAR_MIN_WEIGHTS = 1 << 16  # below this a float32 product is as fast (a 512x10 readout: 2x faster)


def byte_form(w: np.ndarray) -> tuple[np.ndarray, int] | None:
    """``(m, k)`` with ``w == m << k``, m int8 and k as large as possible; None where m does not
    fit a signed byte (or w is not integer)."""
    w = np.asarray(w)
    if w.size and not np.array_equal(w, np.trunc(w)):
        return None
    w = w.astype(np.int64)
    lowest = np.min(w & -w, initial=1 << 62, where=w != 0)  # (v & -v: v's lowest set bit)
    k = int(lowest).bit_length() - 1 if np.any(w) else 0
    m = w >> k
    if m.size and (m.min() < S8_MIN or m.max() > S8_MAX):
        return None
    return np.ascontiguousarray(m, dtype=np.int8), k  # (oneDNN's prepacking ignores numpy's strides)


def _scales(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((n,), float(1 << k), dtype=torch.float32), torch.zeros(n, dtype=torch.int64)


def _as_bytes(x: torch.Tensor) -> torch.Tensor:
    """x as uint8: bool spikes reinterpreted in place (the same byte), other types converted."""
    return x.view(torch.uint8) if x.dtype == torch.bool else x if x.dtype == torch.uint8 else x.to(torch.uint8)


class Int8Conv:
    """``F.conv2d(x, w, ...)`` for integer x in [0, 255] and a kernel ``byte_form`` accepts,
    as float32 in channels-last layout (exact below 2**24: the caller's bound)."""

    def __init__(self, m: np.ndarray, k: int, stride, padding, dilation, groups: int) -> None:
        self.geometry = [list(stride), list(padding), list(dilation), int(groups)]
        self.shape = m.shape
        self.scale, self.zero = _scales(len(m), k)
        self.w = torch.ops.onednn.qconv_prepack(torch.as_tensor(m), self.scale, 1.0, 0, *self.geometry, None)

    @classmethod
    def of(cls, w: np.ndarray, stride, padding, dilation, groups: int, max_input: int = 1) -> Int8Conv | None:
        """The kernel of a layer with weights ``w`` whose inputs reach ``max_input`` (1: spikes; pool²:
        sum-pooled counts), or None where ``byte_form`` or the layer's admission refuses it."""
        form = byte_form(w)
        o, i, kh, kw = np.shape(w)
        name = (f"conv {i * groups}->{o} channels, {kh}x{kw} kernel, stride {tuple(stride)}, padding "
                f"{tuple(padding)}, dilation {tuple(dilation)}, groups {groups}")
        return None if form is None else _admit(name, form, w, max_input,
                                                lambda: cls(*form, stride, padding, dilation, groups))

    def float64(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, None, *self.geometry)

    def input_shape(self) -> tuple[int, int, int]:
        """A small image that still takes every tap off each edge, padding and stride included (and
        not square, so that a swap of height and width shows)."""
        (sh, sw), _, (dh, dw), groups = self.geometry
        _, i, kh, kw = self.shape
        return i * groups, dh * (kh - 1) + 1 + 2 * sh, dw * (kw - 1) + 2 + 2 * sw

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_bytes(x).contiguous(memory_format=torch.channels_last)
        return torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, self.w, self.scale, self.zero, None, *self.geometry,
                                                  1.0, 0, torch.float32, "none", [], "")


class Int8Linear:
    """``x @ w.T`` for integer x in [0, 255], (batch, n_in), and a matrix ``byte_form`` accepts,
    as float32 (exact below 2**24: the caller's bound)."""

    def __init__(self, m: np.ndarray, k: int) -> None:
        self.shape = m.shape
        self.scale, self.zero = _scales(len(m), k)
        self.w = torch.ops.onednn.qlinear_prepack(torch.as_tensor(m), None)

    @classmethod
    def of(cls, w: np.ndarray) -> Int8Linear | None:
        """The kernel of a layer with weights ``w`` and binary inputs, or None where it is small (float32
        is as fast) or ``byte_form`` or the layer's admission refuses it."""
        form = byte_form(w) if np.size(w) >= LINEAR_MIN_WEIGHTS else None
        return None if form is None else _admit(f"linear {w.shape[1]}->{w.shape[0]}", form, w, 1, lambda: cls(*form))

    def float64(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w.T

    def input_shape(self) -> tuple[int]:
        return (self.shape[1],)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_bytes(x).contiguous()
        return torch.ops.onednn.qlinear_pointwise(x, 1.0, 0, self.w, self.scale, self.zero, None,
                                                  1.0, 0, torch.float32, "none", [], "")


Kernel = TypeVar("Kernel", Int8Conv, Int8Linear)

_verdicts: dict[tuple, str | None] = {}
"""Each layer kernel checked in this process, by (geometry, input range, weights' k and digest):
None where admitted, else the refusal's line. The kernels do not change within a process."""


def mismatch(kernel: Int8Conv | Int8Linear, w: np.ndarray, top: int) -> str | None:
    """None where ``kernel`` gives float64's sums with ``w`` on inputs in [0, top] at the ends of the
    range: all ``top``, random (fixed seed), and a checkerboard of 0 and ``top``; else how it differs."""
    shape = kernel.input_shape()
    board = np.indices(shape).sum(axis=0) % 2 * top
    x = torch.as_tensor(np.stack([np.full(shape, top), np.random.default_rng(0).integers(0, top + 1, shape), board]))
    got = kernel(x).double()
    want = kernel.float64(x.double(), torch.as_tensor(w, dtype=torch.float64))
    if torch.equal(got, want):
        return None
    return f"{int((got != want).sum())} of {want.numel()} sums differ from float64's"


def _admit(name: str, form: tuple[np.ndarray, int], w: np.ndarray, top: int,
           make: Callable[[], Kernel]) -> Kernel | None:
    """``make()`` where its kernel is exact on this layer (``mismatch``); else None, the refusal
    recorded and warned of. Checked once per layer per process (``_verdicts``)."""
    m, k = form
    key = (name, top, k, hashlib.blake2b(m.tobytes(), digest_size=16).digest())
    if key in _verdicts:
        return None if _verdicts[key] else make()
    try:
        kernel = make()
        why = mismatch(kernel, w, top)
    except RuntimeError as e:  # an operator that rejects this geometry (or its output's shape): refused too
        why = f"{type(e).__name__}: {str(e)[:120]}"
    _verdicts[key] = None if why is None else f"{name}, inputs up to {top}: {why}"
    if why is None:
        return kernel
    warnings.warn(f"int8 kernel refused, float32 runs this layer: {_verdicts[key]}", RuntimeWarning, stacklevel=3)
    return None


def refused() -> list[str]:
    """One line per layer kernel refused in this process (its geometry and why): float32 runs it."""
    return [why for why in _verdicts.values() if why is not None]


def has_int8_dot_product() -> bool:
    """The CPU has int8 dot-product instructions (LLVM's view of the host, through numba)."""
    from llvmlite import binding

    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot read this host's features: assume none
        return False
    return any(features.get(f, False) for f in ("avx512vnni", "avxvnni", "amx-int8"))


@functools.cache
def probe() -> str | None:
    """None where both kernels give float64's sums on extreme weights and inputs; else why not."""
    try:
        rng = np.random.default_rng(0)
        w = rng.integers(S8_MIN, S8_MAX + 1, (32, 64, 3, 3)) * 2  # every odd m, both ends
        w[0], w[1] = S8_MIN * 2, S8_MAX * 2
        if mismatch(Int8Conv(*byte_form(w), (1, 1), (1, 1), (1, 1), 1), w, 4):  # sum-pooled 2x2 counts reach 4
            return "oneDNN's int8 convolution differs from float64 on this CPU"
        wl = rng.integers(S8_MIN, S8_MAX + 1, (256, 256))
        wl[0], wl[1] = S8_MIN, S8_MAX
        if mismatch(Int8Linear(*byte_form(wl)), wl, 1):
            return "oneDNN's int8 matrix product differs from float64 on this CPU"
    except (RuntimeError, AttributeError) as e:  # a torch without oneDNN's int8 operators
        return f"oneDNN's int8 operators are missing from this torch ({type(e).__name__}: {str(e)[:120]})"
    return None


def resolve(int8: bool | None, device: torch.device) -> bool:
    """Whether ``sim`` uses these kernels: ``None`` where the CPU has the instructions and the
    probe passes; ``True`` wherever the probe passes (an error where not); ``False`` never."""
    if int8 is False or device.type != "cpu":
        if int8 and device.type != "cpu":
            raise SpikeportError(f"int8=True: the int8 kernels are oneDNN's CPU kernels, not {device.type}'s")
        return False
    why = probe()
    if int8 and why:
        raise SpikeportError(f"int8=True: {why}")
    return why is None and (bool(int8) or has_int8_dot_product())


def describe() -> str:
    """One line on what ``sim``'s binary synapses run on here, and why (and the layers refused so far)."""
    why, no = probe(), refused()
    note = f"; float32 on {len(no)} layer(s) whose int8 kernel differs: {no[0]}" if no else ""
    if why is None and has_int8_dot_product():
        return "int8 (oneDNN u8 x s8 -> s32; this CPU has int8 dot-product instructions and the probe is exact)" + note
    if why is None:
        return ("float32 (this CPU lacks int8 dot-product instructions; int8=True would still be exact, and slower)" +
                note)
    return f"float32 ({why})"
