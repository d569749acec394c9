"""GPT-2's pre-trained byte-level BPE through ``tiktoken``, its rank file fetched into the data dir."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, ClassVar

from ..corpora import DataError, PathLike, fetch
from .base import Tokenizer, ids_list, register

__all__ = ["GPT2Tokenizer"]


@register
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
        return self.enc.decode([i for i in ids_list(ids) if i != self.ENDOFTEXT])

    def id_to_piece(self, i: int) -> str:
        return self.enc.decode_single_token_bytes(int(i)).decode("utf-8", errors="replace")

    def special_tokens(self) -> dict[str, int]:
        return {"<|endoftext|>": self.ENDOFTEXT}

    def _model_bytes(self) -> bytes:
        return self._ranks

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> GPT2Tokenizer:
        return cls(data)
