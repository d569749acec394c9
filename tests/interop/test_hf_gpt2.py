"""GPT-2: a random GPT2LMHeadModel and its conversion agree (logits, padding, greedy, export)."""

import json

import pytest
import torch
from hf_parity import check_decoder, transformers

from transformers_zoo.interop import ConversionError, gpt2, load_hf


def small_gpt2(**changes):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=64, vocab_size=97,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.1,
                                     bos_token_id=None, eos_token_id=None, pad_token_id=96, **changes)
    return transformers.GPT2LMHeadModel(config)


def test_gpt2_logits_padding_greedy_and_export_match_transformers(tmp_path):
    check_decoder(small_gpt2(), tmp_path, transformers.AutoModelForCausalLM)


def test_gpt2_untied_head(tmp_path):
    check_decoder(small_gpt2(tie_word_embeddings=False), tmp_path, transformers.AutoModelForCausalLM)


def test_gpt2_defaults_pad_with_endoftext():
    cfg = gpt2.config_from_hf(transformers.GPT2Config().to_dict())
    assert (cfg.vocab_size, cfg.pad_id, cfg.extra["eos_id"], cfg.ffn) == (50257, 50256, 50256, "gelu_tanh")


def test_gpt2_unscaled_attention(tmp_path):
    """Issue 31: `scale_attn_weights: false` loaded with scores still divided by sqrt(head width) (max logit
    diff 2.7); it is `attention_scale=1.0`, kept on export."""
    check_decoder(small_gpt2(scale_attn_weights=False), tmp_path, transformers.AutoModelForCausalLM)
    assert load_hf(tmp_path / "hf")[0].attention_scale == 1.0
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["scale_attn_weights"] is False


@pytest.mark.parametrize("flag", ["scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"])
def test_gpt2_attention_flags_we_do_not_implement_are_refused(tmp_path, flag):
    small_gpt2(**{flag: True}).save_pretrained(tmp_path)
    with pytest.raises(ConversionError, match=f"config.json: gpt2 with {flag}=true is not supported"):
        load_hf(tmp_path)
