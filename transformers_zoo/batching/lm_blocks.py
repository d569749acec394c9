"""A token tensor seen as language-modelling windows: random ones for training, consecutive ones to evaluate."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..corpora import DataError
from .batches import derive_seed

__all__ = ["LMBlocks"]


class LMBlocks:
    """A 1-D token tensor seen as windows: ``blocks[start]`` = ``tokens[start : start + block_size + 1]``.

    Use as ``examples`` of :class:`EpochBatches` with :class:`LMCollator`. Training draws random full
    windows (:meth:`train_batches`, nanoGPT style); evaluation walks non-overlapping windows
    (:meth:`eval_batches`) so that every token is scored exactly once as a target, except the split's first
    token, which has no context to predict it from. The last window may be shorter (the collator pads it).
    """

    def __init__(self, tokens: Tensor | Sequence[int], block_size: int):
        self.tokens = torch.as_tensor(tokens, dtype=torch.long)
        if self.tokens.dim() != 1 or len(self.tokens) < 2:
            raise ValueError("tokens must be a 1-D sequence of at least 2 tokens")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.tokens) - 1  # valid window starts

    def __getitem__(self, start: int) -> Tensor:
        return self.tokens[start : start + self.block_size + 1]

    def train_batches(
        self, batch_size: int, *, seed: int, epoch: int, blocks_per_epoch: int | None = None
    ) -> list[list[int]]:
        """Random full windows for one epoch, as ``batch_size`` starts each; a pure function of (seed, epoch).

        An epoch is ``blocks_per_epoch`` windows (default: as many as cover the tokens once), rounded up
        to whole batches.
        """
        n_starts = len(self.tokens) - self.block_size
        if n_starts < 1:
            raise DataError(f"{len(self.tokens)} tokens cannot fill one training block of "
                            f"{self.block_size + 1}; lower block_size")
        count = blocks_per_epoch or max(1, (len(self.tokens) - 1) // self.block_size)
        n_batches = math.ceil(count / batch_size)
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch))
        starts = torch.randint(0, n_starts, (n_batches, batch_size), generator=generator)
        return starts.tolist()

    def eval_batches(self, batch_size: int) -> list[list[int]]:
        """Consecutive non-overlapping windows covering the tokens, in order, ``batch_size`` starts each."""
        starts = list(range(0, len(self.tokens) - 1, self.block_size))
        return [starts[i : i + batch_size] for i in range(0, len(starts), batch_size)]
