"""A character tokenizer: one id per character of the training text, after the 7 specials."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ..corpora import DataError
from .base import N_SPECIAL, SPECIAL_PIECES, UNK, Tokenizer, ids_list, register

__all__ = ["CharTokenizer"]


@register
class CharTokenizer(Tokenizer):
    """One id per character: the 7 specials, then the training text's distinct characters, sorted.

    Characters not seen in training encode to UNK (and so vanish in ``decode``).
    """

    kind = "char"
    model_file = "chars.json"

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = chars
        self._ids = {c: i for i, c in enumerate(chars, start=N_SPECIAL)}

    @classmethod
    def train(cls, text: str | Iterable[str]) -> CharTokenizer:
        """Vocabulary of the characters in ``text`` (a string or an iterable of strings)."""
        chars: set[str] = set(text) if isinstance(text, str) else set().union(*map(set, text))
        if not chars:
            raise DataError("no text to build a character vocabulary from")
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return N_SPECIAL + len(self.chars)

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.get(c, UNK) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        chars = self.chars
        return "".join(chars[i - N_SPECIAL] for i in ids_list(ids) if i >= N_SPECIAL)

    def id_to_piece(self, i: int) -> str:
        i = int(i)
        return SPECIAL_PIECES[i] if i < N_SPECIAL else self.chars[i - N_SPECIAL]

    def _model_bytes(self) -> bytes:
        return json.dumps(self.chars, ensure_ascii=False).encode()

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> CharTokenizer:
        return cls(json.loads(data))
