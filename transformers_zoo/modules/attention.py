"""Multi-head scaled dot-product attention: self or cross, MHA / GQA / MQA, masks, bias, rope, KV cache.

Mask convention (everywhere in the package): boolean, True = may attend, broadcastable to
`(B, H, Tq, Tk)`. A query row with nothing to attend to yields zeros, never NaN.

Two kernels compute the same thing:
- `torch.nn.functional.scaled_dot_product_attention` (fused on CUDA, fast on CPU): the default;
- `reference_attention`: the plain softmax(QK^T / sqrt(d) + bias) V, which can return the weights.
Both take `scale` for models that scale the scores otherwise (None: 1/sqrt(d); T5: 1).
`causal_mask` builds the causal mask of queries appended after cached keys, with a sliding window
as a variant (Mistral). Set `module.store_weights = True` (or use `record_attention(model)`) to run the
reference path and keep the weights `(B, H, Tq, Tk)` in `module.weights`, for plots and tests.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .embedding import apply_rotary
from .kv_cache import LayerCache
from .linear import Linear
from .unpad import Unpadded

#: whether scaled_dot_product_attention takes ``enable_gqa`` (torch >= 2.5)
GQA_KERNEL = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def _expand_kv(k: torch.Tensor, n_heads: int) -> torch.Tensor:
    """`(B, H_kv, T, hd)` -> `(B, H, T, hd)`: each key/value head serves H / H_kv query heads (GQA)."""
    groups = n_heads // k.shape[1]
    return k if groups == 1 else k.repeat_interleave(groups, dim=1)


def causal_mask(t: int, offset: int = 0, window: int | None = None, device: torch.device | str | None = None
                ) -> torch.Tensor:
    """Boolean `(t, offset + t)`: which keys each of `t` new queries may attend, the queries being the last
    `t` of `offset + t` positions (`offset` keys already cached). Query i (at index offset + i) sees the keys
    at indices `(offset + i - window, offset + i]` (`window` None: every key up to itself)."""
    q_index = offset + torch.arange(t, device=device)[:, None]
    k_index = torch.arange(offset + t, device=device)[None, :]
    mask = k_index <= q_index
    return mask if window is None else mask & (k_index > q_index - window)


def _prepare(mask: torch.Tensor | None, bias: torch.Tensor | None, dtype: torch.dtype
             ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Combine a boolean mask and a float bias into one SDPA `attn_mask`, and the rows that are valid.

    Fully masked rows are unmasked for the kernel (so softmax stays finite, forward and backward)
    and zeroed afterwards through the returned `valid (.., Tq, 1)`; None when no row needs it.
    """
    valid = None
    if mask is not None:
        valid = mask.any(dim=-1, keepdim=True)
        if valid.device.type == "cpu" and bool(valid.all()):  # no row to zero: spare a pass over the output
            valid = None  # (asked on CPU only: on a GPU the question would wait for the kernels queued before)
        else:
            mask = mask | ~valid
    if bias is None:
        return mask, valid
    bias = bias.to(dtype)
    if mask is not None:
        bias = bias.masked_fill(~mask, torch.finfo(dtype).min)
    return bias, valid


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                        bias: torch.Tensor | None = None, is_causal: bool = False, dropout_p: float = 0.0,
                        scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scale + bias) v, written out (scale None: 1/sqrt(hd)). `q (B, H, Tq, hd)`,
    `k, v (B, H_kv, Tk, hd)`.

    Returns `(out (B, H, Tq, hd), weights (B, H, Tq, Tk))`; masked-out weights are exactly 0.
    """
    k, v = _expand_kv(k, q.shape[1]), _expand_kv(v, q.shape[1])
    scores = q @ k.transpose(-2, -1)
    scores = scores / math.sqrt(q.shape[-1]) if scale is None else scores * scale
    if is_causal:
        causal = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        mask = causal if mask is None else mask & causal
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
        valid = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~valid, 0.0)  # a row with nothing to attend to: finite, zeroed below
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~valid, 0.0)
    if dropout_p:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                    bias: torch.Tensor | None = None, is_causal: bool = False, dropout_p: float = 0.0,
                    scale: float | None = None) -> torch.Tensor:
    """The same as `reference_attention` through PyTorch's fused kernel (no weights returned)."""
    if q.shape[2] == 1 and k.shape[1] != q.shape[1] and GQA_KERNEL and mask is None and bias is None:
        # one decoding step under GQA: the kernel reads each cached key/value head for its group of query heads,
        # where expanding them would copy the whole cache every step (2x faster at SmolLM2's 9 / 3 heads)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale, enable_gqa=True)
    k, v = _expand_kv(k, q.shape[1]), _expand_kv(v, q.shape[1])
    if is_causal and (mask is not None or bias is not None):
        causal = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril()
        mask = causal if mask is None else mask & causal
        is_causal = False
    attn_mask, valid = _prepare(mask, bias, q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                         is_causal=is_causal and q.shape[2] > 1, scale=scale)
    return out if valid is None else out.masked_fill(~valid, 0.0)


