"""``spikeport fuzz``: random networks on every integer runner, each checked against something it
does not share (and the property-based tests in ``tests/test_fuzz.py``).

Two families of cases:

* **Networks** (:func:`random_case`): small integer SNNs through the real lowering. Every neuron
  model (IF, IF with FTBC's time bias, COS, TPP, graded spikes of 1 to 8 levels), T from 1 to
  32, 1 to 4 hidden layers of conv (kernel 1-4, stride, padding, dilation, grouped and
  depthwise) or dense synapses, 2x2 average pools folded into the convolution after them,
  residual projections (dense or 1x1 conv) that the lowering must delay, spiking max-pools (any
  kernel, stride, padding and ceil mode) after conv layers, readout biases, 8-bit mantissas that
  often sit at -128 and 127, and inputs from gentle to far past the head-room. Thresholds are
  sized to each layer's input, so that most layers fire.
* **Lava arithmetic** (:func:`random_process_case`): process networks built directly, without the
  lowering, to reach what it never produces: leaky LIFs (any du, dv), odd mixed-sign weights that
  Lava truncates, sign modes, 1-8 weight bits, negative weight exponents, bias exponents, per-synapse
  delays, resets, recurrent connections, and a readout that folds at 24 bits.

The checks (an *independent* comparison shares no arithmetic with ``sim``; a *self-check* compares
``sim`` with itself):

* ``sim`` against the plain Lava model (:mod:`spikeport.toolchain.oracle.lava_model`) in every case,
  side by side and streamed (streams of up to 12 samples), every step of every frame, and their
  overflow counts (none reported is a claim too): independent, and inside or beyond the head-room
  alike;
* ``sim``, side by side and streamed, against the zero-delay reference (``torch_int``) at the
  lowering's timing wherever the reference stayed inside the head-room and its readout inside u's
  24 bits (the quench then separates samples): independent, and decided by the reference alone,
  never by ``sim`` nor by the oracle, which shares the lowering with it (a lowering fault that
  makes registers fold shows here, not against the oracle);
* Lava itself (every ``lava_every``-th case) against the oracle and against streamed ``sim``:
  independent;
* ``sim``'s fused IF loop against its general per-process models: a self-check, counted apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from spikeport.api import run
from spikeport.targets.lava.runner import run_lava
from spikeport.targets.sim import simulate
from spikeport.toolchain.hardware.profiles import LOIHI2
from spikeport.toolchain.host.encoding import encode
from spikeport.toolchain.ir.procnet import ConvProcess, DenseProcess, LIFProcess, ProcessNet
from spikeport.toolchain.ir.snn import (
    COS,
    IF,
    INPUT,
    TPP,
    ConvSynapse,
    DenseSynapse,
    Graded,
    PoolSynapse,
    Population,
    Projection,
    SNNGraph,
)
from spikeport.toolchain.ir.trace import Trace
from spikeport.toolchain.oracle.lava_model import OracleRun, run_oracle
from spikeport.toolchain.passes.lowering import deploy
from spikeport.toolchain.verification.compare import READOUT, check_equal, compare

STEPS = (1, 1, 2, 2, 3, 4, 4, 5, 6, 8, 8, 12, 16, 24, 32)


@dataclass
class Case:
    seed: int
    snn: SNNGraph
    x: np.ndarray
    T: int

    def describe(self) -> str:
        layers = []
        for p in self.snn.populations:
            kinds = "+".join(("conv" if isinstance(pr.synapse, ConvSynapse) else
                              "pool" if isinstance(pr.synapse, PoolSynapse) else "dense")
                             + ("(in)" if pr.source == INPUT else "") for pr in p.inputs)
            layers.append(f"{p.name}{list(p.shape)}<-{kinds}")
        neuron = type(self.snn.neuron).__name__ + ("+FTBC" if self.snn.hidden[0].time_bias is not None else "")
        return f"seed {self.seed}: {neuron}, T={self.T}, {len(self.x)} samples, " + " ".join(layers)


@dataclass
class ProcessCase:
    seed: int
    net: ProcessNet
    spikes_in: np.ndarray  # (steps, 1, N)

    @property
    def steps(self) -> int:
        return len(self.spikes_in)

    def describe(self) -> str:
        lifs = " ".join(f"{p.name}(du={p.du},dv={p.dv},vth={p.vth},bias={np.max(np.abs(p.bias_mant))}<<{p.bias_exp})"
                        for p in self.net.lifs)
        return f"process seed {self.seed}: {self.steps} steps, {lifs}"


# -- drawing networks ------------------------------------------------------------------------------
def _mantissas(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """8-bit signed mantissas, a tenth of them at the ends of the range."""
    w = rng.integers(-128, 128, size=shape)
    edge = rng.random(shape) < 0.1
    w[edge] = rng.choice(np.array([-128, 127]), size=int(edge.sum()))
    return w.astype(np.int64)


def _conv_out(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _random_conv(rng: np.random.Generator, in_shape: tuple[int, int, int]) -> ConvSynapse | None:
    cin, h, w = in_shape
    for _ in range(10):
        k = int(rng.integers(1, 5))
        stride, dil = int(rng.integers(1, 3)), int(rng.choice([1, 1, 2]))
        pad = int(rng.integers(0, k))
        oh, ow = _conv_out(h, k, stride, pad, dil), _conv_out(w, k, stride, pad, dil)
        if oh >= 1 and ow >= 1:
            break
    else:
        return None
    kind = rng.random()
    if cin > 1 and kind < 0.2:  # depthwise
        cout, groups = cin, cin
    elif cin % 2 == 0 and kind < 0.35:  # two groups
        cout, groups = 2 * int(rng.integers(1, 4)), 2
    else:
        cout, groups = int(rng.integers(1, 7)), 1
    weight = np.zeros((cout, cin // groups, k, k))
    return ConvSynapse(weight, in_shape, (cout, oh, ow), (stride, stride), (pad, pad), (dil, dil), groups)


def _fold_pool(conv: ConvSynapse) -> ConvSynapse:
    """A 2x2 average pool before ``conv``'s kernel at stride 1, folded into it as conversion folds it
    (the kernel repeated over 2x2 blocks, at stride 2): what ``sim`` runs as a sum-pool, which its IF
    loop computes as it fires (``if_kernel.PoolPlan``). Left as it is where the image has no 2x2
    blocks."""
    h, w = conv.in_shape[1:]
    if h % 2 or w % 2:
        return conv
    k, pad = conv.weight.shape[2], conv.padding[0]
    out = (conv.out_shape[0], h // 2 + 2 * pad - k + 1, w // 2 + 2 * pad - k + 1)
    if min(out[1:]) < 1:
        return conv
    folded = np.repeat(np.repeat(conv.weight, 2, axis=2), 2, axis=3)
    return ConvSynapse(folded, conv.in_shape, out, (2, 2), (2 * pad, 2 * pad), (1, 1), conv.groups)


def _random_pool(rng: np.random.Generator, in_shape: tuple[int, int, int]) -> PoolSynapse | None:
    """A max-pool window torch accepts (padding at most half the kernel), ceil mode included."""
    c, h, w = in_shape
    k = int(rng.integers(1, min(3, h, w) + 1))
    stride, pad, ceil = int(rng.integers(1, 3)), int(rng.integers(0, k // 2 + 1)), bool(rng.random() < 0.5)
    sizes = []
    for n in (h, w):  # torch's rule: the last window must start inside the input or its left padding
        out = -(-(n + 2 * pad - k) // stride) + 1 if ceil else (n + 2 * pad - k) // stride + 1
        if ceil and (out - 1) * stride >= n + pad:
            out -= 1
        sizes.append(out)
    if min(sizes) < 1:
        return None
    return PoolSynapse(in_shape, (c, sizes[0], sizes[1]), (k, k), (stride, stride), (pad, pad), ceil)


def _threshold(rng: np.random.Generator, projections: list[Projection], drive: float) -> int:
    """A power of two near the typical input of a layer whose sources fire about a third of the
    time, so that most layers are active; scaled by a random factor, the input layer's by ``drive``."""
    typical = 0.0
    for pr in projections:
        if pr.source == INPUT:
            continue
        w = pr.synapse.weight * 2.0 ** pr.weight_exp
        typical += np.sqrt(max(pr.synapse.fan_in, 1) / 3.0) * float(np.sqrt(np.mean(w ** 2)))
    scale = typical * float(rng.choice([0.25, 0.5, 1.0, 2.0])) if typical else 2.0 ** rng.integers(1, 17)
    return 1 << int(np.clip(np.round(np.log2(max(scale, 2.0))), 1, 16))


def random_case(seed: int) -> Case:
    """One random integer network and its inputs, fully determined by ``seed``."""
    rng, pool_rng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    T = int(rng.choice(STEPS))
    kind = rng.random()
    ftbc = 0.55 <= kind < 0.7  # IF with a time bias per step and channel
    if kind < 0.7:
        neuron: IF | COS | TPP | Graded = IF()
    elif kind < 0.85:
        neuron = COS(int(rng.integers(1, 7)))
    else:
        neuron = TPP(int(rng.integers(0, 1000)), str(rng.choice(["zero", "half"])))
    graded_rng = np.random.default_rng([seed, 2])  # drawn apart, like the pools: the other draws stay put
    folded_rng = np.random.default_rng([seed, 3])  # average pools folded into the next convolution
    if isinstance(neuron, IF) and not ftbc and graded_rng.random() < 0.15:
        neuron = Graded(int(graded_rng.integers(1, 9)))
    if rng.random() < 0.65:
        input_shape: tuple[int, ...] = (int(rng.integers(1, 5)), int(rng.integers(4, 10)), int(rng.integers(4, 10)))
    else:
        input_shape = (int(rng.integers(4, 41)),)
    drive = float(rng.choice([0.3, 1.0, 1.0, 4.0, 40.0]))  # how hard the input pushes the membranes
    pops: list[Population] = []
    shape, source = input_shape, INPUT
    for i in range(int(rng.integers(1, 5))):
        conv = _random_conv(rng, shape) if len(shape) == 3 and rng.random() < 0.75 else None
        if conv is not None:
            syn: ConvSynapse | DenseSynapse = conv
            out_shape = conv.out_shape
        else:
            n_out = int(rng.integers(2, 41))
            syn = DenseSynapse(np.zeros((n_out, int(np.prod(shape)))), shape, (n_out,))
            out_shape = (n_out,)
        if source == INPUT:
            proj = Projection(INPUT, syn, unit=1.0)
        else:
            syn.weight = _mantissas(rng, syn.weight.shape)
            if folded_rng.random() < 0.5 and isinstance(syn, ConvSynapse):
                syn = _fold_pool(syn)
                out_shape = syn.out_shape
            proj = Projection(source, syn, weight_exp=int(rng.integers(0, 5)))
        inputs = [proj]
        same = [p for p in pops[:-1] if p.shape == out_shape]
        if same and rng.random() < 0.5:  # a residual projection: the lowering must delay it
            src = same[int(rng.integers(len(same)))]
            n = int(np.prod(out_shape))
            if len(out_shape) == 3 and rng.random() < 0.5:
                c = out_shape[0]
                skip: ConvSynapse | DenseSynapse = ConvSynapse(_mantissas(rng, (c, c, 1, 1)), out_shape, out_shape)
            else:
                skip = DenseSynapse(_mantissas(rng, (n, n)), out_shape, out_shape)
            inputs.append(Projection(src.name, skip, weight_exp=int(rng.integers(0, 3))))
        theta = _threshold(rng, inputs, drive)
        if source == INPUT:
            syn.weight = rng.normal(0.0, 1.0, syn.weight.shape) * theta * drive / max(1.0, np.sqrt(syn.fan_in))
        v_init = 0 if isinstance(neuron, TPP) and neuron.v_init == "zero" else theta // 2
        bias = rng.integers(-theta, theta + 1, size=out_shape) if rng.random() < 0.5 else np.zeros(out_shape)
        time_bias = None
        if ftbc:
            per = (T, out_shape[0], 1, 1) if len(out_shape) == 3 else (T, *out_shape)
            time_bias = rng.integers(-theta // 2, theta // 2 + 1, size=per).astype(np.int64)
        pops.append(Population(f"l{i}", tuple(out_shape), "if", theta, v_init, bias.astype(np.int64), inputs,
                               time_bias=time_bias))
        shape, source = tuple(out_shape), f"l{i}"
        pool = _random_pool(pool_rng, out_shape) if len(out_shape) == 3 and pool_rng.random() < 0.3 else None
        if pool is not None and not isinstance(neuron, Graded):  # a spiking max-pool (drawn apart: the other
            # draws stay put); the gate counts binary spikes, so graded networks have none
            pops.append(Population(f"p{i}", pool.out_shape, "maxpool", 0, 0, np.zeros(pool.out_shape, np.int64),
                                   [Projection(source, pool)]))
            shape, source = pool.out_shape, f"p{i}"
    n_out = int(rng.integers(2, 11))
    readout = DenseSynapse(_mantissas(rng, (n_out, int(np.prod(shape)))), shape, (n_out,))
    out_bias = rng.integers(-(1 << 10), 1 << 10, size=n_out) if rng.random() < 0.5 else np.zeros(n_out)
    pops.append(Population("out", (n_out,), "readout", 0, 0, out_bias.astype(np.int64),
                           [Projection(source, readout, weight_exp=int(rng.integers(0, 3)))]))
    snn = SNNGraph(tuple(input_shape), pops, neuron=neuron, profile=LOIHI2, T=T, meta={"fuzz_seed": seed})
    # streams of 1 to 12 samples, so that a fault from the 5th streamed sample on shows (the draw
    # that gave 1 to 4 gives at least as many now: each earlier case's samples lead its stream)
    x = rng.random((int(rng.integers(1, 13)), *input_shape))
    return Case(seed, snn, x, T)


def _lava_weights_case(rng: np.random.Generator, n_out: int, n_in: int) -> dict:
    """Weights and Dense parameters that exercise Lava's weight processing."""
    w = rng.integers(-256, 256, size=(n_out, n_in))
    w[rng.random(w.shape) < 0.5] = 0
    sign = rng.choice(["mixed", "exc", "inh", None, None])
    if sign == "exc" or (sign is None and rng.random() < 0.3):
        w = np.abs(w)
    elif sign == "inh":
        w = -np.abs(w)
    return {"weights": w.astype(np.int64), "sign_mode": sign, "num_weight_bits": int(rng.integers(1, 9)),
            "weight_exp": int(rng.integers(-4, 5))}


def random_process_case(seed: int) -> ProcessCase:
    """A random network of Lava processes fed by random spikes (one sample)."""
    rng = np.random.default_rng(seed)
    steps = int(rng.integers(10, 61))
    n_in = int(rng.integers(4, 25))
    graded = rng.random() < 0.2
    spikes = (rng.random((steps, 1, n_in)) < rng.uniform(0.05, 0.6)).astype(np.int64)
    if graded:
        spikes = spikes * rng.integers(1, 256, size=spikes.shape)
    lifs, syns = [], []
    shape: tuple[int, ...] = (n_in,)
    src = "input"
    for i in range(int(rng.integers(1, 4))):
        conv_next = i > 0 and len(shape) == 3 and rng.random() < 0.5
        if conv_next:
            c = shape[0]
            k = int(rng.integers(1, min(shape[1:]) + 1))
            out = (int(rng.integers(1, 5)), shape[1] - k + 1, shape[2] - k + 1)
            weight = rng.integers(-(1 << 12), 1 << 12, size=(out[0], c, k, k)).astype(np.int64)
            syns.append(ConvProcess(f"c{i}", src, f"n{i}", weight, shape, out))
        else:
            out = (int(rng.integers(1, 4)), int(rng.integers(3, 6)), int(rng.integers(3, 6))) \
                if rng.random() < 0.3 else (int(rng.integers(2, 25)),)
            n = int(np.prod(out))
            params = _lava_weights_case(rng, n, int(np.prod(shape)))
            delay: int | np.ndarray = 0
            if rng.random() < 0.3:
                delay = rng.integers(0, 5, size=(n, int(np.prod(shape))))
            syns.append(DenseProcess(f"d{i}", src, f"n{i}", delay=delay, sparse=rng.random() < 0.5,
                                     num_message_bits=8 if graded and src == "input" else 0, **params))
        name = f"n{i}"
        size = int(np.prod(out))
        du = int(rng.choice([-1, 0, int(rng.integers(0, 4096)), 4095]))
        dv = int(rng.choice([0, int(rng.integers(0, 4097)), 4096]))
        vth = int(2 ** rng.uniform(0, 17)) - 1
        bias_exp = int(rng.integers(0, 8))
        bias = rng.integers(-(1 << 15), 1 << 15, size=size) >> int(rng.integers(0, 16)) if rng.random() < 0.5 else 0
        interval = int(rng.integers(2, 12)) if rng.random() < 0.3 else 0
        lifs.append(LIFProcess(name, out, du, dv, max(vth, 0), bias_mant=bias, bias_exp=bias_exp,
                               reset_interval=interval, reset_offset=int(rng.integers(0, 12)) if interval else 0))
        if rng.random() < 0.25:  # a recurrent connection
            syns.append(DenseProcess(f"r{i}", name, name, **_lava_weights_case(rng, size, size)))
        shape, src = out, name
    n = int(np.prod(shape))
    syns.append(DenseProcess("ro", src, "readout", **_lava_weights_case(rng, 4, n)))
    lifs.append(LIFProcess("readout", (4,), du=-1, dv=LOIHI2.decay_unit, vth=LOIHI2.u_limit))
    net = ProcessNet(lifs, syns, [], readout="readout", T=steps, period=steps, profile=LOIHI2)
    return ProcessCase(seed, net, spikes)


# -- checking --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    describe: str
    lava: bool
    beyond_headroom: bool  # the reference saw a membrane leave the head-room (decided without sim)
    exact: bool
    independent_values: int  # compared between sim and code it does not share (oracle, reference, Lava)
    self_check_values: int  # compared between sim's fused loop and its general models
    layers: int = 0
    silent_layers: int = 0  # hidden layers that never fire in the reference
    problems: list[str] = field(default_factory=list)

    @property
    def problem(self) -> str:
        return "; ".join(self.problems)

    def line(self) -> str:
        scope = "beyond head-room" if self.beyond_headroom else "inside head-room"
        tail = f" | {self.problem}" if self.problems else ""
        return (f"{'ok  ' if self.exact else 'FAIL'} {self.describe} | {scope}{', Lava' if self.lava else ''}: "
                f"{self.independent_values:,} independent values, {self.self_check_values:,} self-check{tail}")


def _events(overflow: dict) -> dict[str, int]:
    """Overflow counts without the populations that had none, so that {} and {"a": 0} are equal."""
    return {k: int(v) for k, v in overflow.items() if v}


def _readout_folds(ref: Trace, limit: int) -> bool:
    """Whether Lava's readout u folds (``u > 2**23`` or ``u <= -2**23``) where the reference's sum runs
    on unbounded: u is that sum in weight units shifted by act_shift, so the bound is ``limit`` (u_limit)."""
    return bool(np.any(ref.readout > limit) or np.any(ref.readout <= -limit))


class _Tally:
    def __init__(self) -> None:
        self.independent = self.self_check = 0
        self.problems: list[str] = []

    def frames(self, what: str, got: Trace, want: Trace | OracleRun, independent: bool = True,
               counts: bool = True) -> None:
        """Every step of every frame, and the overflow counts where ``want`` is the oracle (``counts``
        False: ``got`` is Lava's trace, which reports none of its own)."""
        pairs = [(READOUT, got.readout, want.readout)] + [(k, got.spikes[k], want.spikes[k]) for k in got.spikes]
        for name, g, w in pairs:
            c = check_equal(name, g, w)
            if independent:
                self.independent += c.total
            else:
                self.self_check += c.total
            if not c.exact:
                step, sample, neuron = c.first
                self.problems.append(f"{what}: differs at {name}, step {step + 1}, sample {sample}, neuron {neuron} "
                                     f"(expected {c.expected}, got {c.got})")
                return
        if counts and isinstance(want, OracleRun):  # an empty dict claims no event: compared too
            got_events, want_events = _events(got.overflow), _events(want.overflow)
            if got_events != want_events:
                self.problems.append(f"{what}: overflow counts differ: sim {got_events}, oracle {want_events}")

    def verified(self, what: str, v) -> None:
        self.independent += v.values
        if not v.exact:
            self.problems.append(f"{what}: {v.line()}")


def check(case: Case, lava: bool) -> Outcome:
    """Run a network case on torch_int, sim (side by side and streamed), the oracle and optionally
    Lava, and compare as the module docstring says."""
    snn, x = case.snn, case.x
    dep = deploy(snn)
    net = dep.net
    ids = np.arange(len(x))
    ref = run(dep, x, "torch_int", record=True, sample_ids=ids)
    currents = encode(snn, x)
    side = run(dep, x, "sim", record=True, sample_ids=ids)
    streamed = run(dep, x, "sim", record=True, sample_ids=ids, stream=True)
    tally = _Tally()
    oracle_side = run_oracle(net, currents, stream=False, sample_ids=ids)
    tally.frames("sim vs oracle (side by side)", side, oracle_side)
    oracle_stream = run_oracle(net, currents, stream=True, sample_ids=ids)
    tally.frames("sim vs oracle (streamed)", streamed, oracle_stream)
    # inside the head-room (the reference says so, whatever the oracle saw) the timing contract holds:
    # the reference's windows, nothing before, quenched flushes. The head-room bounds the hidden
    # membranes only: a readout summing past u's 24 bits folds in Lava, not in the reference
    # (1 case of the first 1,000: seed 341, graded spikes into a wide readout)
    beyond = sum(ref.overflow.values()) > 0
    if not beyond and not _readout_folds(ref, net.profile.u_limit):
        tally.verified("sim vs torch_int", compare(ref, side, net.timing))
        tally.verified("sim (streamed) vs torch_int", compare(ref, streamed, net.timing))
    general = simulate(net, currents, record=True, fast=False, sample_ids=ids)
    tally.frames("sim (fused loop) vs sim (general models)", side, general, independent=False)
    if lava:
        lv = run(dep, x, "lava", record=True, sample_ids=ids)
        tally.frames("lava vs oracle (streamed)", lv, oracle_stream, counts=False)
        tally.frames("lava vs sim (streamed)", lv, streamed)
    silent = sum(not ref.spikes[p.name].any() for p in snn.hidden)
    return Outcome(case.describe(), lava, beyond, not tally.problems, tally.independent, tally.self_check,
                   len(snn.hidden), silent, tally.problems)


def check_process(case: ProcessCase, lava: bool) -> Outcome:
    """Run a process case on sim (fused and general models), the oracle and optionally Lava."""
    net, spikes, steps = case.net, case.spikes_in, case.steps
    tally = _Tally()
    got = simulate(net, {}, record=True, steps=steps, spikes_in=spikes)
    oracle = run_oracle(net, {}, stream=False, steps=steps, spikes_in=spikes)
    tally.frames("sim vs oracle", got, oracle)
    tally.frames("sim (fused loop) vs sim (general models)", got,
                 simulate(net, {}, record=True, steps=steps, spikes_in=spikes, fast=False), independent=False)
    if lava:
        tally.frames("lava vs oracle", run_lava(net, {}, record=True, spikes_in=spikes), oracle, counts=False)
    beyond = sum(oracle.overflow.values()) > 0
    return Outcome(case.describe(), lava, beyond, not tally.problems, tally.independent, tally.self_check,
                   problems=tally.problems)


def fuzz(cases: int, seed: int = 0, lava_every: int = 4, log: Callable[[Outcome], None] | None = None,
         process_every: int = 4) -> list[Outcome]:
    """Cases ``seed`` .. ``seed + cases - 1``: every ``process_every``-th is a process case, the others
    network cases; every ``lava_every``-th also runs in Lava (0: never)."""
    out = []
    for i in range(cases):
        s, in_lava = seed + i, bool(lava_every) and i % lava_every == 0
        o = check_process(random_process_case(s), in_lava) if process_every and i % process_every == 1 else \
            check(random_case(s), in_lava)
        out.append(o)
        if log is not None:
            log(o)
    return out


def summary(outcomes: list[Outcome]) -> dict:
    """The figures ``spikeport fuzz --json`` prints."""
    beyond = [o for o in outcomes if o.beyond_headroom]
    layers = sum(o.layers for o in outcomes)
    return {
        "cases": len(outcomes),
        "lava_cases": sum(o.lava for o in outcomes),
        "disagreements": sum(not o.exact for o in outcomes),
        "independent_values": sum(o.independent_values for o in outcomes),
        "self_check_values": sum(o.self_check_values for o in outcomes),
        "beyond_headroom_cases": len(beyond),
        "beyond_headroom_independent_values": sum(o.independent_values for o in beyond),
        "silent_layer_share": sum(o.silent_layers for o in outcomes) / layers if layers else 0.0,
    }
