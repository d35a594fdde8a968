"""Read lava-dl netx ``.net`` files (HDF5) into a :class:`ProcessNet` that ``sim`` runs.

It follows what ``lava.lib.dl.netx.hdf5.Network`` builds, layer type by layer type
(docs/lava-semantics.md, "netx"):
- ``input``: with a neuron it becomes a LIF driven by its bias; without one, the network's input
  is spikes into the next layer's synapse.
- ``conv``: Conv + LIF. netx's kernel flip and Lava's true convolution add up to a PyTorch
  cross-correlation with the stored (C_out, C_in, kH, kW) kernel.
- ``dense``: Dense + LIF, with netx's 8-bit weight optimisation (``optimize_weight_bits``).
  Axonal delays become per-row DelayDense delays; above 62 they are an error (netx clamps them
  with a warning, which silently changes the network).
- A ``dense`` without a neuron becomes a non-spiking integrator (vThMant 1 << 17).
- ``dense_rec``: the forward and recurrent weights are optimised jointly.
- ``flatten``: nothing to build, since dense matrices already act on (C, H, W)-flattened vectors.

LOIHI/CUBA neurons map to ``vth = vThMant``, ``du = iDecay - 1``, ``dv = vDecay``, ``bias_exp = 6``;
with ``reset_interval`` they become LIFReset with offset ``reset_offset + 1 + k`` for the k-th
block. Every value is checked against the hardware range, and errors name the layer and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikeport.interop.h5guard import probe_hdf5
from spikeport.toolchain.errors import ModelFileError, SpikeportError, UnsupportedOpError
from spikeport.toolchain.files import atomic_path
from spikeport.toolchain.hardware.lava_rules import lava_weights
from spikeport.toolchain.hardware.profiles import LOIHI2, TargetProfile
from spikeport.toolchain.ir.procnet import ConvProcess, DenseProcess, LIFProcess, ProcessNet
from spikeport.toolchain.ir.snn import INPUT, ConvSynapse

MAX_DELAY = 62
NETX_BIAS_EXP = 6  # netx writes every neuron's bias with this exponent
BIAS_RANGE = (-(1 << 15), (1 << 15) - 1)  # bias mantissas spikeport reads and writes
UNSUPPORTED = ("pool", "convT", "unpool", "average", "concat", "dense_comp")
# netx files hold Lava's Loihi fixed point: a file is read as, and its ProcessNet carries, this profile
NETX_PROFILE = LOIHI2


@dataclass
class NetxNetwork:
    net: ProcessNet
    layers: list[str]  # LIF names in order (``layer{i}``)
    input_shape: tuple[int, ...]  # (C, H, W) or (N,)
    input_synapses: list[str] = field(default_factory=list)  # fed by the external spike input
    input_layer: str | None = None  # an input LIF driven by its bias (tinynet, pilotnet)


def _scalar(layer: str, cfg, key: str, default=None):
    if key not in cfg:
        if default is None:
            raise ModelFileError(f"netx layer {layer}: missing field {key!r}")
        return default
    v = np.asarray(cfg[key][()])
    return v.reshape(-1)[0].item() if v.size == 1 else v


def _pair(v) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def check_range(layer: str, name: str, value, lo, hi, error: type[SpikeportError] = ModelFileError) -> None:
    """Every entry of ``value`` in [lo, hi], else ``error`` naming the netx layer and the field."""
    arr = np.asarray(value)
    if arr.size and (arr.min() < lo or arr.max() > hi):
        bad = arr.min() if arr.min() < lo else arr.max()
        raise error(f"netx layer {layer}: {name} = {bad} is outside the hardware range [{lo}, {hi}]")


def _integers(layer: str, name: str, value, lo: int, hi: int) -> np.ndarray:
    """``value`` as int64 if every entry is a finite integer in [lo, hi]; otherwise an error naming
    the layer and the field (netx would cast NaN, truncate fractions and clip silently)."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise ModelFileError(f"netx layer {layer}: {name} holds {a.dtype} values, not numbers")
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            raise ModelFileError(f"netx layer {layer}: {name} has {int((~finite).sum())} NaN/Inf value(s)")
        frac = a != np.round(a)
        if frac.any():
            raise ModelFileError(f"netx layer {layer}: {name} = {a[frac].reshape(-1)[0]:g} is not an integer "
                                 f"({int(frac.sum())} fractional value(s))")
    a = a.astype(np.int64)
    check_range(layer, name, a, lo, hi)
    return a


