"""Llama-family decoders (Llama with GQA, Qwen2 with q/k/v biases, Mistral) against `transformers`."""

import json

import pytest
import torch
from hf_parity import check_decoder, transformers

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