class MultiHeadAttention(nn.Module):
    """Multi-head attention over `x (B, T, d_model)`, returning `(B, T, d_model)`.

    Self-attention projects q, k, v from `x` with one matrix; cross-attention (`cross=True`) projects q
    from `x` and k, v from `memory (B, S, d_model)` - once per source when a cache is given.
    `n_kv_heads` < `n_heads` shares each key/value head among a group of query heads (GQA; 1 = MQA).
    `head_dim` defaults to d_model / n_heads (T5 sets it apart); `scale` multiplies the scores
    (None: 1/sqrt(head_dim)). `bias` is for every projection; `qkv_bias` (None: as `bias`) overrides it for
    the input projections (Qwen2 has biases on q, k, v only).
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, *, cross: bool = False,
                 bias: bool = True, dropout: float = 0.0, head_dim: int | None = None, scale: float | None = None,
                 qkv_bias: bool | None = None):
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        self.head_dim = d_model // n_heads if head_dim is None else head_dim
        self.cross = cross
        self.dropout = dropout
        self.scale = scale
        q_dim, kv_dim = n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        in_bias = bias if qkv_bias is None else qkv_bias
        if cross:
            self.q = Linear(d_model, q_dim, bias=in_bias)
            self.kv = Linear(d_model, 2 * kv_dim, bias=in_bias)
        else:
            self.qkv = Linear(d_model, q_dim + 2 * kv_dim, bias=in_bias)
        self.out = Linear(q_dim, d_model, bias=bias)
        self.store_weights = False
        self.weights: torch.Tensor | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b t (h d) -> b h t d", d=self.head_dim)

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values `(B, H_kv, S, hd)` of an encoder memory `(B, S, D)`."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
                is_causal: bool = False, bias: torch.Tensor | None = None,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None,
                cache: LayerCache | None = None, unpadded: Unpadded | None = None) -> torch.Tensor:
        """`mask` (bool, True = attend) and `bias` (float) broadcast to `(B, H, Tq, Tk)`; `is_causal` asks
        for a causal mask between aligned queries and keys (Tq == Tk, no cache), the kernel's fast path.
        `rotary = (cos, sin)` rotates queries and new keys (self-attention only). With `unpadded`, `x` holds
        the real tokens alone, `(N, d_model)`, and so does the output; attention runs on them laid out again."""
        if self.cross:
            q = self.q(x)
            q = self._heads(q if unpadded is None else unpadded.unpack(q))
            if cache is not None and cache.cross_k is not None:
                k, v = cache.cross_k, cache.cross_v
            else:
                k, v = self.project_memory(memory)
                if cache is not None:
                    cache.cross_k, cache.cross_v = k, v
        else:
            kv_dim = self.n_kv_heads * self.head_dim
            qkv = self.qkv(x)
            if unpadded is not None:
                qkv = unpadded.unpack(qkv)
            q, k, v = qkv.split((self.n_heads * self.head_dim, kv_dim, kv_dim), dim=-1)
            q, k, v = self._heads(q), self._heads(k), self._heads(v)
            if rotary is not None:
                q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
            if cache is not None:
                k, v = cache.append(k, v)
        dropout_p = self.dropout if self.training else 0.0
        if self.store_weights:
            out, self.weights = reference_attention(q, k, v, mask, bias, is_causal, dropout_p, self.scale)
        else:
            out = fused_attention(q, k, v, mask, bias, is_causal, dropout_p, self.scale)
        out = rearrange(out, "b h t d -> b t (h d)")
        return self.out(out if unpadded is None else unpadded.pack(out))


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, MultiHeadAttention]]:
    """Within the block, every attention module of `model` keeps its weights; yields {name: module}.

    >>> with record_attention(model) as attn:
    ...     model(ids)
    ...     w = attn["stack.layers.0.self_attn"].weights  # (B, H, Tq, Tk)
    """
    modules = {name: m for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)}
    for m in modules.values():
        m.store_weights = True
    try:
        yield modules
    finally:
        for m in modules.values():
            m.store_weights = False