def _weights(layer: str, name: str, value) -> np.ndarray:
    """Dense weights as netx stores them: integers in [-256, 254] for mixed signs (netx clips beyond
    that with only a warning), [-256, 255] otherwise."""
    w = _integers(layer, name, value, -256, 255)
    if w.size and w.min() < 0 < w.max():
        check_range(layer, f"{name} (mixed signs)", w, -256, 254)
    return w


def _neuron(layer: str, cfg, size: int, reset_interval: int | None, offset: int, profile: TargetProfile,
            bias=None) -> dict:
    n = cfg["neuron"]
    kind = n["type"][()]
    kind = (kind[0] if np.ndim(kind) else kind)
    kind = kind.decode("ascii") if isinstance(kind, bytes) else str(kind)
    if kind not in ("LOIHI", "CUBA"):
        raise UnsupportedOpError(f"netx layer {layer}: neuron type {kind!r} is not supported (LOIHI/CUBA only)")
    i_decay = int(_integers(layer, "neuron/iDecay", _scalar(layer, n, "iDecay"), 0, profile.decay_unit))
    v_decay = int(_integers(layer, "neuron/vDecay", _scalar(layer, n, "vDecay"), 0, profile.decay_unit))
    vth = int(_integers(layer, "neuron/vThMant", _scalar(layer, n, "vThMant"), 0, profile.u_limit))
    if "messageBits" in n and int(_scalar(layer, n, "messageBits")) != 0:
        raise UnsupportedOpError(f"netx layer {layer}: graded output spikes (messageBits) are not supported")
    params = dict(du=i_decay - 1, dv=v_decay, vth=vth, bias_exp=NETX_BIAS_EXP,
                  bias_mant=0 if bias is None else np.broadcast_to(np.asarray(bias).astype(int), (size,)).copy())
    if reset_interval:
        params.update(reset_interval=reset_interval, reset_offset=offset)
    return params


def optimize_weight_bits(layer: str, w: np.ndarray) -> tuple[np.ndarray, int, int]:
    """netx's ``utils.optimize_weight_bits``: (Lava weights, num_weight_bits, weight_exp)."""
    w = np.asarray(w).astype(np.int64)
    if (w.max() > 254 and w.min() < 0) or (w.min() < -256 and w.max() > 0):
        w = np.clip(w, -256, 254)  # netx prints a warning and clips as well
    if w.max() < 0:
        scale, signed = -256 / w.min(), 0
    elif w.min() >= 0:
        scale, signed = (255 / w.max() if w.max() > 0 else 1.0), 0
    else:
        scale, signed = min(127 / w.max(), -128 / w.min()), 1
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.sum(np.abs(w / 2 ** n - np.round(w / 2 ** n))) != 0:
        n -= 1
    n -= signed
    if scale_bits < 0:
        raise ModelFileError(f"netx layer {layer}: weights up to {w.max()} do not fit an 8-bit excitatory synapse")
    return w << scale_bits, int(8 - scale_bits - n), int(-scale_bits)


