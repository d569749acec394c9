"""tasks.lm.LMTask: one evaluation for training, report and --eval-only; its cap; its report sections."""

from dataclasses import replace

import pytest
import torch

from transformers_zoo import DecoderOnly, ModelConfig
from transformers_zoo.tasks.base import fit
from transformers_zoo.tasks.lm import LMTask, evaluate_lm, prepare_lm_task
from transformers_zoo.training import TrainConfig
from transformers_zoo.training.metrics_log import read_metrics

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(60))


@pytest.fixture(scope="module")
def task() -> LMTask:
    return prepare_lm_task(TEXT, (0.8, 0.1, 0.1), "char", block_size=16, batch_size=4, eval_batch_size=8)


def tiny_model(task: LMTask) -> DecoderOnly:
    torch.manual_seed(0)
    tok = task.tokenizer
    return DecoderOnly(ModelConfig(vocab_size=tok.vocab_size, pad_id=tok.pad_id, d_model=32, n_heads=2, n_layers=1,
                                   max_len=16, dropout=0.0))


def test_is_a_task_with_the_splits_of_its_text(task):
    assert task.unit == "tok" and task.eval_splits == ("val", "test")
    assert prepare_lm_task(TEXT, (0.9, 0.1, 0.0), "char", 16, 4).eval_splits == ("val",)
    a, b = next(task.train_stream(3)), next(task.train_stream(3))
    assert a["input_ids"].shape == (4, 16) and torch.equal(a["input_ids"], b["input_ids"])
    assert not torch.equal(a["input_ids"], next(task.train_stream(4))["input_ids"])
    loss, n = task.loss(tiny_model(task), a)
    assert int(n) == 4 * 16 and torch.isfinite(loss)


def test_evaluate_is_what_the_trainer_logs(task, tmp_path):
    model = tiny_model(task)
    calls = []
    cfg = TrainConfig(max_steps=4, eval_every=2, log_every=2, save_every=2, warmup_steps=1, device="cpu",
                      progress=False)
    fit(task, model, cfg, tmp_path, {"test": 1}, on_eval=lambda m, step, metrics: calls.append((step, metrics)))
    logged = [r for r in read_metrics(tmp_path) if r.get("split") == "val"]
    assert [step for step, _ in calls] == [r["step"] for r in logged] == [2, 4]
    assert "val_tokens" not in calls[-1][1] and "val_ppl" in calls[-1][1]  # floats only: no counts
    # the model ends at step 4, whose evaluation was the last one logged
    assert task.evaluate(model, "val")["loss"] == pytest.approx(logged[-1]["val_loss"], rel=1e-6)
    assert calls[-1][1]["val_loss"] == logged[-1]["val_loss"]


def test_max_eval_tokens_caps_every_split(task):
    model = tiny_model(task)
    whole = task.evaluate(model, "test")
    capped = replace(task, max_eval_tokens=40).evaluate(model, "test")
    assert "bpc" in whole and "bpc" not in capped  # the characters of a prefix are not counted
    assert capped["tokens"] < whole["tokens"] and capped["tokens"] <= 40
    direct = evaluate_lm(model, task.data.tokens["test"][:40], 16, 8, torch.device("cpu"), task.tokenizer.pad_id)
    assert capped["loss"] == pytest.approx(direct["loss"], rel=1e-6)
    longer = replace(task, block_size=8, eval_batch_size=16).evaluate(model, "test")  # another context
    assert longer["tokens"] == whole["tokens"] and longer["loss"] != whole["loss"]


def test_report_sections_sample_and_attention(task, tmp_path):
    model = tiny_model(task)
    task.on_eval(model, tmp_path, 7, {"val_loss": 2.5})
    assert "### step 7, val loss 2.5000" in (tmp_path / "samples.md").read_text()
    sections = task.report_sections(model, tmp_path)
    assert [title for title, _ in sections] == ["Sample from the best checkpoint (prompt 'ROMEO:', temperature 0.8)",
                                                "Samples during training"]
    assert sections[0][1].startswith("```\n") and sections[0][1] == task.report_sections(model, tmp_path)[0][1]
    assert "### step 7" in sections[1][1]
    assert all((tmp_path / name).stat().st_size > 1000 for name in task.images)
