"""recipes/gpt.py end to end on --preset tiny with the real Tiny Shakespeare file."""

import json
import math
from pathlib import Path

import pytest
import recipe_process
from interrupt import assert_same_run, run_interrupted
from recipe_process import run_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "gpt.py"


def run(*args, check=True, stdin=None, **env_vars):
    return run_recipe("gpt", *args, check=check, stdin=stdin, **env_vars)


@pytest.fixture(scope="module")
def tiny_run(shared_data_dir, tmp_path_factory):
    return recipe_process.tiny_run("gpt", shared_data_dir, tmp_path_factory)


def test_tiny_run_dir_is_complete(tiny_run):
    for name in ("config.json", "metrics.jsonl", "report.json", "report.md", "loss.png", "lr.png", "attention.png",
                 "samples.md", "tokenizer/tokenizer.json"):
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "checkpoints").glob("step_*/manifest.json"))
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["recipe"] == "gpt" and report["params"] > 0 and report["train_tokens_per_s"] > 0
    for split in ("val", "test"):
        loss = report["eval"][split]["loss"]
        assert math.isfinite(loss) and 0 < loss < math.log(report["config"]["model"]["vocab_size"]) + 0.5
        assert abs(report["eval"][split]["ppl"] - math.exp(loss)) < 1e-3 * math.exp(loss)
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} >= {"train", "val"}
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"]["vocab_size"] == 72  # 65 characters + 7 specials


