"""Bit-accurate models of the Lava 0.10 fixed_pt processes ``sim`` runs, one class per process.

Their arithmetic follows Lava's process models, not the PyTorch reference. With the widths of
the ``loihi2`` profile (every width below comes from :class:`~spikeport.toolchain.hardware.profiles.TargetProfile`):

* LIF / LIFReset: ``u = u*(4096-(du+1)) >> 12`` (rounded toward zero), ``u += a << 6``, u folds
  once at 24 bits; ``v = v*(4096-dv) >> 12 + u + (bias_mant << bias_exp)``, v saturates at
  +-(2**23-1); spike when ``v > vth << 6``; then ``v = 0``. LIFReset zeroes u and v at the start
  of steps ``t % interval == offset % interval``.
* Dense / Sparse / DelaySparse: weights clipped to the sign mode's 8-bit range and truncated to
  ``num_weight_bits``, accumulated, shifted by ``weight_exp`` (floor), delivered 1 + delay steps
  later.
* Conv: true integer convolution, wrapped to signed 24 bits, delivered one step later.

Synapse models take a batch of spikes (any leading batch size: ``sim`` passes whole chunks of
steps at once) and return integer-valued tensors whose first axis is the batch and whose other
axes flatten to the target population. Their sums run in float32 where every partial
sum stays below 2**24 (exact for 0/1 inputs) and in float64 otherwise (``toolchain.host.exact.exact_dtype``);
each knows the largest |output| a binary input can produce (``bound``), which lets ``sim`` pick
narrow integer types and skip wrap checks that cannot trigger.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse

from spikeport.targets.if_kernel import (
    BLOCK,
    PoolPlan,
    integrate_fire,
    integrate_fire_serial,
    jobs_per_row,
    loop_threads,
)
from spikeport.targets.int8_kernels import U8_MAX, Int8Conv, Int8Linear
from spikeport.targets.method_kernels import COSKernel, GradedKernel, MaxPoolKernel, TPPKernel
from spikeport.targets.pool_factor import factor_pool
from spikeport.toolchain.hardware.lava_rules import lava_weights
from spikeport.toolchain.hardware.prng import prng_u32
from spikeport.toolchain.hardware.profiles import TargetProfile
from spikeport.toolchain.host.exact import exact_dtype
from spikeport.toolchain.ir.procnet import (
    ConvProcess,
    COSProcess,
    DenseProcess,
    GradedProcess,
    LIFProcess,
    MaxPoolProcess,
    TPPProcess,
)

CHANNELS_LAST_MIN_PIXELS = 32  # oneDNN's channels-last convolutions win from about 7x7 images up


FLOAT32_EXACT = 1 << 24  # integers below this in magnitude are exact in float32, and so are their sums


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Fold x into [-2**(bits-1), 2**(bits-1)), as Lava's Conv does with its output."""
    half = 1 << (bits - 1)
    return (x + half) % (1 << bits) - half


def shift(acc: torch.Tensor, exp: int) -> torch.Tensor:
    """Lava's weight exponent: a left shift, or an arithmetic (flooring) right shift."""
    return acc << exp if exp > 0 else acc >> -exp


def max_message(num_message_bits: int) -> int:
    """The largest value a synapse's input carries: 1 for binary spikes, else the payload width's."""
    return (1 << num_message_bits) - 1 if num_message_bits else 1


def _shift_bound(bound: int, exp: int) -> int:
    return bound << exp if exp >= 0 else (bound >> -exp) + 1


def _row_abs_max(w) -> int:
    """The largest per-output sum of |w|: the most a binary input vector can produce."""
    if sparse.issparse(w):
        return int(abs(w).sum(axis=1).max()) if w.shape[0] else 0
    w = np.abs(np.asarray(w, dtype=np.float64))
    return int(w.reshape(len(w), -1).sum(axis=1).max()) if w.size else 0


