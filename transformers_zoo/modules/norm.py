"""Normalization layers: LayerNorm and RMSNorm, chosen by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# The registry of norms, and the only place to add one: name -> a builder from (d_model, eps, bias).
# `ModelConfig` validates `norm` against its keys; `--norm` offers them.
NORMS: dict[str, Callable[[int, float, bool], nn.Module]] = {
    "layernorm": lambda d_model, eps, bias: nn.LayerNorm(d_model, eps=eps, bias=bias),
    "rmsnorm": lambda d_model, eps, bias: nn.RMSNorm(d_model, eps=eps),  # (it has no bias)
}


def build_norm(kind: str, d_model: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """A norm over the last dim of `(..., d_model)`.

    `layernorm` centres and scales (with a bias when `bias`); `rmsnorm` only rescales by the root mean
    square (Zhang & Sennrich 2019), which is cheaper and what LLaMA-style models use.
    """
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of: {', '.join(NORMS)}")
    return NORMS[kind](d_model, eps, bias)
