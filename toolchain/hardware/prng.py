"""The one random-number generator of the project: a counter-based integer hash.

TPP's spikes depend on uniform numbers keyed by (seed, layer, sample id, neuron, step). The
reference, ``sim`` and spikeport's Lava process draw them from this function, so a seed reproduces
every spike on every target; it is the one piece of arithmetic the oracle deliberately shares with
the code it judges (a different generator would make every TPP comparison meaningless, not more
independent).

This module imports nothing: it runs unchanged on Python ints, numpy and torch int64 arrays, and is
copied next to the Lava process models into the Lava environment, which has no spikeport.
"""

MASK32 = 0xFFFFFFFF


def _mix32(x):
    """lowbias32 (C. Wellons): a 32-bit integer hash. Works on Python ints, numpy or torch int64
    arrays alike: products wrap modulo 2**64 and only their low 32 bits are kept."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & MASK32
    return x ^ (x >> 16)


def prng_u32(seed, layer, sample, neuron, step):
    """A uniform integer in [0, 2**32) for every (seed, layer, sample, neuron, step).

    ``sample`` and ``neuron`` may be int64 arrays that broadcast (e.g. (B, 1) and (N,));
    ``seed``, ``layer`` and ``step`` are Python ints.
    """
    head = _mix32((_mix32((seed & MASK32) ^ 0x9E3779B9) + layer * 0x85EBCA6B + step * 0xC2B2AE35) & MASK32)
    x = _mix32((sample * 0x27D4EB2F + head) & MASK32)
    return _mix32((x + neuron * 0x165667B1) & MASK32)