class MatrixOp:
    """One integer weight matrix applied to a (batch, n_in) input: diagonal, CSR or dense."""

    def __init__(self, w, device: torch.device, max_input: int = 1, int8: bool = False) -> None:
        """``max_input``: the largest input value (1: binary spikes; graded payloads: more);
        ``int8``: a dense matrix with binary input whose sums fit float32 runs on oneDNN's int8
        kernels where its weights allow and it proves exact (graded payloads stay in float: external
        ones may be signed)."""
        self.diag = self.w = self.int8 = None
        self.diag_shifted: tuple[int, torch.Tensor] | None = None
        self.bound = _row_abs_max(w)
        square = w.shape[0] == w.shape[1]
        if not sparse.issparse(w) and square and not np.any(w - np.diag(np.diag(w))):
            w = sparse.csr_matrix(w)  # diagonal: kept as a vector below
        if sparse.issparse(w):
            coo = w.tocoo()
            if square and np.all(coo.row == coo.col):  # self-connections, skips
                d = np.zeros(w.shape[0], dtype=np.int64)
                d[coo.row] = coo.data
                self.diag = torch.as_tensor(d, device=device)
            else:
                dtype = exact_dtype(np.asarray(abs(w).sum(axis=1)), max_input)
                with warnings.catch_warnings():  # torch calls CSR "beta"; the indices come from scipy
                    warnings.simplefilter("ignore", UserWarning)
                    self.w = torch.sparse_csr_tensor(
                        torch.as_tensor(w.indptr, dtype=torch.int64), torch.as_tensor(w.indices, dtype=torch.int64),
                        torch.as_tensor(w.data, dtype=dtype), w.shape, device=device)
        else:
            self.w = torch.as_tensor(w, dtype=exact_dtype(w, max_input), device=device)
            if int8 and self.w.dtype == torch.float32 and max_input == 1:
                self.int8 = Int8Linear.of(w)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.diag is not None:
            return x.to(torch.int64) * self.diag
        return self._product(x).to(torch.int64)  # exact integers (exact_dtype), so the cast loses nothing

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8 is not None:
            return self.int8(x)
        x = x.to(self.w.dtype)
        return (self.w @ x.T).T if self.w.layout == torch.sparse_csr else x @ self.w.T

    def shifted_float(self, x: torch.Tensor, exp: int) -> torch.Tensor:
        """``shift(self(x), exp)`` as float32, for binary ``x`` where every value on the way is an
        integer below 2**24: scaling by a power of two and flooring are exact in floating point,
        and a binary input selects weights, so a diagonal is shifted once, beforehand."""
        if self.diag is not None:
            if self.diag_shifted is None or self.diag_shifted[0] != exp:
                self.diag_shifted = (exp, shift(self.diag, exp).to(torch.float32))
            return x.to(torch.float32) * self.diag_shifted[1]
        acc = self._product(x)
        if exp > 0:
            acc = acc * float(1 << exp)
        elif exp < 0:
            acc = torch.floor(acc * 2.0 ** exp)
        return acc.to(torch.float32)


class ConvMatrix(MatrixOp):
    """A DenseProcess's matrix run as the convolution it is the matrix of (``p.conv``, lowering's
    delayed convolutions). The same integers: each matrix entry is one kernel entry or zero, and
    Lava's weight processing works value by value and keeps zero zero, so the processed kernel's
    convolution is the processed matrix's product. A 1x1 stride-2 ResNet shortcut as a CSR product
    took a fifth of ``sim``'s time on ResNet-18."""

    def __init__(self, conv: ConvModel, bound: int) -> None:
        self.diag, self.diag_shifted, self.conv, self.bound, self.int8 = None, None, conv, bound, None
        self.w = conv.w

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)[0][1].reshape(len(x), -1)


