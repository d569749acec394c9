"""recipes/embed.py end to end on --preset tiny with the real Multi30k task 2 files: training beats chance,
BM25 and hybrid rows in the report, SimCSE on a text file, index / search / --add from the command line."""

from __future__ import annotations

import functools
import json

import pytest
import recipe_process
from interrupt import assert_same_run, run_interrupted
from recipe_process import run_recipe

run = functools.partial(run_recipe, "embed")


@pytest.fixture(scope="module")
def tiny_run(shared_data_dir, tmp_path_factory):
    return recipe_process.tiny_run("embed", shared_data_dir, tmp_path_factory)


def test_tiny_run_learns_and_reports_three_rows(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["recipe"] == "embed" and report["params"] > 0
    test = report["eval"]["test_2016"]
    # 200 captions (40 images): a random ranking puts one of the 4 relevant first 2% of the time
    assert test["r@1"] > 10 and test["r@10"] > 40 and test["r@1"] <= test["r@5"] <= test["r@10"]
    for row in ("bm25_", "hybrid_"):
        assert all(0 <= test[f"{row}{m}"] <= 100 for m in ("r@1", "r@5", "r@10", "mrr"))
    assert test["bm25_r@1"] > 50  # BM25 on paraphrases of 40 images is strong
    assert set(report["eval"]["val"]) == {"r@1", "r@5", "r@10", "mrr"}
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_mrr" in r for r in rows)
    assert "| hybrid |" in (tiny_run / "report.md").read_text()


def test_a_masked_lm_phase_then_contrastive_one_run_that_resumes_exactly(shared_data_dir, tmp_path):
    args = ["--preset", "tiny", "--mlm-steps", "10", "--max-steps", "24", "--eval-every", "12", "--save-every", "6",
            "--log-every", "2", "--data-dir", shared_data_dir, "--threads", "1"]
    whole = tmp_path / "whole"
    proc = run(*args, "--out", whole)
    assert "phase 1: 10 steps of masked LM" in proc.stderr
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    train = {r["step"]: r for r in rows if r.get("split") == "train"}
    assert train[10]["loss"] > 4.5 > train[12]["loss"]  # masked LM over 400 pieces, then InfoNCE over 32 pairs
    # the schedule reached its floor (1e-3 x 0.05), then warms up again: step 2 of 5
    assert train[10]["lr"] == pytest.approx(5e-5) and train[12]["lr"] == pytest.approx(4e-4)
    assert json.loads((whole / "config.json").read_text())["train"]["restart_at"] == 10
    resumed = tmp_path / "resumed"
    run_interrupted("embed", args, resumed, ["5:TERM", "15:TERM", ""])  # inside each phase
    assert_same_run(whole, resumed, 24)
    refused = run(*args[:2], "--max-steps", "8", "--mlm-steps", "8", "--out", tmp_path / "x",
                  "--data-dir", shared_data_dir, check=False)
    assert refused.returncode == 2 and "--mlm-steps 8: must be below the step budget 8" in refused.stderr


def test_index_search_add_from_the_command_line(tiny_run, shared_data_dir, tmp_path):
    index = tmp_path / "idx"
    run("index", "multi30k", "--index", index, "--checkpoint", tiny_run, "--data-dir", shared_data_dir)
    caption = "A man wears an orange hat and glasses."  # test_2016 image 0, caption 5
    hits = json.loads(run("search", "--index", index, caption, "-k", "3", "--json").stdout)["hits"]
    assert hits[0]["id"] == "test_2016/0/5" and hits[0]["text"] == caption and abs(hits[0]["score"] - 1) < 1e-4
    assert len(hits) == 3 and hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    (tmp_path / "more.jsonl").write_text(json.dumps({"id": "new", "text": "a purple giraffe on skis"}) + "\n")
    again = run("index", tmp_path / "more.jsonl", "--index", index, "--checkpoint", tiny_run, check=False)
    assert again.returncode == 2 and "pass --add" in again.stderr
    run("index", tmp_path / "more.jsonl", "--index", index, "--checkpoint", tiny_run, "--add")
    (tmp_path / "q.txt").write_text("a purple giraffe on skis\n" + caption + "\n")
    out = [json.loads(line) for line in run("search", "--index", index, "--queries-file", tmp_path / "q.txt", "-k",
                                            "1", "--json").stdout.splitlines()]
    assert [o["hits"][0]["id"] for o in out] == ["new", "test_2016/0/5"]
    missing = run("search", "--index", tmp_path / "nowhere", "a dog", check=False)
    assert missing.returncode == 2 and "no index here" in missing.stderr and len(missing.stderr.splitlines()) == 1
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"text": \n')
    bad = run("index", tmp_path / "bad.jsonl", "--index", tmp_path / "idx2", "--checkpoint", tiny_run, check=False)
    assert bad.returncode == 2 and "bad.jsonl:2: not valid JSON" in bad.stderr
    assert not (tmp_path / "idx2").exists()


def test_simcse_on_a_text_file(shared_data_dir, tmp_path):
    lines = [f"a {c} {a} is {v} in the {p}" for c in ("red", "blue", "green") for a in ("dog", "cat", "horse")
             for v in ("running", "sleeping") for p in ("park", "snow", "street")]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    run("--preset", "tiny", "--text", tmp_path / "text.txt", "--tokenizer", "char", "--max-steps", "8",
        "--data-dir", shared_data_dir, "--out", out)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["data"]["text"] == str(tmp_path / "text.txt") and "r@1" in report["eval"]["test_2016"]


def test_init_from_a_sentence_transformers_folder(shared_data_dir, tmp_path):
    """A BERT-based sentence-transformers folder (written by our exporter: tiny, random) starts a run, and indexes
    and searches a corpus as it is."""
    import torch

    from transformers_zoo import EncoderOnly, ModelConfig
    from transformers_zoo.interop.sentence_transformers import export_sentence_transformer
    from transformers_zoo.interop.wordpiece_tokenizer import WordPieceTokenizer
    from transformers_zoo.retrieval import SentenceEncoder

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz.,", "a", "man", "dog"]
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=len(vocab), d_model=32, n_heads=2, n_layers=1, d_ff=64, max_len=64,
                      positional="learned", norm_first=False, norm_eps=1e-12, pad_id=0, pooling="max")
    folder = export_sentence_transformer(SentenceEncoder(EncoderOnly(cfg), WordPieceTokenizer(vocab)), tmp_path / "st")
    out = tmp_path / "run"
    proc = run("--preset", "tiny", "--init", f"hf:{folder}", "--max-steps", "6", "--warmup-steps", "2",
               "--data-dir", shared_data_dir, "--out", out)
    assert f"initialised from hf:{folder}" in proc.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["d_model"] == 32 and config["model"]["pooling"] == "max"  # the checkpoint's own
    (tmp_path / "c.txt").write_text("a man\na dog\n")
    run("index", tmp_path / "c.txt", "--index", tmp_path / "idx", "--init", f"hf:{folder}")
    hits = json.loads(run("search", "--index", tmp_path / "idx", "a dog", "--json").stdout)["hits"]
    assert hits[0]["text"] == "a dog" and abs(hits[0]["score"] - 1) < 1e-5


def test_multilingual_encoder_retrieves_across_languages(shared_data_dir, tmp_path):
    out = tmp_path / "ende"
    run("--preset", "tiny", "--lang", "en-de", "--max-steps", "20", "--data-dir", shared_data_dir, "--out", out)
    report = json.loads((out / "report.json").read_text())
    test = report["eval"]["test_2016"]
    # 40 pairs: a random ranking finds the translation first 2.5% of the time
    assert test["r@10"] > 25 and test["de_en_r@10"] > 25 and test["r@1"] <= test["r@5"] <= test["r@10"]
    assert "German -> English" in (out / "report.md").read_text()
    refused = run("--preset", "tiny", "--lang", "en-de", "--text", out / "report.md", "--out", tmp_path / "x",
                  "--data-dir", shared_data_dir, check=False)
    assert refused.returncode == 2 and "en-de trains on translation pairs" in refused.stderr