def test_sampling_streams_and_is_reproducible(tiny_run):
    a = run("sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3")
    b = run("sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "3")
    c = run("sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "4")
    assert a.stdout == b.stdout and a.stdout.startswith("ROMEO:") and len(a.stdout) > len("ROMEO:")
    assert a.stdout != c.stdout
    assert "tokens/s" in a.stderr
    # past the model's max_len (32 in tiny) the context slides; with and without the cache alike
    long = run("sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "90", "--seed", "3")
    plain = run("sample", "--checkpoint", tiny_run, "--prompt", "ROMEO:", "--max-new-tokens", "90", "--seed", "3",
                "--no-cache")
    assert len(long.stdout) >= len("ROMEO:") + 90 and long.stdout.startswith(a.stdout.rstrip("\n")[:40])
    assert plain.stdout == long.stdout and "no cache" in plain.stderr


def test_eval_only_matches_report(tiny_run, shared_data_dir, tmp_path):
    proc = run("--eval-only", "--checkpoint", tiny_run, "--data-dir", shared_data_dir, "--out", tmp_path / "eval")
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    report = json.loads((tiny_run / "report.json").read_text())
    assert "val: loss" in proc.stdout and set(result["eval"]) == set(report["eval"]) >= {"val"}
    for split, metrics in report["eval"].items():  # the same weights and data: the report's numbers again
        for key in ("loss", "ppl"):
            assert result["eval"][split][key] == pytest.approx(metrics[key], rel=1e-6), (split, key)


def test_resume_continues_to_a_larger_budget(tiny_run, shared_data_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    run("--resume", copy, "--data-dir", shared_data_dir, "--max-steps", "50", "--threads", "1")
    report = json.loads((copy / "report.json").read_text())
    assert report["steps"] == 50


def test_bad_input_gives_one_line(tmp_path, shared_data_dir):
    proc = run("--preset", "tiny", "--text", tmp_path / "missing.txt", "--out", tmp_path / "r", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and "missing.txt" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written for a run that could not start
    proc = run("sample", "--checkpoint", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "nowhere" in proc.stderr
    proc = run("--preset", "tiny", "--split", "0.9,x", "--data-dir", shared_data_dir, "--out", tmp_path / "s",
               check=False)
    assert proc.returncode == 2 and "--split" in proc.stderr


def test_interrupted_run_resumes_bitwise(shared_data_dir, tmp_path):
    """Issue #17: SIGTERM at steps 7 and 19 (the latter saving at an eval step before evaluating) and SIGKILL at
    27 (back to the step-20 checkpoint), each resumed with no flag but --resume: the run ends bitwise where an
    uninterrupted one does. A resume used to take the default --seed (another batch order) and the default
    preset's budgets (4000 steps: the last run would reach the SIGTERM at 45)."""
    start = ["--preset", "tiny", "--seed", "7", "--data-dir", shared_data_dir, "--threads", "1"]
    run(*start, "--out", tmp_path / "whole")
    run_interrupted("gpt", start, tmp_path / "cut", ["7:TERM", "19:TERM", "27:KILL", "45:TERM"])
    assert_same_run(tmp_path / "whole", tmp_path / "cut", 40)


def test_resume_refuses_settings_it_would_ignore(tiny_run, shared_data_dir):
    for flags, needle in ((["--lr", "0.1"], "--lr"), (["--seed", "3"], "--seed 3"),
                          (["--block-size", "8"], "--block-size"), (["--positional", "rope"], "--positional"),
                          (["--preset", "nanogpt-cpu"], "--preset")):
        proc = run("--resume", tiny_run, "--data-dir", shared_data_dir, *flags, check=False)
        assert proc.returncode == 2 and needle in proc.stderr and "resumed run keeps" in proc.stderr, proc.stderr


def test_tokenizer_cache_is_outside_the_data_dir(data_copy, tmp_path):
    """Issue #17: a trained tokenizer was cached in `DATA_DIR/tokenizers` (a data dir may be shared or read-only);
    it goes to `$TZOO_CACHE_DIR/tokenizers`, and a second run loads it from there."""
    data, cache = data_copy("tinyshakespeare"), tmp_path / "cache"
    for name in ("a", "b"):
        run("--preset", "tiny", "--tokenizer", "bpe", "--vocab", "500", "--max-steps", "6", "--data-dir", data,
            "--out", tmp_path / name, "--threads", "1", TZOO_CACHE_DIR=str(cache))
    assert sorted(p.name for p in data.iterdir()) == ["tinyshakespeare"]
    assert len(list((cache / "tokenizers").iterdir())) == 1  # one entry: the second run found the first's
    a, b = (json.loads((tmp_path / n / "config.json").read_text()) for n in "ab")
    assert a["tokenizer_fingerprint"] == b["tokenizer_fingerprint"]


def test_knn_builds_tunes_reports_and_refuses_other_datastores(shared_data_dir, tmp_path):
    """`gpt.py knn` (issue #30) on a tiny run of 40k characters: the datastore in the run dir, the report with and
    without retrieval, the gain per datastore size; a datastore of other weights or another dimension, or an empty
    one: one line."""
    from transformers_zoo.retrieval.datastore import Datastore

    text = (shared_data_dir / "tinyshakespeare" / "input.txt").read_text()[:40000]
    (tmp_path / "small.txt").write_text(text)
    tiny_run = tmp_path / "run"
    run("--preset", "tiny", "--text", tmp_path / "small.txt", "--max-steps", "20", "--out", tiny_run, "--threads", "1")
    knn = ("knn", "--checkpoint", tiny_run, "--fractions", "0.3,1", "--lambdas", "0,0.3,0.6", "--temperatures", "1,10",
           "--ks", "4,16", "--threads", "1")
    run(*knn)
    report = json.loads((tiny_run / "knn_report.json").read_text())
    test = report["test"]["test"]
    assert report["datastore"]["entries"] == len(text) * 8 // 10 - 1 and report["datastore"]["built"]
    assert [r["fraction"] for r in report["fractions"]] == [0.3, 1.0]
    assert test["with"]["loss"] <= test["without"]["loss"] + 0.01 and report["tuned"]["k"] in (4, 16)
    assert report["tuned"]["val_loss"] <= report["tuned"]["val_base_loss"]  # lambda 0 was on the grid
    assert report["slowdown"] > 0 and (tiny_run / "knn_gain.png").is_file()
    assert "| test |" in (tiny_run / "knn_report.md").read_text()
    store = tiny_run / "knn-datastore"
    other = Datastore.load(store)  # the same states under another model's fingerprint: another run's
    other.index.meta["fingerprint"] = "0" * 64
    other.save(tmp_path / "other")
    proc = run(*knn, "--datastore", tmp_path / "other", check=False)  # (dimension, empty: tests/retrieval)
    assert proc.returncode == 2 and "built from other weights" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
