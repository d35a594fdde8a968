"""Lava's rules for what a process does to the parameters it is given, written once where ``sim``,
the netx interop and the tests can read them. The Lava model of the oracle (``oracle/lava_model``)
keeps its own copy on purpose: it judges ``sim``, so it shares none of its code."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def lava_weights(w: np.ndarray | sparse.spmatrix, sign_mode: str | None, num_weight_bits: int,
                 weight_bits: int):
    """What Lava's bit-accurate Dense/Sparse models do to the weights at their first step
    (``weight_bits``: the width of the weight register, the sign apart)."""
    is_sparse = sparse.issparse(w)
    w = sparse.csr_matrix(w, copy=True) if is_sparse else np.asarray(w)
    vals = w.data if is_sparse else w
    implicit_zero = is_sparse and w.nnz < w.shape[0] * w.shape[1]
    lo_v, hi_v = (vals.min(), vals.max()) if vals.size else (0, 0)
    if implicit_zero:  # Lava's np.min/np.max see the sparse matrix's zeros too
        lo_v, hi_v = min(lo_v, 0), max(hi_v, 0)
    mode = sign_mode or ("exc" if lo_v >= 0 else "inh" if hi_v <= 0 else "mixed")
    x = np.trunc(vals).astype(np.int64)
    if mode == "inh":
        x = -x
    top = 1 << weight_bits
    x = np.clip(x, -top if mode == "mixed" else 0, top - 1)
    k = weight_bits - num_weight_bits + (mode == "mixed")
    x = (x >> k) << k
    if mode == "inh":
        x = -x
    if is_sparse:
        w.data = x
        w.eliminate_zeros()
        return w
    return x
