"""A running text split by characters, in order, into train / val / test (language modelling)."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DataError

__all__ = ["split_text"]


def split_text(text: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, str]:
    """Split a text by characters, in order, into ``train``/``val``/``test`` (language modelling).

    ``fractions`` (up to three, summing to 1) give each split's share; a zero fraction omits that split,
    so nanoGPT's ``(0.9, 0.1, 0.0)`` gives only ``train`` and ``val``. A nonzero share that rounds to no
    characters is a DataError.
    """
    names = ("train", "val", "test")
    if not 1 <= len(fractions) <= 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 1 to 3 non-negative numbers summing to 1, got {fractions}")
    splits, start, total = {}, 0, 0.0
    for name, fraction in zip(names, fractions, strict=False):
        total += fraction
        end = len(text) if abs(total - 1) <= 1e-6 else int(len(text) * total)  # floor, as nanoGPT
        if fraction > 0:
            if end <= start:
                raise DataError(f"split {name!r} ({fraction:g} of {len(text)} characters) would be empty")
            splits[name] = text[start:end]
        start = end
    return splits
