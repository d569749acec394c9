"""Tokenizers with one interface: sentencepiece (BPE or unigram), characters, GPT-2's byte-level BPE, BERT's
WordPiece, Marian's (opus-mt) two sentencepiece models over one vocabulary, and any Hugging Face
``tokenizer.json`` (Llama, Qwen2, SmolLM) through the ``tokenizers`` library.

The tokenizers we train use the same special ids, so models, collators and checkpoints never need to ask::

    PAD=0  UNK=1  BOS=2  EOS=3  MASK=4  CLS=5  SEP=6      (pieces <pad> <unk> <s> </s> [MASK] [CLS] [SEP])

GPT-2's pre-trained vocabulary has one special token, ``<|endoftext|>`` = 50256, which is its pad, bos
and eos id (it has no unk, mask, cls or sep: those are None). A BERT checkpoint's WordPiece vocabulary
(``vocab.txt``) has its own ids for [PAD], [UNK], [CLS], [SEP] and [MASK] (0, 100, 101, 102, 103 in
``bert-base-uncased``) and no bos or eos. A Marian checkpoint's ``vocab.json`` has ``</s>``, ``<unk>``
and ``<pad>`` (0, 1 and the last id in opus-mt) and no bos: its decoder starts from pad, its ``bos_id``.

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
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import sentencepiece as spm

from .corpora import DataError, PathLike, fetch
from .pretokenize import pretokenizer

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
    "HFJsonTokenizer",
    "MarianTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "WordPieceTokenizer",
    "load_tokenizer",
    "train_tokenizer",
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
        return self.sp.encode(self._pre(text) if self._pre else text, out_type=int)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        texts = [self._pre(text) for text in texts] if self._pre else list(texts)
        return self.sp.encode(texts, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i for i in _ids_list(ids) if i not in self.special_ids])

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
            hf = _read_json(config_path)
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
        pieces = [self.pieces[i] for i in _ids_list(ids) if i not in self.special_ids]
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


class MarianTokenizer(Tokenizer):
    """One side of a Marian / opus-mt checkpoint's tokenizer, what ``transformers``' ``MarianTokenizer``
    reads: ``source.spm`` and ``target.spm`` (sentencepiece models) and one ``vocab.json`` (piece -> id)
    that both sides share. ``side="source"`` encodes with ``source.spm``, ``side="target"`` with
    ``target.spm`` (``MarianTokenizer(text_target=...)``); either way a piece is looked up in ``vocab.json``
    (a piece missing there is ``<unk>``: the sentencepiece ids are not the model's ids). A leading
    language code such as ``>>fr<<`` (multilingual opus-mt) is kept whole as one piece.

    Special ids come from ``vocab.json``: ``</s>`` (eos), ``<unk>``, ``<pad>``. Marian has no ``<s>``: the
    decoder starts from ``<pad>`` (``decoder_start_token_id``), so ``bos_id`` is the pad id. ``decode`` drops
    the specials and joins the pieces with the side's sentencepiece model, as ``MarianTokenizer.decode
    (skip_special_tokens=True)``. Not done here: Moses punctuation normalisation (transformers applies it
    only when ``sacremoses`` is installed), and text like ``</s>`` is spelled out, never the special id.
    """

    kind = "marian"
    model_file = "marian.json"
    SPECIALS: ClassVar[dict[str, str]] = {"eos_id": "</s>", "unk_id": "<unk>", "pad_id": "<pad>"}
    mask_id = cls_id = sep_id = None

    def __init__(self, source_spm: bytes, target_spm: bytes, vocab: dict[str, int], side: str = "source",
                 source: PathLike | None = None):
        if side not in ("source", "target"):
            raise ValueError(f"side must be 'source' or 'target', got {side!r}")
        self._spm_bytes, self.side = (bytes(source_spm), bytes(target_spm)), side
        self.vocab = {str(piece): int(i) for piece, i in vocab.items()}
        missing = [piece for piece in self.SPECIALS.values() if piece not in self.vocab]
        if missing:
            raise DataError(f"Marian vocabulary lacks the special token(s) {', '.join(missing)}", source)
        for attr, piece in self.SPECIALS.items():
            setattr(self, attr, self.vocab[piece])
        self.bos_id = self.pad_id
        self.special_ids = frozenset(self.vocab[p] for p in self.SPECIALS.values())
        self.pieces = {i: piece for piece, i in self.vocab.items()}
        self.sp = spm.SentencePieceProcessor(model_proto=self._spm_bytes[side == "target"])

    @classmethod
    def from_hf(cls, directory: PathLike, side: str = "source") -> MarianTokenizer:
        """One side of the tokenizer of a Hugging Face Marian checkpoint directory."""
        directory = Path(directory)
        config_path = directory / "tokenizer_config.json"
        if config_path.is_file() and _read_json(config_path).get("separate_vocabs"):
            raise DataError("separate_vocabs=true (one vocabulary per side) is not supported", config_path)
        vocab = _read_json(directory / "vocab.json")
        if not isinstance(vocab, dict):
            raise DataError("expected a JSON object of piece -> id", directory / "vocab.json")
        models = []
        for name in ("source.spm", "target.spm"):
            try:
                models.append((directory / name).read_bytes())
            except FileNotFoundError:
                raise DataError("file not found (a Marian checkpoint has source.spm and target.spm)",
                                directory / name) from None
        return cls(*models, vocab, side, source=directory / "vocab.json")

    @classmethod
    def pair_from_hf(cls, directory: PathLike) -> tuple[MarianTokenizer, MarianTokenizer]:
        """``(source, target)`` tokenizers of a Marian checkpoint directory."""
        return cls.from_hf(directory, "source"), cls.from_hf(directory, "target")

    @property
    def vocab_size(self) -> int:
        return max(self.vocab.values()) + 1

    def encode(self, text: str) -> list[int]:
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[: end + 2]], text[end + 2:]
        unk = self.unk_id
        return [self.vocab.get(piece, unk) for piece in code + self.sp.encode(text, out_type=str)]

    def decode(self, ids: Iterable[int]) -> str:
        pieces = [self.id_to_piece(i) for i in _ids_list(ids) if i not in self.special_ids]
        return self.sp.decode_pieces(pieces).replace("\u2581", " ").strip()

    def id_to_piece(self, i: int) -> str:
        return self.pieces.get(int(i), "<unk>")

    def normalize(self, text: str) -> str:
        return self.sp.normalize(text).replace("\u2581", " ").strip(" ")

    def special_tokens(self) -> dict[str, int]:
        return {piece: self.vocab[piece] for piece in self.SPECIALS.values()}

    def _model_bytes(self) -> bytes:
        return json.dumps({"vocab": self.vocab, "source_spm": base64.b64encode(self._spm_bytes[0]).decode(),
                           "target_spm": base64.b64encode(self._spm_bytes[1]).decode()}).encode()

    def _settings(self) -> dict[str, Any]:
        return {"side": self.side}

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.side}\0".encode() + self._model_bytes()).hexdigest()

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> MarianTokenizer:
        try:
            saved = json.loads(data)
            models = [base64.b64decode(saved[k]) for k in ("source_spm", "target_spm")]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, ValueError) as err:
            raise DataError(f"not a Marian tokenizer file ({err})", cls.model_file) from None
        return cls(*models, saved["vocab"], settings.get("side", "source"))


class HFJsonTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer file (``tokenizer.json``: Llama, Qwen2, SmolLM, Mistral, ...) through the
    ``tokenizers`` library (installed with ``transformers``; needed only for this kind), so its pre-tokenizer,
    model, decoder and post-processor are exactly Hugging Face's.

    ``encode`` adds no specials, as every kind here; ``encode_prompt`` adds what the checkpoint's
    post-processor adds (Llama: ``<s>`` first; SmolLM2: nothing), as ``transformers`` tokenizes a prompt.
    bos/eos/pad come from ``tokenizer_config.json`` (``bos_token``, ``eos_token``, ``pad_token``), else
    ``config.json``'s ids; pad falls back to eos (these models have no pad token). ``decode`` drops every
    special added token.
    """

    kind = "hf_json"
    model_file = "hf_tokenizer.json"  # saved under this name: our own tokenizer.json describes it
    unk_id = mask_id = cls_id = sep_id = None

    def __init__(self, data: bytes, bos_id: int | None = None, eos_id: int | None = None,
                 pad_id: int | None = None, source: PathLike | None = None):
        try:
            from tokenizers import Tokenizer as FastTokenizer
        except ImportError:
            raise DataError("reading tokenizer.json needs the `tokenizers` package (pip install tokenizers)",
                            source) from None
        self._data = bytes(data)
        try:
            self.tok = FastTokenizer.from_str(self._data.decode("utf-8"))
        except Exception as err:  # bad UTF-8, or the bare Exception tokenizers raises for a bad file
            raise DataError(f"not a Hugging Face tokenizer file ({str(err).splitlines()[0][:200]})", source) from None
        self.bos_id, self.eos_id = bos_id, eos_id
        self.pad_id = pad_id if pad_id is not None else eos_id
        self.special_ids = frozenset(i for i, t in self.tok.get_added_tokens_decoder().items() if t.special)

    @classmethod
    def from_hf(cls, directory: PathLike) -> HFJsonTokenizer:
        """The tokenizer of a checkpoint directory: ``tokenizer.json`` and the special tokens' ids."""
        directory = Path(directory)
        path = directory / "tokenizer.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError("file not found (the checkpoint's fast tokenizer, tokenizer.json, was expected)",
                            path) from None
        tok = cls(data, source=path)
        config, model = ((_read_json(directory / name) if (directory / name).is_file() else {})
                         for name in ("tokenizer_config.json", "config.json"))
        ids = {}
        for name in ("bos", "eos", "pad"):
            token = config.get(f"{name}_token")
            token = token.get("content") if isinstance(token, dict) else token
            value = tok.tok.token_to_id(token) if isinstance(token, str) else None
            fallback = model.get(f"{name}_token_id")
            ids[name] = value if value is not None else (fallback[0] if isinstance(fallback, list) else fallback)
        tok.bos_id, tok.eos_id = ids["bos"], ids["eos"]
        tok.pad_id = ids["pad"] if ids["pad"] is not None else ids["eos"]
        return tok

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode_prompt(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=True).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([i for i in _ids_list(ids) if i not in self.special_ids], skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self.tok.id_to_token(int(i)) or ""

    def special_tokens(self) -> dict[str, int]:
        return {self.tok.id_to_token(i): i for i in sorted(self.special_ids)}

    def _model_bytes(self) -> bytes:
        return self._data

    def _settings(self) -> dict[str, Any]:
        return {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id}

    @property
    def fingerprint(self) -> str:
        settings = json.dumps(self._settings(), sort_keys=True).encode()
        return hashlib.sha256(self.kind.encode() + b"\0" + settings + b"\0" + self._data).hexdigest()

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> HFJsonTokenizer:
        return cls(data, settings.get("bos_id"), settings.get("eos_id"), settings.get("pad_id"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path) from None


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


TOKENIZERS: dict[str, type[Tokenizer]] = {"sentencepiece": SentencePieceTokenizer, "char": CharTokenizer,
                                          "gpt2": GPT2Tokenizer, "wordpiece": WordPieceTokenizer,
                                          "marian": MarianTokenizer, "hf_json": HFJsonTokenizer}


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
    ``--vocab`` and ``what`` (say "source") with sentencepiece's own last line. ``pretokenize`` ("ptb" or
    None) is a sentencepiece setting (see :class:`SentencePieceTokenizer`).
    """
    if pretokenizer(pretokenize) is not None and kind not in ("bpe", "unigram"):
        raise ValueError(f"--pretokenize {pretokenize} needs a sentencepiece tokenizer (bpe or unigram), not {kind}")
    if kind == "gpt2":
        return GPT2Tokenizer.fetch(data_dir)
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind not in ("bpe", "unigram"):
        raise ValueError(f"--tokenizer {kind!r} is not valid; choose one of: {', '.join(TRAINABLE)}")
    if vocab_size <= N_SPECIAL + 256:
        raise ValueError(f"--vocab {vocab_size} is too small: the {N_SPECIAL} specials and 256 byte pieces alone "
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
        raise ValueError(f"--vocab {vocab_size}: sentencepiece could not train {which}: {detail}") from None


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
