"""recipes/mlm.py end to end on `--preset tiny` (seconds per run) with the shared data, plus the pieces the
recipe's promises rest on: the encoder of a fine-tuning run is the pre-trained one, `[MASK]` in text is the
mask id, and bad input fails with one clear line before a run directory is created."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from interrupt import assert_same_run, run_interrupted
from safetensors.torch import load_file

from transformers_zoo import EncoderOnly, ModelConfig
from transformers_zoo.tasks.classification import HEAD_PREFIX, classifier_from_pretrained
from transformers_zoo.tasks.mlm import encode_masked_text
from transformers_zoo.tokenizers import MASK, SentencePieceTokenizer, load_tokenizer
from transformers_zoo.training.checkpoint import MODEL_FILE, resolve_checkpoint

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "mlm.py"
CLASSIFY = REPO / "recipes" / "classify.py"  # fine-tuning and predict (were `mlm.py finetune` / `mlm.py predict`)


def run_recipe(*args: str | Path, check: bool = True, recipe: Path = RECIPE) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("TZOO_DEBUG", None)
    proc = subprocess.run([sys.executable, str(recipe), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"recipe failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def run_classify(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_recipe(*args, check=check, recipe=CLASSIFY)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, shared_data_dir: Path) -> Path:
    """pretrain -> finetune -> scratch (two seeds each) in one run directory (the recipe without subcommand)."""
    out = tmp_path_factory.mktemp("mlm") / "run"
    run_recipe("--preset", "tiny", "--data-dir", shared_data_dir, "--out", out, "--finetune-seeds", "2")
    return out


def read_report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_all_in_one_run_writes_sane_reports(tiny_run: Path) -> None:
    for stage in ("pretrain", "finetune", "scratch"):
        sub = tiny_run / stage
        for name in ("config.json", "metrics.jsonl", "report.json", "report.md", "loss.png", "tokenizer/spm.model"):
            assert (sub / name).is_file(), f"{stage}/{name} missing"
        assert any((sub / "checkpoints").glob("step_*/model.safetensors"))
    pre = read_report(tiny_run / "pretrain")["eval"]["val"]
    assert 0.0 <= pre["masked_accuracy"] <= 1.0 and math.isfinite(pre["ppl"]) and pre["ppl"] > 1.0
    assert pre["masked_tokens"] > 0
    for stage in ("finetune", "scratch"):
        report = read_report(tiny_run / stage)
        assert report["labels"] == ["negative", "positive"]
        for split in ("val", "test"):
            assert 0.0 <= report["eval"][split]["accuracy"] <= 1.0
            assert "macro_f1" not in report["eval"][split]  # two classes: accuracy is the number
    assert read_report(tiny_run / "finetune")["init_checkpoint"].startswith(str(tiny_run / "pretrain"))
    assert read_report(tiny_run / "scratch")["init_checkpoint"] is None

    top = read_report(tiny_run)
    comparison = top["comparison"]
    assert comparison["split"] == "test" and comparison["metric"] == "accuracy" and comparison["seeds"] == 2
    per_seed = {name: read_report(tiny_run / name)["eval"]["test"]["accuracy"]
                for name in ("finetune", "finetune-seed1", "scratch", "scratch-seed1")}
    assert comparison["per_seed"] == per_seed
    assert comparison["pretrained"] == pytest.approx((per_seed["finetune"] + per_seed["finetune-seed1"]) / 2)
    assert comparison["scratch"] == pytest.approx((per_seed["scratch"] + per_seed["scratch-seed1"]) / 2)
    assert comparison["gain"] == pytest.approx(comparison["pretrained"] - comparison["scratch"])
    assert [read_report(tiny_run / n)["config"]["train"]["seed"] for n in per_seed] == [0, 1, 0, 1]
    assert top["eval"]["test"]["accuracy"] == per_seed["finetune"]
    # the pre-training text: IMDB reviews, packed, with its overlap with SST-2's evaluation sentences measured
    pre_report = read_report(tiny_run / "pretrain")
    assert pre_report["config"]["data"]["corpus"] == "imdb"
    for split in ("sst2_dev", "sst2_val"):
        overlap = top["contamination"][split]
        assert overlap["n"] == 8 and overlap["texts"] > 700 and 0 <= overlap["contaminated"] <= overlap["texts"]
    assert "Contamination" in (tiny_run / "report.md").read_text()
    assert "Contamination" in (tiny_run / "pretrain" / "report.md").read_text()
    assert 0.0 <= top["eval"]["pretrain_val"]["masked_accuracy"] <= 1.0
    assert "Pre-trained against from scratch" in (tiny_run / "report.md").read_text()
    # the pre-training and the fine-tuning use one tokenizer; the scratch run trained its own; both write text
    # in SST-2's form first (--pretokenize ptb, the preset's), and the runs' configs say so
    assert (load_tokenizer(tiny_run / "finetune" / "tokenizer").fingerprint
            == load_tokenizer(tiny_run / "pretrain" / "tokenizer").fingerprint)
    for stage in ("pretrain", "finetune", "scratch"):
        assert load_tokenizer(tiny_run / stage / "tokenizer").settings["pretokenize"] == "ptb"
        assert read_report(tiny_run / stage)["config"]["data"]["pretokenize"] == "ptb"


def test_predict_prints_label_and_probability(tiny_run: Path) -> None:
    texts = ["a gorgeous , witty film", "it does n't work", "A gorgeous, witty film", "It doesn't work"]
    lines = run_classify("predict", "--checkpoint", tiny_run / "finetune", *texts).stdout.splitlines()
    assert len(lines) == 4
    for line, text in zip(lines, texts, strict=True):
        label, prob, echoed = line.split("\t")
        assert label in ("negative", "positive") and 0.5 <= float(prob) <= 1.0 and echoed == text
    # raw text is read in SST-2's form, as training read it: the same label and probability
    assert [line.split("\t")[:2] for line in lines[:2]] == [line.split("\t")[:2] for line in lines[2:]]


def test_fill_prints_top_k_per_mask(tiny_run: Path) -> None:
    out = run_recipe("fill", "--checkpoint", tiny_run, "--top-k", "3", "the movie was [MASK] and [MASK] .").stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[1], r[2]) for r in rows] == [(m, f"{k}.") for m in "12" for k in (1, 2, 3)]
    probs = [float(r[-1]) for r in rows]
    assert all(0.0 <= p <= 1.0 for p in probs) and probs[:3] == sorted(probs[:3], reverse=True)


def test_finetune_and_predict_moved_to_classify() -> None:
    """`mlm.py finetune` and `mlm.py predict` are recipes/classify.py's commands now: one line naming it."""
    for command, needle in (("finetune", "recipes/classify.py --init"), ("predict", "recipes/classify.py predict")):
        assert_one_error_line(run_recipe(command, "--checkpoint", "x", "y", check=False), needle, "the same flags")


