"""Marian / opus-mt (`MarianMTModel`) <-> our `EncoderDecoder`.

What Marian is in our terms: BART's post-norm layers (same tensor names, `bart.layer_pairs`) without an
embedding norm (`embedding_norm=False`), fixed sinusoidal positions with all sines before all cosines
(`sinusoidal_layout="split"`), embeddings times sqrt(d_model) (`scale_embedding`, true for opus-mt),
the activation of `activation_function` (swish = our silu for opus-mt), `final_logits_bias`
(`output_bias`) and decoding from the pad token (`decoder_start_token_id`, kept in `cfg.extra["hf"]`).
Source and target share one embedding unless `share_encoder_decoder_embeddings` is false; then the
source table has `vocab_size` rows and the target (and the tied output) `decoder_vocab_size`.
The positional tables HF stores are not weights (they are recomputed); we write them for strict loading.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..modules import SinusoidalPositional
from . import bart
from .tensors import Table, reads_config, require, scatter

MODEL_TYPES = ("marian",)
FAMILY = "encoder_decoder"
# Every tensor is used or is the fixed sinusoid table HF may save, or the loader reports it as unexpected.
IGNORED = (r"^(model\.)?(encoder|decoder)\.embed_positions\.weight$",)
ARCHITECTURE = "MarianMTModel"


@reads_config
def config_from_hf(hf: dict) -> ModelConfig:
    # transformers >= 5 ties no table at all when tie_word_embeddings is false
    shared = hf.get("share_encoder_decoder_embeddings", True) and hf.get("tie_word_embeddings", True)
    target_vocab = hf["vocab_size"] if shared else (hf.get("decoder_vocab_size") or hf["vocab_size"])
    return ModelConfig(
        vocab_size=target_vocab, src_vocab_size=None if shared else hf["vocab_size"],
        share_src_tgt_embeddings=shared, positional="sinusoidal", sinusoidal_layout="split",
        embedding_norm=False, **bart.shared_fields(hf))


def config_to_hf(cfg: ModelConfig) -> dict:
    require(cfg, "marian", positional=("sinusoidal",), sinusoidal_layout=("split",), embedding_norm=(False,),
            output_bias=(True,), scale_output=(False,))
    out = {"model_type": "marian", "architectures": [ARCHITECTURE], "vocab_size": cfg.source_vocab_size,
           "decoder_vocab_size": cfg.vocab_size, "share_encoder_decoder_embeddings": cfg.share_src_tgt_embeddings,
           **bart.shared_fields_to_hf(cfg)}
    if out.get("decoder_start_token_id") is None:  # a model trained here: Marian decodes from pad
        out["decoder_start_token_id"] = cfg.pad_id
    return out


def pairs(cfg: ModelConfig) -> Table:
    return bart.embedding_pairs(cfg) + bart.layer_pairs(cfg)


def state_from_hf(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    return bart.convert_state(tensors, cfg, pairs(cfg))


def state_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    out = bart.logits_bias_to_hf(scatter(state, pairs(cfg) + bart.alias_pairs(cfg.share_src_tgt_embeddings)))
    table = SinusoidalPositional(cfg.d_model, "split").table(torch.arange(cfg.max_len)[None])[0]
    out["model.encoder.embed_positions.weight"] = out["model.decoder.embed_positions.weight"] = table
    return out
