"""T5 v1.0 and v1.1: a random `T5ForConditionalGeneration` and our converted `EncoderDecoder` agree."""

import pytest
import torch
from seq2seq_parity import Case, check_bad_tensor, check_logits, make_case, parity_test

from transformers_zoo.interop import t5

transformers = pytest.importorskip("transformers")

# d_kv=16 is not d_model / num_heads (8); few buckets and a short max distance, so 20 decoding steps
# reach the logarithmic and the clipped buckets
SMALL = dict(vocab_size=99, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=4,
             relative_attention_num_buckets=8, relative_attention_max_distance=12, dropout_rate=0.0,
             decoder_start_token_id=0)
VARIANTS = {"v1.0-relu": {"feed_forward_proj": "relu"},
            "v1.1-gated-gelu": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}}


def case(**overrides) -> Case:
    torch.manual_seed(0)
    config = transformers.T5Config(**{**SMALL, **overrides})
    return make_case(transformers.T5ForConditionalGeneration(config), t5)


test_matches_transformers = parity_test(case, VARIANTS)


@pytest.mark.parametrize("padded", [False, True])
def test_deeper_decoder_logits(padded):
    """num_decoder_layers != num_layers (logits only: transformers' own generate sizes its cache by num_layers)."""
    check_logits(case(num_decoder_layers=3, feed_forward_proj="gated-gelu"), padded)


def test_config_fields():
    v10 = t5.config_from_hf(transformers.T5Config(**SMALL).to_dict())
    assert (v10.head_dim, v10.attention_scale, v10.norm, v10.bias, v10.ffn) == (16, 1.0, "rmsnorm", False, "relu")
    assert v10.scale_output and v10.tie_embeddings
    v11 = t5.config_from_hf({**SMALL, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False})
    assert v11.ffn == "geglu_tanh" and not v11.scale_output and not v11.tie_embeddings


def test_untied_head_is_read():
    """A v1.1 checkpoint has an lm_head of its own (transformers then unties it)."""
    model = case(**VARIANTS["v1.1-gated-gelu"]).hf_model
    tensors = dict(model.state_dict())
    tensors["lm_head.weight"] = torch.randn_like(tensors["lm_head.weight"])
    state = t5.state_from_hf(dict(tensors), t5.config_from_hf(model.config.to_dict()))  # (it takes what it uses)
    assert torch.equal(state["lm_head.weight"], tensors["lm_head.weight"])
    assert not torch.equal(state["src_embed.weight"], tensors["lm_head.weight"])


def test_missing_or_misshapen_relative_bias_names_the_file_and_tensor():
    check_bad_tensor(case(), "decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")


@pytest.mark.parametrize("proj", ["gated-relu", "tanh", "x-gelu"])
def test_unsupported_feed_forward_proj_names_the_field(proj):
    with pytest.raises(ValueError, match="feed_forward_proj"):
        t5.config_from_hf({**SMALL, "feed_forward_proj": proj})
