"""Integer kernels of spikeport's own neuron models (COS, TPP, the spiking max-pool gate): one
implementation for ``sim`` and Lava.

This module imports nothing but what it is given: every kernel takes the array module ``xp``
(numpy or torch) and TPP takes the PRNG (``toolchain/hardware/prng.py``), so the very same arithmetic runs in
``sim`` (torch, batched) and inside spikeport's Lava process models (numpy, in Lava's Python 3.10
environment, where this file is copied without the rest of spikeport). The PyTorch reference
implements both methods independently, layer by layer (``toolchain/oracle/neurons.py``); the
PRNG is the one definition all three share, so a seed reproduces every spike everywhere.

Window-relative time: for one sample, step j = 0, 1, ... counts from the first step at which
the neuron's input for that sample arrives.
"""

TWO32 = 1 << 32


def _zeros(xp, shape, device=None):
    """int64 zeros from numpy or torch (on ``device``: torch only)."""
    return xp.zeros(shape, dtype=xp.int64) if device is None else xp.zeros(shape, dtype=xp.int64, device=device)


def tpp_fires(v, theta: int, remaining: int, r):
    """TPP's firing test with probability clip(v / (theta * remaining), 0, 1), in integers:
    ``r * theta * remaining < v * 2**32`` for a uniform r in [0, 2**32)."""
    return r * (theta * remaining) < v * TWO32


class TPPKernel:
    """Two-phase probabilistic neuron, pipelined: steps j = 0..T-1 accumulate the input into v
    (from v_init); steps j = T..2T-1 fire with probability v / (theta * steps left), subtracting
    theta per spike, at most one spike per step. Inputs outside j < T are ignored."""

    def __init__(self, xp, prng, shape, theta: int, v_init: int, T: int, seed: int, layer: int, neuron_ids,
                 device=None):
        self.xp, self.prng, self.shape = xp, prng, shape
        self.theta, self.v_init, self.T, self.seed, self.layer = theta, v_init, T, seed, layer
        self.neuron = neuron_ids
        self.v = _zeros(xp, shape, device)

    def reset(self):
        self.v = self.v * 0 + self.v_init

    def step(self, j: int, a, sample):
        """One step at window position j; ``sample`` holds the sample ids (broadcast over neurons)."""
        T = self.T
        if j < T:
            self.v = self.v + a
            return self.v != self.v  # no spikes (all False, the right shape and type)
        k = j - T + 1  # firing step 1..T
        if k > T:
            return self.v != self.v
        r = self.prng(self.seed, self.layer, sample, self.neuron, k)
        s = tpp_fires(self.v, self.theta, T - k + 1, r)
        self.v = self.v - s * self.theta
        return s


class COSKernel:
    """Calibrating Offset Spikes, pipelined. Steps j = 0..rho-1 pre-run an IF neuron (v_init,
    reset by subtraction, fire at m >= theta) on the live input while buffering it; the end of the
    pre-run fixes a per-neuron initial potential; steps j = rho..rho+S-1 replay the buffered input
    from its first step with that potential and emit the real spikes. Inputs at j >= S are ignored.

    Initial-potential shift (Hao et al., integer form of the authors' code):
    one spike too many (v < 0 after firing) -> v0 = v_init - max(theta, min m at spikes - theta + 1);
    one too few (v >= theta)              -> v0 = v_init + max(theta, theta - max m without a spike),
    or + S*theta when the pre-run fired at every step (the authors use ~1001 theta; S*theta forces a
    spike at every step just the same and stays inside a 24-bit membrane).
    """

    BIG = 1 << 40

    def __init__(self, xp, shape, theta: int, v_init: int, rho: int, S: int, device=None):
        self.xp, self.shape, self.device = xp, shape, device
        self.theta, self.v_init, self.rho, self.S = theta, v_init, rho, S
        self.buf = [None] * S

    def reset(self):
        z = _zeros(self.xp, self.shape, self.device)
        self.v = z + self.v_init
        self.count = z * 0
        self.min_spike = z + self.BIG
        self.max_quiet = z - self.BIG
        self.buf = [None] * self.S

    def _finish_prerun(self):
        xp, th = self.xp, self.theta
        lower = (self.v < 0) & (self.count > 0)
        higher = self.v >= th
        down = xp.maximum(self.min_spike - th + 1, self.min_spike * 0 + th)
        up = xp.where(self.max_quiet > -self.BIG, xp.maximum(th - self.max_quiet, self.max_quiet * 0 + th),
                      self.max_quiet * 0 + self.S * th)
        v0 = xp.where(lower, self.v * 0 + self.v_init - down, self.v * 0 + self.v_init)
        self.v = xp.where(higher, self.v * 0 + self.v_init + up, v0)

    def step(self, j: int, a):
        xp, th = self.xp, self.theta
        if j < self.S:
            self.buf[j] = a
        if j < self.rho:
            m = self.v + a
            s = m >= th
            self.min_spike = xp.where(s, xp.minimum(self.min_spike, m), self.min_spike)
            self.max_quiet = xp.where(s, self.max_quiet, xp.maximum(self.max_quiet, m))
            self.count = self.count + s
            self.v = m - s * th
            if j == self.rho - 1:
                self._finish_prerun()
            return s & False  # the pre-run emits nothing
        r = j - self.rho
        if r >= self.S:
            return self.v != self.v
        m = self.v + self.buf[r]
        s = m >= th
        self.v = m - s * th
        return s


class GradedKernel:
    """Graded spikes: each window step j < ``length`` sends ``s = clip(floor(m / theta), 0, levels)``
    for ``m = v + a`` and keeps ``v = m - theta * s``; the window starts from v_init."""

    def __init__(self, xp, shape, theta: int, v_init: int, levels: int, length: int, device=None):
        self.xp, self.shape, self.device = xp, shape, device
        self.theta, self.v_init, self.levels, self.length = theta, v_init, levels, length

    def reset(self):
        self.v = _zeros(self.xp, self.shape, self.device) + self.v_init

    def step(self, j: int, a):
        if j >= self.length:
            return self.v * 0
        m = self.v + a
        s = self.xp.clip(m // self.theta, 0, self.levels)
        self.v = m - s * self.theta
        return s


class MaxPoolKernel:
    """The spiking max-pool gate: count each source neuron's spikes; each output spikes when the
    largest count of its window grows (by one at most: one spike per source per step). ``index``
    (N_out, K) holds each window's flattened source positions, -1 where it hangs over the border."""

    def __init__(self, xp, batch: int, in_size: int, index, device=None):
        self.xp, self.device, self.in_size = xp, device, in_size
        self.index = index * (index >= 0) + (index < 0) * in_size  # border -> a column of zeros
        self.counts_shape, self.out_shape = (batch, in_size + 1), (batch, len(index))

    def reset(self):
        self.counts = _zeros(self.xp, self.counts_shape, self.device)
        self.top = _zeros(self.xp, self.out_shape, self.device)

    def step(self, s):
        """``s`` (batch, in_size): the source's spikes (0/1) of this window step."""
        self.counts[:, :self.in_size] += s
        top = self.xp.amax(self.counts[:, self.index], -1)
        out = top > self.top
        self.top = top
        return out
