"""spikeport's Lava worker: builds a network of stock Lava processes from a folder written by
``netfile.write_net``, streams the samples through it with ``Loihi2SimCfg(select_tag="fixed_pt")``
and writes spikes and readout states back.

Runs in the Lava environment (Python 3.10, lava-nc 0.10, numpy < 2); imports neither torch nor
spikeport. Usage::

    python worker.py NET_FOLDER OUT_FOLDER

Input (NET_FOLDER): ``net.json`` and ``arrays.npz``; arrays are in PyTorch layout ((C, H, W)
populations, flattened in that order), this worker converts them to Lava's (X, Y, C) = (W, H, C).
Output (OUT_FOLDER): ``spikes_<i>.npy`` (steps, N) int8 in PyTorch order for the i-th recorded
population, ``readout_u.npy`` (steps, n_out) int32, and ``done.json`` with timings; on failure
``error.json`` with the error (including exceptions raised inside Lava's process models) and exit
status 1.
"""

import json
import os
import sys
import time
import traceback

import numpy as np
from scipy import sparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


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


def source_data(src, spec, arrays, n):
    """Ring-buffer contents: each sample's window of the source's pattern (its window steps, then
    the flush step; ``CurrentSource.pattern``), plus the sample's input current in the window
    steps, at steps i * period + start ..; 0 elsewhere."""
    P, steps = spec["period"], spec["steps"]
    pattern = arrays[src["pattern"]].T  # (N, L + 1)
    L = pattern.shape[1] - 1
    per_sample = arrays[src["per_sample"]] if src["per_sample"] else None
    data = np.zeros((n, steps), dtype=np.int64)
    for i in range(spec["n_samples"]):
        first = i * P + src["start"]  # 1-based step of the window's first step
        cur = pattern.copy()
        if per_sample is not None:
            cur[:, :L] += per_sample[i][:, None]
        last = min(first + L, steps)
        data[:, first - 1:last] = cur[:, :last - first + 1]
    if np.abs(data).max(initial=0) >= 2 ** 31:
        raise ValueError(f"source {src['name']}: a current does not fit int32")
    return data.astype(np.int32)


