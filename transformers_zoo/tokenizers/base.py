"""The interface every tokenizer has, the special ids ours share, and save / :func:`load_tokenizer`.

The tokenizers we train use the same special ids, so models, collators and checkpoints never need to ask::

    PAD=0  UNK=1  BOS=2  EOS=3  MASK=4  CLS=5  SEP=6      (pieces <pad> <unk> <s> </s> [MASK] [CLS] [SEP])

A pre-trained vocabulary (GPT-2's, a Hugging Face checkpoint's) sets its own ids instead, and None for the
specials it lacks. ``encode`` adds no specials (collators add BOS/EOS/CLS/SEP where a model wants them);
``decode`` drops every special id, UNK included. ``save(directory)`` writes the model file plus
``tokenizer.json`` (kind, settings, fingerprint); :func:`load_tokenizer` reads any registered kind back.
``fingerprint`` is a sha256 of the kind and the model file's bytes, so a checkpoint can refuse to run with
another tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from ..corpora import DataError

__all__ = ["BOS", "CLS", "EOS", "MASK", "PAD", "SEP", "SPECIAL_PIECES", "UNK", "Tokenizer", "load_tokenizer",
           "register"]

PAD, UNK, BOS, EOS, MASK, CLS, SEP = range(7)
SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>", "[MASK]", "[CLS]", "[SEP]")
N_SPECIAL = len(SPECIAL_PIECES)
CONFIG_FILE = "tokenizer.json"


class Tokenizer:
    """The interface every tokenizer has: fixed special ids, encode/decode, save/load and a fingerprint."""

    kind: ClassVar[str]
    model_file: ClassVar[str]
    pad_id, unk_id, bos_id, eos_id, mask_id, cls_id, sep_id = PAD, UNK, BOS, EOS, MASK, CLS, SEP
    special_ids: ClassVar[frozenset[int]] = frozenset(range(N_SPECIAL))
    #: True when ``train`` found this tokenizer in its cache instead of training it.
    from_cache: bool = False
    #: How conversations become text (a ``chat.ChatTemplate``): an instruct checkpoint's, or ours once
    #: ``chat.with_chat_tokens`` added the chat markers; None for a tokenizer that has none.
    chat_template: Any = None

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no specials added."""
        raise NotImplementedError

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a prompt to continue: ``encode``'s, plus what a pre-trained tokenizer puts first
        (a Llama tokenizer's ``<s>``)."""
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (a list or 1-D tensor); special ids are dropped."""
        raise NotImplementedError

    def id_to_piece(self, i: int) -> str:
        raise NotImplementedError

    def normalize(self, text: str) -> str:
        """What ``decode(encode(text))`` gives back for text the tokenizer fully covers."""
        return text

    def _model_bytes(self) -> bytes:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {}

    def special_tokens(self) -> dict[str, int]:
        """Piece -> id of every special token (written into ``tokenizer.json``)."""
        return dict(zip(SPECIAL_PIECES, range(N_SPECIAL), strict=True))

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> Tokenizer:
        raise NotImplementedError

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of the kind and the saved model file's bytes: equal iff the tokenizers are equal."""
        return hashlib.sha256(self.kind.encode() + b"\0" + self._model_bytes()).hexdigest()

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model file and ``tokenizer.json`` into ``directory`` (created if needed); return it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / self.model_file).write_bytes(self._model_bytes())
        config = {
            "kind": self.kind,
            "model_file": self.model_file,
            "vocab_size": self.vocab_size,
            "special_ids": self.special_tokens(),
            "settings": self._settings(),
            "fingerprint": self.fingerprint,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        if self.chat_template is not None:
            self.chat_template.save(directory)
        return directory

    def _check_specials(self) -> None:
        pieces = tuple(self.id_to_piece(i) for i in range(N_SPECIAL))
        if pieces != SPECIAL_PIECES:
            raise DataError(f"{self.kind} model has special pieces {pieces}, expected {SPECIAL_PIECES}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


def ids_list(ids: Iterable[int]) -> list[int]:
    """``ids`` (a list or a 1-D tensor) as a list of ints, for ``decode``."""
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]


#: kind -> class: what :func:`load_tokenizer` can read back. Each tokenizer class adds itself (:func:`register`).
TOKENIZERS: dict[str, type[Tokenizer]] = {}


def register(cls: type[Tokenizer]) -> type[Tokenizer]:
    """Class decorator: make ``cls`` loadable by its ``kind``."""
    TOKENIZERS[cls.kind] = cls
    return cls


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer saved with ``save(directory)``; its ``tokenizer.json`` says which kind it is."""
    config_path = Path(directory) / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise DataError("file not found (no tokenizer saved here)", config_path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not a valid tokenizer config ({err})", config_path) from None
    kind = config.get("kind")
    if kind not in TOKENIZERS:
        _register_interop_kinds()
    if kind not in TOKENIZERS:
        raise DataError(f"unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZERS)}", config_path)
    model_path = Path(directory) / config.get("model_file", TOKENIZERS[kind].model_file)
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", model_path) from None
    cls = TOKENIZERS[kind]
    if hasattr(cls, "load_from"):  # a tokenizer wrapping another, saved in a folder of its own
        tokenizer = cls.load_from(Path(directory), data)
    else:
        tokenizer = cls._from_model_bytes(data, config.get("settings", {}))
    if config.get("fingerprint") not in (None, tokenizer.fingerprint):
        raise DataError(f"model file does not match the fingerprint in {CONFIG_FILE}", model_path)
    if tokenizer.chat_template is None:
        from .chat import ChatTemplate  # chat.py builds on this module

        tokenizer.chat_template = ChatTemplate.load(directory)
    return tokenizer


def _register_interop_kinds() -> None:
    # The Hugging Face kinds (wordpiece, marian, hf_json) are defined in interop/, a layer above this one that
    # imports it: importing them at the top of this module would be circular, so a saved tokenizer of a kind
    # not registered yet imports them here, which registers them.
    from ..interop import hf_json_tokenizer, marian_tokenizer, wordpiece_tokenizer  # noqa: F401
