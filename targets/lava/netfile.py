"""Writes a :class:`ProcessNet` and the samples to stream through it for the Lava worker.

A folder with ``net.json`` (structure and scalar parameters) and ``arrays.npz`` (weights, biases,
per-sample input currents; sparse matrices as ``<key>.data/.indices/.indptr/.shape``). Nothing
is pickled. ``worker.py`` documents and reads the same format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import sparse

from spikeport.toolchain.procnet import ConvProcess, COSProcess, MaxPoolProcess, ProcessNet, TPPProcess

FORMAT = "spikeport-lava-net/1"


def write_net(folder: Path, net: ProcessNet, currents: dict[str, np.ndarray], n_samples: int,
              record: list[str], sample_ids: np.ndarray | None = None, spikes_in: np.ndarray | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, value) -> str:
        if sparse.issparse(value):
            m = sparse.csr_matrix(value)
            arrays[key + ".data"] = m.data.astype(np.int64)
            arrays[key + ".indices"] = m.indices.astype(np.int64)
            arrays[key + ".indptr"] = m.indptr.astype(np.int64)
            arrays[key + ".shape"] = np.asarray(m.shape, dtype=np.int64)
        else:
            arrays[key] = np.asarray(value)
        return key

    lifs = []
    for i, p in enumerate(net.lifs):
        if isinstance(p, COSProcess):
            lifs.append({"kind": "cos", "name": p.name, "shape": list(p.shape), "theta": p.theta,
                         "v_init": p.v_init, "rho": p.rho, "S": p.S, "start": p.start, "period": p.period})
            continue
        if isinstance(p, TPPProcess):
            lifs.append({"kind": "tpp", "name": p.name, "shape": list(p.shape), "theta": p.theta,
                         "v_init": p.v_init, "T": p.T, "start": p.start, "period": p.period, "seed": p.seed,
                         "layer": p.layer})
            continue
        if isinstance(p, MaxPoolProcess):
            lifs.append({"kind": "maxpool", "name": p.name, "shape": list(p.shape), "src": p.src,
                         "in_shape": list(p.in_shape), "index": put(f"lif{i}.index", p.index.astype(np.int64)),
                         "start": p.start, "period": p.period, "length": p.length})
            continue
        bias = np.asarray(p.bias_mant)
        lifs.append({"kind": "lif", "name": p.name, "shape": list(p.shape), "du": p.du, "dv": p.dv, "vth": p.vth,
                     "bias_mant": put(f"lif{i}.bias", bias.astype(np.int64)) if bias.ndim else int(bias),
                     "bias_exp": p.bias_exp, "reset_interval": p.reset_interval,
                     "reset_offset": p.reset_offset})
    syns = []
    for i, s in enumerate(net.synapses):
        if isinstance(s, ConvProcess):
            syns.append({"kind": "conv", "name": s.name, "src": s.src, "dst": s.dst,
                         "weight": put(f"syn{i}.w", s.weight.astype(np.int64)),
                         "in_shape": list(s.in_shape), "out_shape": list(s.out_shape),
                         "stride": list(s.stride), "padding": list(s.padding),
                         "dilation": list(s.dilation), "groups": s.groups})
        else:
            w = s.weights if sparse.issparse(s.weights) else np.asarray(s.weights, dtype=np.int64)
            syns.append({"kind": "dense", "name": s.name, "src": s.src, "dst": s.dst,
                         "weights": put(f"syn{i}.w", w), "is_sparse_matrix": bool(sparse.issparse(w)),
                         "sparse": bool(s.sparse or np.any(s.delay)), "weight_exp": s.weight_exp,
                         "num_weight_bits": s.num_weight_bits, "sign_mode": s.sign_mode,
                         "num_message_bits": s.num_message_bits,
                         "delay": int(s.delay) if np.ndim(s.delay) == 0 else put(f"syn{i}.delay", np.asarray(s.delay)),
                         "max_delay": int(np.max(s.delay))})
    srcs = []
    for i, s in enumerate(net.sources):
        srcs.append({"name": s.name, "dst": s.dst, "start": s.start,
                     "pattern": put(f"src{i}.pattern", s.pattern(net.T)),
                     "per_sample": put(f"src{i}.input", np.asarray(currents[s.dst], dtype=np.int64)
                                       .reshape(n_samples, -1)) if s.adds_input else None})
    steps = (n_samples - 1) * net.period + net.frame
    put("sample_ids", np.arange(n_samples) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64))
    if spikes_in is not None:  # (steps, samples, N) -> one stream, sample i from step i * period
        spikes_in = np.asarray(spikes_in, dtype=np.int64)
        stream = np.zeros((steps, spikes_in.shape[2]), dtype=np.int64)
        for i in range(n_samples):
            k = min(len(spikes_in), steps - i * net.period)
            stream[i * net.period:i * net.period + k] += spikes_in[:k, i]
        put("spikes_in", stream)
    spec = {"format": FORMAT, "T": net.T, "period": net.period, "n_samples": n_samples, "steps": steps,
            "act_shift": net.profile.act_shift, "readout": net.readout, "record": record,
            "lifs": lifs, "synapses": syns, "sources": srcs, "spikes_in": spikes_in is not None}
    (folder / "net.json").write_text(json.dumps(spec, indent=1))
    np.savez(folder / "arrays.npz", **arrays)
    return spec
