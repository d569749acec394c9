"""TranslationTask (tasks/translation/task.py): evaluate is the trainer's validation, the report's numbers and
eval-only's; report_sections shows what evaluate translated; the decoder-only variant scores the same pairs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import sacrebleu
import torch

from transformers_zoo import DecoderOnly, EncoderDecoder, ModelConfig
from transformers_zoo.batching import IGNORE_INDEX
from transformers_zoo.settings import SettingsError
from transformers_zoo.tasks.base import fit
from transformers_zoo.tasks.translation import (
    SearchSettings,
    TranslationDataSettings,
    TranslationTask,
    prepare_translation_task,
    translate,
)
from transformers_zoo.tokenizers import CharTokenizer
from transformers_zoo.training import TrainConfig, load_checkpoint

WORDS = ["ab", "cab", "bad", "dab", "ace", "cade", "bead", "deb", "face", "fade"]
PAIRS = {"train": [(w, w[::-1]) for w in WORDS * 4], "val": [(w, w[::-1]) for w in WORDS[:6]],
         "test": [(w, w[::-1]) for w in WORDS[4:]]}
DATA = TranslationDataSettings(src="fw", tgt="bw", max_tokens=64, eval_max_tokens=200)
SEARCH = SearchSettings(beam=2, length_penalty=1.0, max_len_a=1.0, max_len_b=3, select="loss", average_last=1)


def tiny_config(tok: CharTokenizer) -> ModelConfig:
    return ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_heads=2, n_layers=1, d_ff=64, dropout=0.0,
                       max_len=32)


@pytest.fixture(scope="module")
def task() -> TranslationTask:
    tok = CharTokenizer.train("".join(WORDS))
    return prepare_translation_task(PAIRS, DATA, SEARCH, max_len=32, tokenizers=(tok, tok), label_smoothing=0.1)


@pytest.fixture(scope="module")
def trained(task: TranslationTask, tmp_path_factory: pytest.TempPathFactory) -> tuple[EncoderDecoder, Path]:
    """The task's `fit` for 6 steps (evaluations at 3 and 6); the step-6 checkpoint loaded back."""
    run_dir = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = EncoderDecoder(tiny_config(task.tokenizer))
    cfg = TrainConfig(lr=3e-3, warmup_steps=2, max_steps=6, eval_every=3, save_every=3, log_every=3, device="cpu",
                      progress=False)
    summary = fit(task, model, cfg, run_dir, {"model": "tiny"}, evaluate=task.validation_metrics)
    assert summary["steps"] == 6
    best = EncoderDecoder(tiny_config(task.tokenizer))
    load_checkpoint(run_dir / "checkpoints" / "step_00000006", best)
    return best.eval(), run_dir


def test_task_shape(task: TranslationTask) -> None:
    assert task.eval_splits == ("val", "test") and task.unit == "tok" and task.images == ("attention.png",)
    assert task.label_smoothing == 0.1
    assert task.tokenizer is task.src_tokenizer
    batch = next(task.train_stream(seed=0))
    assert set(batch) == {"src", "tgt_in", "tgt_out"}
    torch.manual_seed(0)
    with torch.no_grad():
        loss, n = task.loss(EncoderDecoder(tiny_config(task.tokenizer)), batch)
    assert int(n) == int((batch["tgt_out"] != IGNORE_INDEX).sum()) and loss.item() > 0


def test_max_tokens_must_hold_the_longest_pair(task: TranslationTask) -> None:
    with pytest.raises(SettingsError, match="data.max_tokens: 3 cannot hold") as err:  # cli: --max-tokens
        prepare_translation_task(PAIRS, dataclasses.replace(DATA, max_tokens=3), SEARCH, 32,
                                 (task.tokenizer, task.tokenizer))
    assert err.value.path == "data.max_tokens"


def test_evaluate_is_what_the_trainer_logged(task: TranslationTask, trained) -> None:
    model, run_dir = trained
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if r.get("split") == "val" and r.get("step") == 6]
    assert len(logged) == 1 and "val_bleu" not in logged[0]  # --select loss: no decoding during training
    val = task.evaluate(model, "val")
    assert val["loss"] == pytest.approx(logged[0]["val_loss"], rel=1e-6)
    assert val["ppl"] == pytest.approx(logged[0]["val_ppl"], rel=1e-6)
    expected = task.split_loss(model, "val")
    assert val["loss"] == expected["loss"]
    assert expected["tokens"] == sum(len(t) + 1 for _, t in task.data.examples["val"])  # targets and their EOS
    greedy = translate(model, task.tokenizer, [s for s, _ in PAIRS["val"]], beam_size=1, max_len_a=1.0, max_len_b=3)
    refs = [t for _, t in PAIRS["val"]]
    assert val["bleu_greedy"] == pytest.approx(sacrebleu.corpus_bleu(greedy, [refs]).score, abs=1e-9)
    assert set(val) == {"loss", "ppl", "bleu_greedy", "chrf_greedy"}
    assert task.evaluate(model, "val", translations=False) == {"loss": val["loss"], "ppl": val["ppl"]}


