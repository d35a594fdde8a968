"""Run this netx export (``network.net``) with lava-dl's own loader on its example inputs, in Lava's
bit-accurate CPU simulator, and print the predictions. Needs lava-nc 0.10, lava-dl 0.6 and numpy::

    python run_netx_example.py [--save OUT.npz]

Samples are streamed: sample i sets the input layer's bias at step i * T + 1; layer k (the input
layer is 1) takes it from step i * T + k; the readout's ``v >> 6`` at step i * T + depth + T - 1
is the sample's summed logits. ``--save`` also writes ``readout_v`` and every layer's spikes
(steps, N) in PyTorch order ((C, H, W) flattened).
"""

import os
import sys

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.monitor.process import Monitor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from netx_import import import_netx  # noqa: E402


def torch_order(lava_shape):
    """Lava flat position -> PyTorch flat index, for a Lava (W, H, C) or (N,) shape."""
    n = int(np.prod(lava_shape))
    return np.arange(n) if len(lava_shape) == 1 else np.arange(n).reshape(lava_shape[::-1]).transpose(2, 1, 0).ravel()


def main():
    ex = np.load(os.path.join(HERE, "example_inputs.npz"))
    T, bias, y = int(ex["T"]), ex["input_bias"], ex["y"]   # bias: (n, N), PyTorch order
    netx = import_netx()
    net = netx.hdf5.Network(net_config=os.path.join(HERE, "network.net"), reset_interval=T)
    depth = len(net.layers)
    steps = (len(y) - 1) * T + depth + T - 1
    readout = net.layers[-1].neuron
    monitors = {"readout": Monitor()}
    monitors["readout"].probe(readout.v, steps)
    if "--save" in sys.argv:
        for k, block in enumerate(net.layers[:-1]):
            monitors[k] = Monitor()
            monitors[k].probe(block.neuron.s_out, steps)
    var = net.in_layer.neuron.bias_mant

    def lava_bias(i):  # PyTorch (C, H, W) flat -> the input layer's Lava (W, H, C)
        return bias[i].reshape(var.shape[::-1]).T

    var.init = lava_bias(0)
    cfg, done = Loihi2SimCfg(select_tag="fixed_pt"), 0
    for i in range(len(y)):
        if i:
            var.set(lava_bias(i))                           # the next sample's input current
        run = T if i < len(y) - 1 else steps - done
        net.run(condition=RunSteps(num_steps=run), run_cfg=cfg)
        done += run
    v = monitors["readout"].get_data()[readout.name]["v"].reshape(steps, -1).astype(np.int64)
    saved = {"readout_v": v}
    for k, mon in monitors.items():
        if k != "readout":
            proc = net.layers[k].neuron
            data = mon.get_data()[proc.name]["s_out"].reshape(steps, -1)
            out = np.empty_like(data)
            out[:, torch_order(proc.s_out.shape)] = data
            saved[f"spikes.{k}"] = out.astype(np.uint8)
    net.stop()
    logits = v[[i * T + depth + T - 2 for i in range(len(y))]] >> 6
    pred = logits.argmax(axis=1)
    print(f"predictions {pred.tolist()}\nlabels      {y.tolist()}\naccuracy    {(pred == y).mean():.3f}\n"
          f"equal to spikeport's sim on this file: {bool(np.array_equal(logits, ex['expected_logits']))}", flush=True)
    if "--save" in sys.argv:
        np.savez(sys.argv[sys.argv.index("--save") + 1], predictions=pred, **saved)


if __name__ == "__main__":  # Lava starts its process models in fresh interpreters that import this module
    main()