def read_netx(path: str | Path, reset_interval: int | None = None, reset_offset: int = 0,
              num_layers: int | None = None) -> NetxNetwork:
    """Build the network ``netx.hdf5.Network(path, reset_interval, reset_offset, num_layers)`` would."""

    try:
        return _read_netx(path, reset_interval, reset_offset, num_layers)
    except SpikeportError as exc:  # every error names the file
        if Path(path).name in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from exc
    except (KeyError, RuntimeError, OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        # h5py reports a damaged file's inner structure through all of these
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: damaged or malformed netx file ({type(exc).__name__}: {first})") from exc


def _read_netx(path: str | Path, reset_interval: int | None, reset_offset: int,
               num_layers: int | None) -> NetxNetwork:
    import h5py

    profile = NETX_PROFILE
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"netx file {path} does not exist")
    probe_hdf5(path, "netx")  # a damaged file can hang the HDF5 library: try it in a child first
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ModelFileError(f"{path} is not a readable HDF5 netx file (truncated or corrupted?): "
                             f"{str(exc).splitlines()[0]}") from exc
    with f:
        if "layer" not in f:
            raise ModelFileError(f"{path}: no /layer group (not a netx network)")
        group = f["layer"]
        total = len(group)
        if num_layers is not None:
            total = min(total, num_layers)
        lifs, syns, names = [], [], []
        input_shape: tuple[int, ...] | None = None
        input_syns: list[str] = []
        input_layer = None
        offset = reset_offset + 1  # "time starts from 1 in hardware"
        prev: str | None = None
        prev_shape: tuple[int, ...] | None = None
        for i in range(total):
            key = str(i)
            if key not in group:
                raise ModelFileError(f"{path}: /layer/{key} is missing (layers must be numbered 0..{total - 1})")
            cfg = group[key]
            layer = f"{key} ({path.name})"
            kind = cfg["type"][()]
            kind = (kind[0] if np.ndim(kind) else kind)
            kind = kind.decode("ascii") if isinstance(kind, bytes) else str(kind)
            name = f"layer{i}"
            if kind in UNSUPPORTED:
                raise UnsupportedOpError(f"netx layer {layer}: layer type {kind!r} is not supported "
                                         "(netx itself does not build it either)")
            if kind == "flatten":
                continue
            if kind == "input":
                shape = tuple(int(v) for v in np.asarray(cfg["shape"][()]).reshape(-1))
                if "neuron" in cfg:
                    size = int(np.prod(shape))
                    lifs.append(LIFProcess(name, shape, **_neuron(layer, cfg, size, reset_interval, offset, profile)))
                    names.append(name)
                    input_layer, prev, prev_shape = name, name, shape
                    offset += 1
                input_shape = shape
                continue
            if kind not in ("conv", "dense", "dense_rec"):
                raise UnsupportedOpError(f"netx layer {layer}: unknown layer type {kind!r}")
            src_shape = prev_shape if prev_shape is not None else input_shape
            if src_shape is None:
                raise ModelFileError(f"netx layer {layer}: its input shape is unknown (no input layer before it)")
            shape = tuple(int(v) for v in np.asarray(cfg["shape"][()]).reshape(-1))
            bias = _integers(layer, "bias", cfg["bias"][()], *BIAS_RANGE) if "bias" in cfg else None
            src = prev if prev is not None else "input"
            if kind == "conv":
                w = np.asarray(cfg["weight"][()])
                w = w.reshape(w.shape[:4])  # (C_out, C_in/g, kH, kW), older files carry a time dim
                w = _integers(layer, "weight", w, -profile.v_max - 1, profile.v_max)
                stride, pad = _pair(_scalar(layer, cfg, "stride", 1)), _pair(_scalar(layer, cfg, "padding", 0))
                dil, groups = _pair(_scalar(layer, cfg, "dilation", 1)), int(_scalar(layer, cfg, "groups", 1))
                if len(src_shape) != 3 or w.shape[1] * groups != src_shape[0]:
                    raise ModelFileError(f"netx layer {layer}: weight {w.shape} does not chain to input {src_shape}")
                _, h, wd = src_shape
                oh = (h + 2 * pad[0] - dil[0] * (w.shape[2] - 1) - 1) // stride[0] + 1
                ow = (wd + 2 * pad[1] - dil[1] * (w.shape[3] - 1) - 1) // stride[1] + 1
                out_shape = (w.shape[0], oh, ow)
                if int(np.prod(shape)) != int(np.prod(out_shape)):
                    raise ModelFileError(f"netx layer {layer}: shape {shape} does not match the conv output "
                                         f"{out_shape}")
                syns.append(ConvProcess(f"{name}.syn", src, name, w, src_shape, out_shape, stride, pad, dil, groups))
                if src == "input":
                    input_syns.append(f"{name}.syn")
                if bias is not None:
                    bias = np.repeat(bias.reshape(-1, 1), oh * ow, axis=1).reshape(-1)
                shape = out_shape
            else:
                size = int(np.prod(shape))
                w = _weights(layer, "weight", np.asarray(cfg["weight"][()]).reshape(size, -1))
                n_in = int(np.prod(src_shape))
                if w.shape[1] != n_in:
                    raise ModelFileError(f"netx layer {layer}: weight {w.shape} does not chain to an input of "
                                         f"{n_in} neurons")
                shape = (size,)
                if kind == "dense_rec":
                    w_rec = _weights(layer, "weight_rec", np.asarray(cfg["weight_rec"][()]).reshape(size, -1))
                    both, bits, exp = optimize_weight_bits(layer, np.hstack([w, w_rec]))
                    w_l, w_rec_l = both[:, :n_in], both[:, n_in:]
                else:
                    w_l, bits, exp = optimize_weight_bits(layer, w)
                delays = None
                if "delay" in cfg:
                    d = _integers(layer, "delay", cfg["delay"][()], 0, MAX_DELAY)  # netx clamps with a warning
                    if d.size == 1:
                        delays = np.full(w_l.shape, int(d.reshape(-1)[0]))
                    elif d.size == size:
                        delays = np.repeat(d.reshape(-1, 1), n_in, axis=1)
                    elif d.size == n_in:
                        delays = np.repeat(d.reshape(1, -1), size, axis=0)
                    else:
                        raise ModelFileError(f"netx layer {layer}: delay of shape {d.shape} fits neither the "
                                             f"{size} outputs nor the {n_in} inputs")
                syns.append(DenseProcess(f"{name}.syn", src, name, w_l, weight_exp=exp, num_weight_bits=bits,
                                         delay=0 if delays is None else delays))
                if src == "input":
                    input_syns.append(f"{name}.syn")
                if kind == "dense_rec":
                    syns.append(DenseProcess(f"{name}.rec", name, name, w_rec_l, weight_exp=exp, num_weight_bits=bits))
            size = int(np.prod(shape))
            if "neuron" in cfg:
                params = _neuron(layer, cfg, size, reset_interval, offset, profile, bias)
            else:  # a dense layer without neuron: a perfect integrator that never fires
                params = dict(du=-1, dv=profile.decay_unit, vth=profile.u_limit, bias_exp=profile.act_shift,
                              bias_mant=0 if bias is None else np.broadcast_to(bias, (size,)).copy())
                if reset_interval:
                    params.update(reset_interval=reset_interval, reset_offset=offset)
            check_range(layer, "bias", params["bias_mant"], *BIAS_RANGE)
            lifs.append(LIFProcess(name, shape, **params))
            names.append(name)
            prev, prev_shape = name, shape
            offset += 1
        if not lifs:
            raise ModelFileError(f"{path}: the network has no layers")
    net = ProcessNet(T=1, period=reset_interval or 1, lifs=lifs, synapses=syns, sources=[], readout=names[-1],
                     profile=profile, meta={"netx": str(path)})
    return NetxNetwork(net, names, input_shape or (), input_syns, input_layer)


