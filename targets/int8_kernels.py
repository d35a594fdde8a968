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
asks for the instructions *and* a ``probe`` that compares both kernels against float64 on
weights and inputs at the ends of their ranges (``int8=True`` drops the first condition, never
the second).
"""

from __future__ import annotations

import functools

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
        self.scale, self.zero = _scales(len(m), k)
        self.w = torch.ops.onednn.qconv_prepack(torch.as_tensor(m), self.scale, 1.0, 0, *self.geometry, None)

    @classmethod
    def of(cls, w: np.ndarray, stride, padding, dilation, groups: int) -> Int8Conv | None:
        form = byte_form(w)
        return None if form is None else cls(*form, stride, padding, dilation, groups)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_bytes(x).contiguous(memory_format=torch.channels_last)
        return torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, self.w, self.scale, self.zero, None, *self.geometry,
                                                  1.0, 0, torch.float32, "none", [], "")


class Int8Linear:
    """``x @ w.T`` for integer x in [0, 255], (batch, n_in), and a matrix ``byte_form`` accepts,
    as float32 (exact below 2**24: the caller's bound)."""

    def __init__(self, m: np.ndarray, k: int) -> None:
        self.scale, self.zero = _scales(len(m), k)
        self.w = torch.ops.onednn.qlinear_prepack(torch.as_tensor(m), None)

    @classmethod
    def of(cls, w: np.ndarray) -> Int8Linear | None:
        form = byte_form(w) if np.size(w) >= LINEAR_MIN_WEIGHTS else None
        return None if form is None else cls(*form)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_bytes(x).contiguous()
        return torch.ops.onednn.qlinear_pointwise(x, 1.0, 0, self.w, self.scale, self.zero, None,
                                                  1.0, 0, torch.float32, "none", [], "")


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
        x = rng.integers(0, 5, (3, 64, 9, 9))  # sum-pooled 2x2 counts reach 4
        x[0] = 4
        got = Int8Conv.of(w, (1, 1), (1, 1), (1, 1), 1)(torch.as_tensor(x))
        want = F.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64), None, 1, 1)
        if not torch.equal(got.double(), want):
            return "oneDNN's int8 convolution differs from float64 on this CPU"
        wl = rng.integers(S8_MIN, S8_MAX + 1, (256, 256))
        wl[0], wl[1] = S8_MIN, S8_MAX
        xl = rng.integers(0, 2, (8, 256))
        xl[0] = 1
        got = Int8Linear(*byte_form(wl))(torch.as_tensor(xl))
        want = torch.as_tensor(xl, dtype=torch.float64) @ torch.as_tensor(wl, dtype=torch.float64).T
        if not torch.equal(got.double(), want):
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
    """One line on what ``sim``'s binary synapses run on here, and why."""
    why = probe()
    if why is None and has_int8_dot_product():
        return "int8 (oneDNN u8 x s8 -> s32; this CPU has int8 dot-product instructions and the probe is exact)"
    if why is None:
        return "float32 (this CPU lacks int8 dot-product instructions; int8=True would still be exact, and slower)"
    return f"float32 ({why})"
