"""`recipes/gpt.py sample --init hf:PATH`: a (tiny, random) GPT-2 checkpoint samples with the gpt2 tokenizer."""

import subprocess
import sys
from pathlib import Path

from hf_parity import write_tiny_gpt2

REPO = Path(__file__).resolve().parents[2]


def test_sample_from_a_converted_gpt2_checkpoint(tmp_path, shared_data_dir):
    write_tiny_gpt2(tmp_path / "gpt2", shared_data_dir)
    out = subprocess.run([sys.executable, str(REPO / "recipes" / "gpt.py"), "sample", "--init", f"hf:{tmp_path}/gpt2",
                          "--prompt", "Hello, world!", "--max-new-tokens", "5", "--data-dir", str(shared_data_dir)],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Hello, world!") and "5 tokens" in out.stderr
