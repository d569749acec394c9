"""GPT-2: a random GPT2LMHeadModel and its conversion agree (logits, padding, greedy, export)."""

import torch
from hf_parity import check_decoder, transformers

from transformers_zoo.interop import gpt2


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
