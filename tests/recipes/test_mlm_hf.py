"""`recipes/classify.py --init hf:PATH`: a tiny random Hugging Face BERT (with its own vocab.txt) fine-tuned
on the shared SST-2 with its WordPiece tokenizer; resumed; bad checkpoints fail with one line naming the path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from test_mlm import assert_one_error_line, run_classify

from transformers_zoo.corpora import read_labelled_tsv
from transformers_zoo.tokenizers import WordPieceTokenizer, load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from hf_parity import bert_vocab, transformers, write_tiny_bert  # noqa: E402


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    rows, _ = read_labelled_tsv(shared_data_dir / "sst2" / "train.tsv")
    words = [w for text, _ in rows[:2000] for w in text.lower().split() if w.isalpha()]
    return write_tiny_bert(tmp_path_factory.mktemp("hf") / "bert", bert_vocab(words))


def test_finetune_a_hugging_face_bert_and_resume(bert_dir: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_classify("--preset", "tiny", "--init", f"hf:{bert_dir}", "--data-dir", shared_data_dir,
                      "--out", out, "--max-steps", "6", "--eval-every", "3", "--save-every", "3")
    assert "pooler" not in proc.stderr.split("initialised from")[1].splitlines()[0]  # the pooler is the file's
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    assert config["init_checkpoint"] == f"hf:{bert_dir.resolve()}" and config["model"]["pooling"] == "cls_tanh"
    assert config["model"]["d_model"] == 32 and config["model"]["vocab_size"] == len(
        (bert_dir / "vocab.txt").read_text().splitlines())
    assert report["steps"] == 6 and (out / "report.md").is_file()
    for split in ("val", "test"):
        assert 0.0 <= report["eval"][split]["accuracy"] <= 1.0 and math.isfinite(report["eval"][split]["loss"])
    tok = load_tokenizer(out / "tokenizer")
    assert isinstance(tok, WordPieceTokenizer) and tok.fingerprint == WordPieceTokenizer.from_hf(bert_dir).fingerprint
    run_classify("--resume", out, "--max-steps", "9", "--data-dir", shared_data_dir)
    assert json.loads((out / "report.json").read_text())["steps"] == 9
    predicted = run_classify("predict", "--checkpoint", out, "a gorgeous , witty film").stdout
    assert predicted.split("\t")[0] in ("negative", "positive")


def test_bad_checkpoints_fail_with_one_line(bert_dir: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    common = ["--preset", "tiny", "--data-dir", shared_data_dir, "--out", tmp_path / "run"]
    assert_one_error_line(run_classify(*common, "--init", f"hf:{empty}", check=False), f"{empty}/config.json")
    transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8)
                                 ).save_pretrained(tmp_path / "gpt2")
    assert_one_error_line(run_classify(*common, "--init", f"hf:{tmp_path}/gpt2", check=False),
                          f"{tmp_path}/gpt2/config.json", "not a BERT checkpoint")
    no_vocab = tmp_path / "no_vocab"
    no_vocab.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_vocab / name).write_bytes((bert_dir / name).read_bytes())
    assert_one_error_line(run_classify(*common, "--init", f"hf:{no_vocab}", check=False), f"{no_vocab}/vocab.txt")
    assert_one_error_line(run_classify(*common, "--init", f"hf:{bert_dir}", "--n-layers", "3", check=False),
                          "--n-layers 3", "--init")
    assert not (tmp_path / "run").exists()
