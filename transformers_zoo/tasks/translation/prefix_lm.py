"""Translation by a decoder-only model: the source is a prefix, the loss is on the target only.

One causal stream per pair, `source ids + [SEP] + target ids + [EOS]`; the model reads the source and learns
to continue it with the translation. Search prompts with `source + [SEP]` (left-padded in a batch) and runs the
same `generation.generate_many` as the encoder-decoder, so recipes/compare.py's `families` grid compares the two
families on the same pairs, vocabulary, batches, loss on target tokens and search: only the model differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...batching import IGNORE_INDEX, pad
from ...generation import generate_many
from ...tokenizers import EOS, PAD, SEP, Tokenizer
from ...training.losses import cross_entropy_sum
from .data import Pair


def source_prefix(example: Pair) -> list[int]:
    """`source ids + [SEP]` (the translation examples' trailing EOS replaced by SEP)."""
    src = list(example[0])
    if src and src[-1] == EOS:
        src = src[:-1]
    return [*src, SEP]


class PrefixLMCollator:
    """Pairs -> `{"input_ids": (B, T), "labels": (B, T)}`, right-padded; labels score the target and its
    EOS only (the prefix and padding hold IGNORE_INDEX)."""

    def __init__(self, pad_id: int = PAD):
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[Pair]) -> dict[str, torch.Tensor]:
        inputs, labels = [], []
        for example in examples:
            prefix, tgt = source_prefix(example), list(example[1])
            seq = [*prefix, *tgt, EOS]
            inputs.append(seq[:-1])
            labels.append([IGNORE_INDEX] * (len(prefix) - 1) + [*tgt, EOS])
        return {"input_ids": pad(inputs, self.pad_id), "labels": pad(labels, IGNORE_INDEX)}


class PrefixFormat:
    """How a decoder-only model reads translation pairs (see `task.EncoderDecoderFormat`, the other family)."""

    images: tuple[str, ...] = ()  # no cross-attention to show

    @staticmethod
    def width(example: Pair) -> int:
        """Length of the model input: prefix + target (the final EOS is only a label)."""
        return len(source_prefix(example)) + len(example[1])

    @staticmethod
    def collator(tokenizer: Tokenizer) -> PrefixLMCollator:
        return PrefixLMCollator(tokenizer.pad_id)

    @staticmethod
    def loss(model: nn.Module, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed cross-entropy of the target tokens (and EOS) given the source prefix, and their count."""
        return cross_entropy_sum(model(batch["input_ids"]), batch["labels"], label_smoothing)

    @staticmethod
    def generate(model: nn.Module, sources: Sequence[Sequence[int]], tokenizer: Tokenizer, **search: Any
                 ) -> list[list[int]]:
        """Target ids of each source (ids ending in EOS), in input order: `source + [SEP]` continued."""
        prompts = [source_prefix((list(s), []))[:-1] for s in sources]
        return generate_many(model, prompts, suffix=(SEP,), eos_id=tokenizer.eos_id, **search)
