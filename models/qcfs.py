"""The QCFS activation (Bu et al., ICLR 2022): ``lam * clip(floor(z*L/lam + 1/2)/L, 0, 1)``.

``lam`` is trained (straight-through gradient for the floor); after conversion it becomes the
IF neuron's threshold. ``mode="clip"`` evaluates the same network with unquantized activations
(``lam * clip(z/lam, 0, 1)``): the function the SNN converges to as T grows (docs/design.md).
The staircase itself is :func:`spikeport.toolchain.frontends.activations.staircase`, the formula the compiler uses.
``noise_std`` adds Gaussian noise to the activation in training (the NQ recipe uses it).
"""

from __future__ import annotations

import torch
from torch import nn

from spikeport.toolchain.ir.ann import staircase


class QCFS(nn.Module):
    def __init__(self, levels: int = 8, lam: float = 2.0) -> None:
        super().__init__()
        self.levels = int(levels)
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.mode = "quantized"  # or "clip"
        self.noise_std = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()  # under autocast: the staircase in float32, so its steps fall where they will in the SNN
        y = torch.clamp(x / self.lam, 0.0, 1.0)
        if self.mode == "quantized":
            q = staircase(y, self.levels)
            # straight-through estimator in training; the plain expression exports cleanly to ONNX
            y = y + (q - y).detach() if self.training else q
        out = y * self.lam
        if self.training and self.noise_std > 0:
            out = out + self.noise_std * torch.randn_like(out)
        return out

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lam={float(self.lam):.4f}"