def _lava_to_netx_weights(p: DenseProcess, profile: TargetProfile) -> np.ndarray:
    """The integer weights a Dense process delivers (Lava's truncation and exponent applied): what a
    netx file stores, since netx re-derives the exponent itself."""

    w = lava_weights(p.weights, p.sign_mode, p.num_weight_bits, profile.weight_bits)
    w = w.toarray() if hasattr(w, "toarray") else np.asarray(w)
    return w << p.weight_exp if p.weight_exp > 0 else w >> -p.weight_exp


def write_netx(nx: NetxNetwork, path: str | Path) -> Path:
    """Write a network of netx-expressible processes as a ``.net`` file lava-dl's netx loads.

    Expressible: a chain of LIF layers (an optional input layer driven by its bias), each fed by one
    Conv or Dense synapse from the previous layer (Dense may carry per-row delays, or a recurrent
    Dense on itself: ``dense_rec``), weights in netx's 8-bit range [-256, 254]. Anything else raises
    an error that says which layer and what netx cannot hold.
    """
    import h5py

    net = nx.net
    by_dst: dict[str, list] = {}
    for s in net.synapses:
        by_dst.setdefault(s.dst, []).append(s)
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:  # whole file or none
        g = f.create_group("layer")
        idx = 0

        def neuron(grp, lif: LIFProcess) -> None:
            n = grp.create_group("neuron")
            n.create_dataset("type", data=np.bytes_("CUBA"))
            n.create_dataset("iDecay", data=lif.du + 1)
            n.create_dataset("vDecay", data=lif.dv)
            n.create_dataset("vThMant", data=lif.vth)
            if lif.bias_exp != NETX_BIAS_EXP and np.any(lif.bias_mant):
                raise UnsupportedOpError(f"layer {lif.name!r}: netx fixes bias_exp at 6, this layer uses "
                                         f"{lif.bias_exp}")
            check_range(lif.name, "du + 1 (iDecay)", lif.du + 1, 0, net.profile.decay_unit)

        if nx.input_layer is None:
            grp = g.create_group(str(idx))
            grp.create_dataset("type", data=[np.bytes_("input")])
            grp.create_dataset("shape", data=np.asarray(nx.input_shape))
            idx += 1
        prev_shape = nx.input_shape
        for name in nx.layers:
            lif = net.lif(name)
            if not isinstance(lif, LIFProcess):
                raise UnsupportedOpError(f"layer {name!r}: netx has no {type(lif).__name__} neuron")
            incoming = by_dst.get(name, [])
            bias = np.broadcast_to(np.asarray(lif.bias_mant), (lif.size,))
            if name == nx.input_layer:
                grp = g.create_group(str(idx))
                grp.create_dataset("type", data=[np.bytes_("input")])
                grp.create_dataset("shape", data=np.asarray(lif.shape))
                neuron(grp, lif)
                if np.any(bias):
                    grp.create_dataset("bias", data=bias.reshape(lif.shape))
                prev_shape = lif.shape
                idx += 1
                continue
            fwd = [s for s in incoming if s.src != name]
            rec = [s for s in incoming if s.src == name]
            if len(fwd) != 1:
                raise UnsupportedOpError(f"layer {name!r}: netx layers have exactly one input synapse, this one has "
                                         f"{len(fwd)}")
            syn = fwd[0]
            if isinstance(syn, DenseProcess) and len(prev_shape) > 1:  # netx flattens in (C, H, W) order too
                fl = g.create_group(str(idx))
                fl.create_dataset("type", data=[np.bytes_("flatten")])
                fl.create_dataset("shape", data=np.asarray(prev_shape))
                idx += 1
            grp = g.create_group(str(idx))
            if isinstance(syn, ConvProcess):
                if rec:
                    raise UnsupportedOpError(f"layer {name!r}: netx conv blocks have no recurrent connection (no "
                                             "reset by subtraction for conv layers)")
                check_range(name, "weight", syn.weight, -256, 254)
                grp.create_dataset("type", data=[np.bytes_("conv")])
                grp.create_dataset("shape", data=np.asarray(lif.shape))
                grp.create_dataset("weight", data=syn.weight.astype(np.float32))
                for key, v in (("stride", syn.stride), ("padding", syn.padding), ("dilation", syn.dilation)):
                    grp.create_dataset(key, data=np.asarray(v))
                grp.create_dataset("groups", data=syn.groups)
                if np.any(bias):
                    per = bias.reshape(lif.shape[0], -1)
                    if not np.all(per == per[:, :1]):
                        raise UnsupportedOpError(f"layer {name!r}: netx conv bias is per channel; this one varies "
                                                 "within a channel")
                    grp.create_dataset("bias", data=per[:, 0])
            else:
                w = _lava_to_netx_weights(syn, net.profile)
                check_range(name, "weight", w, -256, 254)
                grp.create_dataset("type", data=[np.bytes_("dense_rec" if rec else "dense")])
                grp.create_dataset("shape", data=np.asarray(lif.shape))
                grp.create_dataset("weight", data=w.astype(np.float32))
                if rec:
                    w_rec = _lava_to_netx_weights(rec[0], net.profile)
                    check_range(name, "weight_rec", w_rec, -256, 254)
                    grp.create_dataset("weight_rec", data=w_rec.astype(np.float32))
                if np.ndim(syn.delay) or syn.delay:
                    d = np.asarray(syn.delay)
                    if d.ndim == 2:
                        rows = d[:, 0]
                        if not np.all(d == rows[:, None]):
                            raise UnsupportedOpError(f"layer {name!r}: netx delays are per output neuron (or per "
                                                     "input); this layer's vary otherwise")
                        d = rows
                    grp.create_dataset("delay", data=np.broadcast_to(d, (lif.size,)).astype(np.float32))
                if np.any(bias):
                    grp.create_dataset("bias", data=bias)
            if lif.vth != net.profile.u_limit or lif.du != -1 or lif.dv != net.profile.decay_unit:
                neuron(grp, lif)
            elif isinstance(syn, ConvProcess):
                raise UnsupportedOpError(f"layer {name!r}: netx conv layers need a neuron")
            prev_shape = lif.shape
            idx += 1
    return path


