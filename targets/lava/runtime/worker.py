"""spikeport's Lava worker: builds a network of stock Lava processes from a package written by
``package.write_package`` (with the package's own loader), streams the samples through it with
``Loihi2SimCfg(select_tag="fixed_pt")`` and writes spikes and readout states back.

Runs in the Lava environment (Python 3.10, lava-nc 0.10, numpy < 2); imports neither torch nor
spikeport. Usage::

    python worker.py NET_FOLDER OUT_FOLDER

Input (NET_FOLDER): a spikeport Lava package (``network.json``, ``arrays.npz``; built with the
package's own loader, ``spikeport_lava.load``) plus ``run.json`` and ``samples.npz`` (the samples to
stream), or ``net.json`` and ``arrays.npz`` naming a netx file to run with lava-dl's netx. Arrays are
in PyTorch layout ((C, H, W) populations, flattened in that order); the loader converts them to
Lava's (X, Y, C) = (W, H, C).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build_and_run(net_dir, out_dir):
    """Load the package in ``net_dir`` with ``spikeport_lava.load`` (the loader users get), stream
    the samples of ``run.json`` / ``samples.npz`` through it and record what they ask for."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from recorders import SpikeRecorder, StateProbe
    from spikeport_lava import input_data, lava_shape, load

    with open(os.path.join(net_dir, "run.json")) as f:
        run = json.load(f)
    with np.load(os.path.join(net_dir, "samples.npz"), allow_pickle=False) as z:
        samples = {k: z[k] for k in z.files}
    steps, n = run["steps"], run["n_samples"]
    net = load(net_dir, steps=steps, n_samples=n, sample_ids=samples["sample_ids"])
    for layer, port in net.input_ports.items():
        data = input_data(net, samples[f"input.{layer}"], layer)
        fitted = np.zeros((*data.shape[:-1], steps), dtype=np.int32)  # the run's steps exactly: no replay
        k = min(steps, data.shape[-1])
        fitted[..., :k] = data[..., :k]
        RingBuffer(data=fitted).s_out.connect(port)
    if run["spikes_in"]:  # external spikes (steps, N) into the synapses whose source is "input"
        RingBuffer(data=np.ascontiguousarray(samples["spikes_in"].T.astype(np.int32))).s_out.connect(net.spikes_inp)

    files = {}
    for i, name in enumerate(run["record"]):
        path = os.path.join(out_dir, f"raw_spikes_{i}.npy")
        np.lib.format.open_memmap(path, mode="w+", dtype=np.int8, shape=(steps, len(net.orders[name])))
        rec = SpikeRecorder(shape=lava_shape(net.shapes[name]), path=path)
        net.layers[name].s_out.connect(rec.a_in)
        files[name] = path
    ro = net.spec["readout"]
    u_path = os.path.join(out_dir, "raw_readout_u.npy")
    np.lib.format.open_memmap(u_path, mode="w+", dtype=np.int32, shape=(steps, len(net.orders[ro])))
    StateProbe(var=net.readout.u, path=u_path)

    # the first step compiles the network and starts its process models; the rest is the run
    t0 = time.perf_counter()
    run_in_thread(net, RunSteps(num_steps=1), Loihi2SimCfg(select_tag="fixed_pt"), stop=steps == 1)
    t_start = time.perf_counter() - t0
    t0 = time.perf_counter()
    if steps > 1:
        run_in_thread(net, RunSteps(num_steps=steps - 1), Loihi2SimCfg(select_tag="fixed_pt"))
    t_run = time.perf_counter() - t0
    for i, (name, path) in enumerate(files.items()):
        raw = np.load(path)
        out = np.empty_like(raw)
        out[:, net.orders[name]] = raw
        np.save(os.path.join(out_dir, f"spikes_{i}.npy"), out)
        os.remove(path)
    raw = np.load(u_path)
    u = np.empty_like(raw)
    u[:, net.orders[ro]] = raw
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


def build_and_run_netx(spec, arrays, out_dir):
    """Load a .net file with lava-dl's own ``netx.hdf5.Network`` and run it."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from netx_import import import_netx
    from recorders import SpikeRecorder, StateProbe
    from spikeport_lava import lava_order

    netx = import_netx()
    kwargs = {"net_config": spec["path"]}
    if spec.get("reset_interval"):
        kwargs["reset_interval"] = spec["reset_interval"]
    if spec.get("num_layers"):
        kwargs["num_layers"] = spec["num_layers"]
    net = netx.hdf5.Network(**kwargs)
    steps = spec["steps"]
    biases = []  # one input-layer bias per sample (PyTorch flat -> Lava's (W, H, C))
    if spec.get("input_bias"):
        var = net.in_layer.neuron.bias_mant
        flat = arrays[spec["input_bias"]]
        for b in flat.reshape(-1, flat.shape[-1]).reshape(-1, *var.shape[::-1]):
            biases.append(b.transpose(2, 1, 0) if b.ndim == 3 else b)
        var.init = biases[0]
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
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    every = spec.get("sample_steps") or steps  # a new input-layer bias every this many steps
    done = 0
    for i in range(max(1, len(biases))):
        if i:
            net.in_layer.neuron.bias_mant.set(biases[i])
        run = steps - done if i == len(biases) - 1 or not biases else every
        run_in_thread(net, RunSteps(num_steps=run), cfg, stop=False)
        done += run
    net.stop()
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
        if os.path.isfile(os.path.join(net_dir, "network.json")):  # a spikeport Lava package
            info = build_and_run(net_dir, out_dir)
        else:
            with open(os.path.join(net_dir, "net.json")) as f:
                spec = json.load(f)
            if spec.get("format") != "spikeport-lava-netx/1":
                raise ValueError(f"{net_dir} holds neither a spikeport Lava package nor a netx run "
                                 f"(format {spec.get('format')!r})")
            with np.load(os.path.join(net_dir, "arrays.npz"), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            info = build_and_run_netx(spec, arrays, out_dir)
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
