"""Any Hugging Face fast tokenizer file (``tokenizer.json``: Llama, Qwen2, SmolLM, T5) through ``tokenizers``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..corpora import DataError, PathLike, read_json
from ..tokenizers.base import Tokenizer, ids_list, register
from ..tokenizers.chat import ChatTemplate

__all__ = ["HFJsonTokenizer"]


@register
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
        config, model = ((read_json(directory / name) if (directory / name).is_file() else {})
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
        tok.chat_template = ChatTemplate.from_hf(directory)
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
        return self.tok.decode([i for i in ids_list(ids) if i not in self.special_ids], skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        return self.tok.id_to_token(int(i)) or ""

    def special_tokens(self) -> dict[str, int]:
        return {self.tok.id_to_token(i): i for i in sorted(self.special_ids)}

    def _model_bytes(self) -> bytes:
        return self._data

    def _settings(self) -> dict[str, Any]:
        # cls/sep only when set (a BERT tokenizer.json read by interop.sentence_transformers), so the settings and
        # fingerprints of the decoder tokenizers stay as they were
        framing = {k: getattr(self, k) for k in ("cls_id", "sep_id") if getattr(self, k) is not None}
        return {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id, **framing}

    @property
    def fingerprint(self) -> str:
        settings = json.dumps(self._settings(), sort_keys=True).encode()
        return hashlib.sha256(self.kind.encode() + b"\0" + settings + b"\0" + self._data).hexdigest()

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> HFJsonTokenizer:
        tok = cls(data, settings.get("bos_id"), settings.get("eos_id"), settings.get("pad_id"))
        tok.cls_id, tok.sep_id = settings.get("cls_id"), settings.get("sep_id")
        return tok

