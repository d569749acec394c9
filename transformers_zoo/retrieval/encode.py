"""Sentence vectors of many texts: an encoder-only model, its tokenizer, and how its vectors are made.

    encoder = SentenceEncoder(model, tokenizer, normalize=True)
    vectors = encoder.encode(["a dog runs", "a cat sleeps"])      # (N, D) float32 numpy, input order

Texts are framed as the model was trained on them (``[CLS] ids [SEP]``, cut to ``max_tokens``), sorted by
length and batched (little padding: as sentence-transformers' ``encode`` does), then put back in input order.
``fingerprint`` identifies the vectors an encoder makes (weights, tokenizer, pooling, normalisation), so an
index can refuse queries embedded by another encoder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import torch

from ..models import EncoderOnly
from ..tokenizers import Tokenizer

__all__ = ["SentenceEncoder", "embed_by_length", "encode_texts", "frame_ids"]


def frame_ids(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
    """``[CLS] ids [SEP]`` of each text (a tokenizer without CLS/SEP: the ids alone), at most ``max_tokens``."""
    first = [] if tokenizer.cls_id is None else [tokenizer.cls_id]
    last = [] if tokenizer.sep_id is None else [tokenizer.sep_id]
    room = max_tokens - len(first) - len(last)
    return [first + ids[:room] + last for ids in tokenizer.encode_batch(texts)]


def embed_by_length(model: torch.nn.Module, ids: torch.Tensor, pad_id: int, rows: int = 64) -> torch.Tensor:
    """``model(ids, head="embed")`` of a right-padded batch ``(B, T)``, with gradients, computed on chunks of
    ``rows`` rows of similar length, each cut to its own longest row. Padding is masked either way, so the
    vectors are those of one call (to float rounding), at the cost of the real tokens rather than ``B x T``:
    captions of 8-36 tokens padded to a batch's longest (about 45) spend two thirds of a step on padding."""
    lengths = (ids != pad_id).sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    parts = [model(ids[chunk, :int(lengths[chunk].max())], head="embed") for chunk in order.split(rows)]
    return torch.cat(parts)[torch.argsort(order)]


@torch.no_grad()
def encode_texts(model: EncoderOnly, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 64,
                 normalize: bool = False) -> torch.Tensor:
    """``model.embed`` of token-id rows ``(N, D)``, float32 on the CPU, in input order: batches of
    ``batch_size`` rows of similar length (sorted, longest first, so the first batch shows peak memory)."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
    out = torch.empty(len(rows), model.config.d_model)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(rows[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.bool)
            for j, i in enumerate(chunk):
                ids[j, :len(rows[i])] = torch.as_tensor(rows[i], dtype=torch.long)
                mask[j, :len(rows[i])] = True
            vectors = model.embed(ids.to(device), mask.to(device), normalize=normalize)
            out[torch.as_tensor(chunk)] = vectors.float().cpu()
    finally:
        model.train(was_training)
    return out


class SentenceEncoder:
    """An encoder-only model, its tokenizer, and whether its vectors are L2-normalised: texts -> vectors."""

    def __init__(self, model: EncoderOnly, tokenizer: Tokenizer, normalize: bool = True,
                 max_tokens: int | None = None, batch_size: int = 64):
        self.model, self.tokenizer, self.normalize = model, tokenizer, normalize
        self.max_tokens = min(max_tokens or model.config.max_len, model.config.max_len)
        self.batch_size = batch_size
        self._fingerprint: str | None = None

    @property
    def dim(self) -> int:
        return self.model.config.d_model

    def encode(self, texts: str | Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``(N, D)`` float32 vectors of ``texts`` (one text: ``(1, D)``), in input order."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        rows = frame_ids(self.tokenizer, texts, self.max_tokens)
        return encode_texts(self.model, rows, self.tokenizer.pad_id, batch_size or self.batch_size,
                            self.normalize).numpy()

    @property
    def fingerprint(self) -> str:
        """sha256 of everything that decides the vectors: weights, model config, tokenizer, framing, normalisation.
        Computed once (the weights are hashed), so change the model in place only before first asking."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            about = {"config": self.model.config.to_dict(), "tokenizer": self.tokenizer.fingerprint,
                     "normalize": self.normalize, "max_tokens": self.max_tokens}
            h.update(json.dumps(about, sort_keys=True).encode())
            for name, tensor in sorted(self.model.state_dict().items()):
                if name.startswith(("mlm_", "classifier.")):  # heads that do not make sentence vectors
                    continue
                h.update(name.encode())
                h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint
