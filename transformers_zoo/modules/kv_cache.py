"""KV cache: the keys and values a generative model has already computed, passed in and returned.

One `KVCache` serves a whole model: a `LayerCache` per decoder layer holds the self-attention keys and
values (appended each step, in preallocated buffers that double when full) and, for encoder-decoder
models, the cross-attention keys and values (computed once per source). The cache also keeps what a
step needs to know about the past: `key_mask (B, L)` (False for left padding of batched prompts),
the next position of each row, and the encoder memory's mask. `reorder(index)` selects rows along
the batch dim (beam search reorders and expands with it). For continuous batching (a server decoding
requests that start and end at different steps), `KVCache.stack(caches)` joins caches of different
lengths into one batch, left-padding the shorter ones, and `trim()` drops the leading columns no row
needs any more once rows have left.
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

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        for name in ("k", "v", "cross_k", "cross_v") if cross else ("k", "v"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.index_select(0, index))


class KVCache:
    """Everything a model needs to decode the next token without recomputing the past.

    While every cached token is real (the usual case) the cache only counts them: positions are
    `length, length + 1, ...` for every row and no mask is needed. Once a left-padded prompt arrives
    (`advance` with a mask that has False), it keeps per-row tensors instead:
    `key_mask (B, L)` (which cached positions are real tokens), `key_positions (B, L)` and the next
    position of each row. `memory_mask (B, S)`: for encoder-decoder models, which source positions
    are real.
    """

    def __init__(self, n_layers: int, batch_size: int, device: torch.device | str = "cpu",
                 memory_mask: torch.Tensor | None = None):
        self.layers = [LayerCache() for _ in range(n_layers)]
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.length = 0
        self.memory_mask = memory_mask
        self.padded = False  # any padding cached: every step then needs an explicit mask
        self._key_mask: torch.Tensor | None = None  # (B, L), only when padded
        self._key_positions: torch.Tensor | None = None  # (B, L), only when padded
        self._next_position: torch.Tensor | None = None  # (B,), only when padded

    @property
    def key_mask(self) -> torch.Tensor:
        """`(B, L)`: True where the cached token is real."""
        if self.padded:
            return self._key_mask
        return torch.ones(self.batch_size, self.length, dtype=torch.bool, device=self.device)

    @property
    def key_positions(self) -> torch.Tensor:
        """`(1|B, L)`: the position of each cached token."""
        if self.padded:
            return self._key_positions
        return torch.arange(self.length, device=self.device)[None]

    def advance(self, t: int, new_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Record `t` new tokens, `new_mask (B, t)` True for real ones (None: all real); return their
        positions `(1|B, t)`.

        Positions count real tokens only, so a left-padded prompt starts at position 0 like an
        unpadded one; pad slots get the position of the next real token (they are masked anyway).
        """
        if not self.padded and (new_mask is None or bool(new_mask.all())):
            positions = torch.arange(self.length, self.length + t, device=self.device)[None]
            self.length += t
            return positions
        if not self.padded:  # switch to per-row bookkeeping, the past being all real
            self._key_mask = self.key_mask
            self._key_positions = self.key_positions.expand(self.batch_size, -1)
            self._next_position = torch.full((self.batch_size,), self.length, dtype=torch.long, device=self.device)
            self.padded = True
        if new_mask is None:
            new_mask = torch.ones(self.batch_size, t, dtype=torch.bool, device=self.device)
        steps = new_mask.long()
        positions = self._next_position[:, None] + steps.cumsum(-1) - steps
        self._next_position = self._next_position + steps.sum(-1)
        self._key_mask = torch.cat((self._key_mask, new_mask), dim=1)
        self._key_positions = torch.cat((self._key_positions, positions), dim=1)
        self.length += t
        return positions

    def truncate(self, length: int) -> None:
        """Forget every token after the first `length` (a chat's next turn keeps the prefix it shares with the
        last one). Only for a cache without padding, whose positions are just 0..length-1."""
        if self.padded or not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens (padded={self.padded}) to {length}")
        for layer in self.layers:
            layer.length = min(layer.length, length)
        self.length = length

    def reorder(self, index: torch.Tensor, cross: bool = True) -> None:
        """Keep rows `index (B',)` of the batch, in that order (repeats allowed: beam expansion).

        `cross=False` leaves the cross-attention keys/values alone: beam search passes it once the
        beams are expanded, since every beam of a source then holds the same ones.
        """
        for layer in self.layers:
            layer.reorder(index, cross)
        self.batch_size = index.shape[0]
        if self.padded:
            self._key_mask = self._key_mask.index_select(0, index)
            self._key_positions = self._key_positions.index_select(0, index)
            self._next_position = self._next_position.index_select(0, index)
        if self.memory_mask is not None and cross:
            self.memory_mask = self.memory_mask.index_select(0, index)

    @classmethod
    def stack(cls, caches: list[KVCache]) -> KVCache:
        """One cache whose rows are those of ``caches`` in order, each left-padded to the longest.

        Every row keeps its own positions and sees only its own tokens, so decoding the stacked cache gives
        each row what it would get alone. Self-attention caches only (decoder-only models): sources of
        different lengths would need their cross-attention keys padded too.
        """
        if not caches:
            raise ValueError("stack needs at least one cache")
        if len(caches) == 1:
            return caches[0]
        first = caches[0]
        if any(c.memory_mask is not None for c in caches):
            raise ValueError("KVCache.stack joins self-attention caches only (no encoder memory)")
        if any(len(c.layers) != len(first.layers) for c in caches):
            raise ValueError("caches of models with different numbers of layers cannot be stacked")
        length = max(c.length for c in caches)
        out = cls(len(first.layers), sum(c.batch_size for c in caches), first.device)
        out.length, out.padded = length, True
        out._key_mask = torch.cat([_pad_left(c.key_mask, length, False) for c in caches])
        out._key_positions = torch.cat([_pad_left(c.key_positions.expand(c.batch_size, -1), length, 0)
                                        for c in caches])
        out._next_position = torch.cat([c._next_position if c.padded else
                                        torch.full((c.batch_size,), c.length, dtype=torch.long, device=c.device)
                                        for c in caches])
        for i, layer in enumerate(out.layers):
            parts = [c.layers[i] for c in caches]
            if any(p.k is None for p in parts):
                raise ValueError("every cache must hold at least one token to be stacked")
            layer.k = torch.cat([_pad_left(p.k[:, :, : p.length], length, 0.0, dim=2) for p in parts])
            layer.v = torch.cat([_pad_left(p.v[:, :, : p.length], length, 0.0, dim=2) for p in parts])
            layer.length = length
        return out

    def trim(self) -> None:
        """Drop the leading columns where no row has a real token (left by rows that left the batch)."""
        if not self.padded or self.length == 0:
            return
        used = self._key_mask.any(dim=0).nonzero()
        start = int(used[0]) if used.numel() else self.length
        if start == 0:
            return
        self._key_mask = self._key_mask[:, start:]
        self._key_positions = self._key_positions[:, start:]
        for layer in self.layers:
            if layer.k is not None:
                layer.k = layer.k[:, :, start : layer.length].contiguous()
                layer.v = layer.v[:, :, start : layer.length].contiguous()
                layer.length -= start
        self.length -= start


def _pad_left(t: torch.Tensor, length: int, value: float | bool, dim: int = 1) -> torch.Tensor:
    """``t`` with ``value`` put before its entries along ``dim`` so that it is ``length`` long there."""
    missing = length - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat((t.new_full(shape, value), t), dim=dim)
