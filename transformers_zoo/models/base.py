"""What every model family shares: weight initialisation, the padding mask convention, the output logits."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..modules import FeedForward, GatedFeedForward, MultiHeadAttention


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor | None:
    """`(B, T)` True for real tokens, or None when nothing is padding (so kernels take their fast path)."""
    mask = ids != pad_id
    return None if bool(mask.all()) else mask


def output_logits(lm_head: nn.Module, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Logits `(..., V)` of final hidden states `h (..., D)`, scaled first when `scale` != 1 (T5's
    d_model**-0.5 with tied embeddings, `ModelConfig.scale_output`)."""
    return lm_head(h if scale == 1.0 else h * scale)


def init_weights(model: nn.Module, n_layers: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) for matrices, zero biases, and the projections that write
    into the residual stream scaled by 1/sqrt(2 * n_layers) so its variance does not grow with depth."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    residual_std = 0.02 / math.sqrt(2 * max(n_layers, 1))
    for module in model.modules():
        if isinstance(module, MultiHeadAttention):
            nn.init.normal_(module.out.weight, std=residual_std)
        elif isinstance(module, (FeedForward, GatedFeedForward)):
            nn.init.normal_(module.down.weight, std=residual_std)
