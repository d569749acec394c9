"""`recipes/translate.py --init hf:PATH` and `translate --init hf:PATH`: a (tiny, random) Marian checkpoint with its
own tokenizers translates as `transformers` does, fine-tunes on Multi30k from its weights, resumes, and refuses
architecture and vocabulary changes with one line."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_translate import _assert_one_line_error, call, recipe  # noqa: F401  (fixtures)

from transformers_zoo.training.checkpoint import MODEL_FILE, resolve_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from hf_parity import MARIAN_SRC, write_tiny_marian, write_tiny_t5  # noqa: E402

transformers = pytest.importorskip("transformers", reason="the Marian checkpoint is written with transformers")
pytestmark = pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses")


@pytest.fixture(scope="module")
def marian_dir(tmp_path_factory):
    return write_tiny_marian(tmp_path_factory.mktemp("marian") / "opus-mt-tiny")


def hf_translations(directory: Path, sentences: list[str], **decode) -> list[str]:
    """Greedy translations by transformers itself, one sentence at a time, within the recipe's length budget
    (1.2 x source tokens + 10)."""
    tok = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(directory).eval()
    out = []
    for sentence in sentences:
        src = tok([sentence], return_tensors="pt")
        budget = int(1.2 * src["input_ids"].shape[1] + 10)
        with torch.no_grad():
            ids = model.generate(**src, do_sample=False, num_beams=1, max_new_tokens=budget, min_length=0,
                                 bad_words_ids=None, suppress_tokens=[tok.pad_token_id], forced_eos_token_id=None)
        out.append(tok.decode(ids[0], skip_special_tokens=True, **decode))
    return out


def test_translate_with_checkpoint_matches_transformers(call, marian_dir):  # noqa: F811
    sentences = MARIAN_SRC[:3] + ["Unseen words: zebra §"]
    code, out, err = call("translate", "--init", f"hf:{marian_dir}", "--beam", "1", *sentences)
    assert code == 0, err
    got = out.splitlines()
    assert got == hf_translations(marian_dir, sentences, use_source_tokenizer=False)
    assert any(got)  # a random model still writes something


def test_t5_checkpoint_translates_as_transformers(call, tmp_path):  # noqa: F811
    """T5 reads its tokenizer.json (one for both sides) and decodes from pad, as transformers does."""
    t5_dir = write_tiny_t5(tmp_path / "t5-tiny")
    sentences = ["translate English to German: " + s for s in MARIAN_SRC[:3]]
    code, out, err = call("translate", "--init", f"hf:{t5_dir}", "--beam", "1", *sentences)
    assert code == 0, err
    got = out.splitlines()
    assert got == hf_translations(t5_dir, sentences) and any(got)


def test_finetune_marian_checkpoint_and_resume(call, marian_dir, shared_data_dir, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    code, _, err = call("--preset", "tiny", "--init", f"hf:{marian_dir}", "--data-dir", shared_data_dir, "--out", out,
                        "--max-steps", "4", "--save-every", "2", "--eval-every", "4", "--dropout", "0.2")
    assert code == 0, err
    assert f"initialised from hf:{marian_dir.resolve()}" in err
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["init"] == f"hf:{marian_dir.resolve()}" and config["data"]["tokenizer"] == "marian"
    assert config["model"]["d_model"] == 32 and config["model"]["dropout"] == 0.2
    assert config["model"]["pad_id"] == config["model"]["vocab_size"] - 1  # Marian's <pad>, the decoder start
    assert (out / "tokenizer" / "tokenizer.json").is_file() and (out / "tokenizer-src" / "tokenizer.json").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 4 and all(math.isfinite(m["loss"]) for m in report["eval"].values())
    # the checkpoint's weights were the start: after 4 steps the shared embedding is still near Marian's
    hf = load_file(marian_dir / "model.safetensors")
    ours = load_file(resolve_checkpoint(out) / MODEL_FILE)
    assert (ours["lm_head.weight"] - hf["model.shared.weight"]).abs().max() < 0.05  # tied: one table, saved once
    code, _, err = call("--resume", out, "--max-steps", "6", "--data-dir", shared_data_dir)
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["steps"] == 6
    code, text, err = call("translate", "--checkpoint", out, "--beam", "1", MARIAN_SRC[0])
    assert code == 0 and len(text.splitlines()) == 1, err


@pytest.mark.parametrize(("flags", "needle"), [
    (["--n-layers", "3"], "--n-layers 3: the architecture comes from --init"),
    (["--vocab", "500"], "--vocab: the tokenizers come from --init"),
    (["--separate-vocab"], "--separate-vocab: the tokenizers come from --init"),
])
def test_init_refuses_architecture_and_vocabulary(call, marian_dir, shared_data_dir, tmp_path, flags, needle):  # noqa: F811
    result = call("--preset", "tiny", "--init", f"hf:{marian_dir}", "--data-dir", shared_data_dir,
                  "--out", tmp_path / "r", *flags)
    _assert_one_line_error(result, needle)
    assert not (tmp_path / "r").exists()


def test_init_of_another_family_names_its_config(call, tmp_path):  # noqa: F811
    bart = tmp_path / "bart"
    torch.manual_seed(0)
    config = transformers.BartConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                     decoder_ffn_dim=32, max_position_embeddings=32)
    transformers.BartForConditionalGeneration(config).save_pretrained(bart)
    _assert_one_line_error(call("translate", "--init", f"hf:{bart}", "A man."),
                           "config.json", "no tokenizer for model_type='bart'")
