"""Load a spikeport Lava package: the converted, quantized network as a Lava process.

Needs only lava-nc 0.10 and numpy (no torch, no spikeport). A package is a folder written by
``spikeport export MODEL --lava DIR``::

    network.json      structure and scalar parameters (format "spikeport-lava-package/1")
    arrays.npz        weights, delays, bias schedules, the input encoder (no pickles)
    spikeport_lava.py this loader; neuron_procs.py, method_kernels.py, prng.py: spikeport's own
                      COS / TPP / graded-spike / max-pool process models (CPU), used only if the
                      network has them

Usage (see README.md in the package)::

    import sys; sys.path.insert(0, "DIR")
    from spikeport_lava import load, encode, input_data, predictions
    net = load("DIR")                         # a Lava process (hierarchical; stock LIF/Dense/Conv inside)
    currents = encode(net, images)            # (n, C, H, W) floats -> {input layer: (n, N) integers}
    for layer, port in net.input_ports.items():
        RingBuffer(data=input_data(net, currents[layer], layer)).s_out.connect(port)

Time: sample i occupies steps ``i * net.period + 1 ..``; its answer is ``net.readout.u >> 6``
(summed logits) at step ``i * net.period + net.latency``. Arrays are in PyTorch order ((C, H, W)
flattened); Lava's ports are (X, Y, C) = (W, H, C), which ``input_data`` and ``to_torch_order``
convert.
"""

import json
import os

import numpy as np
from lava.magma.core.decorator import implements
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from scipy import sparse

FORMAT = "spikeport-lava-package/1"


class PackageError(ValueError):
    """A package that cannot be loaded; the message names the folder and what is wrong."""


def lava_order(shape):
    """l2t[j] = PyTorch flat index of Lava flat position j, for a (C, H, W) or (N,) population."""
    n = int(np.prod(shape))
    if len(shape) == 1:
        return np.arange(n)
    return np.arange(n).reshape(shape).transpose(2, 1, 0).ravel()


def lava_shape(shape):
    return tuple(shape[::-1]) if len(shape) == 3 else tuple(shape)


def load_array(arrays, key):
    if key + ".data" in arrays:
        shape = tuple(int(v) for v in arrays[key + ".shape"])
        return sparse.csr_matrix((arrays[key + ".data"], arrays[key + ".indices"], arrays[key + ".indptr"]),
                                 shape=shape)
    return arrays[key]


