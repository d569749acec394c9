"""Decoder-only language model (GPT): causal self-attention stack, output tied to the input embedding."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..modules import KVCache, TokenEmbedding, TransformerStack
from .base import init_weights, output_logits, padding_mask


class DecoderOnly(nn.Module):
    """`input_ids (B, T) -> logits (B, T, vocab_size)`; position t sees tokens <= t only.

    Generation interface (see `transformers_zoo.generation`): `init_cache(batch_size)` and
    `decode_step(tokens, cache, attention_mask)`, which appends tokens and returns next-token logits.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = TokenEmbedding(config.vocab_size, config.d_model, config.scale_embeddings)
        self.stack = TransformerStack(config, config.n_layers, causal=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.output_bias)
        self.output_scale = config.d_model ** -0.5 if config.scale_output else 1.0
        init_weights(self, config.n_layers)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`attention_mask (B, T)`: True for real tokens; by default every token that is not `pad_id`.
        Padding may be on either side: positions count real tokens only."""
        return self.project(self.hidden(input_ids, attention_mask))

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final hidden states `(B, T, D)`: what the output projection reads (kNN-LM's datastore keys)."""
        if attention_mask is None:
            attention_mask = padding_mask(input_ids, self.config.pad_id)
        return self.stack(self.embed(input_ids), key_mask=attention_mask)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Logits `(..., V)` of final hidden states `h (..., D)`."""
        return output_logits(self.lm_head, h, self.output_scale)

    def init_cache(self, batch_size: int) -> KVCache:
        return KVCache(len(self.stack.layers), batch_size, device=self.embed.weight.device)

    def decode_step(self, tokens: torch.Tensor, cache: KVCache, attention_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Append `tokens (B, t)` (a left-padded prompt with its mask, or one new token) to `cache`;
        return the logits `(B, vocab_size)` that predict the token after the last one."""
        return self.project(self.step_hidden(tokens, cache, attention_mask))

    def step_hidden(self, tokens: torch.Tensor, cache: KVCache, attention_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """`decode_step` before the output projection: the last final hidden state `(B, D)`."""
        return self.stack(self.embed(tokens), key_mask=attention_mask, cache=cache)[:, -1]
