"""recipes/translate.py end to end on the real Multi30k files (tiny preset: seconds), plus `translate`: batched
search equals one-by-one search, beam 1 equals greedy (generation.generate_many has its own tests in
tests/test_generation.py, checkpoint averaging in tests/training/test_checkpoint.py)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu
import torch
from interrupt import assert_same_run, run_interrupted

from transformers_zoo import EncoderDecoder, ModelConfig
from transformers_zoo.corpora import load_multi30k
from transformers_zoo.generation import beam_search, generate_many, greedy, strip_special
from transformers_zoo.tasks.translation import translate
from transformers_zoo.tokenizers import BOS, EOS, CharTokenizer

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "translate.py"
TESTS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")


def run_recipe(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TZOO_DEBUG"}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, str(RECIPE), *map(str, args)], capture_output=True, text=True,
                          input=stdin, env=env, cwd=REPO, timeout=600)


@pytest.fixture(scope="module")
def recipe():
    """recipes/translate.py imported as a module, for in-process runs (no interpreter start-up per call)."""
    spec = importlib.util.spec_from_file_location("translate_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the recipe hands itself (sys.modules[__name__]) to cli.recipe_main
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def call(recipe, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`call(*argv, stdin=None) -> (exit code, stdout, stderr)` of the recipe's main, as main_guard exits."""

    def run(*argv: object, stdin: str | None = None) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["recipes/translate.py", *map(str, argv)])
        monkeypatch.delenv("TZOO_DEBUG", raising=False)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            recipe.main_guard(recipe.main)
        out, err = capsys.readouterr()
        return exit_info.value.code or 0, out, err

    return run


@pytest.fixture(scope="module")
def tiny_run(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("translate") / "run"
    proc = run_recipe("--preset", "tiny", "--data-dir", shared_data_dir, "--out", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]  # every line ends with "\n"


# ---------------------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------------------


def test_tiny_run_dir_is_complete_and_scores_reproduce(tiny_run: Path) -> None:
    for name in ("config.json", "metrics.jsonl", "report.json", "report.md", "loss.png", "lr.png", "attention.png",
                 "tokenizer/tokenizer.json", "checkpoints/best.json", "averaged/model.safetensors"):
        assert (tiny_run / name).is_file(), name
    assert list((tiny_run / "checkpoints").glob("step_*/manifest.json"))
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["recipe"] == "translate" and report["params"] > 0 and report["steps"] == 40
    assert report["selected"]["checkpoint"] in ("best", "averaged")
    assert set(report["candidates"]) == {"best", "averaged"}
    assert report["eval"]["val"]["loss"] > 0
    for split in TESTS:
        m = report["eval"][split]
        hyp, greedy_hyp, ref = (tiny_run / m[k] for k in ("hypotheses", "hypotheses_greedy", "references"))
        assert hyp == tiny_run / "hyp" / f"{split}.de" and ref == tiny_run / "hyp" / f"{split}.ref.de"
        assert greedy_hyp == tiny_run / "hyp" / f"{split}.greedy.de"
        refs = lines(ref)
        assert len(refs) == len(lines(hyp)) == len(lines(greedy_hyp)) == m["sentences"] == 50
        assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(lines(hyp), [refs]).score, abs=1e-9)
        assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(lines(hyp), [refs]).score, abs=1e-9)
        assert m["bleu_greedy"] == pytest.approx(sacrebleu.corpus_bleu(lines(greedy_hyp), [refs]).score, abs=1e-9)
        assert m["chrf_greedy"] == pytest.approx(sacrebleu.corpus_chrf(lines(greedy_hyp), [refs]).score, abs=1e-9)
        assert m["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
        assert "nc:6" in m["chrf_signature"] and m["loss"] > 0 and m["chrf"] > 0
    md = (tiny_run / "report.md").read_text()
    assert "Test scores" in md and "![attention](attention.png)" in md and "| source | reference |" in md


def test_sacrebleu_cli_reproduces_the_report(tiny_run: Path) -> None:
    m = json.loads((tiny_run / "report.json").read_text())["eval"]["test_2016_flickr"]
    for metric, key in (("bleu", "bleu"), ("chrf", "chrf")):
        proc = subprocess.run([sys.executable, "-m", "sacrebleu", str(tiny_run / m["references"]), "-i",
                               str(tiny_run / m["hypotheses"]), "-m", metric, "-b", "-w", "4"],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout.strip()) == pytest.approx(m[key], abs=1e-4)


def test_translate_subcommand_args(tiny_run: Path) -> None:
    proc = run_recipe("translate", "--checkpoint", tiny_run, "A man rides a bike.", "Two dogs play in the snow.",
                      "--beam", "2")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split("\n")[:-1]) == 2


