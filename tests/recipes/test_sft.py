"""recipes/sft.py end to end on --preset tiny with the real data: from scratch (pre-training text, then
instructions) and LoRA on a tiny random Llama checkpoint (hf:PATH): the report, the merged weights, exact resume,
--eval-only, and a bad conversations file in one line."""

import json
import sys
from pathlib import Path

import pytest
import recipe_process
import torch
from interrupt import assert_same_run, run_interrupted
from recipe_process import run_recipe
from safetensors.torch import load_file

from transformers_zoo import DecoderOnly
from transformers_zoo.config import ModelConfig
from transformers_zoo.modules.lora import add_lora
from transformers_zoo.tasks.sft import load_chat_model
from transformers_zoo.training.checkpoint import MODEL_FILE, best_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from hf_parity import write_tiny_llama  # noqa: E402

TEST_KEYS = ("loss", "bleu", "chrf", "accuracy", "parsed", "parsed_sentiment", "parsed_translate_en_de")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny random Llama whose rotary positions reach the tiny preset's blocks (its config says 64)."""
    directory = write_tiny_llama(tmp_path_factory.mktemp("llama") / "llama")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(dict(config, max_position_embeddings=256)))
    return directory


def lora_args(llama_dir, data_dir):
    return ["--preset", "tiny", "--init", f"hf:{llama_dir}", "--lora-rank", "4", "--lora-targets", "qkv,out,down",
            "--data-dir", data_dir, "--threads", "1"]


@pytest.fixture(scope="module")
def lora_run(llama_dir, shared_data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "lora"
    run_recipe("sft", *lora_args(llama_dir, shared_data_dir), "--out", out)
    return out


def test_scratch_run_pretrains_then_tunes(shared_data_dir, tmp_path_factory):
    run = recipe_process.tiny_run("sft", shared_data_dir, tmp_path_factory)
    report = json.loads((run / "report.json").read_text())
    assert report["recipe"] == "sft" and report["trainable_params"] == report["params"] > 0
    assert report["conversations"]["pretrain_steps"] == 8 and report["conversations"]["dropped_too_long"] > 0
    test = report["eval"]["test"]
    assert all(k in test for k in TEST_KEYS) and 0 <= test["parsed"] <= 1 and test["n_translation"] == 6
    assert (run / "answers" / "test.tsv").is_file() and (run / "tokenizer" / "chat_template.jinja").is_file()
    assert "One model against the specialists" in (run / "report.md").read_text()


def test_lora_trains_adapters_and_merges_on_save(lora_run):
    report = json.loads((lora_run / "report.json").read_text())
    lora = report["lora"]
    assert lora["rank"] == 4 and lora["modules"] == 3  # one layer: qkv, out, down
    assert lora["adapter_params"] < report["trainable_params"] < report["params"] // 2  # + the chat markers' rows
    config = ModelConfig.from_dict(report["config"]["model"])
    assert config.vocab_size == 302  # 300 ids + the two chat markers
    adapted = DecoderOnly(config)
    add_lora(adapted, ("qkv", "out", "down"), rank=4, alpha=16)
    adapted.load_state_dict(load_file(best_checkpoint(lora_run) / MODEL_FILE))
    merged = DecoderOnly(config)
    merged.load_state_dict(load_file(lora_run / "model.safetensors"))
    ids = torch.randint(3, 302, (2, 40))
    assert torch.allclose(merged.eval()(ids), adapted.eval()(ids), atol=1e-5, rtol=0)
    chat_model, tok = load_chat_model(lora_run, "cpu")  # what chat and serving load: the merged weights
    assert torch.equal(chat_model(ids), merged(ids)) and tok.chat_template is not None
    assert any(bool(m.lora_b.detach().abs().max() > 0) for m in adapted.modules() if hasattr(m, "lora_b"))  # it trained


def test_lora_resume_is_exact(lora_run, llama_dir, shared_data_dir, tmp_path):
    other = tmp_path / "lora"
    run_interrupted("sft", lora_args(llama_dir, shared_data_dir), other, ["12:TERM", ""])
    assert_same_run(lora_run, other, 24)


def test_eval_only_matches_report(lora_run, shared_data_dir, tmp_path):
    proc = run_recipe("sft", "--eval-only", "--checkpoint", lora_run, "--data-dir", shared_data_dir,
                      "--out", tmp_path / "eval", "--threads", "1")
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())["eval"]
    report = json.loads((lora_run / "report.json").read_text())["eval"]
    assert "test: loss" in proc.stdout
    for key in TEST_KEYS:
        assert result["test"][key] == pytest.approx(report["test"][key], rel=1e-6), key
    assert result["val"]["loss"] == pytest.approx(report["val"]["loss"], rel=1e-6)


def test_bad_conversations_file_is_one_line(tmp_path, shared_data_dir):
    path = tmp_path / "chats.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                    '{"messages": [{"role": "user", "content": "hi"}]}\n')
    proc = run_recipe("sft", "--preset", "tiny", "--conversations", path, "--data-dir", shared_data_dir,
                      "--out", tmp_path / "r", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{path}:2: no assistant message" in proc.stderr
    assert not (tmp_path / "r").exists()
