"""``spikeport mutants``: planted faults that ``verify`` and the fuzzer must catch.

A check that has never failed proves nothing. Each mutant below plants one fault in a monkeypatch of
the real code (never a flag in the product), then runs the checks a user relies on, in order, until
one fails: ``verify`` against the integer reference on the bundled MLP, residual network and CNN, then
the fuzzer's network cases and its Lava-arithmetic cases (against the plain Lava model and the
reference). A mutant no check catches is MISSED, and the command exits 1.

The faults are those a bit-accurate simulator can realistically get wrong: a threshold off by one,
timing, silent layers, the readout, Lava's register widths and weight processing, the bias exponent,
axonal delays, the flush-step quench, the seed methods' own arithmetic, the spiking max-pool's and
the graded spikes' cap, the channels-last layout, the compiled IF loop's sum-pooling and range
check, the compiled COS and graded loops' own arithmetic (mutated in their source), and the int8 synapse kernels'
weights; and what users read besides the frames: the answer, the spike counts, the unrecorded and
streamed paths, a window split between chunks of sim's loop, and a lowering that adds latency
everywhere. A kernel the int8 admission refuses (sim then runs that layer on float32) counts as
caught by it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import numpy as np
import torch

from spikeport.api import prepare, verify
from spikeport.quality.fuzz import check, check_process, random_case, random_process_case
from spikeport.targets import if_kernel, int8_kernels, method_kernels, method_loops, sim, sim_models
from spikeport.toolchain.ir.procnet import DenseProcess
from spikeport.toolchain.passes import lowering
from spikeport.toolchain.passes.lowering import deploy


@dataclass(frozen=True)
class Mutant:
    name: str
    fault: str
    plant: Callable[[], contextlib.AbstractContextManager]


def _wrap(owner, attr: str, after: Callable) -> contextlib.AbstractContextManager:
    """Patch ``owner.attr`` (a method) to run the real one, then ``after(self, result, *args)``."""
    real = getattr(owner, attr)

    def patched(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        out = after(self, result, *args, **kwargs)
        return result if out is None else out

    return mock.patch.object(owner, attr, patched)


def _threshold_off_by_one(self, _result, *_args):
    self.thr = self.thr + (1 << self.lif.act_shift)  # one weight unit too high in the fused IF loop


def _second_layer_late(self, result, *_args):
    if self.p.dst.endswith(("l1", "act2", "block.act1")) and not self.p.src.startswith(self.p.dst):
        return [(delay + 1, contrib) for delay, contrib in result]  # its input arrives a step late
    return None


def _silent_layers_fire(self, trace, *_args):
    for s in trace.spikes.values():
        if not s.any():
            s[:] = 1
    return trace


def _readout_offset(self, trace, *_args):
    trace.readout = trace.readout + 1
    trace.final = trace.final + 1
    return trace


def _fold_at_23_bits(self, _result, *_args):
    self.bits, self.u_max = self.bits - 1, self.u_max >> 1


def _no_saturation(self, _result, *_args):
    self.v_max = 1 << 40


def _wrong_bias_exponent(self, _result, p, *_args):
    bias = torch.as_tensor(np.broadcast_to(np.asarray(p.bias_mant, dtype=np.int64), (p.size,)).copy())
    self.bias = sim_models.shift(bias, p.bias_exp + 1).to(self.bias.device)


def _no_delays(self, _result, *_args):
    self.blocks = [(0, m) for _, m in self.blocks]


def _no_quench(self, _result, *_args):
    for s in self.net.sources:
        self.pattern[s.name][-1] = 0  # the flush step sends nothing


def _ftbc_one_step_late(self, _result, *_args):
    for k, step in self.pattern_step.items():
        self.pattern_step[k] = torch.roll(step, 1, dims=0)


def _cos_shift_off_by_one(self, _result, *_args):
    self.v = self.v + (self.v != self.v_init)


def _mutated_loop(loop: str, rule: dict[str, str]) -> contextlib.AbstractContextManager:
    """A compiled loop of ``method_loops`` (``"cos"``, ``"graded"``), its source mutated by ``rule``
    (each text, found once, replaced) and compiled again, in place of both its builds (parallel and
    serial). These are the loops ``sim`` runs on the CPU; the kernels are what Lava and sim's
    general models run."""
    import inspect
    import textwrap

    from numba import njit

    src = textwrap.dedent(inspect.getsource(getattr(method_loops, f"_{loop}_steps")))
    if any(src.count(k) != 1 for k in rule):
        raise AssertionError(f"the {loop} loop's source moved: update the mutant")
    for k, v in rule.items():
        src = src.replace(k, v)
    scope = dict(vars(method_loops))
    exec(src, scope)
    faulty = njit(scope[f"_{loop}_steps"])
    stack = contextlib.ExitStack()
    for name in (f"{loop}_steps", f"{loop}_steps_serial"):
        stack.enter_context(mock.patch.object(method_loops, name, faulty))
    return stack


def _maxpool_keeps_firing(self, out, *_args):
    return out | (self.top > 0)  # the gate fires on every step once its window has seen a spike


def _graded_cap_plus_one(self, _result, *_args, **_kwargs):
    self.levels = self.levels + 1  # a graded neuron may send one threshold more than its levels


def _u_decay_off_by_one(self, x, decay):
    return sim_models.LIFModel._real_decay(self, x, max(decay - 1, 0))


@contextlib.contextmanager
def _decay_patch() -> Iterator[None]:
    sim_models.LIFModel._real_decay = sim_models.LIFModel._decay
    try:
        with mock.patch.object(sim_models.LIFModel, "_decay", _u_decay_off_by_one):
            yield
    finally:
        del sim_models.LIFModel._real_decay


def _no_lsb_truncation() -> contextlib.AbstractContextManager:
    real = sim_models.lava_weights

    def keeps_lsb(w, sign_mode, num_weight_bits, weight_bits):
        vals = np.asarray(w.data if hasattr(w, "data") and hasattr(w, "nnz") else w)
        mixed = sign_mode == "mixed" or (sign_mode is None and vals.size and vals.min() < 0 < vals.max())
        return real(w, sign_mode, num_weight_bits + bool(mixed), weight_bits)

    return mock.patch.object(sim_models, "lava_weights", keeps_lsb)


def _wrong_tpp_stream() -> contextlib.AbstractContextManager:
    real = sim_models.prng_u32
    return mock.patch.object(sim_models, "prng_u32", lambda seed, *a: real(seed + 1, *a))


def _pool_plan_shifted(self, plan, *_args):
    """The compiled loop sums each spike into the next pooled position (its block's neighbour)."""
    return if_kernel.PoolPlan.of((plan.index + 1) % plan.size, plan.block)


def _no_range_check(self, _result, *_args):
    self.lim = float(1 << 30)  # the compiled loop trusts every sum it adds, however large


def odd_weights_lost() -> contextlib.AbstractContextManager:
    """The fault oneDNN plants on CPUs without VNNI: each weight's byte loses its least
    significant bit (``int8_kernels.byte_form`` patched)."""
    real = int8_kernels.byte_form

    def even_only(w):
        form = real(w)
        return None if form is None else (form[0] & ~np.int8(1), form[1])

    return mock.patch.object(int8_kernels, "byte_form", even_only)


@contextlib.contextmanager
def _int8_odd_weights_lost() -> Iterator[None]:
    # the int8 kernels wherever the operators exist (as on a CPU whose probe passed), with the fault
    with mock.patch.object(sim, "resolve", lambda int8, device: device.type == "cpu"), odd_weights_lost():
        yield


@contextlib.contextmanager
def _int8_off_probe_geometry() -> Iterator[None]:
    # the int8 kernels one unit high on every geometry but the one the global probe checks (a 64->32
    # channel 3x3 convolution, stride, padding and dilation 1, one group; a 256x256 matrix product)
    conv, linear = int8_kernels.Int8Conv.__call__, int8_kernels.Int8Linear.__call__
    probed = [[1, 1], [1, 1], [1, 1], 1]

    def conv_off(self, x):
        out = conv(self, x)
        return out if tuple(self.shape) == (32, 64, 3, 3) and self.geometry == probed else out + 1

    def linear_off(self, x):
        out = linear(self, x)
        return out if tuple(self.shape) == (256, 256) else out + 1

    with mock.patch.object(sim, "resolve", lambda int8, device: device.type == "cpu"), \
            mock.patch.object(int8_kernels.Int8Conv, "__call__", conv_off), \
            mock.patch.object(int8_kernels.Int8Linear, "__call__", linear_off):
        yield


def _hwc_read_as_chw(self, *_args):
    self.in_hwc = False  # a convolution reads its channels-last source as if it were (C, H, W)


def _answer_one_step_early(self, trace, *_args):
    trace.final = trace.readout[trace.readout_start + trace.T - 2].copy()  # the readout before the last step
    return trace


def _unrecorded_answer_early(self, trace, *args):
    return _answer_one_step_early(self, trace, *args) if not trace.spikes else trace  # only where nothing is recorded


def _stream_fifth_sample_on(self, trace, *_args):
    if self.stream > 4:  # from the fifth sample of a stream on, class 0 gains one unit
        trace.final[4:, 0] += 1
    return trace


def _first_layer_counts_one_more(self, trace, *_args):
    first = next(iter(trace.spike_counts), None)
    if first is not None:
        trace.spike_counts[first] = trace.spike_counts[first] + 1
    return trace


def _subtraction_lost_between_chunks(self, _result, n, *_args):
    self.pending.pop(n, None)  # a spike in a chunk's last step is never subtracted


def _readout_wraps() -> contextlib.AbstractContextManager:
    """The lowering shifts the readout's weights by act_shift once more: its u holds 64x the sum and
    folds past 24 bits. sim and the oracle share the lowering; only the reference sees it."""
    real = lowering.ProcessNet

    def net(lifs, synapses, sources, readout, **kw):
        synapses = [dataclasses.replace(s, weight_exp=s.weight_exp + kw["profile"].act_shift)
                    if isinstance(s, DenseProcess) and s.dst == readout else s for s in synapses]
        return real(lifs, synapses, sources, readout, **kw)

    return mock.patch.object(lowering, "ProcessNet", net)


def _no_overflow_report(self, trace, *_args):
    return dataclasses.replace(trace, overflow={})  # sim claims no register event, whatever it saw


def _stream_fifth_frames(self, trace, *_args):
    if self.stream > 4:  # from the fifth sample of a stream on, every readout value gains one unit
        trace.readout[:, 4:] += 1
    return trace


def _one_step_later_everywhere() -> contextlib.AbstractContextManager:
    real = lowering.depths
    return mock.patch.object(lowering, "depths", lambda snn, T=1: {k: d + 1 for k, d in real(snn, T).items()})


MUTANTS: list[Mutant] = [
    Mutant("threshold+1", "sim's fused IF loop fires one weight unit too late",
           lambda: _wrap(sim_models.FastIF, "__init__", _threshold_off_by_one)),
    Mutant("layer-late", "the synapse into the second hidden layer delivers one step late",
           lambda: _wrap(sim_models.DenseModel, "__call__", _second_layer_late)),
    Mutant("silent-fires", "a layer silent in the reference fires at every recorded step",
           lambda: _wrap(sim._Run, "trace", _silent_layers_fire)),
    Mutant("readout+1", "every readout value is off by one", lambda: _wrap(sim._Run, "trace", _readout_offset)),
    Mutant("fold-23-bits", "u folds at 23 bits instead of 24", lambda: _wrap(sim_models.LIFModel, "__init__",
                                                                             _fold_at_23_bits)),
    Mutant("no-saturation", "v is not saturated at +-(2**23 - 1)",
           lambda: _wrap(sim_models.LIFModel, "__init__", _no_saturation)),
    Mutant("no-lsb-truncation", "mixed-sign Dense weights keep their least significant bit", _no_lsb_truncation),
    Mutant("bias-exp+1", "the LIF bias is shifted by bias_exp + 1",
           lambda: _wrap(sim_models.LIFModel, "__init__", _wrong_bias_exponent)),
    Mutant("no-delay", "DelaySparse's axonal delays are dropped",
           lambda: _wrap(sim_models.DenseModel, "__init__", _no_delays)),
    Mutant("no-quench", "the flush step sends no quench", lambda: _wrap(sim._Run, "__init__", _no_quench)),
    Mutant("tpp-stream", "TPP draws from another seed's random stream", _wrong_tpp_stream),
    Mutant("cos-shift+1", "COS shifts initial potentials one unit too far",
           lambda: _wrap(method_kernels.COSKernel, "_finish_prerun", _cos_shift_off_by_one)),
    Mutant("cos-loop-shift+1", "the compiled COS loop shifts initial potentials one unit too far",
           lambda: _mutated_loop("cos", {"v_init + up if": "v_init + up + 1 if",
                                          "v_init - down if": "v_init - down - 1 if"})),
    Mutant("ftbc-late", "FTBC's time bias is applied one step late",
           lambda: _wrap(sim._Run, "__init__", _ftbc_one_step_late)),
    Mutant("u-decay-1", "u decays by du instead of du + 1", _decay_patch),
    Mutant("maxpool-keeps-firing", "the spiking max-pool fires whenever its window has fired before",
           lambda: _wrap(method_kernels.MaxPoolKernel, "step", _maxpool_keeps_firing)),
    Mutant("graded-cap+1", "graded spikes carry up to levels + 1 thresholds",
           lambda: _wrap(method_kernels.GradedKernel, "__init__", _graded_cap_plus_one)),
    Mutant("graded-loop-cap+1", "the compiled graded loop sends up to levels + 1 thresholds",
           lambda: _mutated_loop("graded", {"0), levels)": "0), levels + 1)"})),
    Mutant("channels-last-misread", "a convolution reads its channels-last source layer in (C, H, W) order",
           lambda: _wrap(sim_models.ConvModel, "__init__", _hwc_read_as_chw)),
    Mutant("pool-shifted", "the compiled IF loop sum-pools each spike into the next pooled position",
           lambda: _wrap(sim_models.ConvModel, "pool_plan", _pool_plan_shifted)),
    Mutant("no-range-check", "the compiled IF loop does not check its partial sums against the 24-bit range",
           lambda: _wrap(sim_models.FastIF, "__init__", _no_range_check)),
    Mutant("int8-odd-weights", "the int8 synapse kernels drop each weight's least significant bit",
           _int8_odd_weights_lost),
    # what users read besides the frames (issue 24)
    Mutant("answer-early", "sim reads its answer (final, the predictions) one step before the window ends",
           lambda: _wrap(sim._Run, "trace", _answer_one_step_early)),
    Mutant("unrecorded-early", "only when nothing is recorded, sim reads its answer one step early",
           lambda: _wrap(sim._Run, "trace", _unrecorded_answer_early)),
    Mutant("stream-5th", "streamed sim is wrong from the fifth sample of a stream on",
           lambda: _wrap(sim._Run, "trace", _stream_fifth_sample_on)),
    Mutant("counts+1", "sim's spike counts of the first hidden layer are one too many",
           lambda: _wrap(sim._Run, "trace", _first_layer_counts_one_more)),
    Mutant("chunk-subtraction", "a spike in a chunk's last step is never subtracted (T above the chunk)",
           lambda: _wrap(sim._Run, "run_fast", _subtraction_lost_between_chunks)),
    Mutant("int8-off-probe", "the int8 kernels are one unit high on every geometry the global probe does not run",
           _int8_off_probe_geometry),
    Mutant("readout-wraps", "the lowering shifts the readout's weights by act_shift twice: its u folds",
           _readout_wraps),
    Mutant("no-overflow-report", "sim reports no overflow counts (an empty dict), whatever its registers did",
           lambda: _wrap(sim._Run, "trace", _no_overflow_report)),
    Mutant("stream-5th-frames", "streamed sim's readout is off by one from the fifth sample of a stream on",
           lambda: _wrap(sim._Run, "trace", _stream_fifth_frames)),
    Mutant("latency+1", "the lowering delays every layer by one step, and its Timing says so",
           _one_step_later_everywhere),
]


@dataclass
class Result:
    name: str
    fault: str
    caught_by: str | None
    detail: str = ""

    def line(self) -> str:
        if self.caught_by is None:
            return f"MISSED  {self.name:<18} {self.fault}"
        return f"caught  {self.name:<18} {self.fault}: by {self.caught_by} ({self.detail[:160]})"


class Checks:
    """The checks every mutant faces, prepared once (models converted and quantized without mutants;
    lowered in each run, since the lowering is among what the mutants change)."""

    def __init__(self, network_cases: int = 40, process_cases: int = 24) -> None:
        mlp, resnet = prepare("mlp_digits", calib=256), prepare("resnet_digits", calib=256)
        cnn = prepare("cnn_mnist", calib=256)  # average pools folded into convolutions: sim's sum-pooling loop
        self.verify_runs = [("verify mlp_digits", mlp.quantize(mlp.snn, 4), mlp.data.x_test[:24]),
                            ("verify resnet_digits", resnet.quantize(resnet.snn, 3), resnet.data.x_test[:24]),
                            ("verify mlp_digits graded", mlp.quantize(mlp.method("graded", 1), 1),
                             mlp.data.x_test[:24]),
                            ("verify cnn_mnist", cnn.quantize(cnn.snn, 3), cnn.data.x_test[:16]),
                            # T above sim's chunk of steps: a window split between two calls of its loop
                            ("verify mlp_digits T=20", mlp.quantize(mlp.snn, 20), mlp.data.x_test[:8])]
        self.network_seeds = range(network_cases)
        self.process_seeds = range(process_cases)

    def run(self) -> tuple[str, str] | None:
        """The first check that fails, as (check, what it said), or None when all pass."""
        for name, q, x in self.verify_runs:
            rows, _ = verify(deploy(q), x, targets=("sim",))
            bad = [r for r in rows if not r.exact]
            if bad:
                return name, bad[0].line()
        if int8_kernels.refused():  # a layer's int8 kernel differed from float64: sim ran it on float32
            return "int8 admission", int8_kernels.refused()[0]
        for s in self.network_seeds:
            o = check(random_case(s), lava=False)
            if not o.exact:
                return f"fuzz network case {s}", o.problem
        for s in self.process_seeds:
            o = check_process(random_process_case(s), lava=False)
            if not o.exact:
                return f"fuzz process case {s}", o.problem
        return None


def run_mutants(log: Callable[[Result], None] | None = None) -> tuple[list[Result], tuple[str, str] | None]:
    """Every mutant against the checks; the second value is a failure of the unmutated code (then
    the mutants prove nothing)."""
    checks = Checks()
    baseline = checks.run()
    results = []
    for m in MUTANTS:
        # the int8 verdicts set aside: each mutant's checks admit the kernels afresh, its refusals its own
        with m.plant(), mock.patch.dict(int8_kernels._verdicts, clear=True), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a refusal's warning: the result line says it
            caught = checks.run()
        r = Result(m.name, m.fault, caught[0] if caught else None, caught[1] if caught else "")
        results.append(r)
        if log is not None:
            log(r)
    return results, baseline