def test_mask_text_becomes_the_mask_id(tiny_run: Path) -> None:
    tokenizer = load_tokenizer(tiny_run / "pretrain" / "tokenizer")
    ids = encode_masked_text(tokenizer, "the movie was [MASK] .")
    assert ids.count(MASK) == 1 and ids == [*tokenizer.encode("the movie was"), MASK, *tokenizer.encode(".")]
    # sentencepiece itself never produces the id from text: [MASK] is a control symbol, spelled out if encoded
    assert MASK not in tokenizer.encode("the movie was [MASK] .")


def test_finetune_from_init_loads_every_encoder_weight(tiny_run: Path) -> None:
    pretrain = tiny_run / "pretrain"
    ckpt = resolve_checkpoint(pretrain)
    saved = load_file(str(ckpt / MODEL_FILE))
    config = json.loads((pretrain / "config.json").read_text())["model"]
    cfg = ModelConfig.from_dict(dict(config, n_classes=3))
    torch.manual_seed(123)
    fresh = EncoderOnly(cfg)
    torch.manual_seed(123)
    model = classifier_from_pretrained(cfg, ckpt)
    state = model.state_dict()
    assert not any(name.startswith(HEAD_PREFIX) for name in saved)
    encoder_names = [name for name in state if not name.startswith(HEAD_PREFIX)]
    for name in encoder_names:
        # tied weights are stored once (under one of their names)
        tensor = saved.get(name, saved.get("embed.weight") if name == "mlm_head.weight" else None)
        assert tensor is not None, f"{name} not in the checkpoint"
        assert torch.equal(state[name], tensor), f"{name} was not loaded"
    assert any(not torch.equal(state[n], fresh.state_dict()[n]) for n in encoder_names)
    assert torch.equal(model.classifier.weight, fresh.classifier.weight)  # untouched fresh initialisation
    assert torch.equal(model.classifier.bias, torch.zeros(3))
    assert model.classifier.weight.std() > 0


