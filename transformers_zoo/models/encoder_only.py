"""Encoder-only model (BERT): bidirectional stack with a masked-LM head, a classification head and sentence vectors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..modules import TokenEmbedding, TransformerStack, build_norm
from .base import init_weights, padding_mask


class EncoderOnly(nn.Module):
    """`input_ids (B, T)` -> MLM logits `(B, T, V)` or class logits `(B, n_classes)`.

    MLM head (BERT): dense + GELU + norm, then the input embedding matrix (tied) plus a bias.
    Classification head: the sequence is pooled into one vector, then dropout and a linear layer.
    Pooling (`config.pooling`): `cls` takes the first position (the batching puts [CLS] there), `cls_tanh`
    passes it through a dense + tanh layer (BERT's "pooler", so BertForSequenceClassification converts
    whole), `mean` averages the real (non-padding) positions, `max` takes
    each feature's maximum over them (as in InferSent and Kim's CNN: a strong word anywhere decides).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        # registered as "embed" (checkpoint names: embed.weight); read it as `token_embedding`, since the method
        # `embed` (sentence vectors) shadows the attribute
        self.embed = TokenEmbedding(config.vocab_size, d, config.scale_embeddings)
        self.stack = TransformerStack(config, config.n_layers, causal=False)
        self.mlm_dense = nn.Linear(d, d, bias=config.bias)
        self.mlm_norm = build_norm(config.norm, d, config.norm_eps, config.bias)
        self.mlm_head = nn.Linear(d, config.vocab_size, bias=True)
        self.pooler = nn.Linear(d, d, bias=config.bias) if config.pooling == "cls_tanh" else None
        self.classifier = nn.Linear(d, config.n_classes) if config.n_classes else None
        self.head_dropout = nn.Dropout(config.dropout)
        init_weights(self, config.n_layers)
        if config.tie_embeddings:
            self.mlm_head.weight = self.token_embedding.weight

    @property
    def token_embedding(self) -> TokenEmbedding:
        return self._modules["embed"]

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Contextual vectors `(B, T, D)`; padding (`pad_id`, or False in `attention_mask`) is not attended."""
        if attention_mask is None:
            attention_mask = padding_mask(input_ids, self.config.pad_id)
        return self.stack(self.token_embedding(input_ids), key_mask=attention_mask)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlm_head(self.mlm_norm(F.gelu(self.mlm_dense(hidden))))

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if self.config.pooling == "cls":
            return hidden[:, 0]
        if self.config.pooling == "cls_tanh":
            return torch.tanh(self.pooler(hidden[:, 0]))
        if self.config.pooling == "max":
            if attention_mask is None:
                return hidden.amax(dim=1)
            return hidden.masked_fill(~attention_mask[..., None], float("-inf")).amax(dim=1)
        if attention_mask is None:
            return hidden.mean(dim=1)
        weights = attention_mask.to(hidden.dtype)[..., None]
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
              normalize: bool = False) -> torch.Tensor:
        """Sentence vectors `(B, D)`: the encoder's output pooled by `config.pooling` over the real positions,
        L2-normalised when ``normalize`` (then a dot product is the cosine similarity)."""
        if attention_mask is None:
            attention_mask = padding_mask(input_ids, self.config.pad_id)
        pooled = self.pool(self.encode(input_ids, attention_mask), attention_mask)
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                head: str = "mlm", select: torch.Tensor | None = None) -> torch.Tensor:
        """`head="mlm"`: logits `(B, T, V)`, or `(N, V)` for just the positions where `select (B, T)` is
        True (the masked ones: saves most of the output projection). `head="classify"`: `(B, n_classes)`;
        `head="embed"`: the pooled vectors `(B, D)` (`embed` without normalisation)."""
        if attention_mask is None:
            attention_mask = padding_mask(input_ids, self.config.pad_id)
        hidden = self.stack(self.token_embedding(input_ids), key_mask=attention_mask)
        if head == "mlm":
            return self.mlm_logits(hidden if select is None else hidden[select])
        if head == "embed":  # through forward, so a DistributedDataParallel wrapper sees the call
            return self.pool(hidden, attention_mask)
        if head == "classify":
            if self.classifier is None:
                raise ValueError("this EncoderOnly has no classification head: build it with n_classes > 0")
            return self.classifier(self.head_dropout(self.pool(hidden, attention_mask)))
        raise ValueError(f"unknown head {head!r}; choose 'mlm', 'classify' or 'embed'")

    def classify(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self(input_ids, attention_mask, head="classify")
