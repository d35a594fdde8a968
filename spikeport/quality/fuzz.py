"""Cross-checks of the runners on random integer networks (``spikeport fuzz``, and the
property-based tests in ``tests/test_fuzz.py``).

A case is a small integer SNN drawn at random, with its inputs:

* an analog input layer (conv or dense) and one to three further layers, conv (kernel 1-4,
  stride 1-2, padding, dilation, depthwise groups) or dense, sometimes with a skip projection that
  lowering must delay, then a dense readout;
* 8-bit weight mantissas drawn to hit the ends of the range (-128 and 127) often, with exponents
  0-4; thresholds 2**k for k = 1..16, initial potentials theta/2, biases up to +-theta;
* input currents scaled so that some cases keep to small membranes and others drive them toward
  the 24-bit limit (Lava folds u beyond 2**17 weight units);
* T from 1 to 6 and 1 to 4 samples.

The property: ``sim``'s fused IF loop equals its general per-process models in every case; where
no runner saw a membrane leave the head-room, ``torch_int``, ``sim`` and
``lava`` agree exactly in every layer, step and neuron. Beyond the head-room the reference is
expected to differ (Lava folds u at 24 bits, the reference does not), and a streamed Lava run is
no longer sample-independent either: a flush step whose quench cannot silence a layer leaks into
the next sample (found by this fuzzer). Such cases check Lava against ``sim`` in its streamed
mode (``stream=True``), which carries state from sample to sample as Lava does, on every sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikeport.api import run, verify
from spikeport.targets.sim import simulate
from spikeport.toolchain.lowering import lower
from spikeport.toolchain.profiles import get_profile
from spikeport.toolchain.reference import encode
from spikeport.toolchain.snn import INPUT, ConvSynapse, DenseSynapse, Population, Projection, SNNGraph
from spikeport.toolchain.verify import check_equal


@dataclass
class Case:
    seed: int
    snn: SNNGraph
    x: np.ndarray
    T: int

    def describe(self) -> str:
        layers = []
        for p in self.snn.populations:
            kinds = "+".join(("conv" if isinstance(pr.synapse, ConvSynapse) else "dense")
                             + ("(in)" if pr.source == INPUT else "") for pr in p.inputs)
            layers.append(f"{p.name}{list(p.shape)}<-{kinds}")
        return f"seed {self.seed}: T={self.T}, {len(self.x)} samples, " + " ".join(layers)


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
    depthwise = cin > 1 and rng.random() < 0.2
    cout = cin if depthwise else int(rng.integers(1, 7))
    groups = cin if depthwise else 1
    weight = np.zeros((cout, cin // groups, k, k))
    return ConvSynapse(weight, in_shape, (cout, oh, ow), (stride, stride), (pad, pad), (dil, dil), groups)


def random_case(seed: int) -> Case:
    """One random integer network and its inputs, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    profile = get_profile("loihi2")
    T = int(rng.integers(1, 7))
    if rng.random() < 0.65:
        input_shape: tuple[int, ...] = (int(rng.integers(1, 4)), int(rng.integers(4, 10)), int(rng.integers(4, 10)))
    else:
        input_shape = (int(rng.integers(4, 41)),)
    drive = float(rng.choice([0.3, 1.0, 4.0, 40.0]))  # how hard the input pushes the membranes
    pops: list[Population] = []
    shape, source = input_shape, INPUT
    for i in range(int(rng.integers(1, 4)) + 1):
        conv = _random_conv(rng, shape) if len(shape) == 3 and rng.random() < 0.75 else None
        if conv is not None:
            syn: ConvSynapse | DenseSynapse = conv
            out_shape = conv.out_shape
        else:
            n_out = int(rng.integers(2, 41))
            syn = DenseSynapse(np.zeros((n_out, int(np.prod(shape)))), shape, (n_out,))
            out_shape = (n_out,)
        k = int(rng.integers(1, 17))
        theta = 1 << k
        if source == INPUT:
            syn.weight = rng.normal(0.0, 1.0, syn.weight.shape) * theta * drive / max(1.0, np.sqrt(syn.fan_in))
            proj = Projection(INPUT, syn, unit=1.0)
        else:
            syn.weight = _mantissas(rng, syn.weight.shape)
            proj = Projection(source, syn, weight_exp=int(rng.integers(0, 5)))
        inputs = [proj]
        skip = [p for p in pops[:-1] if p.shape == out_shape]
        if skip and rng.random() < 0.5:  # a skip projection: lowering must delay it
            src = skip[int(rng.integers(len(skip)))]
            n = int(np.prod(out_shape))
            inputs.append(Projection(src.name, DenseSynapse(_mantissas(rng, (n, n)), out_shape, out_shape),
                                     weight_exp=int(rng.integers(0, 3))))
        bias = rng.integers(-theta, theta + 1, size=out_shape) if rng.random() < 0.5 else np.zeros(out_shape)
        pops.append(Population(f"l{i}", tuple(out_shape), "if", theta, theta // 2, bias.astype(np.int64), inputs))
        shape, source = tuple(out_shape), f"l{i}"
    n_out = int(rng.integers(2, 11))
    readout = DenseSynapse(_mantissas(rng, (n_out, int(np.prod(shape)))), shape, (n_out,))
    pops.append(Population("out", (n_out,), "readout", 0, 0, np.zeros(n_out, dtype=np.int64),
                           [Projection(source, readout, weight_exp=int(rng.integers(0, 3)))]))
    snn = SNNGraph(tuple(input_shape), pops, profile=profile, T=T, meta={"fuzz_seed": seed})
    x = rng.random((int(rng.integers(1, 5)), *input_shape))
    return Case(seed, snn, x, T)


@dataclass
class Outcome:
    case: Case
    lava: bool
    in_headroom: bool  # no runner saw a membrane leave the head-room
    exact: bool  # the property held
    values: int  # integers compared
    problem: str = ""

    def line(self) -> str:
        status = "ok  " if self.exact else "FAIL"
        scope = "torch_int = sim" + (" = lava" if self.lava else "") if self.in_headroom else \
            ("sim = lava (beyond head-room)" if self.lava else "beyond head-room: not comparable without Lava")
        tail = f" | {self.problem}" if self.problem else ""
        return f"{status} {self.case.describe()} | {scope}, {self.values:,} values{tail}"


def check(case: Case, lava: bool) -> Outcome:
    """Run the case on torch_int, sim and (optionally) Lava and test the property."""

    rows, traces = verify(case.snn, case.x, case.T, targets=("sim",))
    in_headroom = sum(sum(t.overflow.values()) for t in traces.values()) == 0
    relevant = list(rows) if in_headroom else []
    problems = [r.line() for r in relevant if not r.exact]
    values = sum(r.values for r in relevant)
    # sim's fused IF loop against its general models, in every regime (cheap, no Lava needed)
    same, n, where = same_frames(run(case.snn, case.x, case.T, "sim", record=True),
                                 _general_sim(case))
    values += n
    if not same:
        problems.append(f"sim (fused loop) vs sim (general models): differs at {where}")
    if lava and in_headroom:
        lava_rows, _ = verify(case.snn, case.x, case.T, targets=("sim", "lava"))
        problems += [r.line() for r in lava_rows if r.target == "lava" and not r.exact]
        values += sum(r.values for r in lava_rows if r.target == "lava")
    elif lava:
        same, n, where = same_frames(run(case.snn, case.x, case.T, "lava", record=True),
                                     run(case.snn, case.x, case.T, "sim", record=True, stream=True))
        values += n
        if not same:
            problems.append(f"lava vs sim (streamed): differs at {where}")
    return Outcome(case, lava, in_headroom, not problems, values, "; ".join(problems))


def _general_sim(case: Case):
    return simulate(lower(case.snn, case.T), encode(case.snn, case.x), record=True, fast=False)


def same_frames(a, b) -> tuple[bool, int, str]:
    """Two pipelined traces from the same lowering, compared as they are: every layer's spikes and
    the readout at every step. Returns (equal, values compared, first difference)."""
    pairs = [("readout", a.readout, b.readout)] + [(k, a.spikes[k], b.spikes[k]) for k in a.spikes]
    n = 0
    for name, x, y in pairs:
        n += x.size
        if x.shape != y.shape:
            return False, n, f"{name}: shapes {x.shape} and {y.shape}"
        c = check_equal(name, y, x)
        if not c.exact:
            step, sample, neuron = c.first
            return False, n, f"{name}, step {step + 1}, sample {sample}, neuron {neuron}"
    return True, n, ""


def fuzz(cases: int, seed: int = 0, lava_every: int = 4, log=None) -> list[Outcome]:
    """Cases ``seed`` .. ``seed + cases - 1``; every ``lava_every``-th also runs in Lava (0: never)."""
    out = []
    for i in range(cases):
        o = check(random_case(seed + i), lava=bool(lava_every) and i % lava_every == 0)
        out.append(o)
        if log is not None:
            log(o)
    return out
