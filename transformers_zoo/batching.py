"""Batches: padding, shift-right, token-budget batching, a resumable batch stream, collators, LM blocks
and dynamic MLM masking.

Conventions: batch first, ``LongTensor`` ids; label positions that must not be scored hold
``IGNORE_INDEX = -100`` (what ``torch.nn.functional.cross_entropy`` ignores by default). Every random
choice derives from ``(seed, epoch, ...)`` through :func:`derive_seed`, so a run resumed from
``EpochBatches.state_dict()`` sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .corpora import DataError
from .tokenizers import BOS, CLS, EOS, MASK, N_SPECIAL, PAD, SEP

__all__ = [
    "IGNORE_INDEX",
    "ClassificationCollator",
    "EpochBatches",
    "LMBlocks",
    "LMCollator",
    "MLMCollator",
    "TranslationCollator",
    "collate_batches",
    "derive_seed",
    "mask_tokens",
    "pad",
    "shift_right",
    "token_budget_batches",
]

IGNORE_INDEX = -100

Ids = Sequence[int] | Tensor


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (e.g. ``seed, epoch, batch_index``)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


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


# ---------------------------------------------------------------------------------------------------------
# Token-budget batching (fairseq's --max-tokens)
# ---------------------------------------------------------------------------------------------------------


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    max_sentences: int | None = None,
) -> list[list[int]]:
    """Group example indices into batches of similar length whose padded size stays within ``max_tokens``.

    ``lengths[i]`` is the width example ``i`` takes in the padded tensor (for translation the longer of
    source and shifted target). Examples are sorted by length, ties broken at random from
    ``(seed, epoch)``, and cut greedily so that ``len(batch) * max(length in batch) <= max_tokens`` (and
    ``len(batch) <= max_sentences``); the batch order is then shuffled from ``(seed, epoch)``. With
    ``shuffle=False`` (evaluation) ties keep index order and batches come shortest first. An example longer
    than ``max_tokens`` is a DataError.
    """
    if shuffle:
        ties = list(range(len(lengths)))
        random.Random(derive_seed(seed, epoch, "ties")).shuffle(ties)
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], ties[i]))
    else:
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in order:
        width = max(int(lengths[i]), 1)  # an empty example still takes a row
        if width > max_tokens:
            raise DataError(f"example {i} has length {lengths[i]} > max_tokens {max_tokens}; raise "
                            f"max_tokens or filter long examples (corpora.check_lengths)")
        full = max_sentences is not None and len(batch) >= max_sentences
        if batch and (full or (len(batch) + 1) * max(longest, width) > max_tokens):
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, width)
    if batch:
        batches.append(batch)
    if shuffle:
        random.Random(derive_seed(seed, epoch, "order")).shuffle(batches)
    return batches


# ---------------------------------------------------------------------------------------------------------
# The resumable batch stream the trainer consumes
# ---------------------------------------------------------------------------------------------------------


class EpochBatches:
    """Infinite iterator of collated batches over epochs; the order is a pure function of (seed, epoch).

    ``make_batches(epoch)`` returns the epoch's batches as lists of indices into ``examples`` (anything
    indexable); ``collate(items)`` turns the indexed examples into a dict of tensors. If ``collate`` has
    a true attribute ``needs_position`` it is called as ``collate(items, epoch=e, index=i)`` instead, so
    per-batch randomness (dynamic masking) can derive from the batch's position and stay resumable.

    ``state_dict()`` is the position of the next batch to yield; after ``load_state_dict`` iteration yields
    exactly what an uninterrupted run would have yielded from there, mid-epoch or across epochs.
    """

    def __init__(
        self,
        examples: Sequence[Any],
        make_batches: Callable[[int], list[list[int]]],
        collate: Callable[..., dict[str, Tensor]],
    ):
        self.examples = examples
        self.make_batches = make_batches
        self.collate = collate
        self.epoch = 0
        self.index = 0
        self._batches: list[list[int]] = []
        self._batches_epoch: int | None = None

    def _current(self) -> list[list[int]]:
        if self._batches_epoch != self.epoch:
            batches = self.make_batches(self.epoch)
            if not batches:
                raise ValueError(f"make_batches({self.epoch}) returned no batches")
            self._batches, self._batches_epoch = batches, self.epoch
        return self._batches

    def batches_per_epoch(self) -> int:
        """Number of batches in the current epoch."""
        return len(self._current())

    def __iter__(self) -> EpochBatches:
        return self

    def __next__(self) -> dict[str, Tensor]:
        batches = self._current()
        epoch, index = self.epoch, self.index
        # advance before collating: state_dict() taken after this batch must point past it, and after an
        # epoch's last batch `epoch` already names the next epoch (what an epoch budget checks)
        self.index += 1
        if self.index >= len(batches):
            self.epoch, self.index = self.epoch + 1, 0
        return self._collate(batches[index], epoch, index)

    def _collate(self, indices: list[int], epoch: int, index: int) -> dict[str, Tensor]:
        items = [self.examples[i] for i in indices]
        if getattr(self.collate, "needs_position", False):
            return self.collate(items, epoch=epoch, index=index)
        return self.collate(items)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch": e, "index": i}``: the position of the next batch to yield."""
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def collate_batches(
    examples: Sequence[Any], batches: Iterable[list[int]], collate: Callable[..., dict[str, Tensor]]
) -> Iterator[dict[str, Tensor]]:
    """One pass over fixed ``batches`` (evaluation), collating each."""
    for indices in batches:
        yield collate([examples[i] for i in indices])


# ---------------------------------------------------------------------------------------------------------
# Collators
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Language-modelling blocks
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Dynamic MLM masking (BERT's 80/10/10)
# ---------------------------------------------------------------------------------------------------------


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
