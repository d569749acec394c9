"""Matched configurations: our models and their peers built with the same sizes, random weights, no dropout.

Each `Dims` describes one configuration; the `ours_*`, `hf_*` and `torch_*` builders turn it into a model
whose every matrix has the same shape on both sides. What still differs between a pair (an extra
embedding table, where a LayerNorm sits) is listed in `benchmarks/README.md`.

Hugging Face `transformers` is optional (the `hf` extra): `HF_AVAILABLE` says whether it imported, and the
`hf_*` builders are only called when it did.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from transformers_zoo import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig

HF_AVAILABLE = importlib.util.find_spec("transformers") is not None

# Special ids shared by every side; random inputs are drawn from [FIRST_TOKEN, vocab) so none is padding.
PAD_ID, BOS_ID, MASK_ID, FIRST_TOKEN = 0, 2, 4, 5


@dataclass(frozen=True)
class Dims:
    """One matched configuration: model sizes and the shape of a batch.

    `n_layers` is the depth of each stack (an encoder-decoder has `n_layers` + `n_layers`);
    `seq` is the (target) length, `src_seq` the source length of an encoder-decoder.
    """

    vocab: int
    d_model: int
    n_heads: int
    n_layers: int
    seq: int
    batch: int
    src_seq: int = 0

    @property
    def d_ff(self) -> int:
        return 4 * self.d_model

    def describe(self, seq2seq: bool = False) -> str:
        layers = f"L{self.n_layers}+{self.n_layers}" if seq2seq else f"L{self.n_layers}"
        seq = f"S{self.src_seq} T{self.seq}" if seq2seq else f"T{self.seq}"
        return f"d{self.d_model} {layers} H{self.n_heads} ff{self.d_ff} V{self.vocab} {seq} B{self.batch}"


def _our_config(dims: Dims, max_len: int, **variant) -> ModelConfig:
    return ModelConfig(vocab_size=dims.vocab, d_model=dims.d_model, n_heads=dims.n_heads, n_layers=dims.n_layers,
                       d_ff=dims.d_ff, max_len=max_len, dropout=0.0, attention_dropout=0.0, norm="layernorm",
                       norm_eps=1e-5, ffn="gelu", bias=True, tie_embeddings=True, pad_id=PAD_ID, **variant)


# -- decoder-only: our DecoderOnly vs GPT-2 -------------------------------------------------------------------
def ours_gpt(dims: Dims, max_len: int) -> DecoderOnly:
    """GPT-2's architecture: learned positions, pre-norm, GELU, tied output projection."""
    return DecoderOnly(_our_config(dims, max_len, positional="learned", norm_first=True))


def hf_gpt2(dims: Dims, max_len: int) -> nn.Module:
    """`GPT2LMHeadModel` with exact GELU (GPT-2's default `gelu_new` is the tanh approximation written
    as five separate element-wise ops; exact GELU is the same function as ours, one fused kernel)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=dims.vocab, n_positions=max_len, n_embd=dims.d_model, n_layer=dims.n_layers,
                        n_head=dims.n_heads, n_inner=dims.d_ff, activation_function="gelu", resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                        bos_token_id=None, eos_token_id=None, pad_token_id=PAD_ID)
    return GPT2LMHeadModel(config)


# -- encoder-only: our EncoderOnly vs BERT ----------------------------------------------------------------------
def ours_bert(dims: Dims) -> EncoderOnly:
    """BERT's architecture: learned positions, post-norm (norm on the embeddings), GELU, MLM head
    dense + GELU + norm + tied decoder with a bias."""
    return EncoderOnly(_our_config(dims, dims.seq, positional="learned", norm_first=False))


def hf_bert(dims: Dims) -> nn.Module:
    """`BertForMaskedLM` with one token type (BERT still adds its embedding) and our norm epsilon."""
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(vocab_size=dims.vocab, hidden_size=dims.d_model, num_hidden_layers=dims.n_layers,
                        num_attention_heads=dims.n_heads, intermediate_size=dims.d_ff, hidden_act="gelu",
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, max_position_embeddings=dims.seq,
                        type_vocab_size=1, layer_norm_eps=1e-5, tie_word_embeddings=True, pad_token_id=PAD_ID)
    return BertForMaskedLM(config)


# -- encoder-decoder: our EncoderDecoder vs BART and torch.nn.Transformer -----------------------------------------
def ours_seq2seq(dims: Dims, max_len: int) -> EncoderDecoder:
    """BART's architecture: learned positions, post-norm with a norm on the embeddings, GELU, one embedding
    matrix for source, target and output."""
    return EncoderDecoder(_our_config(dims, max_len, positional="learned", norm_first=False,
                                      share_src_tgt_embeddings=True))


def hf_bart(dims: Dims, max_len: int) -> nn.Module:
    """`BartForConditionalGeneration`, the Hugging Face model with the same layout as ours (post-norm,
    `layernorm_embedding`, learned positions). Marian differs (no embedding norm, sinusoids)."""
    from transformers import BartConfig, BartForConditionalGeneration

    config = BartConfig(vocab_size=dims.vocab, d_model=dims.d_model, encoder_layers=dims.n_layers,
                        decoder_layers=dims.n_layers, encoder_attention_heads=dims.n_heads,
                        decoder_attention_heads=dims.n_heads, encoder_ffn_dim=dims.d_ff, decoder_ffn_dim=dims.d_ff,
                        activation_function="gelu", dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                        max_position_embeddings=max_len, scale_embedding=False, tie_word_embeddings=True,
                        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=None, decoder_start_token_id=BOS_ID,
                        forced_bos_token_id=None, forced_eos_token_id=None)
    return BartForConditionalGeneration(config)


class TorchSeq2Seq(nn.Module):
    """`torch.nn.Transformer` (post-norm, GELU) with what it lacks to be a model: a shared token embedding,
    a learned position table per stack and the tied output projection. `nn.Transformer` puts a LayerNorm
    after each stack where BART and ours normalise the embeddings: the same count of norms."""

    def __init__(self, dims: Dims, max_len: int):
        super().__init__()
        d = dims.d_model
        self.embed = nn.Embedding(dims.vocab, d)
        self.src_pos = nn.Embedding(max_len, d)
        self.tgt_pos = nn.Embedding(max_len, d)
        self.transformer = nn.Transformer(d, dims.n_heads, dims.n_layers, dims.n_layers, dims.d_ff, dropout=0.0,
                                          activation="gelu", batch_first=True, norm_first=False)
        self.lm_head = nn.Linear(d, dims.vocab, bias=False)
        self.lm_head.weight = self.embed.weight
        for table in (self.embed, self.src_pos, self.tgt_pos):
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """`src (B, S)`, `tgt_in (B, T)` -> logits `(B, T, V)`."""
        S, T = src.shape[1], tgt_in.shape[1]
        x = self.embed(src) + self.src_pos.weight[:S]
        y = self.embed(tgt_in) + self.tgt_pos.weight[:T]
        causal = nn.Transformer.generate_square_subsequent_mask(T, device=src.device, dtype=x.dtype)
        return self.lm_head(self.transformer(x, y, tgt_mask=causal, tgt_is_causal=True))


def torch_seq2seq(dims: Dims, max_len: int) -> TorchSeq2Seq:
    return TorchSeq2Seq(dims, max_len)


def n_params(model: nn.Module) -> int:
    """Parameters counted once (a tied output projection is the embedding)."""
    return sum(p.numel() for p in model.parameters())
