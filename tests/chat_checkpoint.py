"""A tiny random instruct-like Hugging Face checkpoint: a Llama with a byte-level BPE `tokenizer.json` whose
`tokenizer_config.json` holds a ChatML template (a default system prompt, as Qwen2's), for chat and RAG tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_chat_template import CHATML_DEFAULT_SYSTEM, write_checkpoint_tokenizer


def write_tiny_chat_llama(directory: Path, seed: int = 0, max_positions: int = 256, layers: int = 2, hidden: int = 32
                          ) -> Path:
    transformers = pytest.importorskip("transformers")
    write_checkpoint_tokenizer(directory, CHATML_DEFAULT_SYSTEM, "<|im_start|>", "<|im_end|>")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, intermediate_size=2 * hidden,
                                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                                      max_position_embeddings=max_positions, tie_word_embeddings=True,
                                      bos_token_id=tok.token_to_id("<|im_start|>"),
                                      eos_token_id=tok.token_to_id("<|im_end|>"))
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    return directory
