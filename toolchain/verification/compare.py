"""Spike-for-spike verification: every layer, every step, every neuron, as integers.

Timing is part of the contract. The lowering states when each layer answers (``procnet.Timing``);
:func:`compare` holds a pipelined target (``sim``, ``lava``) to exactly that: at every recorded
step of a layer's frame, up to where the next streamed sample's window begins, the target must show
what the zero-delay reference computed, shifted to the promised window, and nothing before the
window or in the flush steps after it. The runner's own bookkeeping is never consulted. A layer
that is right at another offset fails with a timing divergence that says at which step it would
match (a diagnostic, searched only after the failure). Divergences are reported in causal order:
the earliest frame step, then the earliest layer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from spikeport.toolchain.ir.procnet import Timing
from spikeport.toolchain.ir.trace import Trace, first_exit

READOUT = "readout"


@dataclass
class Check:
    """Two integer arrays compared value by value: how many matched, and where the first did not."""

    name: str
    matched: int
    total: int
    first: list[int] | None = None  # index of the first mismatch (C order), None when exact
    expected: int | None = None
    got: int | None = None
    detail: str = ""  # where the first mismatch is, in words (a layer's name, a pass's own report)

    @property
    def exact(self) -> bool:
        return self.matched == self.total

    def line(self) -> str:
        where = self.detail or f"first at {self.first}: expected {self.expected}, got {self.got}"
        where = "" if self.exact else f" ({where})"
        return f"{self.name:<44} {self.matched:>12,} / {self.total:<12,} {'exact' if self.exact else 'MISMATCH'}{where}"

    def to_dict(self) -> dict:
        return {**asdict(self), "exact": self.exact}


def check_equal(name: str, got: np.ndarray, want: np.ndarray, mask: np.ndarray | None = None) -> Check:
    """Compare ``got`` with ``want`` (same shape) as integers; ``mask`` selects the values that count.
    The one comparison every checker uses (verify, the fuzzer, conformance)."""
    got, want = np.asarray(got).astype(np.int64), np.asarray(want).astype(np.int64)
    if got.shape != want.shape:
        raise ValueError(f"{name}: shapes differ, {got.shape} vs {want.shape}")
    diff = got != want
    if mask is not None:
        diff &= np.broadcast_to(mask, diff.shape)
    total = int(diff.size if mask is None else np.count_nonzero(np.broadcast_to(mask, diff.shape)))
    bad = np.argwhere(diff)
    if not len(bad):
        return Check(name, total, total)
    idx = tuple(int(v) for v in bad[0])
    return Check(name, total - len(bad), total, list(idx), int(want[idx]), int(got[idx]))


@dataclass
class Divergence:
    layer: str
    sample: int
    step: int  # 1-based step relative to the layer's promised window (<= 0: before it; > length: after it)
    neuron: int  # flat index in (C, H, W) order
    expected: int
    got: int
    mismatches: int  # values that differ in this layer
    frame_step: int = 0  # 1-based step of the sample's pipelined frame
    where: str = "in the window"  # "before the window", "in the window", "after the window (flush)"
    matches_at: int | None = None  # timing diagnostic: the frame step where the reference's window does match


@dataclass
class Verification:
    """One target against one reference: the frames (every layer, step and neuron) and ``checks``,
    the rest of what a user reads: the answer (``final``, the predictions), the spike counts, the
    passes without recording and streamed, and the lowering's timing against the graph's."""

    target: str
    against: str
    exact: bool
    samples: int
    steps: int
    layers: int
    spikes: int  # spikes in the reference windows that were compared
    values: int  # integers compared (spike bits and readout values, inside and outside the windows)
    first_divergence: dict | None
    shifts: dict[str, int] = field(default_factory=dict)  # promised window starts (0-based frame steps)
    mismatches: dict[str, int] = field(default_factory=dict)  # frame values that differ, per layer, all samples
    checks: list[Check] = field(default_factory=list)
    headroom: dict | None = None  # where the reference itself first left its head-room (layer, step, sample)

    def __post_init__(self) -> None:
        self.exact = self.exact and all(c.exact for c in self.checks)

    def to_dict(self) -> dict:
        return {**asdict(self), "checks": [c.to_dict() for c in self.checks]}

    def line(self) -> str:
        head = f"{self.target} vs {self.against}: "
        if self.exact:
            more = f"; {', '.join(c.name for c in self.checks)} exact" if self.checks else ""
            return (head + f"exact ({self.samples} samples x {self.steps} steps x {self.layers} layers, "
                    f"{self.values:,} values, {self.spikes:,} spikes{more})")
        d = self.first_divergence
        if d is None:
            bad = next(c for c in self.checks if not c.exact)
            at = f", first at sample {bad.first[0]}" if bad.first else ""
            text = head + f"DIVERGES in {bad.name}: {bad.total - bad.matched:,} of {bad.total:,} values differ{at}" + \
                (f" ({bad.detail})" if bad.detail else f": expected {bad.expected}, got {bad.got}")
        else:
            timing = ""
            if d.get("matches_at") is not None:
                timing = (f"; TIMING: the layer's window was promised at frame step {self.shifts[d['layer']] + 1} "
                          f"and matches the reference at step {d['matches_at']}")
            text = head + (f"DIVERGES at layer {d['layer']!r}, step {d['step']} ({d['where']}, frame step "
                           f"{d['frame_step']}), sample {d['sample']}, neuron {d['neuron']}: expected "
                           f"{d['expected']}, got {d['got']} ({self.mismatches.get(d['layer'], d['mismatches']):,} "
                           f"values differ in that layer){timing}")
        if self.headroom is not None:
            h = self.headroom
            text += (f"; NOTE: the reference itself left its head-room at layer {h['layer']!r}, step {h['step']}, "
                     f"sample {h['sample']}: beyond it no target is held to the reference (quantize with more "
                     "head-room)")
        return text


def answer_checks(ref: Trace, got: Trace) -> list[Check]:
    """What a user reads from a run, against the reference: the readout after the window (``final``),
    the predictions taken from it, and every hidden layer's spike count per sample (graded: payloads)."""
    checks = [check_equal("final", got.final, ref.final), check_equal("predictions", got.predictions, ref.predictions)]
    names = list(ref.spike_counts)
    missing = [k for k in names if k not in got.spike_counts]
    if missing and got.spike_counts:  # a target that counts some layers must count them all
        checks.append(Check("spike counts", 0, len(names) * len(ref.final), detail=f"no counts for {missing[0]!r}"))
    elif names and got.spike_counts:
        c = check_equal("spike counts", np.stack([got.spike_counts[k] for k in names], 1),
                        np.stack([ref.spike_counts[k] for k in names], 1))
        if not c.exact:
            c.detail = f"layer {names[c.first[1]]!r}: expected {c.expected} spikes, got {c.got}"
        checks.append(c)
    return checks


