"""BERT's WordPiece tokenizer, what a Hugging Face BERT checkpoint reads (``vocab.txt``), in pure Python.

A BERT checkpoint's vocabulary has its own ids for [PAD], [UNK], [CLS], [SEP] and [MASK] (0, 100, 101, 102,
103 in ``bert-base-uncased``) and no bos or eos.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..corpora import DataError, PathLike, read_json
from ..tokenizers.base import Tokenizer, ids_list, register

__all__ = ["WordPieceTokenizer"]


@register
class WordPieceTokenizer(Tokenizer):
    """BERT's tokenizer (Devlin et al. 2019), what a Hugging Face BERT checkpoint reads: ``vocab.txt`` (one
    piece a line, its id the line number) and the settings of its ``tokenizer_config.json``.

    Two stages, as in BERT's ``BasicTokenizer`` and ``WordpieceTokenizer``:

    1. basic: drop NUL, U+FFFD and control characters, turn every whitespace character into a space, put
       spaces around CJK ideographs (``tokenize_chinese_chars``), Unicode NFC, split on whitespace; then
       each word is lower-cased (``do_lower_case``) and stripped of accents (NFD, combining marks dropped;
       ``strip_accents``: None follows ``do_lower_case``) and split before and after every punctuation
       character (Unicode category P, and all ASCII that is neither letter, digit nor space);
    2. WordPiece: each word becomes the longest vocabulary piece that starts it, then the longest
       ``##``-continuation piece, and so on; a word with no such spelling, or longer than 100 characters,
       becomes one [UNK].

    ``encode`` adds no specials, and text like "[MASK]" is spelled out as ordinary characters (Hugging
    Face's tokenizer would map it to the special id). ``decode`` joins the pieces with spaces, gluing
    ``##`` pieces to the one before, so ``decode(encode(x)) == normalize(x)`` for text the vocabulary
    covers. ``fingerprint`` covers the settings as well as the vocabulary.
    """

    kind = "wordpiece"
    model_file = "vocab.txt"
    MAX_WORD_CHARS = 100
    SPECIALS: ClassVar[dict[str, str]] = {"pad_id": "[PAD]", "unk_id": "[UNK]", "cls_id": "[CLS]",
                                          "sep_id": "[SEP]", "mask_id": "[MASK]"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("pad_id", "unk_id", "cls_id", "sep_id")
    bos_id = eos_id = None

    def __init__(self, vocab: Sequence[str], *, do_lower_case: bool = True, strip_accents: bool | None = None,
                 tokenize_chinese_chars: bool = True, source: PathLike | None = None):
        self.pieces = list(vocab)
        self.ids = {piece: i for i, piece in enumerate(self.pieces)}  # a repeated piece: the last line wins
        self.do_lower_case, self.strip_accents = bool(do_lower_case), strip_accents
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        missing = [self.SPECIALS[k] for k in self.REQUIRED if self.SPECIALS[k] not in self.ids]
        if missing:
            raise DataError(f"WordPiece vocabulary lacks the special token(s) {', '.join(missing)}", source)
        for attr, piece in self.SPECIALS.items():
            setattr(self, attr, self.ids.get(piece))
        self.special_ids = frozenset(self.ids[p] for p in self.SPECIALS.values() if p in self.ids)
        self._word_cache: dict[str, list[int]] = {}

    @classmethod
    def from_vocab_file(cls, path: PathLike, **settings: Any) -> WordPieceTokenizer:
        """Read ``vocab.txt`` (UTF-8, one piece a line) with the given settings."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise DataError("file not found (a WordPiece vocabulary, vocab.txt, was expected)", path) from None
        return cls(_vocab_lines(data, path), source=path, **settings)

    @classmethod
    def from_hf(cls, directory: PathLike) -> WordPieceTokenizer:
        """The tokenizer of a Hugging Face BERT checkpoint directory: ``vocab.txt`` plus the lower-casing,
        accent and CJK settings of ``tokenizer_config.json`` (BERT's defaults where it has none)."""
        directory = Path(directory)
        settings: dict[str, Any] = {}
        config_path = directory / "tokenizer_config.json"
        if config_path.is_file():
            hf = read_json(config_path)
            for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars"):
                if hf.get(key) is not None:
                    settings[key] = hf[key]
            names = {k: hf.get(k.replace("_id", "_token")) for k in cls.SPECIALS}
            odd = {k: v for k, v in names.items() if isinstance(v, str) and v != cls.SPECIALS[k]}
            if odd:
                key, value = next(iter(odd.items()))
                raise DataError(f"{key.replace('_id', '_token')}={value!r}: only BERT's own special tokens "
                                f"({', '.join(cls.SPECIALS.values())}) are supported", config_path)
        return cls.from_vocab_file(directory / cls.model_file, **settings)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def basic_tokens(self, text: str) -> list[str]:
        """Stage 1: the words and punctuation marks of ``text``, lower-cased and accent-stripped as set."""
        chars = []
        for char in text:
            if char in "\0\ufffd" or _is_control(char):
                continue
            if _is_whitespace(char):
                chars.append(" ")
            elif self.tokenize_chinese_chars and _is_cjk(ord(char)):
                chars.extend((" ", char, " "))
            else:
                chars.append(char)
        strip = self.do_lower_case if self.strip_accents is None else self.strip_accents
        out: list[str] = []
        for word in unicodedata.normalize("NFC", "".join(chars)).split():
            if self.do_lower_case:
                word = word.lower()
            if strip:
                word = "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")
            piece = ""
            for char in word:
                if _is_punctuation(char):
                    out.extend((piece, char) if piece else (char,))
                    piece = ""
                else:
                    piece += char
            if piece:
                out.append(piece)
        return out

    def _word_ids(self, word: str) -> list[int]:
        """Stage 2: greedy longest-match-first WordPiece of one word, or [UNK]."""
        if len(word) > self.MAX_WORD_CHARS:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                i = self.ids.get(word[start:end] if start == 0 else "##" + word[start:end])
                if i is not None:
                    ids.append(i)
                    start = end
                    break
            else:
                return [self.unk_id]
        return ids

    def encode(self, text: str) -> list[int]:
        cache = self._word_cache
        out: list[int] = []
        for word in self.basic_tokens(text):
            if word not in cache:
                if len(cache) > 200_000:  # bounded: a corpus of odd words must not fill the memory
                    cache.clear()
                cache[word] = self._word_ids(word)
            out.extend(cache[word])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [self.pieces[i] for i in ids_list(ids) if i not in self.special_ids]
        return " ".join(pieces).replace(" ##", "")

    def id_to_piece(self, i: int) -> str:
        return self.pieces[int(i)]

    def normalize(self, text: str) -> str:
        return " ".join(self.basic_tokens(text))

    def special_tokens(self) -> dict[str, int]:
        return {piece: self.ids[piece] for piece in self.SPECIALS.values() if piece in self.ids}

    def _model_bytes(self) -> bytes:
        return "".join(piece + "\n" for piece in self.pieces).encode()

    def _settings(self) -> dict[str, Any]:
        return {"do_lower_case": self.do_lower_case, "strip_accents": self.strip_accents,
                "tokenize_chinese_chars": self.tokenize_chinese_chars}

    @property
    def fingerprint(self) -> str:
        settings = json.dumps(self._settings(), sort_keys=True).encode()
        return hashlib.sha256(self.kind.encode() + b"\0" + settings + b"\0" + self._model_bytes()).hexdigest()

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> WordPieceTokenizer:
        return cls(_vocab_lines(data, cls.model_file), **settings)


def _vocab_lines(data: bytes, path: PathLike) -> list[str]:
    """The pieces of a vocab.txt: one a line (any line ending), a final newline optional."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not UTF-8 text ({err})", path) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_control(char: str) -> bool:
    # tab, newline and carriage return are control characters that BERT counts as whitespace
    return char not in "\t\n\r" and unicodedata.category(char).startswith("C")


def _is_punctuation(char: str) -> bool:
    # all non-alphanumeric printable ASCII counts ("$", "^", "`" are symbols, not punctuation, in Unicode)
    cp = ord(char)
    return 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126 or \
        unicodedata.category(char).startswith("P")


# CJK Unified Ideographs and their extensions and compatibility blocks (not Hangul, Hiragana or Katakana,
# whose words are space-separated)
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _is_cjk(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)
