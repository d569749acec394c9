"""Which examples make a batch, in what order, resumably: token-budget batches and the epoch stream.

Every random choice derives from ``(seed, epoch, ...)`` through :func:`derive_seed`, so a run resumed from
``EpochBatches.state_dict()`` sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from torch import Tensor

from ..corpora import DataError

__all__ = ["EpochBatches", "collate_batches", "derive_seed", "token_budget_batches"]


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed that is a pure function of ``parts`` (e.g. ``seed, epoch, batch_index``)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


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


class PhasedStream:
    """The first ``first_batches`` batches of ``first`` (a pre-training phase: running text, masked blocks),
    then ``second`` (the task's batches), as one stream: resumable as both are, its position included. The
    streams are any iterators with ``state_dict`` / ``load_state_dict``; ``epoch`` is the second's."""

    def __init__(self, first: Iterator[dict[str, Tensor]] | None, second: Iterator[dict[str, Tensor]],
                 first_batches: int):
        self.first, self.second, self.first_batches = first, second, first_batches if first is not None else 0
        self.emitted = 0

    @property
    def epoch(self) -> int:
        return self.second.epoch

    @property
    def in_first(self) -> bool:
        """Whether the next batch comes from ``first``."""
        return self.emitted < self.first_batches

    def __iter__(self) -> PhasedStream:
        return self

    def __next__(self) -> dict[str, Tensor]:
        source = self.first if self.in_first else self.second
        self.emitted += 1
        return next(source)

    def state_dict(self) -> dict[str, Any]:
        return {"emitted": self.emitted, "second": self.second.state_dict(),
                **({"first": self.first.state_dict()} if self.first is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.emitted = int(state["emitted"])
        self.second.load_state_dict(state["second"])
        if self.first is not None:
            self.first.load_state_dict(state["first"])
