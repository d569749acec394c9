"""Llama-family decoders (Llama with GQA, Qwen2 with q/k/v biases, Mistral) against `transformers`."""

import json

import pytest
import torch
from hf_parity import check_decoder, close, convert, random_ids, transformers

from transformers_zoo.generation import greedy

SMALL = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, initializer_range=0.1,
             bos_token_id=None, eos_token_id=None, pad_token_id=0)


@pytest.mark.parametrize("name,changes", [
    ("Llama", dict(tie_word_embeddings=False, rope_theta=500000.0)),
    ("Llama", dict(tie_word_embeddings=True, num_key_value_heads=1)),
    ("Qwen2", dict(tie_word_embeddings=True)),
    ("Mistral", dict(sliding_window=None)),
])
def test_llama_family_logits_padding_greedy_and_export_match_transformers(tmp_path, name, changes):
    torch.manual_seed(0)
    config = getattr(transformers, f"{name}Config")(**dict(SMALL, **changes))
    model = getattr(transformers, f"{name}ForCausalLM")(config)
    check_decoder(model, tmp_path, transformers.AutoModelForCausalLM)
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == name.lower()


@torch.no_grad()
def test_mistral_sliding_window_shorter_than_the_input(tmp_path):
    """Issue 31: a Mistral checkpoint whose `sliding_window` (5) is shorter than the input (12 tokens) ran full
    causal attention (max logit diff 5.1). Logits of the whole input, cached decoding step by step, and 20
    greedy tokens (cached) must equal `MistralForCausalLM`'s; then the padding and export checks."""
    torch.manual_seed(0)
    model = transformers.MistralForCausalLM(transformers.MistralConfig(**dict(SMALL, sliding_window=5)))
    ours = convert(model, tmp_path / "logits")
    assert ours.config.sliding_window == 5
    ids = random_ids(ours.config.vocab_size, ours.config.pad_id, (2, 12))
    expected = model(ids).logits
    close(ours(ids), expected)
    cache = ours.init_cache(2)
    close(torch.stack([ours.decode_step(ids[:, t:t + 1], cache) for t in range(12)], dim=1), expected)
    tokens = greedy(ours, ours.init_cache(2), ids, 20, eos_id=None)
    generated = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, min_new_tokens=20,
                               do_sample=False, pad_token_id=0, suppress_tokens=[0])
    assert tokens.tolist() == generated[:, 12:].tolist()
    check_decoder(model, tmp_path / "parity", transformers.AutoModelForCausalLM)
    assert json.loads((tmp_path / "parity" / "ours" / "config.json").read_text())["sliding_window"] == 5
