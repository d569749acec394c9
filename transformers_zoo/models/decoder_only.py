"""Decoder-only language model (GPT): causal self-attention stack, output tied to the input embedding."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..modules import KVCache, Linear, TokenEmbedding, TransformerStack
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
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=config.output_bias)
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


@torch.no_grad()
def grow_vocab(model: DecoderOnly, vocab_size: int) -> DecoderOnly:
    """``model`` with ``vocab_size`` rows of embedding and output (tokens added after the vocabulary: chat markers):
    a new model whose old rows are the old weights and whose new rows are the mean of the old ones (embedding and
    output alike: a new token starts as an average token, so its logit is ordinary, not random; Hewitt 2021).
    Tied weights stay tied. Nothing changes when the model has that many rows already."""
    old = model.config.vocab_size
    if vocab_size <= old:
        return model
    grown = DecoderOnly(model.config.replace(vocab_size=vocab_size)).to(model.embed.weight.device)
    state = {}
    for name, tensor in model.state_dict().items():
        if name in ("embed.weight", "lm_head.weight", "lm_head.bias") and tensor.shape[0] == old:
            mean = tensor.float().mean(dim=0, keepdim=True).to(tensor.dtype)
            extra = mean.expand(vocab_size - old, *tensor.shape[1:])
            tensor = torch.cat([tensor, extra])
        state[name] = tensor
    grown.load_state_dict(state)
    return grown
