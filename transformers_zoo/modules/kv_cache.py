"""KV cache: the keys and values a generative model has already computed, passed in and returned.

One `KVCache` serves a whole model: a `LayerCache` per decoder layer holds the self-attention keys and
values (appended each step, in preallocated buffers that double when full) and, for encoder-decoder
models, the cross-attention keys and values (computed once per source). The cache also keeps what a
step needs to know about the past: `key_mask (B, L)` (False for left padding of batched prompts),
the next position of each row, and the encoder memory's mask. `reorder(index)` selects rows along
the batch dim (beam search reorders and expands with it).
"""

from __future__ import annotations

import torch


class LayerCache:
    """Keys/values of one layer: self-attention `(B, H_kv, L, hd)` grown in place, cross-attention fixed."""

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None  # (B, H_kv, capacity, hd); valid up to self.length
        self.v: torch.Tensor | None = None
        self.length = 0
        self.cross_k: torch.Tensor | None = None  # (B, H_kv, S, hd)
        self.cross_v: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add `k, v (B, H_kv, t, hd)` after the cached ones; return all keys/values so far."""
        t = k.shape[2]
        needed = self.length + t
        if self.k is None or needed > self.k.shape[2]:
            capacity = max(needed, 2 * (self.k.shape[2] if self.k is not None else 16))
            new_k = k.new_empty(k.shape[0], k.shape[1], capacity, k.shape[3])
            new_v = v.new_empty(new_k.shape)
            if self.k is not None:
                new_k[:, :, : self.length] = self.k[:, :, : self.length]
                new_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = new_k, new_v
        self.k[:, :, self.length : needed] = k
        self.v[:, :, self.length : needed] = v
        self.length = needed
        return self.k[:, :, :needed], self.v[:, :, :needed]

    def reorder(self, index: torch.Tensor) -> None:
        for name in ("k", "v", "cross_k", "cross_v"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.index_select(0, index))


class KVCache:
    """Everything a model needs to decode the next token without recomputing the past.

    `key_mask (B, L)`: which cached self-attention positions are real tokens (left padding is not).
    `next_position (B,)`: the position the next real token of each row will have.
    `memory_mask (B, S)`: for encoder-decoder models, which source positions are real.
    """

    def __init__(self, n_layers: int, batch_size: int, device: torch.device | str = "cpu",
                 memory_mask: torch.Tensor | None = None):
        self.layers = [LayerCache() for _ in range(n_layers)]
        self.key_mask = torch.ones(batch_size, 0, dtype=torch.bool, device=device)
        self.key_positions = torch.zeros(batch_size, 0, dtype=torch.long, device=device)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.memory_mask = memory_mask
        self.padded = False  # any False in key_mask: then every step needs an explicit mask

    @property
    def batch_size(self) -> int:
        return self.key_mask.shape[0]

    @property
    def length(self) -> int:
        return self.key_mask.shape[1]

    def advance(self, t: int, new_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Record `t` new tokens, `new_mask (B, t)` True for real ones (None: all real); return their
        positions `(B, t)`.

        Positions count real tokens only, so a left-padded prompt starts at position 0 like an
        unpadded one; pad slots get the position of the next real token (they are masked anyway).
        """
        if new_mask is None:
            new_mask = torch.ones(self.batch_size, t, dtype=torch.bool, device=self.key_mask.device)
        elif not self.padded and not bool(new_mask.all()):
            self.padded = True
        steps = new_mask.long()
        positions = self.next_position[:, None] + steps.cumsum(-1) - steps
        self.next_position = self.next_position + steps.sum(-1)
        self.key_mask = torch.cat((self.key_mask, new_mask), dim=1)
        self.key_positions = torch.cat((self.key_positions, positions), dim=1)
        return positions

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index (B',)` of the batch, in that order (repeats allowed: beam expansion)."""
        for layer in self.layers:
            layer.reorder(index)
        self.key_mask = self.key_mask.index_select(0, index)
        self.key_positions = self.key_positions.index_select(0, index)
        self.next_position = self.next_position.index_select(0, index)
        if self.memory_mask is not None:
            self.memory_mask = self.memory_mask.index_select(0, index)
