"""Token embedding and the five positional schemes.

Every positional scheme answers the same three questions a layer stack asks, so the stack never
special-cases a variant:
- `add(x, positions)`: absolute schemes (sinusoidal, learned) add a vector to the token embeddings;
- `rotary(positions)`: rope returns the `(cos, sin)` that rotate queries and keys;
- `bias(q_pos, k_pos)`: alibi and relative (T5) return an additive attention bias `(1|B, H, Tq, Tk)`.
A scheme that has nothing to say returns its input or None. `positions` are integer tensors
`(1|B, T)`: `(1, T)` when every row starts at 0, `(B, T)` for left-padded rows or cached decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class TokenEmbedding(nn.Module):
    """Token ids `(B, T)` -> vectors `(B, T, d_model)`, optionally times sqrt(d_model) (Vaswani et al.)."""

    no_weight_decay = True  # an embedding table: the optimizer leaves it out of weight decay

    def __init__(self, vocab_size: int, d_model: int, scale: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model))
        self.scale = math.sqrt(d_model) if scale else 1.0
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = nn.functional.embedding(ids, self.weight)
        return x * self.scale if self.scale != 1.0 else x


class Positional(nn.Module):
    """No-op base: a scheme overrides the hooks it uses."""

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor | None:
        return None


def frequencies(dim: int, base: float, device: torch.device | None = None) -> torch.Tensor:
    """``base^(-2i/dim)`` for i < dim/2, float32: the angular frequencies of sinusoids and RoPE."""
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))


class FrequencyBuffer:
    """Mixin of a module with an ``inv_freq`` buffer that stays float32: ``.to(torch.bfloat16)`` / ``.half()``
    would round the frequencies, and an angle p * f then misses by radians at long positions (bf16 keeps 8 bits:
    at p = 2,000 a rounding of 1e-3 is 2 rad). The buffer is recomputed after every cast or move."""

    _freq_args: tuple[int, float]

    def _apply(self, fn, recurse=True):  # noqa: ANN001 (torch's signature)
        super()._apply(fn, recurse)
        self.inv_freq = frequencies(*self._freq_args, device=self.inv_freq.device)
        return self


class SinusoidalPositional(FrequencyBuffer, Positional):
    """Fixed sin/cos of geometric frequencies (Vaswani et al. 2017), defined for any position, so it runs
    (if not necessarily works) past max_len. Two layouts of the same numbers:
    `interleaved` PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(...) (the paper's formula);
    `split` PE[p, i] = sin(...), PE[p, d/2 + i] = cos(...) (fairseq, Marian/opus-mt checkpoints)."""

    def __init__(self, d_model: int, layout: str = "interleaved"):
        super().__init__()
        if layout not in ("interleaved", "split"):
            raise ValueError(f"unknown sinusoidal layout {layout!r}; choose one of: interleaved, split")
        self.layout = layout
        self._freq_args = (d_model, 10000.0)
        self.register_buffer("inv_freq", frequencies(d_model, 10000.0), persistent=False)

    def table(self, positions: torch.Tensor) -> torch.Tensor:
        """The vectors `(1|B, T, d)` of integer `positions (1|B, T)`."""
        angles = positions[..., None].to(torch.float32) * self.inv_freq  # (1|B, T, d/2)
        if self.layout == "split":
            return torch.cat((angles.sin(), angles.cos()), dim=-1)
        return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # interleave -> (1|B, T, d)

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return x + self.table(positions).to(x.dtype)


class LearnedPositional(Positional):
    """A trained vector per position (BERT, GPT-2); positions must stay below max_len.

    `offset` rows sit before position 0 (position p reads row p + offset): BART's table has 2, a
    remnant of fairseq numbering positions after the padding index. The table is `(offset + max_len, d)`.
    """

    no_weight_decay = True

    def __init__(self, max_len: int, d_model: int, offset: int = 0):
        super().__init__()
        self.max_len, self.offset = max_len, offset
        self.weight = nn.Parameter(torch.empty(offset + max_len, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def add(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if positions.numel() and int(positions.max()) >= self.max_len:
            raise ValueError(f"position {int(positions.max())} is beyond max_len={self.max_len} of the "
                             "learned positional embedding; use a longer max_len or another positional")
        return x + nn.functional.embedding(positions + self.offset if self.offset else positions, self.weight)


class RotaryPositional(FrequencyBuffer, Positional):
    """RoPE (Su et al. 2021): rotate each (i, i + d/2) pair of query/key dims by angle p * theta^(-2i/d),
    so q.k depends only on the distance between positions ("rotate half" layout, as GPT-NeoX/LLaMA)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self._freq_args = (head_dim, theta)
        self.register_buffer("inv_freq", frequencies(head_dim, theta), persistent=False)

    def rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = positions[..., None].to(torch.float32) * self.inv_freq  # (1|B, T, hd/2)
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (1|B, 1, T, hd): broadcasts over heads
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `x (B, H, T, hd)` by the angles whose cos/sin are `(1|B, 1, T, hd)`."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Head slopes 2^(-8i/n) (Press et al. 2022); for n not a power of two, the paper's interleaving."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


class ALiBiPositional(Positional):
    """ALiBi: no position vectors; each head adds -slope * |i - j| to its attention scores, a linear
    penalty on distance that lets models run on longer inputs than they were trained on."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(n_heads)[:, None, None], persistent=False)

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        distance = (k_pos[:, None, :] - q_pos[:, :, None]).abs()  # (1|B, Tq, Tk)
        return -self.slopes * distance[:, None].to(self.slopes.dtype)  # (1|B, H, Tq, Tk)


def relative_buckets(relative: torch.Tensor, bidirectional: bool, n_buckets: int, max_distance: int
                     ) -> torch.Tensor:
    """T5's bucketing of `key_pos - query_pos`: exact buckets for small distances, logarithmically
    wider ones up to max_distance, one shared bucket beyond. Bidirectional splits the buckets
    between keys before and after the query; causal uses them all for the past."""
    buckets = torch.zeros_like(relative)
    if bidirectional:
        n_buckets //= 2
        buckets = buckets + (relative > 0).long() * n_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    max_exact = max(n_buckets // 2, 1)
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float().clamp(min=1) / max_exact) / math.log(max(max_distance / max_exact, 1 + 1e-6))
    large = max_exact + (log_ratio * (n_buckets - max_exact)).long()
    large = large.clamp(max=n_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositional(Positional):
    """T5-style relative position bias: a learned scalar per head and distance bucket, added to the
    attention scores of every layer of the stack (computed once per forward by the stack)."""

    def __init__(self, n_heads: int, n_buckets: int, max_distance: int, bidirectional: bool):
        super().__init__()
        self.n_buckets, self.max_distance, self.bidirectional = n_buckets, max_distance, bidirectional
        self.embedding = nn.Embedding(n_buckets, n_heads)
        nn.init.normal_(self.embedding.weight, std=0.02)

    def bias(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
        relative = k_pos[:, None, :] - q_pos[:, :, None]  # (1|B, Tq, Tk)
        buckets = relative_buckets(relative, self.bidirectional, self.n_buckets, self.max_distance)
        return self.embedding(buckets).permute(0, 3, 1, 2)  # (1|B, H, Tq, Tk)


# The registry of positional schemes, and the only place to add one: name -> a builder from (cfg, causal).
# `ModelConfig` validates `positional` against its keys; `--positional` offers them.
POSITIONALS: dict[str, Callable[[Any, bool], Positional]] = {
    "sinusoidal": lambda cfg, causal: SinusoidalPositional(cfg.d_model, cfg.sinusoidal_layout),
    "learned": lambda cfg, causal: LearnedPositional(cfg.max_len, cfg.d_model, cfg.positional_offset),
    "rope": lambda cfg, causal: RotaryPositional(cfg.head_dim, cfg.rope_theta),
    "alibi": lambda cfg, causal: ALiBiPositional(cfg.n_heads),
    "relative": lambda cfg, causal: RelativePositional(cfg.n_heads, cfg.relative_buckets, cfg.relative_max_distance,
                                                       bidirectional=not causal),
}


def build_positional(cfg, causal: bool) -> Positional:
    """The positional scheme named by `cfg.positional` for a stack (causal for decoders)."""
    if cfg.positional not in POSITIONALS:
        raise ValueError(f"unknown positional {cfg.positional!r}; choose one of: {', '.join(POSITIONALS)}")
    return POSITIONALS[cfg.positional](cfg, causal)
