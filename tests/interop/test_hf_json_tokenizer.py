"""A Hugging Face `tokenizer.json` (Llama-style byte-level BPE, `<s>` added to prompts) against `transformers`'
fast tokenizer; `gpt.py sample --init hf:PATH` on a tiny Llama checkpoint continues a prompt as `generate` does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hf_parity import MARIAN_TGT, write_tiny_llama

from transformers_zoo.corpora import DataError
from transformers_zoo.tokenizers import HFJsonTokenizer, load_tokenizer

transformers = pytest.importorskip("transformers", reason="the tokenizer.json tests compare against transformers")
REPO = Path(__file__).resolve().parents[2]
TEXTS = ["A man rides a bike.", "  two  spaces ", "Größe 中文 🙂 unseen", "", "</s> as text", *MARIAN_TGT[:3]]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("llama") / "tiny-llama")


def test_ids_and_text_match_transformers(llama_dir):
    ours = HFJsonTokenizer.from_hf(llama_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(llama_dir)
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 2)  # no pad token: eos pads
    for text in TEXTS:
        assert ours.encode_prompt(text) == theirs(text)["input_ids"], text
        assert ours.encode(text) == theirs(text, add_special_tokens=False)["input_ids"], text
        ids = [1, *ours.encode(text), 2]
        assert ours.decode(ids) == theirs.decode(ids, skip_special_tokens=True), text
    assert ours.decode(ours.encode(TEXTS[2])) == TEXTS[2]  # byte-level: lossless


def test_save_load_and_bad_file(llama_dir, tmp_path):
    ours = HFJsonTokenizer.from_hf(llama_dir)
    back = load_tokenizer(ours.save(tmp_path / "tok"))
    assert back.fingerprint == ours.fingerprint and back.encode_prompt(TEXTS[0]) == ours.encode_prompt(TEXTS[0])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(DataError, match=r"bad/tokenizer\.json.*not a Hugging Face tokenizer file"):
        HFJsonTokenizer.from_hf(tmp_path / "bad")
    with pytest.raises(DataError, match=r"tokenizer\.json.*file not found"):
        HFJsonTokenizer.from_hf(tmp_path)


def test_sample_from_a_llama_checkpoint_is_transformers_greedy(llama_dir):
    prompt, n = "A man rides", 12
    out = subprocess.run([sys.executable, str(REPO / "recipes" / "gpt.py"), "sample", "--init", f"hf:{llama_dir}",
                          "--prompt", prompt, "--max-new-tokens", str(n), "--top-k", "1", "--threads", "1"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    tok = transformers.AutoTokenizer.from_pretrained(llama_dir)
    model = transformers.LlamaForCausalLM.from_pretrained(llama_dir).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():  # ours never emits pad (= eos here)
        new = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=2,
                             suppress_tokens=[2])[0, ids.shape[1]:]
    assert out.stdout.rstrip("\n") == prompt + "".join(tok.decode([t], skip_special_tokens=True) for t in new.tolist())