def as_check(name: str, v: Verification) -> Check:
    """A whole verification (another pass of the same target) as one check of a larger one."""
    bad = sum(v.mismatches.values()) + sum(c.total - c.matched for c in v.checks)
    total = v.values + sum(c.total for c in v.checks)
    return Check(name, total - bad, total, detail="" if v.exact else v.line())


def check_timing(want: Timing, got: Timing) -> Check:
    """The lowering's Timing against the graph's (``latency.graph_timing``): every population's
    input and output window start, every window length, the period."""
    rows = [("period", "", want.period, got.period)]
    for field_name in ("input_start", "output_start", "length"):
        w, g = getattr(want, field_name), getattr(got, field_name)
        rows += [(field_name, k, w.get(k, 0), g.get(k, 0)) for k in sorted({*w, *g})]
    bad = [r for r in rows if r[2] != r[3]]
    if not bad:
        return Check("timing vs graph", len(rows), len(rows))
    what, layer, expected, got_value = bad[0]
    where = f"{what} of {layer!r}" if layer else what
    return Check("timing vs graph", len(rows) - len(bad), len(rows), expected=expected, got=got_value,
                 detail=f"the lowering states {where} = {got_value}, the graph says {expected}")


def _promised(ref: np.ndarray, start: int, stop: int) -> np.ndarray:
    """What a pipelined target must show over frame steps [0, stop): nothing before ``start``, the
    reference's window from there, nothing after it (the flush steps)."""
    out = np.zeros((stop, *ref.shape[1:]), dtype=np.int64)
    n = max(0, min(len(ref), stop - start))
    out[start:start + n] = ref[:n]
    return out


