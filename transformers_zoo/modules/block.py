"""Transformer block (self-attention, optional cross-attention, FFN, each in a residual) and the stack.

Encoder, decoder and decoder-only models are the same `TransformerStack` with two flags: `causal`
(queries see only the past) and `cross` (each block also attends to an encoder's memory).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import MultiHeadAttention, causal_mask
from .embedding import build_positional
from .ffn import build_ffn
from .kv_cache import KVCache
from .norm import build_norm
from .unpad import Unpadded


class TransformerBlock(nn.Module):
    """One layer: `x (B, T, D) -> (B, T, D)` through self-attention, cross-attention (if given) and FFN.

    Pre-norm (`norm_first=True`, GPT-2 and most modern models): `x + drop(f(norm(x)))`, stable without
    warm-up tricks. Post-norm (the original Transformer, BERT): `norm(x + drop(f(x)))`.
    """

    def __init__(self, self_attn: MultiHeadAttention, ffn: nn.Module, self_attn_norm: nn.Module,
                 ffn_norm: nn.Module, cross_attn: MultiHeadAttention | None = None,
                 cross_attn_norm: nn.Module | None = None, norm_first: bool = True, dropout: float = 0.0):
        super().__init__()
        self.self_attn, self.self_attn_norm = self_attn, self_attn_norm
        self.cross_attn, self.cross_attn_norm = cross_attn, cross_attn_norm
        self.ffn, self.ffn_norm = ffn, ffn_norm
        self.norm_first = norm_first
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None, is_causal: bool = False,
                bias: torch.Tensor | None = None, rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                cache=None, unpadded: Unpadded | None = None) -> torch.Tensor:
        """With `unpadded`, `x` is the batch's real tokens alone, `(N, D)` (see modules.unpad)."""
        if self.norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_norm(x), mask=mask, is_causal=is_causal, bias=bias,
                                                rotary=rotary, cache=cache, unpadded=unpadded))
            if self.cross_attn is not None:
                x = x + self.dropout(self.cross_attn(self.cross_attn_norm(x), memory, mask=memory_mask, cache=cache,
                                                     unpadded=unpadded))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))
        x = self.self_attn_norm(x + self.dropout(self.self_attn(x, mask=mask, is_causal=is_causal, bias=bias,
                                                                rotary=rotary, cache=cache, unpadded=unpadded)))
        if self.cross_attn is not None:
            x = self.cross_attn_norm(x + self.dropout(self.cross_attn(x, memory, mask=memory_mask, cache=cache,
                                                                      unpadded=unpadded)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


def build_block(cfg, cross: bool) -> TransformerBlock:
    """A block as `cfg` describes it; `cross` adds cross-attention (encoder-decoder decoder)."""

    def norm() -> nn.Module:
        return build_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias)

    def attention(is_cross: bool) -> MultiHeadAttention:
        return MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cross=is_cross, bias=cfg.bias,
                                  dropout=cfg.attention_dropout, head_dim=cfg.head_dim, scale=cfg.attention_scale,
                                  qkv_bias=cfg.qkv_bias)

    return TransformerBlock(
        self_attn=attention(False), ffn=build_ffn(cfg.ffn, cfg.d_model, cfg.ffn_dim, cfg.bias),
        self_attn_norm=norm(), ffn_norm=norm(),
        cross_attn=attention(True) if cross else None, cross_attn_norm=norm() if cross else None,
        norm_first=cfg.norm_first, dropout=cfg.dropout)


class TransformerStack(nn.Module):
    """Token embeddings `(B, T, D)` -> contextual vectors `(B, T, D)` through `n_layers` blocks.

    The stack owns its positional scheme and builds the masks once for all layers: the padding mask
    from `key_mask (B, T)` (True = real token), the causal mask when `causal` (within `cfg.sliding_window`
    when set), the positional bias (alibi / relative) and rotary angles (rope): a relative bias (T5) is
    computed once and shared by every layer. Pre-norm stacks end with a final norm; post-norm stacks
    normalise the embeddings instead (as BERT does), so every layer sees normalised input - unless
    `cfg.embedding_norm` says otherwise (False: Marian's post-norm stacks have none).
    """

    def __init__(self, cfg, n_layers: int, causal: bool, cross: bool = False):
        super().__init__()
        self.causal = causal
        self.window = cfg.sliding_window if causal else None
        self.positional = build_positional(cfg, causal)
        self.dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(build_block(cfg, cross) for _ in range(n_layers))
        embedding_norm = not cfg.norm_first if cfg.embedding_norm is None else cfg.embedding_norm
        self.final_norm = build_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias) if cfg.norm_first else None
        self.embed_norm = build_norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias) if embedding_norm else None
        self.unpad = True  # False: every position through every layer, padding included

    def forward(self, x: torch.Tensor, *, key_mask: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """`x (B, T, D)` embedded tokens; `key_mask (B, T)` True for real tokens (None: all real);
        `memory (B, S, D)` and `memory_mask (B, S)` for cross-attention; with `cache`, `x` holds only
        the new tokens, their keys/values are appended and the past is read from the cache."""
        B, T, D = x.shape
        if cache is None:
            if key_mask is None:
                positions = torch.arange(T, device=x.device)[None]  # (1, T)
            else:
                positions = (key_mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding starts at 0
            k_positions = positions
            padding = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
            offset = 0
        else:
            positions = cache.advance(T, key_mask)
            k_positions = cache.key_positions
            padding = cache.key_mask[:, None, None, :] if cache.padded else None
            offset = cache.length - T  # column of the first new token among all keys
            if memory_mask is None:
                memory_mask = cache.memory_mask
        bias = self.positional.bias(positions, k_positions)
        mask, is_causal = padding, False
        if self.causal:
            # a window shorter than the keys restricts the past; one that covers them all changes nothing
            window = self.window if self.window is not None and offset + T > self.window else None
            if mask is None and bias is None and offset == 0 and window is None:
                is_causal = True  # the kernel's own causal path: no mask tensor at all
            elif T > 1 or offset == 0 or window is not None:
                causal = causal_mask(T, offset, window, x.device)
                mask = causal if mask is None else mask & causal
        rotary = self.positional.rotary(positions)
        if rotary is not None and rotary[0].dtype != x.dtype:  # a model held in bf16 rotates in bf16 (transformers
            rotary = (rotary[0].to(x.dtype), rotary[1].to(x.dtype))  # does): no float32 copies of q, k per layer
        x = self.positional.add(x, positions)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        x = self.dropout(x)
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :]
        # no cache: the layers run on the real tokens alone when padding is a good share of the batch (modules.unpad)
        unpadded = Unpadded(key_mask) if cache is None and self.unpad and Unpadded.worth(key_mask, D) else None
        if unpadded is not None:
            x = unpadded.pack(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask=mask, is_causal=is_causal, bias=bias, rotary=rotary, memory=memory,
                      memory_mask=cross_mask, cache=None if cache is None else cache.layers[i], unpadded=unpadded)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return x if unpadded is None else unpadded.unpack(x)