def write_tsv(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("review\tfeeling\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return path


def four_class_rows(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    subjects = ["the film", "this movie", "the plot", "the acting", "the ending"]
    phrases = {"joy": ["was delightful", "made me smile"], "anger": ["made me furious", "was an insult"],
               "fear": ["was terrifying", "kept me scared"], "boredom": ["was dull", "put me to sleep"]}
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(phrases))
        rows.append((f"{rng.choice(subjects)} {rng.choice(phrases[label])}", label))
    return rows


@pytest.fixture
def four_class(tmp_path: Path) -> dict[str, Path]:
    return {split: write_tsv(tmp_path / f"{split}.tsv", four_class_rows(n, seed))
            for split, n, seed in (("train", 200, 0), ("valid", 40, 1), ("test", 40, 2))}


def tsv_args(files: dict[str, Path]) -> list[str | Path]:
    return ["--train-tsv", files["train"], "--valid-tsv", files["valid"], "--test-tsv", files["test"],
            "--text-column", "review", "--label-column", "feeling"]


def test_string_labels_four_classes_report_macro_f1(tiny_run: Path, four_class: dict[str, Path], tmp_path: Path):
    out = tmp_path / "ft4"
    run_classify("--preset", "tiny", "--init", tiny_run / "pretrain", *tsv_args(four_class), "--out", out)
    report = read_report(out)
    assert report["labels"] == ["anger", "boredom", "fear", "joy"]
    assert json.loads((out / "labels.json").read_text()) == report["labels"]
    for split in ("val", "test"):
        assert 0.0 <= report["eval"][split]["accuracy"] <= 1.0
        assert 0.0 <= report["eval"][split]["macro_f1"] <= 1.0
    label = run_classify("predict", "--checkpoint", out, "the plot was dull").stdout.split("\t")[0]
    assert label in report["labels"]


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_unknown_label_in_test_file(tiny_run: Path, four_class: dict[str, Path], tmp_path: Path) -> None:
    rows = four_class_rows(10, 3)
    rows[4] = ("the film was odd", "surprise")
    four_class["test"] = write_tsv(tmp_path / "bad_test.tsv", rows)
    out = tmp_path / "never"
    proc = run_classify("--preset", "tiny", "--init", tiny_run, *tsv_args(four_class), "--out", out,
                      check=False)
    assert_one_error_line(proc, f"{four_class['test']}:6:", "unknown label 'surprise'")
    assert not out.exists()


def test_empty_text_fails_before_pretraining(shared_data_dir: Path, four_class: dict[str, Path], tmp_path: Path):
    rows = four_class_rows(10, 4)
    rows[2] = ("  ", "joy")
    four_class["valid"] = write_tsv(tmp_path / "bad_valid.tsv", rows)
    out = tmp_path / "never"
    proc = run_recipe("--preset", "tiny", "--data-dir", shared_data_dir, *tsv_args(four_class), "--out", out,
                      check=False)
    assert_one_error_line(proc, f"{four_class['valid']}:4:", "empty text in column 'review'")
    assert not out.exists()


@pytest.fixture
def other_tokenizer(tmp_path: Path) -> Path:
    """A tokenizer folder that is not the pre-training run's."""
    texts = [text for text, _ in four_class_rows(200, 5)]
    return SentencePieceTokenizer.train(texts, vocab_size=300, model_type="bpe", hard_vocab_limit=False).save(
        tmp_path / "other-tokenizer")


def test_tokenizer_from_another_run_is_refused(tiny_run: Path, shared_data_dir: Path, other_tokenizer: Path,
                                               tmp_path: Path) -> None:
    out = tmp_path / "never"
    proc = run_classify("--preset", "tiny", "--data-dir", shared_data_dir, "--init", tiny_run / "pretrain",
                      "--tokenizer-from", other_tokenizer, "--out", out, check=False)
    assert_one_error_line(proc, "--tokenizer-from", str(other_tokenizer))
    assert not out.exists()


def test_tokenizer_flags_with_init_are_refused(tiny_run: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    for flag in (["--pretokenize", "none"], ["--vocab", "500"]):
        proc = run_classify("--preset", "tiny", "--data-dir", shared_data_dir, "--init",
                          tiny_run / "pretrain", *flag, "--out", tmp_path / "never", check=False)
        assert_one_error_line(proc, "--pretokenize", "the pre-training run's")
    assert not (tmp_path / "never").exists()


def test_checkpoint_with_another_tokenizer_is_refused(tiny_run: Path, other_tokenizer: Path, tmp_path: Path) -> None:
    run = tmp_path / "swapped"
    shutil.copytree(tiny_run / "finetune", run)
    shutil.rmtree(run / "tokenizer")
    shutil.copytree(other_tokenizer, run / "tokenizer")
    proc = run_classify("predict", "--checkpoint", run, "a fine film", check=False)
    assert_one_error_line(proc, "another tokenizer", str(run / "tokenizer"))


def test_imdb_task_truncates_head_and_tail(tiny_run: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "imdb"
    run_classify("--preset", "tiny", "--data-dir", shared_data_dir, "--init", tiny_run / "pretrain",
               "--task", "imdb", "--max-steps", "6", "--out", out)
    report = read_report(out)
    config = json.loads((out / "config.json").read_text())
    assert report["labels"] == ["neg", "pos"] and config["data"]["truncation"] == "head_tail"
    assert config["model"]["max_len"] == 256  # rope: fine-tuned at twice the pre-training length
    assert report["eval"]["test"]["examples"] == 100 and 0.0 <= report["eval"]["test"]["accuracy"] <= 1.0
    assert "imdb/test.jsonl.gz" in (out / "report.md").read_text()


def test_pretrain_on_own_jsonl_documents(shared_data_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "reviews.jsonl"
    docs = [f"Review {i}. The film was {'good' if i % 2 else 'bad'} and the cast was fine." for i in range(120)]
    corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    out = tmp_path / "own"
    run_recipe("pretrain", "--preset", "tiny", "--data-dir", shared_data_dir, "--text", corpus, "--out", out)
    report = read_report(out)
    assert report["config"]["data"]["corpus"] == "file" and str(corpus) in report["config"]["data_source"]
    assert report["eval"]["val"]["masked_tokens"] > 0
    corpus.write_text(corpus.read_text() + '{"text": "cut off\n')
    proc = run_recipe("pretrain", "--preset", "tiny", "--data-dir", shared_data_dir, "--text", corpus,
                      "--out", tmp_path / "never", check=False)
    assert_one_error_line(proc, f"{corpus}:121:", "not valid JSON")
    assert not (tmp_path / "never").exists()


def test_token_mask_flag_is_recorded_and_checked(tiny_run: Path, four_class: dict[str, Path], tmp_path: Path):
    out = tmp_path / "masked"
    run_classify("--preset", "tiny", "--init", tiny_run / "pretrain", *tsv_args(four_class),
               "--token-mask", "0.2", "--out", out)
    assert json.loads((out / "config.json").read_text())["data"]["token_mask"] == 0.2
    assert 0.0 <= read_report(out)["eval"]["test"]["accuracy"] <= 1.0
    proc = run_classify("--preset", "tiny", "--init", tiny_run / "pretrain", *tsv_args(four_class),
                      "--token-mask", "1.5", "--out", tmp_path / "never", check=False)
    assert_one_error_line(proc, "--token-mask", "1.5")
    assert not (tmp_path / "never").exists()


def test_interrupted_run_resumes_bitwise(tiny_run: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    """Issue #17: the one command stopped by SIGTERM in pre-training and killed by SIGKILL in fine-tuning (before its
    first checkpoint), each resumed with --resume alone: every stage ends bitwise where `tiny_run`'s does."""
    # (three processes: the suite's time budget; SIGKILL after a checkpoint is covered by gpt's and translate's)
    signals = ["4:TERM",  # pre-training stopped after step 4 (a checkpoint there)
               "3:KILL",  # pre-training resumed to its end; fine-tuning killed before its first checkpoint
               "20:TERM"]  # fine-tuning from the pre-trained encoder again, then scratch: all finish
    run_interrupted("mlm", ["--preset", "tiny", "--data-dir", shared_data_dir], tmp_path / "cut", signals)
    for stage in ("pretrain", "finetune", "scratch"):
        assert_same_run(tiny_run / stage, tmp_path / "cut" / stage, 12)


def test_resume_refuses_settings_it_would_ignore(tiny_run: Path, shared_data_dir: Path) -> None:
    """Issue #17: a resume kept the saved settings but ignored any other flag without a word; now a flag that is
    not a budget is refused, naming it, before anything runs (the one command and a single stage alike)."""
    before = {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*")}
    for flags, needle in ((["--lr", "0.1"], "--lr"), (["--corpus", "sst2"], "--corpus"),
                          (["--pooling", "cls"], "--pooling"), (["--pretrain-lr", "0.1"], "--pretrain-lr"),
                          (["--pretokenize", "none"], "--pretokenize"),
                          (["finetune", "--resume", tiny_run / "finetune", "--seed", "5"], "--seed 5")):
        argv = flags[1:] if flags[0] == "finetune" else ["--resume", tiny_run, *flags]
        proc = run_recipe(*argv, "--data-dir", shared_data_dir, check=False,
                          recipe=CLASSIFY if flags[0] == "finetune" else RECIPE)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert_one_error_line(proc, needle, "resumed run keeps")
    assert {p: p.stat().st_mtime_ns for p in tiny_run.rglob("*")} == before  # nothing written


def test_classify_recipe_alone_fine_tunes_and_eval_only_reproduces_the_reports(tiny_run: Path, shared_data_dir: Path,
                                                                                  tmp_path: Path) -> None:
    """recipes/classify.py is the fine-tuning recipe on its own (mlm.py's stages are its runs); --eval-only recomputes
    from each run's config.json alone the held-out metrics its report holds (the best checkpoint, same data)."""
    classify = REPO / "recipes" / "classify.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    args = ["--preset", "tiny", "--data-dir", shared_data_dir, "--init", tiny_run, "--max-steps", "6",
            "--out", tmp_path / "ft"]
    proc = subprocess.run([sys.executable, str(classify), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = read_report(tmp_path / "ft")
    assert report["stage"] == "finetune" and report["steps"] == 6
    assert report["init_checkpoint"].startswith(str(tiny_run / "pretrain" / "checkpoints"))

    proc = subprocess.run([sys.executable, str(classify), "--eval-only", "--checkpoint", str(tiny_run), "--data-dir",
                           str(shared_data_dir), "--out", str(tmp_path / "eval")], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "eval.json").read_text())["eval"]
    names = ["finetune", "finetune-seed1", "pretrain", "scratch", "scratch-seed1"]
    assert sorted(again) == names
    for name in names:
        saved = read_report(tiny_run / name)["eval"]
        assert sorted(again[name]) == sorted(saved)
        for split, metrics in saved.items():
            for key, value in metrics.items():
                assert again[name][split][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, split, key)
