"""What every runner returns: the readout and (optionally) every population's spike train."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def cut_frames(stream: np.ndarray, n: int, period: int, frame: int) -> np.ndarray:
    """A streamed run's (steps, ...) record as (frame, n, ...): sample i's frame is the ``frame``
    steps from step ``i * period`` on (0-based), as every streaming runner lays samples out."""
    idx = np.arange(n)[:, None] * period + np.arange(frame)[None, :]
    return np.moveaxis(stream[idx], 0, 1)


def first_exit(exits: list[tuple[dict | None, int]]) -> dict | None:
    """The first head-room exit among those of several batches of samples, each ``(exit, offset)``
    with sample indices counted from the batch's ``offset``: the least (layer order, step, sample),
    the order each batch's own exit is the least of. The reference's batches and verify's chunks
    both merge with it, so the exit named does not depend on how the samples were cut."""
    found = [dict(h, sample=h["sample"] + off) for h, off in exits if h is not None]
    return min(found, key=lambda h: (h["order"], h["step"], h["sample"]), default=None)


@dataclass
class Trace:
    """Results of running an SNN on a batch of samples.

    ``readout[t]`` is the readout accumulated up to step t (cumulative sum of logits); ``final``
    is the readout after the T-step window, from which the prediction is taken. ``spikes[name]``
    is a (steps, batch, neurons) uint8 array, present only when recording was asked for.
    Zero-delay runners (the PyTorch reference) have ``steps == T``; pipelined runners (``sim``,
    ``lava``) return their raw steps, where population p's window starts at
    ``window_start[p]`` (0-based); :mod:`verify` finds those shifts by itself.
    """

    target: str
    T: int
    final: np.ndarray  # (batch, n_out)
    readout: np.ndarray  # (steps, batch, n_out)
    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)  # (batch,) per population
    overflow: dict[str, int] = field(default_factory=dict)  # neuron-steps outside the head-room
    window_start: dict[str, int] = field(default_factory=dict)
    readout_start: int = 0
    meta: dict = field(default_factory=dict)
    # streamed runs: each sample's position in its stream; a frame's first steps then hold the end of the
    # sample before it. None: every sample ran from a clean state (side by side).
    stream_position: np.ndarray | None = None

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.final, axis=1)

    def window_counts(self, name: str, steps: int, messages: bool = False) -> np.ndarray:
        """(batch, neurons) spike counts of population ``name`` over its ``steps``-long output window:
        the values sent (graded spikes: their payloads), or with ``messages`` the spikes sent."""
        start = self.window_start.get(name, 0)
        window = self.spikes[name][start:start + steps]
        return (window != 0 if messages else window).sum(0).astype(np.int64)

    @staticmethod
    def concat(traces: list[Trace]) -> Trace:
        """Join traces of consecutive batches along the batch axis."""
        first = traces[0]
        return Trace(
            target=first.target, T=first.T,
            final=np.concatenate([t.final for t in traces]),
            readout=np.concatenate([t.readout for t in traces], axis=1),
            spikes={k: np.concatenate([t.spikes[k] for t in traces], axis=1) for k in first.spikes},
            spike_counts={k: np.concatenate([t.spike_counts[k] for t in traces]) for k in first.spike_counts},
            overflow={k: sum(t.overflow.get(k, 0) for t in traces) for k in first.overflow},
            window_start=dict(first.window_start), readout_start=first.readout_start, meta=dict(first.meta),
            stream_position=None if first.stream_position is None else
            np.concatenate([t.stream_position for t in traces]))
