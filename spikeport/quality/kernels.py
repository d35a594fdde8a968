"""``spikeport bench --suite kernels``: one convolution or matrix product at a time, on the float32
kernels the float simulators use and on the int8 kernels ``sim`` uses where the CPU has int8
dot-product instructions (``targets.int8_kernels``), with their results compared.

The shapes are ResNet-18's (CIFAR stem, 28x28 input) and a VGG-style classifier's, at 512 images:
a batch of 64 samples times 8 steps, what ``sim`` hands one synapse per chunk. Inputs are 0/1
spikes at 10 % density; weights are Lava's 8-bit mixed-sign mantissas (even, -256..254).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spikeport.quality.perf import best_time
from spikeport.targets.int8_kernels import Int8Conv, Int8Linear, byte_form, describe

# (name, input channels, image, output channels, kernel, stride); kernel 0: a matrix product
SHAPES = [("conv 64x28x28 -> 64, 3x3", 64, 28, 64, 3, 1), ("conv 64x28x28 -> 128, 3x3 / 2", 64, 28, 128, 3, 2),
          ("conv 128x14x14 -> 128, 3x3", 128, 14, 128, 3, 1), ("conv 256x7x7 -> 256, 3x3", 256, 7, 256, 3, 1),
          ("conv 512x4x4 -> 512, 3x3", 512, 4, 512, 3, 1), ("conv 64x28x28 -> 128, 1x1 / 2", 64, 28, 128, 1, 2),
          ("matrix 4096 -> 512", 4096, 1, 512, 0, 1), ("matrix 512 -> 10", 512, 1, 10, 0, 1)]


def bench_kernels(images: int = 512, density: float = 0.1, repeat: int = 3,
                  log: Callable[[str], None] = lambda s: None) -> dict:
    rng = np.random.default_rng(0)
    rows = []
    for name, cin, hw, cout, k, stride in SHAPES:
        log(f"kernels: {name}")
        w = rng.integers(-128, 128, (cout, cin, k, k) if k else (cout, cin)) * 2
        wf = torch.as_tensor(w, dtype=torch.float32)
        if k:
            x = torch.as_tensor(rng.random((images, cin, hw, hw)) < density).contiguous(
                memory_format=torch.channels_last)
            xf = x.to(torch.float32)
            wf = wf.contiguous(memory_format=torch.channels_last)
            pad = k // 2

            def as_float(xf=xf, wf=wf, stride=stride, pad=pad):
                return F.conv2d(xf, wf, None, stride, pad)

            kernel = Int8Conv(*byte_form(w), (stride, stride), (pad, pad), (1, 1), 1)  # the kernel itself, unadmitted
        else:
            x = torch.as_tensor(rng.random((images, cin)) < density)
            xf = x.to(torch.float32)

            def as_float(xf=xf, wf=wf):
                return xf @ wf.T

            kernel = Int8Linear(*byte_form(w))  # (below LINEAR_MIN_WEIGHTS sim keeps float32)
        t_float, want = best_time(as_float, repeat)
        t_int8, got = best_time(lambda kernel=kernel, x=x: kernel(x), repeat)
        rows.append({"kernel": name, "float32_ms": 1e3 * t_float, "int8_ms": 1e3 * t_int8,
                     "speedup": t_float / t_int8, "equal": bool(torch.equal(got, want))})
    return {"images": images, "density": density, "threads": torch.get_num_threads(), "sim_uses": describe(),
            "rows": rows}


def kernels_table(res: dict) -> str:
    lines = [f"{res['images']} images of 0/1 spikes at {100 * res['density']:.0f} % density, "
             f"{res['threads']} threads; sim's synapse kernels here: {res['sim_uses']}", "",
             "| kernel | float32 (oneDNN) | int8 (oneDNN u8 x s8) | speed-up | same integers |",
             "|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['kernel']} | {r['float32_ms']:.1f} ms | {r['int8_ms']:.1f} ms | {r['speedup']:.2f}x | "
                     f"{'yes' if r['equal'] else 'NO'} |")
    return "\n".join(lines)