def _matches_at(ref: np.ndarray, got: np.ndarray) -> int | None:
    """The frame step (1-based) at which ``ref``'s window sits in ``got`` exactly, if any: a timing
    diagnostic, searched only after a failure."""
    for d in range(len(got) - len(ref) + 1):
        if np.array_equal(got[d:d + len(ref)], ref):
            return d + 1
    return None


def _window(timing: Timing | None, k: str, ref_len: int, recorded: int) -> tuple[int, int]:
    """(start, stop) of the frame steps layer ``k`` is held to: its promised window starts at
    ``start``; ``stop`` is where the next streamed sample's window begins (or the recording ends).
    The readout is held to its window only: its answer is read at the window's last step, and later
    steps may still receive a longer upstream window (COS runs max(T, rho) steps)."""
    if timing is None:
        return 0, ref_len
    name = timing.readout if k == READOUT else k
    start = timing.output_start[name] - 1
    if recorded < start + ref_len:
        raise ValueError(f"{k}: the target recorded {recorded} steps, fewer than the promised window's end "
                         f"({start + ref_len})")
    return start, start + ref_len if k == READOUT else min(recorded, start + timing.period)


def _owned(start: int, steps: int, *traces: Trace) -> np.ndarray | None:
    """Which (step, sample) values belong to the sample: in a stream, the steps before a sample's
    window hold the end of the sample before it (only the stream's first sample owns them)."""
    positions = [t.stream_position for t in traces if t.stream_position is not None]
    if not positions or start == 0:
        return None
    mask = np.ones((steps, len(positions[0]), 1), dtype=bool)
    mask[:start] = np.all([p == 0 for p in positions], axis=0)[None, :, None]
    return mask


Row = tuple[str, np.ndarray, np.ndarray, int, int, "np.ndarray | None"]


def _verification(ref: Trace, other: Trace, rows: list[Row], spikes: int) -> Verification:
    """One verification from (layer, what must be seen, what was seen, window start, window length,
    the reference window for the timing diagnostic) per layer, the readout last, and the answers
    (:func:`answer_checks`): whoever compares two runs compares what users read from them too."""
    firsts: list[tuple[int, int, Divergence]] = []
    values = 0
    mismatches: dict[str, int] = {}
    for order, (k, want, got, start, length, window) in enumerate(rows):
        mask = _owned(start, len(want), ref, other)
        c = check_equal(k, got, want, mask)
        values += c.total
        if c.exact:
            continue
        mismatches[k] = c.total - c.matched
        t, b, n = c.first
        where = "before the window" if t < start else "in the window" if t < start + length else \
            "after the window (flush)"
        moved = _matches_at(window, got) if window is not None else None
        firsts.append((t, order, Divergence(k, b, t - start + 1, n, c.expected, c.got, c.total - c.matched,
                                            frame_step=t + 1, where=where,
                                            matches_at=moved if moved not in (None, start + 1) else None)))
    first = min(firsts, key=lambda f: (f[0], f[1]))[2] if firsts else None
    return Verification(target=other.target, against=ref.target, exact=first is None,
                        samples=int(ref.readout.shape[1]), steps=ref.T, layers=len(rows), spikes=spikes,
                        values=values, first_divergence=asdict(first) if first else None,
                        shifts={r[0]: r[3] for r in rows}, mismatches=mismatches, checks=answer_checks(ref, other),
                        headroom=ref.meta.get("headroom"))


