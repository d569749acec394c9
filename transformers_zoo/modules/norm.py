"""Normalization layers: LayerNorm and RMSNorm, chosen by name."""

from __future__ import annotations

from torch import nn


def build_norm(kind: str, d_model: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    """A norm over the last dim of `(..., d_model)`.

    `layernorm` centres and scales (with a bias when `bias`); `rmsnorm` only rescales by the root mean
    square (Zhang & Sennrich 2019), which is cheaper and what LLaMA-style models use.
    """
    if kind == "layernorm":
        return nn.LayerNorm(d_model, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose one of: {', '.join(NORMS)}")


NORMS = ("layernorm", "rmsnorm")
