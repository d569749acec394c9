"""`recipes/gpt.py sample --init hf:PATH`: a (tiny, random) GPT-2 checkpoint samples with the gpt2 tokenizer."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_parity import transformers

REPO = Path(__file__).resolve().parents[2]


def test_sample_from_a_converted_gpt2_checkpoint(tmp_path, shared_data_dir):
    if not (shared_data_dir / "gpt2" / "gpt2.tiktoken").is_file():
        pytest.skip(f"{shared_data_dir}/gpt2/gpt2.tiktoken not found (the shared data lacks GPT-2's ranks)")
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=32)
                                 ).save_pretrained(tmp_path / "gpt2")
    out = subprocess.run([sys.executable, str(REPO / "recipes" / "gpt.py"), "sample", "--init", f"hf:{tmp_path}/gpt2",
                          "--prompt", "Hello, world!", "--max-new-tokens", "5", "--data-dir", str(shared_data_dir)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Hello, world!") and "5 tokens" in out.stderr