def _recorded(trace: Trace, k: str) -> np.ndarray:
    if k == READOUT:
        return trace.readout
    if k not in trace.spikes:
        raise ValueError(f"spikes of {k!r} were not recorded by {trace.target}")
    return trace.spikes[k]


def compare(ref: Trace, other: Trace, timing: Timing | None, layers: list[str] | None = None) -> Verification:
    """Compare ``other`` against the zero-delay ``ref``. ``timing``: what the lowering promised for a
    pipelined ``other`` (its frames are compared at exactly those offsets); None: ``other`` is a
    zero-delay trace too. The answers are compared as well (:func:`answer_checks`). ``layers``: the
    hidden layers to compare (default: all recorded; ``[]``: the readout only, for an unrecorded run)."""
    rows = []
    for k in [*(list(ref.spikes) if layers is None else layers), READOUT]:
        r, o = _recorded(ref, k), _recorded(other, k)
        if r.shape[1:] != o.shape[1:]:
            raise ValueError(f"{k}: shapes differ: {r.shape} vs {o.shape}")
        start, stop = _window(timing, k, len(r), len(o))
        rows.append((k, _promised(r, start, stop), o[:stop], start, len(r), r))
    compared = list(ref.spikes) if layers is None else layers
    return _verification(ref, other, rows, spikes=sum(int(ref.spikes[k].sum()) for k in compared))


def compare_frames(ref: Trace, other: Trace, timing: Timing) -> Verification:
    """Two pipelined traces of the same lowering (``lava`` against ``sim``), compared frame step by
    frame step over the range :func:`compare` holds each layer to."""
    rows = []
    for k in [*ref.spikes, READOUT]:
        r, o = _recorded(ref, k), _recorded(other, k)
        if r.shape[1:] != o.shape[1:]:
            raise ValueError(f"{k}: shapes differ: {r.shape} vs {o.shape}")
        name = timing.readout if k == READOUT else k
        start, stop = _window(timing, k, timing.length[name], min(len(r), len(o)))
        rows.append((k, r[:stop], o[:stop], start, timing.length[name], None))
    return _verification(ref, other, rows, spikes=sum(int(v.sum()) for v in ref.spikes.values()))


def merge_verifications(rows: list[Verification], offsets: list[int]) -> Verification:
    """Join the verifications of consecutive chunks of samples (sample indices offset per chunk): the
    earliest divergence, mismatches and checks summed over every chunk, and the reference's first
    head-room exit (``first_exit``, the rule ``run_reference`` merges its batches with)."""
    first = None
    for row, off in zip(rows, offsets):
        d = row.first_divergence
        if d is not None:
            d = dict(d, sample=d["sample"] + off)
            if first is None or (d["frame_step"], d["sample"]) < (first["frame_step"], first["sample"]):
                first = d
    mismatches: dict[str, int] = {}
    for row in rows:
        for k, n in row.mismatches.items():
            mismatches[k] = mismatches.get(k, 0) + n
    checks: list[Check] = []
    for name in dict.fromkeys(c.name for row in rows for c in row.checks):
        parts = [(c, off) for row, off in zip(rows, offsets) for c in row.checks if c.name == name]
        bad = next(((c, off) for c, off in parts if not c.exact), None)
        merged = Check(name, sum(c.matched for c, _ in parts), sum(c.total for c, _ in parts))
        if bad is not None:
            c, off = bad
            merged.first = None if c.first is None else [c.first[0] + off, *c.first[1:]]
            merged.expected, merged.got, merged.detail = c.expected, c.got, c.detail
        checks.append(merged)
    r0 = rows[0]
    return Verification(r0.target, r0.against, all(r.exact for r in rows), sum(r.samples for r in rows),
                        r0.steps, r0.layers, sum(r.spikes for r in rows), sum(r.values for r in rows),
                        first, r0.shifts, mismatches, checks,
                        first_exit([(r.headroom, off) for r, off in zip(rows, offsets)]))
