"""Position-wise feed-forward networks: relu / gelu / silu / gelu_tanh (two matrices) and swiglu / geglu /
geglu_tanh (gated, three).

`gelu` is the exact (erf) GELU of BERT; `gelu_tanh` its tanh approximation, GPT-2's and T5 v1.1's "gelu_new"."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .linear import Linear


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation (GPT-2's and T5 v1.1's "gelu_new")."""
    return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """`down(act(up(x)))`, the FFN of the original Transformer (relu), BERT/BART (gelu), GPT-2 (gelu_tanh)
    and Marian/opus-mt (silu, "swish").

    Shapes: `(..., d_model) -> (..., d_model)` through a hidden width `d_ff`.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu", bias: bool = True):
        super().__init__()
        self.act = FFNS[activation][1]
        self.up = Linear(d_model, d_ff, bias=bias)
        self.down = Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


class GatedFeedForward(nn.Module):
    """`down(act(gate(x)) * up(x))` (Shazeer 2020, "GLU Variants Improve Transformer").

    swiglu uses SiLU as the gate's activation (LLaMA), geglu uses GELU, geglu_tanh its tanh approximation
    (T5 v1.1's "gated-gelu"). The gate and up projections
    are one matrix so the input is read once.
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "swiglu", bias: bool = True):
        super().__init__()
        self.act = FFNS[activation][1]
        self.gate_up = Linear(d_model, 2 * d_ff, bias=bias)
        self.down = Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.act(gate) * up)


# The registry of FFN variants, and the only place to add one: name -> (module, activation).
# `ModelConfig` validates `ffn` against it and sizes gated ones (`is_gated`) at 2/3 width; `--ffn` offers its keys.
FFNS: dict[str, tuple[type[nn.Module], Callable[[torch.Tensor], torch.Tensor]]] = {
    "relu": (FeedForward, F.relu), "gelu": (FeedForward, F.gelu), "swiglu": (GatedFeedForward, F.silu),
    "geglu": (GatedFeedForward, F.gelu), "silu": (FeedForward, F.silu), "gelu_tanh": (FeedForward, gelu_tanh),
    "geglu_tanh": (GatedFeedForward, gelu_tanh)}


def is_gated(kind: str) -> bool:
    """Whether the FFN `kind` has a gate (three matrices: `ModelConfig.ffn_dim` sizes it at 2/3 width)."""
    return FFNS[kind][0] is GatedFeedForward


def build_ffn(kind: str, d_model: int, d_ff: int, bias: bool = True) -> nn.Module:
    if kind not in FFNS:
        raise ValueError(f"unknown ffn {kind!r}; choose one of: {', '.join(FFNS)}")
    return FFNS[kind][0](d_model, d_ff, activation=kind, bias=bias)