def build_and_run(spec, arrays, out_dir):
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF, LIFReset
    from lava.proc.sparse.process import DelaySparse, Sparse
    from lava.utils.weightutils import SignMode
    from neuron_procs import COSNeuron, MaxPoolGate, TPPNeuron  # spikeport's own, CPU-only
    from recorders import SpikeRecorder, StateProbe

    sign_modes = {"mixed": SignMode.MIXED, "exc": SignMode.EXCITATORY, "inh": SignMode.INHIBITORY}
    steps = spec["steps"]
    shapes, orders, lifs = {}, {}, {}
    for p in spec["lifs"]:
        shape = tuple(p["shape"])
        shapes[p["name"]], orders[p["name"]] = shape, lava_order(shape)
        if p["kind"] == "cos":
            lifs[p["name"]] = COSNeuron(shape=lava_shape(shape), theta=p["theta"], v_init=p["v_init"], rho=p["rho"],
                                        S=p["S"], start=p["start"], period=p["period"], name=p["name"])
            continue
        if p["kind"] == "tpp":
            lifs[p["name"]] = TPPNeuron(shape=lava_shape(shape), theta=p["theta"], v_init=p["v_init"], T=p["T"],
                                        start=p["start"], period=p["period"], seed=p["seed"], layer=p["layer"],
                                        neuron_ids=orders[p["name"]], sample_ids=arrays["sample_ids"],
                                        name=p["name"])
            continue
        if p["kind"] == "maxpool":  # wired straight to its source's s_out
            src = p["src"]
            lifs[p["name"]] = MaxPoolGate(in_shape=lava_shape(shapes[src]), shape=lava_shape(shape),
                                          index=arrays[p["index"]], in_order=orders[src],
                                          out_order=orders[p["name"]], start=p["start"], period=p["period"],
                                          length=p["length"], name=p["name"])
            lifs[src].s_out.connect(lifs[p["name"]].s_in)
            continue
        kwargs = dict(shape=lava_shape(shape), du=p["du"], dv=p["dv"], vth=p["vth"], bias_exp=p["bias_exp"],
                      name=p["name"])
        bias = p["bias_mant"]
        kwargs["bias_mant"] = (arrays[bias][orders[p["name"]]].reshape(lava_shape(shape))
                               if isinstance(bias, str) else bias)
        if p["reset_interval"]:
            lifs[p["name"]] = LIFReset(reset_interval=p["reset_interval"], reset_offset=p["reset_offset"], **kwargs)
        else:
            lifs[p["name"]] = LIF(**kwargs)

    if spec.get("spikes_in"):  # external spikes (steps, N) into the synapses whose source is "input"
        data = arrays["spikes_in"]
        shapes["input"], orders["input"] = (data.shape[1],), np.arange(data.shape[1])
        lifs["input"] = RingBuffer(data=np.ascontiguousarray(data.T.astype(np.int32)))

    def out_port(name):
        port = lifs[name].s_out
        return port.flatten() if len(shapes[name]) > 1 else port

    for s in spec["synapses"]:
        src, dst = s["src"], s["dst"]
        if s["kind"] == "conv":
            w = arrays[s["weight"]][:, :, ::-1, ::-1].transpose(0, 3, 2, 1)  # -> (C_out, kW, kH, C_in/g), flipped
            conv = Conv(weight=np.ascontiguousarray(w), input_shape=lava_shape(tuple(s["in_shape"])),
                        padding=tuple(s["padding"][::-1]), stride=tuple(s["stride"][::-1]),
                        dilation=tuple(s["dilation"][::-1]), groups=s["groups"], name=s["name"])
            lifs[src].s_out.connect(conv.s_in)
            conv.a_out.connect(lifs[dst].a_in)
            continue
        w = load_array(arrays, s["weights"])
        w = w[orders[dst]][:, orders[src]]  # rows and columns into Lava's flat order
        kwargs = dict(weight_exp=s["weight_exp"], num_weight_bits=s["num_weight_bits"], name=s["name"])
        if s["sign_mode"]:
            kwargs["sign_mode"] = sign_modes[s["sign_mode"]]
        if s.get("num_message_bits"):
            kwargs["num_message_bits"] = s["num_message_bits"]
        if s["max_delay"] > 0:  # one delay for all, or one per synapse (PyTorch order, like the weights)
            w = sparse.csr_matrix(w)
            delays = w.copy().astype(int)
            if isinstance(s["delay"], str):
                per = arrays[s["delay"]][orders[dst]][:, orders[src]]
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
        out_port(src).connect(syn.s_in)
        syn.a_out.reshape(lava_shape(shapes[dst])).connect(lifs[dst].a_in)

    for src in spec["sources"]:
        dst = src["dst"]
        data = source_data(src, spec, arrays, len(orders[dst]))[orders[dst]]
        ring = RingBuffer(data=data.reshape(*lava_shape(shapes[dst]), steps))
        ring.s_out.connect(lifs[dst].a_in)

    files = {}
    for i, name in enumerate(spec["record"]):
        path = os.path.join(out_dir, f"raw_spikes_{i}.npy")
        np.lib.format.open_memmap(path, mode="w+", dtype=np.int8, shape=(steps, len(orders[name])))
        rec = SpikeRecorder(shape=lava_shape(shapes[name]), path=path)
        lifs[name].s_out.connect(rec.a_in)
        files[name] = path
    ro = spec["readout"]
    u_path = os.path.join(out_dir, "raw_readout_u.npy")
    np.lib.format.open_memmap(u_path, mode="w+", dtype=np.int32, shape=(steps, len(orders[ro])))
    StateProbe(var=lifs[ro].u, path=u_path)

    anchor = lifs[ro]
    # the first step compiles the network and starts its process models; the rest is the run
    t0 = time.perf_counter()
    run_in_thread(anchor, RunSteps(num_steps=1), Loihi2SimCfg(select_tag="fixed_pt"), stop=steps == 1)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    if steps > 1:
        run_in_thread(anchor, RunSteps(num_steps=steps - 1), Loihi2SimCfg(select_tag="fixed_pt"))
    t_run = time.perf_counter() - t0
    for i, (name, path) in enumerate(files.items()):
        raw = np.load(path)
        out = np.empty_like(raw)
        out[:, orders[name]] = raw
        np.save(os.path.join(out_dir, f"spikes_{i}.npy"), out)
        os.remove(path)
    raw = np.load(u_path)
    u = np.empty_like(raw)
    u[:, orders[ro]] = raw
    np.save(os.path.join(out_dir, "readout_u.npy"), u)
    os.remove(u_path)
    return {"run_seconds": t_run, "startup_seconds": t_start, "steps": steps}


def run_in_thread(anchor, condition, cfg, stop=True):
    """Run Lava and watch its actors: an exception inside a process model makes Lava 0.10 wait
    forever (seen with DelaySparse rejecting a delay), so the error is read off the actor that
    raised it and the run is abandoned (the toolchain kills the whole process group)."""
    import threading

    failure = []

    def target():
        try:
            anchor.run(condition=condition, run_cfg=cfg)
        except BaseException as exc:  # surfaced below, in the main thread
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        text = lava_exception_text(anchor)
        if text:
            raise RuntimeError(f"a Lava process model raised: {text}")
    if failure:
        raise RuntimeError(lava_exception_text(anchor) or str(failure[0])) from failure[0]
    if stop:
        anchor.stop()


