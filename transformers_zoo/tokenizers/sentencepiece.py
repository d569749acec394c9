"""Subword tokenizers (BPE or unigram) from sentencepiece, trained on a recipe's training texts."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sentencepiece as spm

from ..corpora import DataError
from ..pretokenize import pretokenizer
from .base import BOS, EOS, MASK, PAD, SPECIAL_PIECES, UNK, Tokenizer, ids_list, register
from .cache import cache_key, cached

__all__ = ["SentencePieceTokenizer"]


@register
class SentencePieceTokenizer(Tokenizer):
    """Subword tokenizer (BPE or unigram) from sentencepiece, trained on a recipe's training texts.

    Normalisation: sentencepiece normalises text before splitting it. The default rule ``nmt_nfkc`` (the
    sentencepiece default, usual for translation) applies Unicode NFKC (e.g. full-width letters and the
    ``ﬁ`` ligature become ASCII) and, like every rule, removes leading, trailing and repeated whitespace.
    So ``decode(encode(x)) == normalize(x)``, which equals ``x`` for most text (all of Multi30k's and
    SST-2's test sets but the few lines with double spaces). Pass ``normalization_rule_name="identity"`` to
    keep Unicode as it is. ``byte_fallback`` (default on) spells characters missing from the vocabulary as
    UTF-8 byte pieces instead of UNK, so the round trip holds for unseen characters too.

    ``pretokenize="ptb"`` (:mod:`transformers_zoo.pretokenize`) puts every text into SST-2's written form,
    lower-cased Penn Treebank tokens, before sentencepiece sees it, in training and in every encode; it is
    saved in ``tokenizer.json`` and is part of the fingerprint.
    """

    kind = "sentencepiece"
    model_file = "spm.model"

    def __init__(
        self, model_proto: bytes, *, settings: dict[str, Any] | None = None, from_cache: bool = False
    ):
        self._proto = bytes(model_proto)
        self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
        self.settings = dict(settings or {})  # how it was trained, for tokenizer.json's readers
        self.from_cache = from_cache
        self._pre = pretokenizer(self.settings.get("pretokenize"))
        self._check_specials()

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        model_type: str = "bpe",
        character_coverage: float = 1.0,
        cache_dir: str | os.PathLike | None = None,
        *,
        normalization_rule_name: str = "nmt_nfkc",
        byte_fallback: bool = True,
        num_threads: int = 1,
        pretokenize: str | None = None,
        **options: Any,
    ) -> SentencePieceTokenizer:
        """Train on ``texts`` (one sentence each; pass the training split only) or load the cached result.

        With ``cache_dir`` the model is stored under a name derived from a sha256 of the texts, the settings
        and the sentencepiece version; a second call with the same inputs loads it (``from_cache`` is True).
        Training runs in-process, quietly and deterministically: all sentences are used in order, and
        ``num_threads`` defaults to 1 because unigram training gives different models for different thread
        counts. ``options`` go to ``SentencePieceTrainer.train`` unchanged (e.g. ``max_sentence_length``;
        longer sentences are skipped by sentencepiece). ``pretokenize`` names a :data:`PRETOKENIZERS` entry
        applied to every text first (and kept: ``encode`` applies it too).
        """
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
        pre = pretokenizer(pretokenize)
        texts = [pre(text) for text in texts] if pre else list(texts)
        if not any(text.strip() for text in texts):
            raise DataError("no text to train a sentencepiece model on")
        settings = dict(vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
                        normalization_rule_name=normalization_rule_name, byte_fallback=byte_fallback,
                        num_threads=num_threads, **options)
        if pre:  # only when set, so the settings (and cache keys) of every other tokenizer stay as they were
            settings["pretokenize"] = pretokenize
        if cache_dir is None:
            return cls(_train_sentencepiece(texts, settings), settings=settings)
        key = cache_key(texts, {"settings": settings, "sentencepiece": spm.__version__})
        path = Path(cache_dir) / f"spm-{model_type}-{vocab_size}-{key[:20]}"
        return cached(path, lambda: cls(_train_sentencepiece(texts, settings), settings=settings))

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(self._pre(text) if self._pre else text, out_type=int)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        texts = [self._pre(text) for text in texts] if self._pre else list(texts)
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in ids_list(ids) if i not in self.special_ids])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def normalize(self, text: str) -> str:
        # sentencepiece marks spaces (and the dummy prefix) with U+2581; decode turns them back into spaces.
        text = self._pre(text) if self._pre else text
        return self.sp.normalize(text).replace("\u2581", " ").strip(" ")

    @property
    def fingerprint(self) -> str:
        """As every tokenizer's, plus the pretokenizer when there is one (it changes every id sequence)."""
        pre = self.settings.get("pretokenize")
        if not pre:
            return super().fingerprint
        return hashlib.sha256(f"{self.kind}\0pretokenize={pre}\0".encode() + self._proto).hexdigest()

    def _model_bytes(self) -> bytes:
        return self._proto

    def _settings(self) -> dict[str, Any]:
        return self.settings

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> SentencePieceTokenizer:
        return cls(data, settings=settings)


def _train_sentencepiece(texts: list[str], settings: dict[str, Any]) -> bytes:
    settings = {k: v for k, v in settings.items() if k != "pretokenize"}  # ours: applied to the texts already
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        # Control symbols get ids 4-6 and, unlike user-defined symbols, are never produced from raw text:
        # a sentence containing "[MASK]" is spelled out, not turned into the mask id.
        control_symbols=list(SPECIAL_PIECES[MASK:]),
        input_sentence_size=0,  # use every sentence: sampling would make the model depend on a seed
        shuffle_input_sentence=False,
        minloglevel=2,  # errors only; the trainer otherwise logs pages per model
        **settings,
    )
    return model.getvalue()

