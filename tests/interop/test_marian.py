"""Marian / opus-mt: a random `MarianMTModel` and our converted `EncoderDecoder` agree."""

import pytest
import torch
from seq2seq_parity import Case, check_bad_tensor, make_case, parity_test

from transformers_zoo.interop import marian

transformers = pytest.importorskip("transformers")

# opus-mt's settings at a small size: swish, embeddings times sqrt(d_model), pad = decoder start = last id
SMALL = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
             dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, activation_function="swish",
             scale_embedding=True, pad_token_id=98, decoder_start_token_id=98, eos_token_id=0,
             forced_eos_token_id=0)
VARIANTS = {"opus-mt": {}, "separate-vocab": {"share_encoder_decoder_embeddings": False, "decoder_vocab_size": 120},
            "gelu-untied": {"activation_function": "gelu", "tie_word_embeddings": False, "scale_embedding": False}}


def case(**overrides) -> Case:
    torch.manual_seed(0)
    config = transformers.MarianConfig(**{**SMALL, **overrides})
    tgt_vocab = config.vocab_size if config.share_encoder_decoder_embeddings else config.decoder_vocab_size
    return make_case(transformers.MarianMTModel(config), marian, tgt_vocab, skip=("embed_positions",))


test_matches_transformers = parity_test(case, VARIANTS)


def test_config_fields():
    cfg = marian.config_from_hf(transformers.MarianConfig(**SMALL).to_dict())
    assert (cfg.positional, cfg.sinusoidal_layout, cfg.embedding_norm) == ("sinusoidal", "split", False)
    assert cfg.ffn == "silu"
    assert cfg.scale_embeddings and cfg.output_bias and cfg.pad_id == 98


def test_split_sinusoids_are_hf_table():
    """Our split layout is the table HF keeps in embed_positions (HF computes it in float64, we in float32)."""
    model = case().hf_model
    cfg = marian.config_from_hf(model.config.to_dict())
    written = marian.state_to_hf(marian.state_from_hf(model.state_dict(), cfg), cfg)
    table = written["model.encoder.embed_positions.weight"]
    torch.testing.assert_close(table, model.model.encoder.embed_positions.weight, atol=1e-5, rtol=0)


def test_missing_or_misshapen_tensor_names_the_file_and_tensor():
    check_bad_tensor(case(), "model.encoder.layers.0.self_attn_layer_norm.bias")


def test_unsupported_activation_names_the_field():
    with pytest.raises(ValueError, match="activation_function"):
        marian.config_from_hf({**transformers.MarianConfig(**SMALL).to_dict(), "activation_function": "tanh"})
