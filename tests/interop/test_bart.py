"""BART: a random `BartForConditionalGeneration` and our converted `EncoderDecoder` agree."""

import pytest
import torch
from seq2seq_parity import Case, check_bad_tensor, make_case, parity_test

from transformers_zoo.interop import ConversionError, bart, generation_ids

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
             dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)


def case(**overrides) -> Case:
    torch.manual_seed(0)
    config = transformers.BartConfig(**{**SMALL, **overrides})
    return make_case(transformers.BartForConditionalGeneration(config), bart)


VARIANTS = {"base": {}, "scaled-relu": {"scale_embedding": True, "activation_function": "relu",
                                        "decoder_layers": 3}}


test_matches_transformers = parity_test(case, VARIANTS)


def test_config_fields():
    cfg = bart.config_from_hf(transformers.BartConfig(**SMALL).to_dict())
    assert (cfg.positional, cfg.positional_offset, cfg.embedding_norm, cfg.norm_first) == ("learned", 2, True, False)
    assert generation_ids(cfg) == {"decoder_start": 2, "eos": 2, "pad": 1} and cfg.extra["hf_model_type"] == "bart"


def test_missing_and_misshapen_tensors_name_the_file_and_tensor():
    check_bad_tensor(case(), "model.decoder.layers.1.fc2.weight")
    model = case().hf_model
    cfg = bart.config_from_hf(model.config.to_dict())
    tensors = dict(model.state_dict())
    tensors["model.encoder.layers.0.self_attn.k_proj.weight"] = torch.zeros(32, 31)
    with pytest.raises(ConversionError, match=r"'model\.encoder\.layers\.0\.self_attn\.k_proj\.weight' has shape "
                                              r"\(32, 31\)"):
        bart.state_from_hf(tensors, cfg)


def test_checkpoint_without_tied_copies_loads():
    """A saved checkpoint keeps one of the tied embeddings and may leave out final_logits_bias."""
    model = case().hf_model
    cfg = bart.config_from_hf(model.config.to_dict())
    tensors = {k: v for k, v in model.state_dict().items()
               if k not in ("model.shared.weight", "model.decoder.embed_tokens.weight", "lm_head.weight")}
    state = bart.state_from_hf(tensors, cfg)
    assert torch.equal(state["lm_head.weight"], model.model.shared.weight)


@pytest.mark.parametrize("field,value", [("activation_function", "gelu_fast"), ("decoder_ffn_dim", 48),
                                         ("decoder_attention_heads", 8), ("d_model", None),
                                         ("normalize_before", True)])
def test_unsupported_or_missing_config_names_the_field(field, value):
    hf = transformers.BartConfig(**SMALL).to_dict()
    hf[field] = value
    if value is None:
        del hf[field]
    with pytest.raises(ValueError, match=field):
        bart.config_from_hf(hf)
