"""Run this package on its example inputs in Lava's bit-accurate CPU simulator and print the
predictions. Needs lava-nc 0.10 and numpy only::

    python run_example.py [--save OUT.npz]

``--save`` also writes the readout's u and every layer's spikes (steps, N), PyTorch order.
"""

import os
import sys

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.source import RingBuffer
from lava.proc.monitor.process import Monitor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from spikeport_lava import encode, input_data, load, predictions, to_torch_order  # noqa: E402


def main():
    examples = np.load(os.path.join(HERE, "example_inputs.npz"))
    x, y = examples["x"], examples["y"]
    net = load(HERE)                                    # the network as one Lava process
    currents = encode(net, x)                           # images -> integer input currents, per input layer
    for layer, port in net.input_ports.items():         # sample i from step i * period + 1
        RingBuffer(data=input_data(net, currents[layer], layer)).s_out.connect(port)
    steps = (len(x) - 1) * net.period + net.spec["frame"]
    monitors = {"readout": Monitor()}
    monitors["readout"].probe(net.readout.u, steps)
    if "--save" in sys.argv:
        for name, proc in net.layers.items():
            if proc is not net.readout:
                monitors[name] = Monitor()
                monitors[name].probe(proc.s_out, steps)
    net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    u = monitors["readout"].get_data()[net.readout.name]["u"].reshape(steps, -1).astype(np.int64)
    saved = {"readout_u": u}
    for name, mon in monitors.items():
        if name != "readout":
            data = mon.get_data()[net.layers[name].name]["s_out"].reshape(steps, -1)
            saved[f"spikes.{name}"] = to_torch_order(net, name, data).astype(np.uint8)
    net.stop()
    pred = predictions(net, u, len(x))
    print(f"predictions {pred.tolist()}\nlabels      {y.tolist()}\naccuracy    {(pred == y).mean():.3f}", flush=True)
    if "--save" in sys.argv:
        np.savez(sys.argv[sys.argv.index("--save") + 1], predictions=pred, **saved)


if __name__ == "__main__":  # Lava starts its process models in fresh interpreters that import this module
    main()
