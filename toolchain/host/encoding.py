"""The host's input encoding: a sample's first synapse applied on the host, rounded to the integer
currents every integer runner (the oracle, ``sim``, Lava) receives. Owned by none of them."""

from __future__ import annotations

import numpy as np
import torch

from spikeport.toolchain.ir.snn import INPUT, SNNGraph
from spikeport.toolchain.ir.synapses import apply_synapse, weight_tensor


@torch.no_grad()
def encode(snn: SNNGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Input currents (integer graphs): ``round(W x / unit)`` per sample for each input-fed population.

    Computed in float64 once per sample on the host; every integer runner receives the same
    integers, so they agree bit for bit whatever the platform's float rounding.
    """
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    out = {}
    for p in snn.populations:
        for pr in p.inputs:
            if pr.source == INPUT:
                cur = apply_synapse(pr.synapse, xt, weight_tensor(pr.synapse.weight, torch.float64))
                if snn.integer:
                    cur = torch.round(cur / pr.unit).to(torch.int64)
                out[p.name] = cur.reshape(len(xt), -1).numpy()
    return out
