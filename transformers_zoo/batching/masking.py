"""Dynamic masking: BERT's 80/10/10 MLM masking and the word-masking regulariser of classifier fine-tuning.

Each mask comes from a generator seeded by ``(seed, epoch, batch index)``: new masks every epoch, the same
ones when a run is resumed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ..tokenizers import CLS, MASK, N_SPECIAL, PAD, SEP
from .batches import derive_seed
from .collators import IGNORE_INDEX, ClassificationCollator, Ids, pad

__all__ = ["MLMCollator", "TokenMaskingCollator", "mask_tokens"]


def mask_tokens(
    input_ids: Tensor,
    *,
    vocab_size: int,
    mask_id: int,
    special_ids: Iterable[int],
    pad_id: int,
    mlm_probability: float = 0.15,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """BERT masking of a ``(B, T)`` batch: returns new ``(inputs, labels)``, both ``(B, T)``.

    Each non-special, non-pad token is chosen with probability ``mlm_probability``; a chosen token becomes
    MASK (80%), a random non-special token (10%) or stays (10%). ``labels`` hold the original id at
    chosen positions and IGNORE_INDEX elsewhere. All randomness comes from ``generator``.
    """
    protected_ids = torch.tensor(sorted({*map(int, special_ids), pad_id}), dtype=torch.long)
    chosen = torch.rand(input_ids.shape, generator=generator) < mlm_probability
    chosen &= ~torch.isin(input_ids, protected_ids)
    action = torch.rand(input_ids.shape, generator=generator)
    vocab = torch.arange(vocab_size)
    ordinary = vocab[~torch.isin(vocab, protected_ids)]
    random_ids = ordinary[torch.randint(len(ordinary), input_ids.shape, generator=generator)]
    inputs = input_ids.clone()
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(inputs, mask_id), inputs)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return inputs, labels


@dataclass(frozen=True)
class TokenMaskingCollator:
    """A :class:`ClassificationCollator` for training that also hides words: each real token (not CLS, SEP,
    padding or another special id) becomes ``mask_id`` with probability ``probability``.

    A regulariser for fine-tuning on little data (the classifier cannot lean on any single token, the way
    word dropout works for recurrent classifiers), and the [MASK] inputs are what an MLM-pre-trained encoder
    already knows how to read. The mask comes from a generator seeded by ``(seed, epoch, batch index)``,
    so a resumed run sees the same masks.
    """

    seed: int
    probability: float
    mask_id: int = MASK
    base: ClassificationCollator = field(default_factory=lambda: ClassificationCollator())
    #: ids never masked (a pre-trained vocabulary has its specials elsewhere than ours, 0-6)
    special_ids: frozenset[int] = frozenset(range(N_SPECIAL))
    needs_position: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability < 1.0:
            raise ValueError(f"token-mask probability must be in [0, 1), got {self.probability}")

    def __call__(self, examples: Sequence[tuple[Ids, int]], *, epoch: int = 0, index: int = 0) -> dict[str, Tensor]:
        batch = self.base(examples)
        ids = batch["input_ids"]
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, index, "token-mask"))
        special = torch.isin(ids, torch.tensor(sorted(self.special_ids), dtype=ids.dtype))
        hit = (torch.rand(ids.shape, generator=generator) < self.probability) & ~special
        batch["input_ids"] = ids.masked_fill(hit, self.mask_id)
        return batch


@dataclass(frozen=True)
class MLMCollator:
    """Token-id sequences -> ``{"input_ids": (B, T), "labels": (B, T)}`` with fresh BERT masking per batch.

    Each row is ``[CLS] ids [SEP]`` (either end off when its id is None), padded with ``pad_id``, then
    masked by :func:`mask_tokens` with a generator seeded from ``(seed, epoch, batch index)``: different
    masks every epoch (dynamic masking, as RoBERTa), yet identical when a run is resumed.
    """

    vocab_size: int
    seed: int
    mlm_probability: float = 0.15
    pad_id: int = PAD
    mask_id: int = MASK
    cls_id: int | None = CLS
    sep_id: int | None = SEP
    special_ids: frozenset[int] = field(default_factory=lambda: frozenset(range(N_SPECIAL)))
    needs_position: ClassVar[bool] = True

    def __call__(self, seqs: Sequence[Ids], *, epoch: int = 0, index: int = 0) -> dict[str, Tensor]:
        start = [] if self.cls_id is None else [self.cls_id]
        end = [] if self.sep_id is None else [self.sep_id]
        ids = pad([[*start, *map(int, seq), *end] for seq in seqs], self.pad_id)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, index, "mlm"))
        inputs, labels = mask_tokens(ids, vocab_size=self.vocab_size, mask_id=self.mask_id,
                                     special_ids=self.special_ids, pad_id=self.pad_id,
                                     mlm_probability=self.mlm_probability, generator=generator)
        return {"input_ids": inputs, "labels": labels}
