"""The one way every recipe gets a tokenizer of its own: :func:`train_tokenizer`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..corpora import PathLike
from ..pretokenize import pretokenizer
from .base import N_SPECIAL, Tokenizer
from .char import CharTokenizer
from .gpt2 import GPT2Tokenizer
from .sentencepiece import SentencePieceTokenizer

__all__ = ["TRAINABLE", "train_tokenizer"]

TRAINABLE = ("char", "bpe", "unigram", "gpt2")


def train_tokenizer(kind: str, texts: str | Sequence[str], vocab_size: int = 0, *,
                    cache_dir: str | os.PathLike | None = None, data_dir: PathLike | None = None,
                    hard_vocab_limit: bool = True, what: str = "", pretokenize: str | None = None) -> Tokenizer:
    """The one way every recipe gets a tokenizer of its own: ``kind`` trained on ``texts`` (the training split
    only: a running text, or a list of sentences) or, for ``gpt2``, GPT-2's pre-trained byte-level BPE (its
    rank file from ``data_dir``: nothing is trained).

    ``char``: one id per character; ``bpe``/``unigram``: sentencepiece on the non-empty lines, cached in
    ``cache_dir`` when given. ``hard_vocab_limit=False`` makes ``vocab_size`` an upper bound (a small corpus
    gets a smaller vocabulary instead of an error). A setting sentencepiece refuses is a ValueError naming
    ``vocab`` and ``what`` (say "source") with sentencepiece's own last line. ``pretokenize`` ("ptb" or
    None) is a sentencepiece setting (see :class:`SentencePieceTokenizer`).
    """
    if pretokenizer(pretokenize) is not None and kind not in ("bpe", "unigram"):
        raise ValueError(f"pretokenize {pretokenize!r} needs a sentencepiece tokenizer (bpe or unigram), not {kind!r}")
    if kind == "gpt2":
        return GPT2Tokenizer.fetch(data_dir)
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind not in ("bpe", "unigram"):
        raise ValueError(f"tokenizer {kind!r} is not valid; choose one of: {', '.join(TRAINABLE)}")
    if vocab_size <= N_SPECIAL + 256:
        raise ValueError(f"vocab {vocab_size} is too small: the {N_SPECIAL} specials and 256 byte pieces alone "
                         f"take {N_SPECIAL + 256}")
    lines = texts.splitlines() if isinstance(texts, str) else texts
    lines = [line for line in lines if line.strip()]
    options = {} if hard_vocab_limit else {"hard_vocab_limit": False}
    try:
        return SentencePieceTokenizer.train(lines, vocab_size=vocab_size, model_type=kind, cache_dir=cache_dir,
                                            pretokenize=pretokenize, **options)
    except RuntimeError as err:  # sentencepiece's own errors, e.g. "Vocabulary size too high (9000)..."
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        which = f"the {what} vocabulary" if what else f"a {kind} vocabulary"
        raise ValueError(f"vocab {vocab_size}: sentencepiece could not train {which}: {detail}") from None
