"""Tokenizers with one interface: sentencepiece (BPE or unigram), characters, and GPT-2's byte-level BPE.

The tokenizers we train use the same special ids, so models, collators and checkpoints never need to ask::

    PAD=0  UNK=1  BOS=2  EOS=3  MASK=4  CLS=5  SEP=6      (pieces <pad> <unk> <s> </s> [MASK] [CLS] [SEP])

GPT-2's pre-trained vocabulary has one special token, ``<|endoftext|>`` = 50256, which is its pad, bos
and eos id (it has no unk, mask, cls or sep: those are None).

``encode`` adds no specials (collators add BOS/EOS/CLS/SEP where a model wants them); ``decode`` drops
every special id, UNK included. ``save(directory)`` writes the model file plus ``tokenizer.json`` (kind,
settings, fingerprint); :func:`load_tokenizer` reads any kind back. ``fingerprint`` is a sha256 of the
kind and the model file's bytes, so a checkpoint can refuse to run with another tokenizer.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import sentencepiece as spm

from .corpora import DataError, PathLike, fetch

__all__ = [
    "BOS",
    "CLS",
    "EOS",
    "MASK",
    "PAD",
    "SEP",
    "SPECIAL_PIECES",
    "UNK",
    "CharTokenizer",
    "GPT2Tokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "load_tokenizer",
]

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

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no specials added."""
        raise NotImplementedError

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

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
        return directory

    def _check_specials(self) -> None:
        pieces = tuple(self.id_to_piece(i) for i in range(N_SPECIAL))
        if pieces != SPECIAL_PIECES:
            raise DataError(f"{self.kind} model has special pieces {pieces}, expected {SPECIAL_PIECES}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


def _ids_list(ids: Iterable[int]) -> list[int]:
    return ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]


class SentencePieceTokenizer(Tokenizer):
    """Subword tokenizer (BPE or unigram) from sentencepiece, trained on a recipe's training texts.

    Normalisation: sentencepiece normalises text before splitting it. The default rule ``nmt_nfkc`` (the
    sentencepiece default, usual for translation) applies Unicode NFKC (e.g. full-width letters and the
    ``ﬁ`` ligature become ASCII) and, like every rule, removes leading, trailing and repeated whitespace.
    So ``decode(encode(x)) == normalize(x)``, which equals ``x`` for most text (all of Multi30k's and
    SST-2's test sets but the few lines with double spaces). Pass ``normalization_rule_name="identity"`` to
    keep Unicode as it is. ``byte_fallback`` (default on) spells characters missing from the vocabulary as
    UTF-8 byte pieces instead of UNK, so the round trip holds for unseen characters too.
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
        **options: Any,
    ) -> SentencePieceTokenizer:
        """Train on ``texts`` (one sentence each; pass the training split only) or load the cached result.

        With ``cache_dir`` the model is stored under a name derived from a sha256 of the texts, the settings
        and the sentencepiece version; a second call with the same inputs loads it (``from_cache`` is True).
        Training runs in-process, quietly and deterministically: all sentences are used in order, and
        ``num_threads`` defaults to 1 because unigram training gives different models for different thread
        counts. ``options`` go to ``SentencePieceTrainer.train`` unchanged (e.g. ``max_sentence_length``;
        longer sentences are skipped by sentencepiece).
        """
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
        texts = list(texts)
        if not any(text.strip() for text in texts):
            raise DataError("no text to train a sentencepiece model on")
        settings = dict(vocab_size=vocab_size, model_type=model_type, character_coverage=character_coverage,
                        normalization_rule_name=normalization_rule_name, byte_fallback=byte_fallback,
                        num_threads=num_threads, **options)
        if cache_dir is None:
            return cls(_train_sentencepiece(texts, settings), settings=settings)
        path = Path(cache_dir) / f"spm-{model_type}-{vocab_size}-{_cache_key(texts, settings)[:20]}"
        if (path / CONFIG_FILE).is_file():
            tokenizer = load_tokenizer(path)
            tokenizer.from_cache = True
            return tokenizer
        tokenizer = cls(_train_sentencepiece(texts, settings), settings=settings)
        _save_atomically(tokenizer, path)
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in _ids_list(ids) if i not in self.special_ids])

    def id_to_piece(self, i: int) -> str:
        return self.sp.id_to_piece(int(i))

    def normalize(self, text: str) -> str:
        # sentencepiece marks spaces (and the dummy prefix) with U+2581; decode turns them back into spaces.
        return self.sp.normalize(text).replace("\u2581", " ").strip(" ")

    def _model_bytes(self) -> bytes:
        return self._proto

    def _settings(self) -> dict[str, Any]:
        return self.settings

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> SentencePieceTokenizer:
        return cls(data, settings=settings)


def _train_sentencepiece(texts: list[str], settings: dict[str, Any]) -> bytes:
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


def _cache_key(texts: list[str], settings: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    header = {"settings": settings, "sentencepiece": spm.__version__}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in texts:
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little") + data)  # length prefix: no two lists hash alike
    return digest.hexdigest()


def _save_atomically(tokenizer: Tokenizer, path: Path) -> None:
    """Save into a temp folder beside ``path`` and rename it, so a reader never sees half a tokenizer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tokenizer.save(tmp)
        os.replace(tmp, path)
    except OSError:
        if not (path / CONFIG_FILE).is_file():  # another process may have won the race; that is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        return "".join(chars[i - N_SPECIAL] for i in _ids_list(ids) if i >= N_SPECIAL)

    def id_to_piece(self, i: int) -> str:
        i = int(i)
        return SPECIAL_PIECES[i] if i < N_SPECIAL else self.chars[i - N_SPECIAL]

    def _model_bytes(self) -> bytes:
        return json.dumps(self.chars, ensure_ascii=False).encode()

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> CharTokenizer:
        return cls(json.loads(data))