def import_netx():
    """lava-dl's netx needs torch only through imports; the Lava environment has no torch, so
    empty stand-ins are registered for the modules netx imports but the CUBA path never uses."""
    import types

    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules.setdefault(name, module)
        return sys.modules[name]

    try:
        import torch  # noqa: F401
    except ImportError:
        stub("torch", Tensor=object, tensor=object, nn=stub("torch.nn", Module=object))
        stub("lava.lib.dl.slayer")
        stub("lava.lib.dl.slayer.neuron")
        stub("lava.lib.dl.slayer.neuron.rf", neuron_params=lambda *a, **k: {})
    from lava.lib.dl import netx
    return netx


def build_and_run_netx(spec, arrays, out_dir):
    """Load a .net file with lava-dl's own ``netx.hdf5.Network`` and run it."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from recorders import SpikeRecorder, StateProbe

    netx = import_netx()
    kwargs = {"net_config": spec["path"]}
    if spec.get("reset_interval"):
        kwargs["reset_interval"] = spec["reset_interval"]
    if spec.get("num_layers"):
        kwargs["num_layers"] = spec["num_layers"]
    net = netx.hdf5.Network(**kwargs)
    steps = spec["steps"]
    if spec.get("input_bias"):
        shape = net.in_layer.neuron.bias_mant.shape
        net.in_layer.neuron.bias_mant.init = arrays[spec["input_bias"]].reshape(shape[::-1]).transpose(2, 1, 0)
    if spec.get("spikes_in"):
        RingBuffer(data=arrays[spec["spikes_in"]].astype(np.int32)).s_out.connect(net.inp)
    files = []
    for i, block in enumerate(net.layers):
        shape = tuple(block.neuron.s_out.shape)
        n = int(np.prod(shape))
        path = os.path.join(out_dir, f"raw_spikes_{i}.npy")
        np.lib.format.open_memmap(path, mode="w+", dtype=np.int8, shape=(steps, n))
        rec = SpikeRecorder(shape=shape, path=path)
        block.out.connect(rec.a_in)
        entry = {"spikes": path, "shape": list(shape[::-1])}
        if spec.get("record_state"):
            for var in ("u", "v"):
                vpath = os.path.join(out_dir, f"raw_{var}_{i}.npy")
                np.lib.format.open_memmap(vpath, mode="w+", dtype=np.int32, shape=(steps, n))
                StateProbe(var=getattr(block.neuron, var), path=vpath)
                entry[var] = vpath
        files.append(entry)
    t0 = time.perf_counter()
    run_in_thread(net, RunSteps(num_steps=steps), Loihi2SimCfg(select_tag="fixed_pt"))
    t_run = time.perf_counter() - t0
    for i, entry in enumerate(files):
        order = lava_order(tuple(entry["shape"]))
        for key in ("spikes", "u", "v"):
            if key in entry:
                raw = np.load(entry[key])
                out = np.empty_like(raw)
                out[:, order] = raw
                np.save(os.path.join(out_dir, f"{key}_{i}.npy"), out)
                os.remove(entry[key])
    return {"run_seconds": t_run, "steps": steps, "layers": len(files)}


def lava_exception_text(proc):
    """Lava reports 'N Exception(s) occurred'; the tracebacks sit on its actors (private API)."""
    try:
        actors = proc._runtime._messaging_infrastructure.actors
    except AttributeError:
        return ""
    texts = []
    for actor in actors:
        exc = getattr(actor, "exception", None)  # (exception, traceback text) once a model raised
        if exc:
            err = exc[0] if isinstance(exc, tuple) else exc
            texts.append(f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")
    return " | ".join(texts)


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    net_dir, out_dir = argv[1], argv[2]
    os.makedirs(out_dir, exist_ok=True)
    try:
        with open(os.path.join(net_dir, "net.json")) as f:
            spec = json.load(f)
        if spec.get("format") not in ("spikeport-lava-net/1", "spikeport-lava-netx/1"):
            raise ValueError(f"{net_dir}/net.json is not a spikeport Lava network (format {spec.get('format')!r})")
        with np.load(os.path.join(net_dir, "arrays.npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        run = build_and_run_netx if spec["format"] == "spikeport-lava-netx/1" else build_and_run
        info = run(spec, arrays, out_dir)
    except BaseException as exc:  # report everything, including KeyboardInterrupt, then fail
        with open(os.path.join(out_dir, "error.json"), "w") as f:
            json.dump({"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}, f)
        print(traceback.format_exc(), file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)  # Lava may still hold non-daemon threads and children; the caller kills the group
    with open(os.path.join(out_dir, "done.json"), "w") as f:
        json.dump(info, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