def test_validation_metrics_with_select_bleu(task: TranslationTask, trained) -> None:
    model, _ = trained
    bleu_task = TranslationTask(task.data, DATA, dataclasses.replace(SEARCH, select="bleu"))
    metrics = bleu_task.validation_metrics(model)
    assert set(metrics) == {"val_loss", "val_ppl", "val_bleu"}
    assert metrics["val_bleu"] == bleu_task.evaluate(model, "val")["bleu_greedy"]


def test_test_split_writes_hypotheses_and_report_sections_show_them(task: TranslationTask, trained,
                                                                    tmp_path: Path) -> None:
    model, _ = trained
    m = task.evaluate(model, "test", out_dir=tmp_path)
    assert m["sentences"] == len(PAIRS["test"]) and m["hypotheses"] == "hyp/test.bw"
    hyps = (tmp_path / "hyp" / "test.bw").read_text().split("\n")[:-1]
    greedy = (tmp_path / "hyp" / "test.greedy.bw").read_text().split("\n")[:-1]
    refs = (tmp_path / m["references"]).read_text().split("\n")[:-1]
    assert refs == [t for _, t in PAIRS["test"]]
    assert hyps == translate(model, task.tokenizer, [s for s, _ in PAIRS["test"]], beam_size=2, max_len_a=1.0,
                             max_len_b=3) == task.translations["test"]["hypotheses"]
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert m["bleu_greedy"] == pytest.approx(sacrebleu.corpus_bleu(greedy, [refs]).score, abs=1e-9)
    assert m["signature"].startswith("nrefs:1|")

    evals = {"val": task.evaluate(model, "val"), "test": m}
    candidates = {"best": {"steps": [6], **evals["val"]}}
    sections = dict(task.report_sections(model, tmp_path, evals, candidates, "best"))
    assert list(sections) == ["Test scores", "Checkpoint selection on validation",
                              "Example translations (test, beam 2)"]
    assert f"| test | 6 | {m['bleu']:.2f} | {m['bleu_greedy']:.2f} |" in sections["Test scores"]
    assert "**best**" in sections["Checkpoint selection on validation"]
    for (src, ref), hyp in list(zip(PAIRS["test"], hyps, strict=True))[:5]:
        assert f"| {src} | {ref} | {hyp} |" in sections["Example translations (test, beam 2)"]
    assert (tmp_path / "attention.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_sections_evaluates_when_not_given(task: TranslationTask, trained, tmp_path: Path) -> None:
    model, _ = trained
    fresh = TranslationTask(task.data, DATA, SEARCH)
    sections = dict(fresh.report_sections(model, tmp_path))
    assert "Checkpoint selection on validation" not in sections
    assert f"{fresh.evaluate(model, 'test')['bleu']:.2f}" in sections["Test scores"]


def test_decoder_only_family_scores_the_same_pairs(task: TranslationTask) -> None:
    prefix = TranslationTask(task.data, DATA, SEARCH, family="decoder_only")
    assert prefix.images == ()
    assert set(next(prefix.train_stream(seed=0))) == {"input_ids", "labels"}
    torch.manual_seed(0)
    model = DecoderOnly(ModelConfig(vocab_size=task.tokenizer.vocab_size, d_model=32, n_heads=2, n_layers=1,
                                    d_ff=64, dropout=0.0, max_len=64)).eval()
    m = prefix.evaluate(model, "test")
    scored = prefix.split_loss(model, "test")
    assert m["loss"] == scored["loss"]
    assert scored["tokens"] == sum(len(t) + 1 for _, t in task.data.examples["test"])  # the same target tokens
    assert m["sentences"] == len(PAIRS["test"]) and "bleu" in m
    with pytest.raises(ValueError, match="family"):
        TranslationTask(task.data, DATA, SEARCH, family="encoder_only")