class GPT2Tokenizer(Tokenizer):
    """GPT-2's byte-level BPE (Radford et al. 2019) through ``tiktoken``: 50,256 merge ranks plus
    ``<|endoftext|>`` (50256), what pre-trained GPT-2 checkpoints read. Lossless: ``decode(encode(x)) == x``.

    The rank file ``gpt2.tiktoken`` is read from the data dir (``DATA_DIR/gpt2/gpt2.tiktoken``), fetched
    there, checksummed, when missing (see ``corpora.fetch``). ``encode`` treats ``<|endoftext|>`` in text
    as ordinary characters; collators add the id where a sequence ends.
    """

    kind = "gpt2"
    model_file = "gpt2.tiktoken"
    ENDOFTEXT = 50256
    pad_id = bos_id = eos_id = ENDOFTEXT
    unk_id = mask_id = cls_id = sep_id = None
    special_ids: ClassVar[frozenset[int]] = frozenset({ENDOFTEXT})

    def __init__(self, ranks: bytes):
        import tiktoken
        from tiktoken_ext.openai_public import r50k_pat_str

        self._ranks = bytes(ranks)
        try:
            mergeable = {base64.b64decode(token): int(rank)
                         for token, rank in (line.split() for line in self._ranks.splitlines() if line)}
        except ValueError as err:
            raise DataError(f"not a tiktoken rank file ({err})") from None
        if len(mergeable) != self.ENDOFTEXT:
            raise DataError(f"GPT-2's rank file has {self.ENDOFTEXT} ranks, this one {len(mergeable)}")
        self.enc = tiktoken.Encoding("gpt2", pat_str=r50k_pat_str, mergeable_ranks=mergeable,
                                     special_tokens={"<|endoftext|>": self.ENDOFTEXT})

    @classmethod
    def fetch(cls, data_dir: PathLike | None = None) -> GPT2Tokenizer:
        """The tokenizer from ``DATA_DIR/gpt2/gpt2.tiktoken``, downloaded and checksummed if missing."""
        return cls((fetch("gpt2", data_dir, [cls.model_file]) / cls.model_file).read_bytes())

    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(list(texts), num_threads=1)

    def decode(self, ids: Iterable[int]) -> str:
        return self.enc.decode([i for i in _ids_list(ids) if i != self.ENDOFTEXT])

    def id_to_piece(self, i: int) -> str:
        return self.enc.decode_single_token_bytes(int(i)).decode("utf-8", errors="replace")

    def special_tokens(self) -> dict[str, int]:
        return {"<|endoftext|>": self.ENDOFTEXT}

    def _model_bytes(self) -> bytes:
        return self._ranks

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> GPT2Tokenizer:
        return cls(data)


TOKENIZERS: dict[str, type[Tokenizer]] = {"sentencepiece": SentencePieceTokenizer, "char": CharTokenizer,
                                          "gpt2": GPT2Tokenizer}


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
        raise DataError(f"unknown tokenizer kind {kind!r}; known: {', '.join(TOKENIZERS)}", config_path)
    model_path = Path(directory) / config.get("model_file", TOKENIZERS[kind].model_file)
    try:
        data = model_path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", model_path) from None
    tokenizer = TOKENIZERS[kind]._from_model_bytes(data, config.get("settings", {}))
    if config.get("fingerprint") not in (None, tokenizer.fingerprint):
        raise DataError(f"model file does not match the fingerprint in {CONFIG_FILE}", model_path)
    return tokenizer
