"""Batches: token-budget batching and a resumable batch stream (:mod:`.batches`), padding and collators
(:mod:`.collators`), language-modelling windows (:mod:`.lm_blocks`) and dynamic MLM masking (:mod:`.masking`).

Conventions: batch first, ``LongTensor`` ids; label positions that must not be scored hold
``IGNORE_INDEX = -100`` (what ``torch.nn.functional.cross_entropy`` ignores by default). Every random
choice derives from ``(seed, epoch, ...)`` through :func:`derive_seed`, so a run resumed from
``EpochBatches.state_dict()`` sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from .batches import EpochBatches, PhasedStream, collate_batches, derive_seed, token_budget_batches
from .collators import IGNORE_INDEX, ClassificationCollator, LMCollator, TranslationCollator, pad, shift_right
from .lm_blocks import LMBlocks
from .masking import MLMCollator, TokenMaskingCollator, mask_tokens

__all__ = [
    "IGNORE_INDEX",
    "ClassificationCollator",
    "EpochBatches",
    "LMBlocks",
    "LMCollator",
    "MLMCollator",
    "PhasedStream",
    "TokenMaskingCollator",
    "TranslationCollator",
    "collate_batches",
    "derive_seed",
    "mask_tokens",
    "pad",
    "shift_right",
    "token_budget_batches",
]
