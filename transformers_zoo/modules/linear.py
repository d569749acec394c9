"""``Linear``: ``nn.Linear`` whose one-row product in bfloat16 on a CPU is a matrix-vector product.

Why: a decoding step at batch 1 multiplies one row by every weight matrix, so its speed is the rate at which the
weights stream from memory. ATen sends a ``(1, in)`` bfloat16 input of ``F.linear`` through a matrix-matrix
kernel that streamed the weights at about half the rate ``torch.mv`` does on this machine (a 49,152 x 576 output
layer: 7.5 ms against 2.9 ms warm, 4.9 ms cold; one core), so a bfloat16 decoding step took no less time than a
float32 one. Everything else (more rows, other dtypes, other devices) is ``F.linear`` unchanged: the same module,
the same state dict, the same numbers as ``nn.Linear`` up to float rounding in the order of the sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Linear", "linear"]


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``; one row of bfloat16 on the CPU through ``torch.mv``."""
    if (x.dtype == torch.bfloat16 and weight.dtype == torch.bfloat16 and x.device.type == "cpu"
            and x.numel() == weight.shape[1] and weight.dim() == 2):
        y = torch.mv(weight, x.reshape(-1)).reshape(*x.shape[:-1], weight.shape[0])
        return y if bias is None else y + bias
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters and state dict) through :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