def netx_obstacles(snn) -> list[str]:
    """What a netx file cannot hold of an integer spikeport SNN, layer by layer, with the nearest
    faithful form where one exists. Empty: the network exports exactly."""

    out = []
    for p in snn.populations:
        where = f"layer {p.name!r}"
        if p.kind == "maxpool":
            out.append(f"{where}: spikeport's spiking max-pool; netx has no max-pool block (nearest form: "
                       "--maxpool average, which netx holds as a pool block only for non-overlapping windows)")
            continue
        if any(pr.source == INPUT for pr in p.inputs):
            out.append(f"{where}: takes the analog input current W·x; netx's input layer adds its bias to v, where "
                       "it is not integrated, and has no per-sample current (nearest form: none; encode the input "
                       "as spikes upstream)")
        if np.any(p.bias):
            out.append(f"{where}: a bias current of up to {int(np.abs(p.bias).max())} units into u every step; netx "
                       "adds bias_mant << 6 to v, which a non-leaky IF built from Lava's LIF does not accumulate")
        if p.kind == "if":
            if any(isinstance(pr.synapse, ConvSynapse) for pr in p.inputs):
                out.append(f"{where}: reset by subtraction on a conv layer; netx conv blocks have no recurrent "
                           "connection and Lava's LIF resets to zero (nearest form: none)")
            elif int(p.threshold) > 256:
                out.append(f"{where}: reset by subtraction needs a recurrent weight of -{int(p.threshold)}; netx "
                           "holds weights in [-256, 254] (nearest form: dense_rec with weight_rec = -theta I, after "
                           "quantizing with thresholds of at most 256)")
        for pr in p.inputs:
            if pr.source != INPUT and int(np.abs(pr.effective_weight()).max()) > 254:
                out.append(f"{where}: weights up to {int(np.abs(pr.effective_weight()).max())} from {pr.source!r}; "
                           "netx weights are integers in [-256, 254]")
    return out
