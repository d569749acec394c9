"""Long documents as passages an encoder can embed whole and a prompt can hold: windows of at most ``size``
tokens, each starting ``overlap`` tokens before the previous one ended (so a sentence cut at a border is whole
in one of the two).

    ids, texts = split_passages(ids, texts, encoder.tokenizer, size=128, overlap=16)

Windows are cut between words (whitespace), never inside one, and a passage is the document's own text from its
first word to its last (case, accents and spacing as written). A word counts the tokens it encodes to alone; a
word longer than ``size`` is a passage of its own (the encoder clips it). A document that fits keeps its id; the
passages of a longer one are ``id#1``, ``id#2``, ...
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..tokenizers import Tokenizer

__all__ = ["split_passages", "windows"]

WORD = re.compile(r"\S+")


def windows(lengths: Sequence[int], size: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` word ranges covering words of ``lengths`` tokens: each at most ``size`` tokens (one word
    at least), the next one starting at the latest word that keeps ``overlap`` tokens of this one (and moves)."""
    if size < 1 or not 0 <= overlap < size:
        raise ValueError(f"passage size {size} and overlap {overlap}: need size >= 1 and 0 <= overlap < size")
    spans: list[tuple[int, int]] = []
    start = 0
    while start < len(lengths):
        end, total = start + 1, lengths[start]
        while end < len(lengths) and total + lengths[end] <= size:
            total += lengths[end]
            end += 1
        spans.append((start, end))
        if end == len(lengths):
            break
        back, kept = end, 0
        while back - 1 > start and kept + lengths[back - 1] <= overlap:
            back -= 1
            kept += lengths[back]
        start = back
    return spans


def split_passages(ids: Sequence[str], texts: Sequence[str], tokenizer: Tokenizer, size: int, overlap: int = 0
                   ) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of the passages of every document, in document order (see the module's docstring)."""
    out_ids, out_texts = [], []
    for doc_id, text in zip(ids, texts, strict=True):
        words = list(WORD.finditer(text))
        lengths = [max(len(t), 1) for t in tokenizer.encode_batch([w.group() for w in words])]
        spans = windows(lengths, size, overlap) if words else []
        if len(spans) <= 1:
            out_ids.append(doc_id)
            out_texts.append(text)
            continue
        for n, (start, end) in enumerate(spans, start=1):
            out_ids.append(f"{doc_id}#{n}")
            out_texts.append(text[words[start].start():words[end - 1].end()])
    return out_ids, out_texts
