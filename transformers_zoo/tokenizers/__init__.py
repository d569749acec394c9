"""Tokenizers with one interface (:mod:`.base`): sentencepiece (BPE or unigram), characters, GPT-2's byte-level
BPE, and :func:`train_tokenizer`, the one way a recipe gets one of its own (cached: :mod:`.cache`).

The Hugging Face tokenizers (BERT's WordPiece, Marian's, any ``tokenizer.json``) read checkpoint files and
live in ``interop/``; :func:`load_tokenizer` reads them back too, and they stay importable from here.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import (
    BOS,
    CLS,
    CONFIG_FILE,
    EOS,
    MASK,
    N_SPECIAL,
    PAD,
    SEP,
    SPECIAL_PIECES,
    TOKENIZERS,
    UNK,
    Tokenizer,
    load_tokenizer,
    register,
)
from .char import CharTokenizer
from .chat import ChatTemplate, ChatTokenizer, ConversationError
from .gpt2 import GPT2Tokenizer
from .sentencepiece import SentencePieceTokenizer
from .train import TRAINABLE, train_tokenizer

__all__ = [
    "BOS",
    "CLS",
    "CONFIG_FILE",
    "EOS",
    "MASK",
    "N_SPECIAL",
    "PAD",
    "SEP",
    "SPECIAL_PIECES",
    "TOKENIZERS",
    "TRAINABLE",
    "UNK",
    "CharTokenizer",
    "ChatTemplate",
    "ChatTokenizer",
    "ConversationError",
    "GPT2Tokenizer",
    "HFJsonTokenizer",
    "MarianTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "load_tokenizer",
    "register",
    "train_tokenizer",
]

# Where the Hugging Face tokenizers live now. They are imported on first use (PEP 562), not here: interop/
# is a layer above this one and imports it.
_INTEROP = {"HFJsonTokenizer": "hf_json_tokenizer", "MarianTokenizer": "marian_tokenizer",
            "WordPieceTokenizer": "wordpiece_tokenizer"}


def __getattr__(name: str) -> Any:
    if name in _INTEROP:
        return getattr(importlib.import_module(f"..interop.{_INTEROP[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
