"""Unpadding: a padded batch's position-wise layers computed on its real tokens alone.

A batch of texts of different lengths is padded to its longest, and every projection, FFN, norm and residual
of a layer costs the same at a padding position as at a real one, for nothing: the padding is masked out of
attention and out of every loss and pooling. Only attention mixes positions, so a stack can hold its tokens
packed, `(N, D)` for the N real ones, and lay them out `(B, T, ...)` again just around attention (as
ModernBERT and Hugging Face's padding-free training do; on a CPU there is no variable-length attention kernel,
so attention itself still runs padded). The vectors are the same to float rounding; the padding positions of
the stack's output are zeros.

It pays when padding is a good share of the batch: Multi30k captions in batches of 32, sorted by length, are
21% padding, and a MiniLM-shaped encoder embeds them 1.2x faster unpadded (benchmarks/embed.py); batches in
random order, as in training, hold more. Below `MIN_PADDING` the two copies per layer that re-pad around
attention cost about what the skipped padding would (benchmarks/unpad.py), and so they do in a small model's
small batch (`MIN_WORK`). The thresholds were measured on a CPU; a GPU has not been tried.
"""

from __future__ import annotations

import torch

#: unpad a batch when at least this share of its positions is padding: re-padding around attention costs a
#: MiniLM-shaped encoder 3-8% of a forward at 0% padding and breaks even near 8% (benchmarks/unpad.py, 2 cores)
MIN_PADDING = 0.1
#: ... and when padding positions x d_model^2 reach this (a layer with a 4x FFN skips 12 d_model^2 multiply-adds a
#: padding position): below it the copies' fixed cost wins (a 32-wide, 2-layer test model on 4 x 12 trains 11% slower
#: unpadded; 128-wide with 205 padding positions, 3.4M, 7% faster; 2 cores)
MIN_WORK = 2 ** 21


class Unpadded:
    """Where the real tokens of a padded batch are: `key_mask (B, T)`, True for a real token.

    `pack` takes `(B, T, C)` to `(N, C)`, the real tokens in row-major order; `unpack` is its inverse, with
    zeros at the padding positions (finite: attention multiplies masked values by a zero weight)."""

    def __init__(self, key_mask: torch.Tensor):
        self.batch, self.length = key_mask.shape
        flat = key_mask.reshape(-1).bool()
        self.index, self.pads = flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1)

    @staticmethod
    def worth(key_mask: torch.Tensor | None, width: int) -> bool:
        """Whether `key_mask`'s batch, in a stack `width` wide, has enough padding to be worth unpadding (asks
        the device for its count). Never inside `torch.compile`: a data-dependent number of tokens would break its
        graph at every layer."""
        if key_mask is None or torch.compiler.is_compiling():
            return False
        pads = key_mask.numel() - int(key_mask.sum())
        return pads >= MIN_PADDING * key_mask.numel() and pads * width ** 2 >= MIN_WORK

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.batch * self.length, -1).index_select(0, self.index)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        padded = x.new_empty(self.batch * self.length, x.shape[-1]).index_copy_(0, self.index, x)
        return padded.index_fill_(0, self.pads, 0).view(self.batch, self.length, -1)  # zeroing the pads alone
