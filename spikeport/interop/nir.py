"""NIR export of the converted (float) SNN, with what NIR cannot hold kept alongside.

The graph becomes:
- one ``IF`` node per population (r = 1, v_threshold = theta, v_reset = 0);
- a ``Conv2d`` or ``Affine`` node per projection, with a ``Flatten`` where a dense synapse reads a
  (C, H, W) population; each population's bias sits on its first incoming synapse;
- ``Input`` and ``Output`` nodes.

What NIR's IF does not describe goes into each node's metadata under ``"spikeport"`` and into a
sidecar JSON file (``<file>.spikeport.json``), together with the integer graph's quantization when
one is given:
- spikeport's neurons reset by subtraction, not to v_reset;
- they start at theta / 2 and fire at ``m >= theta``;
- they run in discrete steps with zero synaptic delay;
- the readout sums over T steps.

Another NIR backend therefore reproduces the connectivity and the weights exactly. Unless it reads
that metadata, it also gets the neuron model wrong, and the spike counts differ.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spikeport.interop.h5guard import probe_hdf5
from spikeport.toolchain.errors import ModelFileError, SpikeportError
from spikeport.toolchain.files import atomic_path, write_atomic
from spikeport.toolchain.ir.snn import IF, INPUT, ConvSynapse, SNNGraph
from spikeport.toolchain.passes.compose import full_weight

NEURON_NOTE = {"reset": "subtract threshold", "v_init": "threshold / 2", "fires_when": "m >= threshold",
               "time": "discrete steps, zero synaptic delay", "readout": "sum of the readout synapses over T steps"}


def _channel_bias(name: str, bias: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    b = np.asarray(bias, dtype=np.float64).reshape(shape)
    if len(shape) != 3:
        return b.reshape(-1)
    per = b.reshape(shape[0], -1)
    if not np.allclose(per, per[:, :1]):
        raise SpikeportError(f"layer {name!r}: its bias varies within a channel; NIR's Conv2d holds one bias per "
                             "channel")
    return per[:, 0]


def to_nir(snn: SNNGraph):
    """The float SNN as a ``nir.NIRGraph``."""
    import nir

    if snn.integer:
        raise SpikeportError("export the float SNN to NIR (integer details go in the sidecar file)")
    if not isinstance(snn.neuron, IF) or any(p.time_bias is not None for p in snn.populations):
        raise SpikeportError(f"NIR has no node for spikeport's {type(snn.neuron).__name__}/FTBC neurons; export the "
                             "QCFS SNN")
    pools = [p.name for p in snn.populations if p.kind == "maxpool"]
    if pools:
        raise SpikeportError(f"NIR has no node for spikeport's spiking max-pool (layers {pools}); export the network "
                             "converted with maxpool='average'")
    nodes: dict = {"input": nir.Input(input_type={"input": np.array(snn.input_shape)})}
    edges: list[tuple[str, str]] = []
    shapes = {INPUT: snn.input_shape}
    for p in snn.populations:
        shapes[p.name] = p.shape
        for i, pr in enumerate(p.inputs):
            src = "input" if pr.source == INPUT else pr.source
            syn = pr.synapse
            bias = _channel_bias(p.name, p.bias, p.shape) if i == 0 else np.zeros(
                p.shape[0] if len(p.shape) == 3 else p.size)
            node = f"{p.name}.in{i}"
            if isinstance(syn, ConvSynapse):
                # grouped kernels are expanded: nir 1.0.8's type inference ignores ``groups``
                nodes[node] = nir.Conv2d(input_shape=tuple(syn.in_shape[1:]), weight=full_weight(syn),
                                         stride=syn.stride, padding=syn.padding, dilation=syn.dilation,
                                         groups=1, bias=bias)
            else:
                if len(shapes[pr.source]) > 1:
                    flat = f"{node}.flatten"
                    nodes[flat] = nir.Flatten(input_type={"input": np.array(shapes[pr.source])}, start_dim=0)
                    edges.append((src, flat))
                    src = flat
                nodes[node] = nir.Affine(weight=np.asarray(syn.weight), bias=bias)
            edges.append((src, node))
            edges.append((node, p.name if p.kind == "if" else "output"))
        if p.kind == "if":
            nodes[p.name] = nir.IF(r=np.ones(p.shape), v_threshold=np.full(p.shape, float(p.threshold)),
                                   v_reset=np.zeros(p.shape),
                                   metadata={"spikeport": {**NEURON_NOTE, "threshold": float(p.threshold),
                                                           "v_init": float(p.v_init), "origin": p.origin}})
    nodes["output"] = nir.Output(output_type={"output": np.array(snn.readout.shape)})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikeport": {**NEURON_NOTE, "model": snn.meta.get(
        "model", "")}})


def export_nir(snn: SNNGraph, path: str | Path, integer: SNNGraph | None = None) -> Path:
    """Write ``path`` (NIR, HDF5) and ``path.spikeport.json`` (the details NIR cannot hold)."""
    import nir

    path = Path(path)
    graph = to_nir(snn)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    side = {"format": "spikeport-nir-sidecar/1", "neuron": NEURON_NOTE,
            "populations": [{"name": p.name, "kind": p.kind, "threshold": float(p.threshold),
                             "v_init": float(p.v_init), "origin": p.origin} for p in snn.populations]}
    if integer is not None:
        side["integer"] = {"profile": integer.profile.name, "T": integer.T,
                           "quantization": integer.meta.get("quantization")}
    write_atomic(Path(str(path) + ".spikeport.json"), json.dumps(side, indent=1, default=float))
    return path


def read_nir(path: str | Path):
    """``nir.read`` with a clear error for missing, truncated or malformed files."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"NIR file {path} does not exist")
    probe_hdf5(path, "NIR")  # a damaged file can hang the HDF5 library: try it in a child first
    try:
        return nir.read(path)
    except Exception as exc:  # h5py and nir raise many types for bad files
        raise ModelFileError(f"{path} is not a readable NIR file (truncated or malformed?): "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
