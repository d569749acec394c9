"""Collators: examples -> a dict of padded ``(B, T)`` LongTensors, for translation, classification and LMs.

Label positions that must not be scored hold ``IGNORE_INDEX = -100`` (what
``torch.nn.functional.cross_entropy`` ignores by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..tokenizers import BOS, CLS, EOS, PAD, SEP

__all__ = ["IGNORE_INDEX", "ClassificationCollator", "LMCollator", "TranslationCollator", "pad", "shift_right"]

IGNORE_INDEX = -100

Ids = Sequence[int] | Tensor


def pad(seqs: Sequence[Ids], pad_id: int, max_len: int | None = None) -> Tensor:
    """Right-pad token sequences into a ``(B, T)`` LongTensor; ``T`` is the longest length, or ``max_len``.

    ``max_len`` fixes the width (a constant shape); a longer sequence is an error, since cutting it here
    would hide data loss (use ``corpora.check_lengths`` first).
    """
    if len(seqs) == 0:
        raise ValueError("pad needs at least one sequence")
    longest = max(len(s) for s in seqs)
    if max_len is not None and longest > max_len:
        raise ValueError(f"a sequence has length {longest} > max_len {max_len}; use check_lengths first")
    out = torch.full((len(seqs), longest if max_len is None else max_len), pad_id, dtype=torch.long)
    for row, seq in enumerate(seqs):
        if len(seq):
            out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def shift_right(tgt_ids: Sequence[Ids], bos_id: int, eos_id: int) -> tuple[list[list[int]], list[list[int]]]:
    """Teacher forcing: decoder inputs ``[BOS] y`` and targets ``y [EOS]`` for each target ``y``."""
    ys = [list(map(int, y)) for y in tgt_ids]
    return [[bos_id, *y] for y in ys], [[*y, eos_id] for y in ys]


@dataclass(frozen=True)
class TranslationCollator:
    """``(src_ids, tgt_ids)`` pairs -> ``{"src": (B, S), "tgt_in": (B, T), "tgt_out": (B, T)}``.

    ``src`` is used as given and padded with ``pad_id``; ``tgt_in`` = ``[BOS] y`` padded with ``pad_id``;
    ``tgt_out`` = ``y [EOS]`` padded with IGNORE_INDEX, so padding is never scored.
    """

    pad_id: int = PAD
    bos_id: int = BOS
    eos_id: int = EOS

    def __call__(self, pairs: Sequence[tuple[Ids, Ids]]) -> dict[str, Tensor]:
        tgt_in, tgt_out = shift_right([tgt for _, tgt in pairs], self.bos_id, self.eos_id)
        return {
            "src": pad([src for src, _ in pairs], self.pad_id),
            "tgt_in": pad(tgt_in, self.pad_id),
            "tgt_out": pad(tgt_out, IGNORE_INDEX),
        }


@dataclass(frozen=True)
class ClassificationCollator:
    """``(ids, label)`` pairs -> ``{"input_ids": (B, T), "labels": (B,)}``.

    Each input is ``[CLS] ids``, plus ``[SEP]`` at the end when ``sep_id`` is set (BERT style; the default);
    the classifier reads the CLS position. Padded with ``pad_id``.
    """

    pad_id: int = PAD
    cls_id: int = CLS
    sep_id: int | None = SEP

    def __call__(self, examples: Sequence[tuple[Ids, int]]) -> dict[str, Tensor]:
        end = [] if self.sep_id is None else [self.sep_id]
        rows = [[self.cls_id, *map(int, ids), *end] for ids, _ in examples]
        return {
            "input_ids": pad(rows, self.pad_id),
            "labels": torch.tensor([int(label) for _, label in examples], dtype=torch.long),
        }


@dataclass(frozen=True)
class LMCollator:
    """Blocks of ``n + 1`` tokens -> ``{"input_ids": (B, T), "labels": (B, T)}``, labels shifted by one.

    Shorter blocks (the last evaluation block) are padded: inputs with ``pad_id``, labels with
    IGNORE_INDEX.
    """

    pad_id: int = PAD

    def __call__(self, blocks: Sequence[Ids]) -> dict[str, Tensor]:
        return {
            "input_ids": pad([block[:-1] for block in blocks], self.pad_id),
            "labels": pad([block[1:] for block in blocks], IGNORE_INDEX),
        }
