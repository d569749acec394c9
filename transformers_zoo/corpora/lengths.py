"""A model's ``max_len`` enforced on tokenized examples: raise, skip or truncate, and count the affected."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import DataError

__all__ = ["check_lengths"]


def check_lengths(
    seqs: Sequence,
    max_len: int,
    what: str,
    policy: str = "error",
    first_line: int = 1,
) -> tuple[list, int]:
    """Enforce a model's ``max_len`` on tokenized examples; returns ``(kept, n_affected)``.

    An example is a sequence of token ids, or a tuple of them (e.g. ``(src_ids, tgt_ids)``, whose length is
    its longest part). ``policy``: ``"error"`` raises a DataError naming ``what`` (e.g. the file) and the
    line of the first too-long example (``first_line + index``: pass 2 for a TSV with a header) and its
    length; ``"skip"`` drops too-long examples; ``"truncate"`` cuts every part to ``max_len``.
    ``n_affected`` counts the dropped or truncated examples, for the recipe to print.
    """
    if policy not in ("error", "skip", "truncate"):
        raise ValueError(f"policy must be 'error', 'skip' or 'truncate', got {policy!r}")
    kept, affected = [], 0
    for i, example in enumerate(seqs):
        parts = example if _is_multi(example) else (example,)
        length = max(len(part) for part in parts)
        if length <= max_len:
            kept.append(example)
            continue
        affected += 1
        if policy == "error":
            raise DataError(f"example {i} (0-based) has length {length} > max_len {max_len}; shorten it or "
                            f"use policy 'skip' or 'truncate'", what, first_line + i)
        if policy == "truncate":
            cut = tuple(part[:max_len] for part in parts)
            kept.append(cut if _is_multi(example) else cut[0])
    return kept, affected


def _is_multi(example) -> bool:
    return isinstance(example, tuple) and len(example) > 0 and not isinstance(example[0], int)