def test_translate_subcommand_stdin_and_attention(call, tiny_run: Path, tmp_path: Path) -> None:
    png = tmp_path / "attn.png"
    code, out, err = call("translate", "--checkpoint", tiny_run, "--show-attention", png, "--heads", "all",
                          stdin="A girl sings.\nA dog runs.\nAn old man reads a newspaper.\n")
    assert code == 0, err
    assert len(out.split("\n")[:-1]) == 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "attn-2.png").is_file() and (tmp_path / "attn-3.png").is_file()


def test_eval_only_writes_to_out(call, tiny_run: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code, stdout, err = call("--eval-only", "--checkpoint", tiny_run, "--data-dir", shared_data_dir, "--out", out,
                             "--beam", "1", "--eval-limit", "20")
    assert code == 0, err
    assert "test_2016_flickr: BLEU" in stdout
    result = json.loads((out / "eval.json").read_text())
    m = result["eval"]["test_2016_flickr"]
    assert m["sentences"] == 20 and m["bleu"] == m["bleu_greedy"]  # beam 1 is greedy
    assert len(lines(out / m["hypotheses"])) == 20


def own_files(data_dir: Path, tmp_path: Path, n_train: int = 400, n_val: int = 20, n_test: int = 10) -> list:
    """The first pairs of Multi30k's train, val and test_2016 as files of one's own; the flags that train on them
    (tiny preset, test split "mine")."""
    pairs = load_multi30k(data_dir, "en", "de")
    for name, split, n in (("tr", "train", n_train), ("va", "val", n_val), ("te", "test_2016_flickr", n_test)):
        for side, lang in ((0, "en"), (1, "de")):
            (tmp_path / f"{name}.{lang}").write_text("".join(p[side] + "\n" for p in pairs[split][:n]))
    return ["--preset", "tiny", "--train-src", tmp_path / "tr.en", "--train-tgt", tmp_path / "tr.de",
            "--valid-src", tmp_path / "va.en", "--valid-tgt", tmp_path / "va.de",
            "--test", f"mine={tmp_path / 'te.en'},{tmp_path / 'te.de'}"]


def test_own_files_separate_vocab_select_bleu_and_resume(call, shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, err = call(*own_files(shared_data_dir, tmp_path, n_val=20, n_test=10), "--separate-vocab",
                        "--vocab", "400", "--select", "bleu", "--max-steps", "10", "--out", out)
    assert code == 0, err
    assert (out / "tokenizer-src" / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["share_src_tgt_embeddings"] is False and config["model"]["src_vocab_size"] == 400
    assert config["train"]["best_metric"] == "val_bleu" and config["train"]["best_mode"] == "max"
    report = json.loads((out / "report.json").read_text())
    assert set(report["eval"]) == {"val", "mine"} and report["steps"] == 10
    assert (out / "hyp" / "mine.de").is_file() and (out / "hyp" / "mine.ref.de").is_file()
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in row for row in evals if row.get("split") == "val")

    code, _, err = call("--resume", out, "--max-steps", "15")
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["steps"] == 15


def _assert_one_line_error(result: tuple[int, str, str], *needles: str) -> None:
    code, _, err = result
    assert code != 0
    err = err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err


def test_mismatched_parallel_files(call, tmp_path: Path) -> None:
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    out = tmp_path / "run"
    result = call("--preset", "tiny", "--train-src", tmp_path / "a.en", "--train-tgt", tmp_path / "a.de",
                  "--valid-src", tmp_path / "a.en", "--valid-tgt", tmp_path / "a.de", "--out", out)
    _assert_one_line_error(result, "a.en", "a.de", "3 lines", "2 lines")
    assert not out.exists()


def test_partial_file_flags(call, tmp_path: Path) -> None:
    (tmp_path / "a.en").write_text("one\n")
    result = call("--preset", "tiny", "--train-src", tmp_path / "a.en", "--out", tmp_path / "run")
    _assert_one_line_error(result, "--train-tgt", "--valid-src")
    assert not (tmp_path / "run").exists()


def test_unknown_language(call, shared_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = call("--preset", "tiny", "--data-dir", shared_data_dir, "--src", "xx", "--out", out)
    _assert_one_line_error(result, "'xx'", "en")
    assert not out.exists()


@pytest.mark.parametrize("argv", [["translate", "--checkpoint", "{missing}", "Hello."],
                                  ["--eval-only", "--checkpoint", "{missing}", "--out", "{out}"]])
def test_missing_checkpoint(call, argv: list[str], tmp_path: Path) -> None:
    missing, out = tmp_path / "no-such-run", tmp_path / "eval"
    result = call(*[a.format(missing=missing, out=out) for a in argv])
    _assert_one_line_error(result, str(missing))
    assert not out.exists() and not missing.exists()


# ---------------------------------------------------------------------------------------------------------
# The task module
# ---------------------------------------------------------------------------------------------------------

SENTENCES = ["a b c", "hello world", "x", "the quick brown fox", "ab", "a much longer sentence than the others",
             "cab", "zzz top", ""]


@pytest.fixture(scope="module")
def toy() -> tuple[EncoderDecoder, CharTokenizer]:
    """A random tiny model whose outputs depend strongly on the input (large weights, float64: padding and
    batching must not change any argmax)."""
    tok = CharTokenizer.train("".join(SENTENCES))
    torch.manual_seed(0)
    model = EncoderDecoder(ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                                       dropout=0.0)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model, tok


def test_translate_restores_order_and_beam_one_is_greedy(toy: tuple[EncoderDecoder, CharTokenizer]) -> None:
    model, tok = toy
    sources = [[*tok.encode(s), EOS] for s in SENTENCES]
    alone_greedy, alone_beam1, alone_beam3 = [], [], []
    for src in sources:
        src_t = torch.tensor([src])
        prompt = torch.tensor([[BOS]])
        g = greedy(model, model.init_cache(src_t), prompt, 12, EOS)[0].tolist()
        alone_greedy.append(strip_special(g, EOS, 0))
        alone_beam1.append(strip_special(beam_search(model, model.init_cache(src_t), prompt, 12, EOS,
                                                     beam_size=1)[0][0].tokens, EOS, 0))
        alone_beam3.append(strip_special(beam_search(model, model.init_cache(src_t), prompt, 12, EOS,
                                                     beam_size=3)[0][0].tokens, EOS, 0))
    assert alone_beam1 == alone_greedy
    assert len({tuple(x) for x in alone_greedy}) > 3  # outputs differ, so a wrong order would show
    # several length-sorted batches (small token budget), budget 12 tokens each: same results, input order
    ids = {"start": BOS, "eos_id": EOS}
    batched = generate_many(model, sources, beam_size=1, max_len_a=0, max_len_b=12, max_tokens=40, **ids)
    assert batched == alone_greedy
    assert generate_many(model, sources, beam_size=3, max_len_a=0, max_len_b=12, max_tokens=90, **ids) == alone_beam3
    texts = translate(model, tok, SENTENCES, beam_size=1, max_len_a=0, max_len_b=12, max_tokens=40)
    assert texts == [tok.decode(ids) for ids in alone_greedy]


def test_interrupted_run_resumes_bitwise(tiny_run: Path, shared_data_dir: Path, tmp_path: Path) -> None:
    """Issue #17: SIGTERM at step 5, SIGKILL at 17 (back to the step-10 checkpoint), SIGTERM at 30, each resumed
    with --resume alone (dropout on, so the RNG state counts too): the run ends bitwise where `tiny_run` does."""
    run_interrupted("translate", ["--preset", "tiny", "--data-dir", shared_data_dir], tmp_path / "cut",
                    ["5:TERM", "17:KILL", "30:TERM", "45:TERM"])
    assert_same_run(tiny_run, tmp_path / "cut", 40)


def test_resume_refuses_settings_it_would_ignore(tiny_run: Path, shared_data_dir: Path, call) -> None:
    """Issue #17: a resume used to ignore every flag but the budgets without a word (`--lr 0.1` ran on with the
    saved lr); now it is rebuilt from config.json alone and any other setting is refused, naming it."""
    before = sorted(p.name for p in tiny_run.rglob("*"))
    for flags, needle in ((["--lr", "0.1"], "--lr"), (["--seed", "3"], "--seed 3"), (["--vocab", "300"], "--vocab"),
                          (["--n-encoder-layers", "1"], "--n-encoder-layers"), (["--preset", "cpu"], "--preset")):
        code, _, err = call("--resume", tiny_run, "--data-dir", shared_data_dir, *flags)
        assert code == 2 and needle in err and "resumed run keeps" in err, err
    assert sorted(p.name for p in tiny_run.rglob("*")) == before  # nothing written


def test_flags_set_settings_fields_zero_included(recipe) -> None:
    """Every translate flag lands in its field; a typed 0 is a value (it once read as 'not given'), and a bad
    value is refused before any data is read, naming the flag."""
    from transformers_zoo import cli
    from transformers_zoo.settings import SettingsError

    parser = cli.recipe_parser(recipe)
    args = parser.parse_args(["--preset", "tiny", "--label-smoothing", "0", "--dropout", "0", "--beam", "3",
                              "--max-len-b", "0", "--separate-vocab", "--select", "bleu", "--test", "a=x.en,x.de"])
    s = recipe.settings(args)
    assert (s.label_smoothing, s.model.dropout, s.eval.beam, s.eval.max_len_b) == (0.0, 0.0, 3, 0)
    assert s.data.separate_vocab and s.train.best_metric == "val_bleu" and list(s.data.tests) == ["a"]
    for flags, flag in ((["--beam", "0"], "--beam"), (["--max-tokens", "0"], "--max-tokens"),
                        (["--label-smoothing", "1"], "--label-smoothing"), (["--test", "bad"], "--test")):
        with pytest.raises(SettingsError) as err:
            recipe.settings(parser.parse_args(["--preset", "tiny", *flags]))
        assert cli.flag_of(parser, err.value.path) == flag


def test_knn_mt_on_own_files_reports_bleu_with_and_without(call, shared_data_dir: Path, tmp_path: Path) -> None:
    """`translate.py knn` (issue #30): teacher-forced target states of the training pairs in the run dir, BLEU and
    chrF of each test split with and without retrieval, the datastore fractions, the decoding slowdown."""
    out = tmp_path / "run"
    code, _, err = call(*own_files(shared_data_dir, tmp_path, n_val=12, n_test=8), "--vocab", "400", "--max-steps",
                        "6", "--out", out)
    assert code == 0, err
    code, stdout, err = call("knn", "--checkpoint", out, "--fractions", "0.5,1", "--lambdas", "0,0.5",
                             "--temperatures", "10", "--ks", "4")
    assert code == 0, err
    report = json.loads((out / "knn_report.json").read_text())
    mine = report["test"]["mine"]
    assert report["method"] == "kNN-MT" and report["datastore"]["kind"] == "flat"
    assert report["datastore"]["entries"] > 400 and {"bleu", "chrf", "loss"} <= set(mine["with"])
    assert mine["delta"] == mine["with"]["bleu"] - mine["without"]["bleu"] and report["slowdown"] > 0
    assert [row["fraction"] for row in report["fractions"]] == [0.5, 1.0] and "mine" in stdout
    assert (out / "knn_gain.png").is_file() and "| mine |" in (out / "knn_report.md").read_text()
