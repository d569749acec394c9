import json

import pytest

from transformers_zoo import ModelConfig


def test_json_round_trip():
    cfg = ModelConfig(vocab_size=123, positional="rope", norm="rmsnorm", ffn="swiglu", n_kv_heads=2,
                      n_encoder_layers=3, extra={"tokenizer": "bpe"})
    again = ModelConfig.from_json(cfg.to_json())
    assert again == cfg and again.to_dict() == json.loads(cfg.to_json())


@pytest.mark.parametrize("field,value,words", [
    ("positional", "absolute", ["positional", "sinusoidal, learned, rope, alibi, relative"]),
    ("norm", "batchnorm", ["norm", "layernorm, rmsnorm"]),
    ("ffn", "tanh", ["ffn", "relu, gelu, swiglu, geglu, silu, gelu_tanh, geglu_tanh"]),
    ("pooling", "sum", ["pooling", "cls, cls_tanh, mean, max"]),
])
def test_invalid_choices_name_field_and_choices(field, value, words):
    with pytest.raises(ValueError) as err:
        ModelConfig(**{field: value})
    assert all(w in str(err.value) for w in words)


@pytest.mark.parametrize("kwargs,words", [
    ({"d_model": 30, "n_heads": 4}, "divisible"),
    ({"n_heads": 4, "n_kv_heads": 3}, "multiple of n_kv_heads"),
    ({"dropout": 1.5}, "dropout"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"pad_id": 5, "vocab_size": 5}, "pad_id"),
])
def test_invalid_sizes(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ModelConfig(**kwargs)


def test_unknown_field_in_json():
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"d_modle": 3})


def test_derived_sizes():
    assert ModelConfig(d_model=256).ffn_dim == 1024
    assert ModelConfig(d_model=256, ffn="swiglu").ffn_dim == 688
    assert ModelConfig(n_layers=4, n_decoder_layers=2).decoder_layers == 2


def test_config_json_from_before_the_checkpoint_fields_loads_unchanged():
    new = {"d_head", "embedding_norm", "attention_scale", "output_bias", "scale_output", "positional_offset",
           "sinusoidal_layout"}
    old = {k: v for k, v in ModelConfig(vocab_size=50).to_dict().items() if k not in new}
    assert ModelConfig.from_dict(old) == ModelConfig(vocab_size=50)


@pytest.mark.parametrize("kwargs,words", [
    ({"sinusoidal_layout": "blocked"}, "sinusoidal_layout"),
    ({"positional_offset": -1}, "positional_offset"),
    ({"attention_scale": 0.0}, "attention_scale"),
    ({"d_head": 0}, "d_head"),
])
def test_invalid_checkpoint_fields(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ModelConfig(**kwargs)


def test_d_head_apart_from_d_model():
    cfg = ModelConfig(d_model=30, n_heads=4, d_head=16)
    assert cfg.head_dim == 16 and ModelConfig(d_model=32, n_heads=4).head_dim == 8
    assert ModelConfig(ffn="geglu_tanh", d_model=256).ffn_dim == 688