class DenseModel:
    """Dense / Sparse / DelaySparse / DelayDense: Lava's weight processing on the whole matrix, then
    one matrix per distinct delay (each block is shifted by weight_exp on its own, as Lava does); a
    matrix made from a convolution runs as that convolution (``ConvMatrix``)."""

    def __init__(self, p: DenseProcess, device: torch.device, profile: TargetProfile,
                 in_hwc: bool = False, out_hwc: bool = False, int8: bool = False) -> None:
        """``in_hwc`` / ``out_hwc`` / ``int8``: as ``ConvModel``'s, for a matrix run as its convolution."""
        self.p = p
        w = lava_weights(p.weights, p.sign_mode, p.num_weight_bits, profile.weight_bits)
        top = max_message(p.num_message_bits)
        if np.ndim(p.delay) == 0:
            conv = None
            if p.conv is not None and p.sign_mode is not None:
                kernel = lava_weights(p.conv.weight, p.sign_mode, p.num_weight_bits, profile.weight_bits)
                conv = ConvModel(replace(p.conv, weight=kernel), device, profile, in_hwc, out_hwc, int8)
            # (where a sum could reach Conv's 24-bit wrap, which Dense does not have, the matrix runs)
            self.blocks = [(int(p.delay), ConvMatrix(conv, _row_abs_max(w)) if conv is not None and conv.cannot_wrap
                            else MatrixOp(w, device, top, int8))]
        else:
            dense = w.toarray() if sparse.issparse(w) else np.asarray(w)
            delays = np.asarray(p.delay)
            self.blocks = [(int(d), MatrixOp(sparse.csr_matrix(np.where(delays == d, dense, 0)), device, top))
                           for d in np.unique(delays[dense != 0])] or [(0, MatrixOp(dense, device, top, int8))]
        self.bound = None if p.num_message_bits else \
            sum(_shift_bound(m.bound, p.weight_exp) for _, m in self.blocks)
        # binary input and every sum below 2**24: float32 all the way (the inbox's type, no conversion)
        self.in_float = self.bound is not None and all(
            max(m.bound, _shift_bound(m.bound, p.weight_exp)) < FLOAT32_EXACT for _, m in self.blocks)
        self.overflow = 0

    def __call__(self, s: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """``s`` is (batch, n_in); returns (delay, (batch, n_out) contribution) per delay block."""
        x = _message(s.reshape(len(s), -1), self.p.num_message_bits)
        if self.in_float:
            return [(d, m.shifted_float(x, self.p.weight_exp)) for d, m in self.blocks]
        return [(d, shift(m(x), self.p.weight_exp)) for d, m in self.blocks]


class ConvModel:
    """Lava's Conv: an integer convolution whose output wraps at signed 24 bits. Where no binary
    input can reach the wrap, it returns the float result (exact integers) without checking, as
    (batch, C, H, W) in channels-last layout (oneDNN's fast path: about 1.6x on CPUs). A kernel
    that is an average pool folded into the convolution runs as the sum-pool and the smaller
    convolution (``ops.factor_pool``: stride² times fewer multiply-accumulates, the same sums).
    With ``int8``, a binary synapse that cannot wrap runs on oneDNN's u8 x s8 kernels
    (``int8_kernels``) where its kernel fits a signed byte and proves exact on this layer."""

    def __init__(self, p: ConvProcess, device: torch.device, profile: TargetProfile,
                 in_hwc: bool = False, out_hwc: bool = False, int8: bool = False) -> None:
        """``in_hwc`` / ``out_hwc``: the source / target population keeps its neurons in (H, W, C)
        order (``sim_layout``): read and write them as the channels-last tensors they are."""
        self.p, self.bits, self.in_hwc, self.out_hwc = p, profile.membrane_bits, in_hwc, out_hwc
        dtype = exact_dtype(p.weight, max_message(p.num_message_bits))  # bounds the pooled form's sums too
        self.pooled = factor_pool(p.weight, p.in_shape, p.stride, p.padding, p.dilation)
        w, self.stride, self.padding = (p.weight, p.stride, p.padding) if self.pooled is None else \
            (self.pooled.weight, (1, 1), self.pooled.padding)
        # channels-last where oneDNN runs it faster (large images; at 4x4 it is 1.5x slower than
        # the plain layout), or where a population keeps that order anyway
        self.layout = torch.channels_last if in_hwc or out_hwc or p.out_shape[1] * p.out_shape[2] >= \
            CHANNELS_LAST_MIN_PIXELS else torch.contiguous_format
        self.w = torch.as_tensor(w, dtype=dtype, device=device).contiguous(memory_format=self.layout)
        self.bound = None if p.num_message_bits else _row_abs_max(p.weight)
        self.cannot_wrap = self.bound is not None and self.bound < 1 << (self.bits - 1)
        top = 1 if self.pooled is None else self.pooled.pool ** 2  # a sum-pooled input: a byte must hold pool²
        self.int8 = Int8Conv.of(w, self.stride, self.padding, p.dilation, p.groups, top) \
            if int8 and self.cannot_wrap and top <= U8_MAX else None
        self.overflow = 0
        self._plan: PoolPlan | None = None

    def __call__(self, s: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        x = _message(self._image(s, self.p.in_shape), self.p.num_message_bits)
        if self.pooled is not None:
            x = F.avg_pool2d(x.to(self.w.dtype, memory_format=self.layout), self.pooled.pool, divisor_override=1)
        return self._convolve(self._typed(x))

    def _typed(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the convolution reads it: the int8 kernel takes it as it is (``Int8Conv``
        makes its bytes), the float one in the weights' type and layout."""
        return x if self.int8 is not None else x.to(self.w.dtype, memory_format=self.layout)

    def _image(self, s: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """(batch, C*H*W) in the source population's order as a (batch, C, H, W) tensor."""
        c, h, w = shape
        return s.reshape(len(s), h, w, c).permute(0, 3, 1, 2) if self.in_hwc else s.reshape(len(s), c, h, w)

    def pool_plan(self) -> PoolPlan:
        """Where each neuron of the source population (in its order) lands in ``from_pooled``'s
        input: what ``if_kernel`` adds its spikes into. Jobs of whole pooled rows (H, W, C order)
        or of whole samples (C, H, W order)."""
        if self._plan is None:
            c, h, w = self.p.in_shape
            k = self.pooled.pool
            if self.in_hwc:
                y, x, ch = np.indices((h, w, c)).reshape(3, -1)
                self._plan = PoolPlan.of(((y // k) * (w // k) + x // k) * c + ch, k * w * c)
            else:
                ch, y, x = np.indices((c, h, w)).reshape(3, -1)
                self._plan = PoolPlan.of((ch * (h // k) + y // k) * (w // k) + x // k, c * h * w)
        return self._plan

    def from_pooled(self, pooled: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """The synapse's output from the sum-pooled spikes (batch, C*H*W / pool**2), positions as
        ``pool_plan`` numbers them: the same integers as ``self(spikes)``."""
        c, h, w = self.p.in_shape
        k = self.pooled.pool
        return self._convolve(self._typed(self._image(pooled, (c, h // k, w // k))))

    def _convolve(self, x: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        p = self.p
        a = self.int8(x) if self.int8 is not None else \
            F.conv2d(x, self.w, None, self.stride, self.padding, p.dilation, p.groups)
        if self.out_hwc:  # the channels-last result is the target's (H, W, C) order as it is
            a = a.permute(0, 2, 3, 1)
        if self.cannot_wrap:
            return [(0, a)]
        a = a.reshape(len(x), -1).to(torch.int64)
        wrapped = wrap(a, self.bits)  # Lava's signed 24-bit clamp of the conv output
        self.overflow += int((wrapped != a).sum())
        return [(0, wrapped)]


def _message(x: torch.Tensor, num_message_bits: int) -> torch.Tensor:
    """What a synapse reads from its input port: the payload as it is, or for a binary synapse 1
    wherever the input is nonzero, as Lava's models read it. float32 inputs are ``FastIF``'s 0/1
    spikes (nothing else in ``sim`` makes float32 spike tensors) and pass unchanged."""
    if num_message_bits or x.dtype in (torch.bool, torch.float32):
        return x
    return x != 0


@dataclass(frozen=True)
class Link:
    """A direct port connection (a neuron's ``s_out`` into a max-pool gate): no weights."""

    name: str
    src: str
    dst: str


class LinkModel:
    """The source's spikes as they are, one step later: what a max-pool gate that sends before it
    receives (as Lava's Dense does) makes of its directly connected input."""

    bound = 1

    def __init__(self, p: Link) -> None:
        self.p, self.overflow = p, 0

    def __call__(self, s: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        return [(0, s.reshape(len(s), -1))]


SynapseModel = DenseModel | ConvModel | LinkModel


class _State:
    """An int64 state of a model's ``shape``, allocated when first used (zero until then): a
    population the fused loop runs never needs its int64 u and v."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = "_" + name

    def __get__(self, model, owner: type | None = None) -> torch.Tensor:
        x = model.__dict__.get(self.key)
        if x is None:
            x = model.__dict__[self.key] = torch.zeros(model.shape, dtype=torch.int64, device=model.device)
        return x

    def __set__(self, model, value: torch.Tensor) -> None:
        model.__dict__[self.key] = value


class LIFModel:
    """LIF / LIFReset, one step at a time, in int64 with every fold and saturation of Lava's."""

    u = _State()
    v = _State()

    def __init__(self, p: LIFProcess, batch: int, profile: TargetProfile, device: torch.device) -> None:
        self.p = p
        self.act_shift, self.bits, self.decay_bits = profile.act_shift, profile.membrane_bits, profile.decay_bits
        self.u_max, self.v_max = 1 << (self.bits - 1), profile.v_max
        self.half_word = 1 << (profile.word_bits - 1)
        self.shape, self.device = (batch, p.size), device
        bias = np.asarray(p.bias_mant, dtype=np.int64)  # (N,), or (batch, N): a bias per sample (netx inputs)
        bias = torch.as_tensor(np.broadcast_to(bias, (batch, p.size) if bias.ndim == 2 else (p.size,)).copy())
        self.bias = shift(bias, p.bias_exp).to(device)
        self.vth = p.vth << self.act_shift
        self.overflow = 0

    def clear(self) -> None:
        """Back to the zero state (Lava's reset), without writing zeros."""
        self.__dict__.pop("_u", None)
        self.__dict__.pop("_v", None)

    def u_is_zero(self) -> bool:
        """Whether u was never touched: still the zero it starts as."""
        return self.__dict__.get("_u") is None

    def u_as(self, dtype: torch.dtype) -> torch.Tensor:
        """u converted to ``dtype`` (a FastIF's float32 state: exact, as |u| < 2**23), without
        allocating the int64 state where it was never used."""
        u = self.__dict__.get("_u")
        return torch.zeros(self.shape, dtype=dtype, device=self.device) if u is None else u.to(dtype)

    def resets_at(self, t: int) -> bool:
        p = self.p
        return bool(p.reset_interval) and t % p.reset_interval == p.reset_offset % p.reset_interval

    def _decay(self, x: torch.Tensor, decay: int) -> torch.Tensor:
        """Keep (one - decay) / one of x, rounded toward zero (one = 2**decay_bits)."""
        if decay == 0:
            return x
        y = x * ((1 << self.decay_bits) - decay)
        return torch.sign(y) * (y.abs() >> self.decay_bits)

    def _word(self, x: torch.Tensor) -> torch.Tensor:
        """x as Lava's int32 registers hold it: wrapped modulo 2**32 (counted as overflow)."""
        w = (x + self.half_word) % (2 * self.half_word) - self.half_word
        self.overflow += int((w != x).sum())
        return w

    def step(self, t: int, a: torch.Tensor) -> torch.Tensor:
        p = self.p
        if self.resets_at(t):
            self.u.zero_()
            self.v.zero_()
        u = self._word(self._decay(self.u, p.du + 1) + self._word(self._word(a) << self.act_shift))
        wrapped = (u > self.u_max) | (u <= -self.u_max)  # one fold: Lava keeps u in (-2**23, 2**23] after it
        self.overflow += int(wrapped.sum())
        fold = 1 << self.bits
        u = torch.where(u > self.u_max, u - fold, torch.where(u <= -self.u_max, u + fold, u))
        v = self._word(self._decay(self.v, p.dv) + u + self.bias)
        self.overflow += int(((v > self.v_max) | (v < -self.v_max)).sum())
        v = v.clamp(-self.v_max, self.v_max)
        s = v > self.vth
        self.u, self.v = u, torch.where(s, torch.zeros_like(v), v)
        return s


class FastIF:
    """The soft-reset IF population as ``lower`` builds it (``du=-1``: u integrates; ``dv=4096``: v
    is u plus the bias; a diagonal self-connection subtracts theta one step after a spike), run
    over many steps with three float32 operations per step (add the input, subtract theta where
    the step before spiked, compare) instead of ``LIFModel``'s ~20 in int64.

    This is Lava's arithmetic exactly as long as u cannot leave the 24-bit range: then u never
    folds, v never saturates and ``v > vth << 6`` is ``u > (vth << 6) - bias``; and every value
    met on the way is an integer below 2**24 in magnitude, which float32 holds and adds exactly.
    Two implementations: ``run`` (torch operations, any device), for which ``span`` proves that
    bound from the input before each run of steps, and ``run_compiled`` (the CPU: ``if_kernel``,
    every step of a block of neurons in one pass), which checks every partial sum as it goes. A
    step neither can vouch for goes through ``LIFModel`` instead, after ``sync`` has handed it the
    state. v is not kept: with ``dv=4096`` it does not carry over from one step to the next.
    Spikes come out in the type the next synapse's convolution or product reads, so no conversion
    sits in between: float32 0/1 for the float kernels, bool (bytes) from the compiled loop for
    the int8 ones.
    """

    def __init__(self, lif: LIFModel, self_syn: DenseModel) -> None:
        self.lif = lif
        self.self_w_a = shift(self_syn.blocks[0][1].diag, self_syn.p.weight_exp)  # a_in units, per neuron
        self_w = self.self_w_a << lif.act_shift  # u units
        self.self_max = int(self_w.abs().max()) if len(self_w) else 0
        self.self_w: float | torch.Tensor = float(self_w[0]) if len(self_w) and bool((self_w == self_w[0]).all()) \
            else self_w.to(torch.float32)
        thr = lif.vth - lif.bias
        self.thr: float | torch.Tensor = float(thr[0]) if len(thr) and bool((thr == thr[0]).all()) \
            else thr.to(torch.float32)
        self.fires_at_zero = bool((torch.as_tensor(self.thr) < 0).any())  # a bias above threshold
        self.bias_max = int(lif.bias.abs().max()) if len(lif.bias) else 0
        self.limit = lif.u_max - 1  # |u| up to this cannot fold, and v = u + bias cannot saturate
        self.u: torch.Tensor | None = None  # float32 state while the fast path owns it
        self.u_bound = 0  # an upper bound of |u|, kept without measuring where possible
        self.lim = float(self.limit - self.bias_max)  # the compiled loop's bound on every partial sum of |u|
        n = lif.p.size
        self.spare: torch.Tensor | None = None  # the compiled loop writes the new state here
        self.no_spikes = torch.zeros((0, n))  # the compiled loop's "nothing pending"

    @staticmethod
    def eligible(p, internal: list[SynapseModel], profile: TargetProfile) -> bool:
        """``p`` is a perfect integrator whose only recurrent input is a diagonal, binary,
        undelayed self-connection."""
        if not (isinstance(p, LIFProcess) and p.du == -1 and p.dv == profile.decay_unit and len(internal) == 1):
            return False
        syn = internal[0]
        return (isinstance(syn, DenseModel) and syn.p.src == syn.p.dst == p.name and not syn.p.num_message_bits
                and len(syn.blocks) == 1 and syn.blocks[0][0] == 0 and syn.blocks[0][1].diag is not None)

    def sync(self) -> None:
        """Hand the state back to ``lif`` before a step of the general model, after which the
        bound on |u| is unknown (found by ``spikeport fuzz``: a stale bound let a fold through)."""
        if self.u is not None:
            self.lif.u = self.u.to(torch.int64)
            self.u = None
        self.u_bound = -1  # measure next time

    def span(self, step_max: list[int], j: int) -> tuple[int, int]:
        """How many steps from chunk position j on provably keep |u| and |v| inside 24 bits, given
        the largest |input| of each step in u units, and the bound of |u| after them. The bound
        carried from earlier runs is tried first; |u| is measured only where it falls short."""
        for measured in (False, True):
            if measured or self.u_bound < 0:
                u = self.lif.u if self.u is None else self.u
                self.u_bound = int(u.abs().max()) if u.numel() else 0
                measured = True
            bound, k = self.u_bound, j
            while k < len(step_max) and bound + step_max[k] + self.self_max + self.bias_max <= self.limit:
                bound += step_max[k] + self.self_max
                k += 1
            if k == len(step_max) or measured:
                break
        return k - j, bound

    def idle(self, t0: int, count: int, prev: torch.Tensor | None) -> bool:
        """Whether steps t0 .. t0+count-1 are silent, given that nothing enters the population;
        if so they are taken: u integrates zero, so it stays as it is up to a reset and zero after
        one. Silent: no subtraction is due, no neuron is above threshold before a reset, and none
        at u = 0 after one (a bias above threshold)."""
        if prev is not None and bool(prev.any()):
            return False
        first_reset = next((j for j in range(count) if self.lif.resets_at(t0 + j)), None)
        zero = self.u is None and self.lif.u_is_zero()  # (never used yet: nothing to read)
        if first_reset != 0:
            above = self.fires_at_zero if zero else bool(((self.lif.u if self.u is None else self.u) > self.thr).any())
            if above:
                return False
        if first_reset is None:
            return True
        if self.fires_at_zero:
            return False
        self.u = None  # back to the zero state, allocated again when next used (v does not carry over: dv=4096)
        self.lif.clear()
        self.u_bound = 0
        return True

    def run_compiled(self, t0: int, a: torch.Tensor | None, consts: list[torch.Tensor | None], j0: int,
                     spikes: torch.Tensor | None, pooled: torch.Tensor | None, plan: PoolPlan | None,
                     prev: torch.Tensor | None, counts: np.ndarray) -> tuple[int, torch.Tensor | None]:
        """Steps t0+j0 .. t0+j0+len(consts)-1 on the CPU in the compiled loop (``if_kernel``), as
        far as they stay exact: returns how many ran (the state is then after them; the step that
        would leave the 24-bit range and those after it are not run) and the last step's spikes
        (float32 0/1), whose subtraction is due in the next step.

        ``a`` (chunk, B, N) float32 synaptic input (exact integers, as a float32 inbox holds them;
        steps past its end receive none) or None; ``consts[i]`` what else enters a_in at step
        j0 + i, (1 or B, N) float32 (integers whose u-unit values 2**act_shift times larger are
        exact) or None, at most two distinct tensors; ``spikes`` (chunk, B, N) float32 or bool and
        ``pooled`` (chunk, B, P) receive the spikes and their sum-pool by ``plan`` (either may be
        None); ``counts[j]`` the number of spikes per sample."""
        lif = self.lif
        if self.u is None:
            self.u = lif.u_as(torch.float32)  # |u| < 2**23 after Lava's fold: exact
        if self.spare is None or self.spare.shape != self.u.shape:
            self.spare = torch.empty_like(self.u)
        batch, n = self.u.shape
        k = len(consts)
        prev = self.no_spikes if prev is None else prev.to(torch.float32)
        last = torch.empty_like(self.u)
        distinct = list({id(c): c for c in consts if c is not None}.values())
        if len(distinct) > 2:
            raise AssertionError("the compiled loop takes at most two source values per call")
        c = [d.numpy() for d in distinct] + [np.zeros((0, n), np.float32)] * (2 - len(distinct))
        which = np.array([0 if x is None else 1 + next(i for i, d in enumerate(distinct) if d is x)
                          for x in consts], dtype=np.int8)
        empty = np.zeros((0, batch, n), np.float32)
        a_np = empty if a is None else a[j0:j0 + k].reshape(-1, batch, n).numpy()  # may end before step k
        reset = np.array([lif.resets_at(t0 + j0 + i) for i in range(k)], dtype=np.bool_)
        block = BLOCK if plan is None else plan.block
        no_plan = np.zeros(0, np.int64)
        per_job = np.empty((k, batch * jobs_per_row(n, block)), np.int32)
        rows = batch if np.ndim(self.thr) == 2 else 1  # thresholds per sample where the bias is (netx inputs)
        # (writable copies: numba compiles a read-only array, as broadcast_to makes, as another type)
        self_w, thr = (np.array(np.broadcast_to(torch.as_tensor(v, dtype=torch.float32).numpy(), shape))
                       for v, shape in ((self.self_w, (n,)), (self.thr, (rows, n))))
        kernel = integrate_fire if loop_threads() > 1 else integrate_fire_serial
        for _ in range(2):  # the second run stops before the step the first found inexact: it cannot fail
            done = kernel(
                self.u.numpy(), self.spare.numpy(), a_np[:k], float(1 << lif.act_shift), c[0], c[1], which[:k],
                self_w, thr, prev.numpy(), reset[:k], self.lim,
                empty if spikes is None else spikes[j0:j0 + k].numpy(),
                no_plan if plan is None else plan.index, no_plan if plan is None else plan.runs,
                empty if pooled is None else pooled[j0:j0 + k].numpy(), last.numpy(), per_job[:k], block)
            if done == k or done == 0:
                break
            k = done
        if done == 0:
            return 0, None
        self.u, self.spare = self.spare, self.u
        self.u_bound = -1  # the torch path measures |u| before trusting a bound again
        counts[j0:j0 + done] = per_job[:done].reshape(done, batch, -1).sum(axis=2)
        return int(done), last

    def run(self, t0: int, inputs: list[list], j0: int, j1: int, prev: torch.Tensor | None,
            spikes: torch.Tensor) -> None:
        """Steps t0+j0 .. t0+j1-1, as ``span`` allowed. ``inputs[j]`` lists what enters u at chunk
        position j (float32 tensors or floats, u units); ``prev`` the spikes of the step before j0
        whose subtraction is still due; ``spikes[j]`` (float32) receives each step's spikes."""
        lif = self.lif
        if self.u is None:
            self.u = lif.u_as(torch.float32)
        u = self.u
        for j in range(j0, j1):
            if lif.resets_at(t0 + j):
                u.zero_()
            for x in inputs[j]:
                u.add_(x)
            if prev is not None:
                if isinstance(self.self_w, float):
                    u.add_(prev, alpha=self.self_w)
                else:
                    u.addcmul_(prev, self.self_w)
            torch.gt(u, self.thr, out=spikes[j])
            prev = spikes[j]


class MaxPoolModel:
    """The spiking max-pool gate (``MaxPoolKernel``) driven by the step counter: its counts clear
    at the first step of every window; inputs after ``length`` steps of a window are ignored."""

    def __init__(self, p: MaxPoolProcess, batch: int, device: torch.device) -> None:
        self.p, self.overflow = p, 0
        self.kernel = MaxPoolKernel(torch, batch, p.in_size, torch.as_tensor(p.index, device=device), device=device)
        self.kernel.reset()
        self.none = torch.zeros((batch, p.size), dtype=torch.bool, device=device)

    def step(self, t: int, a: torch.Tensor) -> torch.Tensor:
        p = self.p
        if t < p.start:
            return self.none
        j = (t - p.start) % p.period
        if j == 0:
            self.kernel.reset()
        return self.kernel.step(a) if j < p.length else self.none


class WindowedModel:
    """A COS, TPP or graded-spike kernel driven by the step counter: window j = 0 restarts every period."""

    def __init__(self, p: COSProcess | TPPProcess | GradedProcess, batch: int, device: torch.device,
                 sample_ids: torch.Tensor,
                 per_window: bool = False):
        """``per_window``: one sample per window (a streamed run): window w uses ``sample_ids[w]``."""
        self.p, self.per_window, self.ids = p, per_window, sample_ids.to(device)
        self.overflow = 0
        shape = (batch, p.size)
        if isinstance(p, COSProcess):
            self.kernel = COSKernel(torch, shape, p.theta, p.v_init, p.rho, p.S, device=device)
        elif isinstance(p, GradedProcess):
            self.kernel = GradedKernel(torch, shape, p.theta, p.v_init, p.levels, p.length, device=device)
        else:
            neurons = torch.arange(p.size, dtype=torch.int64, device=device)
            self.kernel = TPPKernel(torch, prng_u32, shape, p.theta, p.v_init, p.T, p.seed, p.layer, neurons,
                                    device=device)
        self.kernel.reset()
        self.samples = sample_ids.to(device).reshape(-1, 1)
        self.none = torch.zeros(shape, dtype=torch.bool, device=device)

    def step(self, t: int, a: torch.Tensor) -> torch.Tensor:
        p = self.p
        if t < p.start:
            return self.none
        w, j = divmod(t - p.start, p.period)
        if isinstance(p, TPPProcess) and w >= (len(self.ids) if self.per_window else 1):
            return self.none  # TPP draws its numbers for a sample: none after the last one (as in Lava)
        if j == 0:
            self.kernel.reset()
            if self.per_window and w < len(self.ids):
                self.samples = self.ids[w].reshape(1, 1)
        if isinstance(p, TPPProcess):
            return self.kernel.step(j, a, self.samples)
        return self.kernel.step(j, a)
