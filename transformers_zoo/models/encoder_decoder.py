"""Encoder-decoder (the original Transformer): bidirectional encoder, causal decoder with cross-attention."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..modules import KVCache, Linear, TokenEmbedding, TransformerStack
from .base import init_weights, output_logits, padding_mask


class EncoderDecoder(nn.Module):
    """`(src (B, S), tgt_in (B, T)) -> logits (B, T, vocab_size)`, split at the seam generation needs:
    `encode(src)` once per source, then `decode(tgt_in, memory, src_mask)`.

    With `share_src_tgt_embeddings` (a joint vocabulary) source and target share one embedding
    matrix, and with `tie_embeddings` the output projection is that matrix too (Press & Wolf 2017);
    `output_bias` adds a bias over the vocabulary (BART, Marian) and `scale_output` multiplies the final
    hidden states by d_model**-0.5 before the projection (T5).
    Generation interface: `init_cache(src)` (encodes, projects cross-attention keys/values once) and
    `decode_step(tokens, cache)`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.src_embed = TokenEmbedding(config.source_vocab_size, config.d_model, config.scale_embeddings)
        if config.share_src_tgt_embeddings:
            self.tgt_embed = self.src_embed
        else:
            self.tgt_embed = TokenEmbedding(config.vocab_size, config.d_model, config.scale_embeddings)
        self.encoder = TransformerStack(config, config.encoder_layers, causal=False)
        self.decoder = TransformerStack(config, config.decoder_layers, causal=True, cross=True)
        self.lm_head = Linear(config.d_model, config.vocab_size, bias=config.output_bias)
        self.output_scale = config.d_model ** -0.5 if config.scale_output else 1.0
        init_weights(self, config.encoder_layers + config.decoder_layers)
        if config.tie_embeddings:
            self.lm_head.weight = self.tgt_embed.weight

    def source_mask(self, src: torch.Tensor) -> torch.Tensor | None:
        """`(B, S)` True for real source tokens (None when there is no padding)."""
        return padding_mask(src, self.config.pad_id)

    def target_mask(self, tgt_in: torch.Tensor) -> torch.Tensor | None:
        """`(B, T)` True for real target tokens (None when there is no padding). The first column is the
        decoder's start token, real even where it is `pad_id` (Marian and T5 start decoding from pad)."""
        mask = tgt_in != self.config.pad_id
        mask[:, :1] = True
        return None if bool(mask.all()) else mask

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`src (B, S)` -> memory `(B, S, D)`; `src_mask` defaults to the tokens that are not `pad_id`."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        return self.encoder(self.src_embed(src), key_mask=src_mask)

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None = None,
               tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`tgt_in (B, T)` (shifted right: BOS first) attending to `memory (B, S, D)` -> logits `(B, T, V)`."""
        return self.project(self.decoder_hidden(tgt_in, memory, src_mask, tgt_mask))

    def decoder_hidden(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor | None = None,
                       tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`decode` before the output projection: the decoder's final hidden states `(B, T, D)`."""
        return self.decoder(self.tgt_embed(tgt_in), key_mask=tgt_mask, memory=memory, memory_mask=src_mask)

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Logits `(..., V)` of final decoder states `h (..., D)`."""
        return output_logits(self.lm_head, h, self.output_scale)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor | None = None,
                tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.project(self.hidden(src, tgt_in, src_mask, tgt_mask))

    def hidden(self, src: torch.Tensor, tgt_in: torch.Tensor, src_mask: torch.Tensor | None = None,
               tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`forward` before the output projection: the decoder's final hidden states `(B, T, D)`."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        if tgt_mask is None:
            tgt_mask = self.target_mask(tgt_in)
        return self.decoder_hidden(tgt_in, self.encode(src, src_mask), src_mask, tgt_mask)

    def init_cache(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> KVCache:
        """Encode `src (B, S)` and keep each decoder layer's cross-attention keys/values in a new cache."""
        if src_mask is None:
            src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        if src_mask is None:
            src_mask = torch.ones(src.shape, dtype=torch.bool, device=src.device)
        cache = KVCache(len(self.decoder.layers), src.shape[0], device=src.device, memory_mask=src_mask)
        for layer, layer_cache in zip(self.decoder.layers, cache.layers, strict=True):
            layer_cache.cross_k, layer_cache.cross_v = layer.cross_attn.project_memory(memory)
        return cache

    def decode_step(self, tokens: torch.Tensor, cache: KVCache, attention_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """Append target `tokens (B, t)` to `cache`; return next-token logits `(B, vocab_size)`."""
        return self.project(self.step_hidden(tokens, cache, attention_mask))

    def step_hidden(self, tokens: torch.Tensor, cache: KVCache, attention_mask: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """`decode_step` before the output projection: the last decoder state `(B, D)`."""
        return self.decoder(self.tgt_embed(tokens), key_mask=attention_mask, cache=cache)[:, -1]