def read(folder):
    """(spec, arrays) of the package in ``folder``; a :class:`PackageError` naming the problem otherwise."""
    folder = str(folder)
    path = os.path.join(folder, "network.json")
    if not os.path.isfile(path):
        raise PackageError(f"{folder}: no network.json (not a spikeport Lava package)")
    try:
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        got = spec.get("format") if isinstance(spec, dict) else None
        raise PackageError(f"{path}: format {got!r}; this loader reads {FORMAT!r} (export the package again "
                           "with this spikeport version)")
    apath = os.path.join(folder, "arrays.npz")
    if not os.path.isfile(apath):
        raise PackageError(f"{folder}: arrays.npz is missing")
    try:
        with np.load(apath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile, ValueError, OSError: a damaged archive
        raise PackageError(f"{apath}: damaged ({type(exc).__name__}: {exc})") from None
    missing = [k for k in spec.get("arrays", []) if k not in arrays]
    if missing:
        raise PackageError(f"{apath}: array(s) {missing[:5]} missing")
    for key in ("T", "period", "latency", "readout", "lifs", "synapses", "sources"):
        if key not in spec:
            raise PackageError(f"{path}: field {key!r} missing")
    return spec, arrays


def _bias_data(src, spec, arrays, n, steps, n_samples):
    """What a bias source sends into its layer each step: the layer's window (bias, FTBC's time
    bias), then the flush step's quench, every period from ``start``. ``steps`` 0: one period,
    played cyclically for ever; otherwise ``steps`` steps holding ``n_samples`` windows."""
    P = spec["period"]
    pattern = arrays[src["pattern"]].T.astype(np.int64)  # (N, L + 1)
    L = pattern.shape[1] - 1
    if not steps:
        data = np.zeros((n, P), dtype=np.int64)
        for j in range(L + 1):
            data[:, (src["start"] - 1 + j) % P] = pattern[:, j]
    else:
        data = np.zeros((n, steps), dtype=np.int64)
        for i in range(n_samples):
            first = i * P + src["start"]
            last = min(first + L, steps)
            if first <= steps:
                data[:, first - 1:last] = pattern[:, :last - first + 1]
    if np.abs(data).max(initial=0) >= 2 ** 31:
        raise PackageError(f"source {src['name']}: a current does not fit int32")
    return data.astype(np.int32)


class SpikeportNetwork(AbstractProcess):
    """The network of a package as one Lava process. Inside: stock ``LIFReset`` / ``Dense`` /
    ``Sparse`` / ``DelaySparse`` / ``Conv`` processes and ``RingBuffer`` bias schedules, plus
    spikeport's own COS / TPP / max-pool processes where the network has them.

    Ports and members: ``inp`` takes the input-fed layer's current (Lava order; see
    :func:`input_data`); ``spikes_inp`` takes external spikes where the network has synapses from
    ``"input"`` (netx networks); ``layers[name]`` is each population's process (connect its
    ``s_out`` to record spikes); ``readout`` is the readout LIF, whose ``u >> 6`` is the summed
    logits. ``steps`` 0 (default): the bias schedules repeat every period for ever; otherwise they
    hold ``n_samples`` windows in ``steps`` steps and then stop. ``sample_ids`` key TPP's random
    numbers (default: the window index)."""

    def __init__(self, *, path, steps=0, n_samples=0, sample_ids=None, name=None):
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense
        from lava.proc.io.source import RingBuffer
        from lava.proc.lif.process import LIF, LIFReset
        from lava.proc.sparse.process import DelaySparse, Sparse
        from lava.utils.weightutils import SignMode
        from neuron_procs import COSNeuron, GradedNeuron, MaxPoolGate, TPPNeuron

        spec, arrays = read(path)
        super().__init__(path=str(path), steps=steps, n_samples=n_samples, name=name)
        self.spec, self.package_path = spec, str(path)
        self.period, self.latency, self.T = spec["period"], spec["latency"], spec["T"]
        sign_modes = {"mixed": SignMode.MIXED, "exc": SignMode.EXCITATORY, "inh": SignMode.INHIBITORY}
        ids = np.asarray(sample_ids if sample_ids is not None else [], dtype=np.int64)
        self.shapes, self.orders, self.layers = {}, {}, {}
        lifs = self.layers
        for p in spec["lifs"]:
            shape = tuple(p["shape"])
            self.shapes[p["name"]], self.orders[p["name"]] = shape, lava_order(shape)
            if p["kind"] == "cos":
                lifs[p["name"]] = COSNeuron(shape=lava_shape(shape), theta=p["theta"], v_init=p["v_init"],
                                            rho=p["rho"], S=p["S"], start=p["start"], period=p["period"],
                                            name=p["name"])
            elif p["kind"] == "tpp":
                lifs[p["name"]] = TPPNeuron(shape=lava_shape(shape), theta=p["theta"], v_init=p["v_init"], T=p["T"],
                                            start=p["start"], period=p["period"], seed=p["seed"], layer=p["layer"],
                                            neuron_ids=self.orders[p["name"]], sample_ids=ids, name=p["name"])
            elif p["kind"] == "graded":
                lifs[p["name"]] = GradedNeuron(shape=lava_shape(shape), theta=p["theta"], v_init=p["v_init"],
                                               levels=p["levels"], start=p["start"], period=p["period"],
                                               length=p["length"], name=p["name"])
            elif p["kind"] == "maxpool":  # wired straight to its source's s_out
                src = p["src"]
                lifs[p["name"]] = MaxPoolGate(in_shape=lava_shape(self.shapes[src]), shape=lava_shape(shape),
                                              index=arrays[p["index"]], in_order=self.orders[src],
                                              out_order=self.orders[p["name"]], start=p["start"],
                                              period=p["period"], length=p["length"], name=p["name"])
                lifs[src].s_out.connect(lifs[p["name"]].s_in)
            else:
                kwargs = dict(shape=lava_shape(shape), du=p["du"], dv=p["dv"], vth=p["vth"], bias_exp=p["bias_exp"],
                              name=p["name"])
                bias = p["bias_mant"]
                kwargs["bias_mant"] = (arrays[bias][self.orders[p["name"]]].reshape(lava_shape(shape))
                                       if isinstance(bias, str) else bias)
                lifs[p["name"]] = (LIFReset(reset_interval=p["reset_interval"], reset_offset=p["reset_offset"],
                                            **kwargs) if p["reset_interval"] else LIF(**kwargs))
        self.readout = lifs[spec["readout"]]

        inputs = [s for s in spec["synapses"] if s["src"] == "input"]
        if inputs:
            n = spec["spikes_in_size"]
            self.shapes["input"], self.orders["input"] = (n,), np.arange(n)
            self.spikes_inp = InPort(shape=(n,))

        def out_port(name):
            if name == "input":
                return None
            port = lifs[name].s_out
            return port.flatten() if len(self.shapes[name]) > 1 else port

        self.synapses = []
        for s in spec["synapses"]:
            src, dst = s["src"], s["dst"]
            if s["kind"] == "conv":
                w = arrays[s["weight"]][:, :, ::-1, ::-1].transpose(0, 3, 2, 1)  # (C_out, kW, kH, C_in/g), flipped
                syn = Conv(weight=np.ascontiguousarray(w), input_shape=lava_shape(tuple(s["in_shape"])),
                           padding=tuple(s["padding"][::-1]), stride=tuple(s["stride"][::-1]),
                           dilation=tuple(s["dilation"][::-1]), groups=s["groups"],
                           num_message_bits=s.get("num_message_bits", 0), name=s["name"])
                lifs[src].s_out.connect(syn.s_in)
                syn.a_out.connect(lifs[dst].a_in)
                self.synapses.append(syn)
                continue
            w = load_array(arrays, s["weights"])
            w = w[self.orders[dst]][:, self.orders[src]]  # rows and columns into Lava's flat order
            kwargs = dict(weight_exp=s["weight_exp"], num_weight_bits=s["num_weight_bits"], name=s["name"])
            if s["sign_mode"]:
                kwargs["sign_mode"] = sign_modes[s["sign_mode"]]
            if s.get("num_message_bits"):
                kwargs["num_message_bits"] = s["num_message_bits"]
            if s["max_delay"] > 0:  # one delay for all, or one per synapse (PyTorch order, like the weights)
                w = sparse.csr_matrix(w)
                delays = w.copy().astype(int)
                if isinstance(s["delay"], str):
                    per = arrays[s["delay"]][self.orders[dst]][:, self.orders[src]]
                    rows, cols = w.nonzero()
                    delays = sparse.csr_matrix((per[rows, cols], (rows, cols)), shape=w.shape)
                    w = sparse.csr_matrix((np.asarray(w[rows, cols]).ravel(), (rows, cols)), shape=w.shape)
                else:
                    delays.data[:] = s["delay"]
                syn = DelaySparse(weights=w, delays=delays, max_delay=s["max_delay"], **kwargs)
            elif s["sparse"]:
                syn = Sparse(weights=sparse.csr_matrix(w), **kwargs)
            else:
                syn = Dense(weights=w.toarray() if sparse.issparse(w) else np.asarray(w), **kwargs)
            if src == "input":
                self.spikes_inp.connect(syn.s_in)
            else:
                out_port(src).connect(syn.s_in)
            syn.a_out.reshape(lava_shape(self.shapes[dst])).connect(lifs[dst].a_in)
            self.synapses.append(syn)

        self.sources = []
        for src in spec["sources"]:
            dst = src["dst"]
            data = _bias_data(src, spec, arrays, len(self.orders[dst]), steps, n_samples)[self.orders[dst]]
            ring = RingBuffer(data=data.reshape(*lava_shape(self.shapes[dst]), data.shape[-1]))
            ring.s_out.connect(lifs[dst].a_in)
            self.sources.append(ring)

        # one input port per layer that takes the analog input: inp, then inp_1, inp_2, ... (a first
        # inception block has several); input_ports maps the layers to them
        self.input_layers = [s["dst"] for s in spec["sources"] if s.get("adds_input")]
        self.input_ports = {}
        for k, layer in enumerate(self.input_layers):
            port = InPort(shape=lava_shape(self.shapes[layer]))
            setattr(self, "inp" if k == 0 else f"inp_{k}", port)
            port.connect(lifs[layer].a_in)
            self.input_ports[layer] = port


@implements(proc=SpikeportNetwork, protocol=LoihiProtocol)
class SpikeportNetworkModel(AbstractSubProcessModel):
    """The processes built in :class:`SpikeportNetwork` are its sub-processes (as lava-dl's netx
    builds its networks)."""

    def __init__(self, proc):
        pass


def load(path, steps=0, n_samples=0, sample_ids=None, name=None):
    """The package in folder ``path`` as a :class:`SpikeportNetwork` process."""
    return SpikeportNetwork(path=path, steps=steps, n_samples=n_samples, sample_ids=sample_ids, name=name)


def input_data(net, currents, layer=None):
    """RingBuffer data for ``net.inp`` (or the port of input ``layer``): sample i's current ((n, N)
    integers, PyTorch order, as :func:`encode` makes them) during its window, from step
    ``i * period + start``; zeros elsewhere. Shaped (*Lava shape of the layer, n * period)."""
    spec = net.spec
    first = layer or net.input_layers[0]
    src = next(s for s in spec["sources"] if s["dst"] == first)
    currents = np.asarray(currents, dtype=np.int64).reshape(len(currents), -1)
    P, L = spec["period"], src["length"]
    data = np.zeros((currents.shape[1], len(currents) * P), dtype=np.int64)
    for i, c in enumerate(currents):
        s = i * P + src["start"] - 1
        data[:, s:s + L] = c[:, None]
    if np.abs(data).max(initial=0) >= 2 ** 31:
        raise ValueError("an input current does not fit int32")
    data = data[net.orders[first]]
    return data.reshape(*lava_shape(net.shapes[first]), data.shape[-1]).astype(np.int32)


def encode(net, x):
    """The integer input currents of samples ``x`` ((n, *input shape) floats), one (n, N) array per
    input layer (a dict; ``encode(net, x)[net.input_layers[0]]`` for the usual one): each layer's
    input weights applied in float64 on the host and rounded to its membrane unit, as spikeport does."""
    with np.load(os.path.join(net.package_path, "arrays.npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k.startswith("encoder")}
    out = {}
    for k, e in enumerate(net.spec["encoders"]):
        xs = np.asarray(x, dtype=np.float64).reshape(len(x), *e["in_shape"])
        w = load_array(arrays, f"encoder{k}.w")
        if e["kind"] == "conv":
            y = _conv2d(xs, w, e["stride"], e["padding"], e["dilation"], e["groups"])
        else:
            y = (w @ xs.reshape(len(xs), -1).T).T
        out[e["layer"]] = np.round(np.asarray(y).reshape(len(xs), -1) / e["unit"]).astype(np.int64)
    return out


def _conv2d(x, w, stride, padding, dilation, groups):
    """A plain float64 2-D convolution (cross-correlation, as PyTorch's), batch first."""
    n, _, h, wd = x.shape
    co, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, co, oh, ow))
    per = co // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * per:(g + 1) * per]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * per:(g + 1) * per] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out


def to_torch_order(net, name, lava_values):
    """(..., Lava flat) values of population ``name`` -> (..., PyTorch flat)."""
    v = np.asarray(lava_values)
    out = np.empty_like(v)
    out[..., net.orders[name]] = v
    return out


def predictions(net, readout_u, n_samples):
    """Class per sample from the readout's u recorded every step ((steps, n_out), Lava order = PyTorch
    order for a flat readout): the argmax of the summed logits at each sample's last window step."""
    u = np.asarray(readout_u)
    rows = [i * net.period + net.latency - 1 for i in range(n_samples)]
    return (u[rows] >> net.spec["act_shift"]).argmax(axis=1)
