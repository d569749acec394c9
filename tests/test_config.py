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
    ("ffn", "tanh", ["ffn", "relu, gelu, gelu_tanh, swiglu, geglu"]),
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
