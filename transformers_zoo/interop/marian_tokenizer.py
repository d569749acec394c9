"""Marian / opus-mt tokenizers: two sentencepiece models (source, target) over one shared vocabulary.

A Marian checkpoint's ``vocab.json`` has ``</s>``, ``<unk>`` and ``<pad>`` (0, 1 and the last id in opus-mt)
and no bos: its decoder starts from pad, its ``bos_id``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import sentencepiece as spm

from ..corpora import DataError, PathLike, read_json
from ..tokenizers.base import Tokenizer, ids_list, register

__all__ = ["MarianTokenizer"]


@register
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
        if config_path.is_file() and read_json(config_path).get("separate_vocabs"):
            raise DataError("separate_vocabs=true (one vocabulary per side) is not supported", config_path)
        vocab = read_json(directory / "vocab.json")
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
        pieces = [self.id_to_piece(i) for i in ids_list(ids) if i not in self.special_ids]
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

