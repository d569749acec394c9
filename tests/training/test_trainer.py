"""The training loop in-process: skipped non-finite steps, budgets, evaluation, early stopping, signals,
metrics.jsonl, and the exact normalisation of gradient accumulation."""

from __future__ import annotations

import json
import os
import platform
import signal
import sys
from pathlib import Path

import pytest
import torch
from training_toy import (
    Recorder,
    TinyLM,
    ToyStream,
    assert_tree_equal,
    base_config,
    make_trainer,
    trainer_state,
)

from transformers_zoo.training import Interrupted, Trainer, TrainingError, latest_checkpoint
from transformers_zoo.training.checkpoint import list_step_dirs, load_state
from transformers_zoo.training.losses import cross_entropy_sum
from transformers_zoo.training.metrics_log import read_metrics
from transformers_zoo.training.signals import SignalGuard

pytestmark = pytest.mark.filterwarnings("ignore:moved .* aside:RuntimeWarning")


def test_nan_loss_skips_the_step_without_touching_state(tmp_path):
    k = 3  # NaN in the first micro-batch of step k (2 micro-batches per step)
    before = make_trainer(tmp_path / "a", base_config(max_steps=k - 1))
    before.fit()
    recorder = Recorder(nan_calls={2 * k - 1})
    after = make_trainer(tmp_path / "b", base_config(max_steps=k), loss_fn=recorder)
    with pytest.warns(RuntimeWarning, match=f"step {k}: non-finite loss"):
        summary = after.fit()
    assert summary["steps"] == k and after.stream.state_dict() == {"epoch": 0, "index": 2 * k}  # data moved on
    assert_tree_equal(trainer_state(before), trainer_state(after))
    assert after.scheduler.last_epoch == k - 1  # the schedule did not advance


def test_consecutive_nan_steps_abort_and_no_nan_checkpoint_is_written(tmp_path):
    recorder = Recorder(nan_calls=set(range(5, 100)))  # every micro-batch from step 3 on
    trainer = make_trainer(tmp_path, base_config(max_steps=20, max_bad_steps=3), loss_fn=recorder)
    with pytest.warns(RuntimeWarning, match="non-finite"), pytest.raises(TrainingError, match="3 non-finite steps"):
        trainer.fit()
    assert [s for s, _ in list_step_dirs(tmp_path)] == [3, 4]  # keep_last=2; skipped steps still save
    for _, d in list_step_dirs(tmp_path):
        state = load_state(d)
        assert all(torch.isfinite(v).all() for s in state["optimizer"]["state"].values() for v in s.values())
    # The guard itself: a model that went NaN is never written.
    with torch.no_grad():
        trainer.model.proj.weight[0, 0] = float("nan")
    trainer.step += 1
    with pytest.raises(TrainingError, match="proj.weight has non-finite values"):
        trainer._save()
    assert [s for s, _ in list_step_dirs(tmp_path)] == [3, 4]


def test_accumulation_gives_the_gradient_of_the_global_mean(tmp_path):
    """accum_steps=2 over two batches == one step over their concatenation, although the two batches
    score different numbers of tokens (a mean of per-batch means would differ)."""

    class Pairs(ToyStream):
        def __next__(self):
            a, b = super().__next__(), super().__next__()
            return {k: torch.cat([a[k], b[k]]) for k in a}

    grads = []
    for accum, stream in ((2, ToyStream()), (1, Pairs())):
        torch.manual_seed(0)
        cfg = base_config(max_steps=1, accum_steps=accum, grad_clip=0.0, eval_every=None)
        trainer = Trainer(TinyLM(dropout=0.0), stream, Recorder(), cfg, tmp_path / str(accum), fingerprint={})
        trainer.fit()
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_budgets_by_epochs_and_minutes(tmp_path):
    _, summary = run(tmp_path / "e", max_steps=None, max_epochs=1)
    assert summary["stopped"] == "max_epochs" and summary["steps"] == 6  # 11 batches, 2 per step
    _, summary = run(tmp_path / "m", max_steps=None, max_minutes=1e-9)
    assert summary["stopped"] == "max_minutes" and summary["steps"] == 1
    # The clock is stored in the checkpoint: a resumed run with the budget spent stops at once.
    saved_elapsed = load_state(latest_checkpoint(tmp_path / "m"))["elapsed_s"]
    _, again = run(tmp_path / "m", max_steps=None, max_minutes=1e-9, resume=True)
    assert again["stopped"] == "max_minutes" and again["steps"] == 1 and again["wall_s"] >= saved_elapsed > 0


def run(run_dir, evaluate="default", **overrides):
    trainer = make_trainer(run_dir, base_config(**overrides), evaluate=evaluate)
    return trainer, trainer.fit()


def test_best_checkpoint_and_early_stopping(tmp_path):
    values = iter([3.0, 2.0, 2.5, 2.1, 2.2, 1.0])

    def evaluate(model):
        assert not model.training and not torch.is_grad_enabled()
        return {"val_loss": next(values), "val_bleu": 1.0}

    trainer, summary = run(tmp_path, evaluate=evaluate, max_steps=40, eval_every=2, patience=3, keep_last=1)
    assert summary["stopped"] == "early_stopping" and summary["steps"] == 10  # 3 evals without a new best
    assert summary["best_step"] == 4 and summary["best_metric"] == 2.0
    assert trainer.model.training  # train mode restored after evaluation
    assert summary["best_checkpoint"].endswith("step_00000004")
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "best.json", "step_00000004", "step_00000010"]  # keep_last=1 plus the best
    val = [r for r in read_metrics(tmp_path) if r["split"] == "val"]
    assert [(r["step"], r["val_loss"]) for r in val] == [(2, 3.0), (4, 2.0), (6, 2.5), (8, 2.1), (10, 2.2)]

    scores = iter([10.0, 30.0, 20.0])
    _, summary = run(tmp_path / "max", evaluate=lambda m: {"val_bleu": next(scores)}, max_steps=6, eval_every=2,
                     best_metric="val_bleu", best_mode="max")
    assert summary["best_step"] == 4 and summary["best_metric"] == 30.0 and summary["stopped"] == "max_steps"


def test_metrics_jsonl_has_each_step_once_across_a_resume(tmp_path):
    run(tmp_path, max_steps=6, save_every=4, keep_last=5)
    # Lose the final checkpoint, as if the process died after logging step 6 but before saving it.
    ckpt = tmp_path / "checkpoints" / "step_00000006"
    for f in ckpt.iterdir():
        f.unlink()
    ckpt.rmdir()
    _, summary = run(tmp_path, max_steps=8, save_every=4, keep_last=5, resume=True)
    rows = read_metrics(tmp_path)
    train = [r["step"] for r in rows if r["split"] == "train"]
    assert train == list(range(1, 9))
    assert [r["step"] for r in rows if r["split"] == "val"] == [4, 8]
    first = rows[0]
    assert set(first) == {"step", "split", "loss", "lr", "tokens_per_s", "elapsed_s", "epoch", "grad_norm"}
    assert summary["train_tokens_per_s"] > 0 and summary["steps"] == 8
    assert all(json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())


def test_sigterm_saves_at_step_boundary_and_restores_handlers(tmp_path):
    previous = signal.getsignal(signal.SIGTERM)

    def hook(call):
        if call == 3:  # inside step 2: the step must still finish before the checkpoint
            os.kill(os.getpid(), signal.SIGTERM)

    trainer = make_trainer(tmp_path, base_config(max_steps=10, save_every=None), loss_fn=Recorder(hook=hook))
    with pytest.raises(Interrupted) as err:
        trainer.fit()
    assert err.value.signum == signal.SIGTERM and err.value.exit_code == 143 and err.value.step == 2
    assert signal.getsignal(signal.SIGTERM) is previous
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt.name == "step_00000002" and load_state(ckpt)["data"] == {"epoch": 0, "index": 4}


def test_callbacks_run_after_each_step_and_its_checkpoint(tmp_path):
    """The resume tests' signal hook (tests/recipes/signal_at_step.py): a callback sees every step once, after
    that step's checkpoint is written, and a SIGTERM it sends stops the run at the next step boundary."""
    seen = []

    def callback(trainer):
        seen.append((trainer.step, latest_checkpoint(tmp_path).name))
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    trainer = make_trainer(tmp_path, base_config(max_steps=10, save_every=1))
    trainer.callbacks.append(callback)
    with pytest.raises(Interrupted) as err:
        trainer.fit()
    assert seen == [(s, f"step_{s:08d}") for s in (1, 2, 3)] and err.value.step == 4  # step 4 ran, then stopped


def test_heap_is_managed_only_once_step_shapes_vary(monkeypatch):
    from transformers_zoo.training import device

    pinned, released = [], []
    monkeypatch.setattr(device, "steady_heap", pinned.append)
    monkeypatch.setattr(device, "release_heap", lambda: released.append(1))
    policy = device.HeapPolicy(torch.device("cpu"))  # the default: pinned at 128 KiB
    for _ in range(3):
        policy.observe({"x": torch.zeros(2, 4)}, 8.0)
    assert not pinned
    policy.observe({"x": torch.zeros(2, 4)}, 5.0)  # same shapes, fewer scored tokens (masked LM)
    policy.observe({"x": torch.zeros(2, 6)}, 8.0)
    assert pinned == [device.MMAP_THRESHOLD] and not released  # once
    other = device.HeapPolicy(torch.device("cpu"), 4 << 20)  # a task's own threshold (the sentence encoder's)
    for width in (4, 5, 6):
        other.observe({"x": torch.zeros(2, width)}, 8.0)
    assert pinned == [device.MMAP_THRESHOLD, 4 << 20]
    release = device.HeapPolicy(torch.device("cpu"), device.RELEASE)  # masked-LM pre-training's
    for tokens in (8.0, 8.0, 5.0, 8.0, 8.0):
        release.observe({"x": torch.zeros(2, 4)}, tokens)
    assert len(released) == 3 and len(pinned) == 2  # every step from the first that differed, never pinned
    gpu = device.HeapPolicy(torch.device("cuda"), device.RELEASE)
    for width in (4, 5, 6):
        gpu.observe({"x": torch.zeros(2, width)}, 8.0)
    assert len(released) == 3
    with pytest.raises(ValueError, match="heap policy"):
        device.HeapPolicy(torch.device("cpu"), "trim")


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_release_heap_hands_freed_heap_memory_back():
    from transformers_zoo.training.device import release_heap

    def resident_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    chunks = [torch.ones(16 * 1024) for _ in range(4096)]  # 64 KiB each, below the mmap threshold: glibc's heap
    keep = chunks[-1]  # the heap's top stays in use, so freeing the rest leaves a hole glibc does not return
    del chunks
    before = resident_mb()
    assert release_heap()
    assert before - resident_mb() > 128, "at least half of the 256 MB freed should leave the process"
    assert keep.sum() == 16 * 1024


def test_second_signal_exits_at_once(monkeypatch):
    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    previous = signal.getsignal(signal.SIGINT)
    with SignalGuard() as guard:
        assert signal.getsignal(signal.SIGINT) == guard._handle
        guard._handle(signal.SIGINT, None)
        assert guard.signum == signal.SIGINT and exits == []
        guard._handle(signal.SIGTERM, None)
        assert exits == [128 + signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is previous


def test_evaluate_without_best_metric_is_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path, base_config(max_steps=2, eval_every=1), evaluate=lambda m: {"loss": 1.0})
    with pytest.raises(TrainingError, match="without a number for best_metric 'val_loss'"):
        trainer.fit()


@pytest.mark.filterwarnings("ignore:amp='bf16' on a CPU without:UserWarning")
def test_bf16_autocast_on_cpu_trains_in_bf16_keeps_float32_weights_and_resumes_bitwise(tmp_path):
    """amp="bf16" on a CPU: the forward runs in bf16 (the logits the loss sees), the weights and optimizer
    state stay float32, the steps differ from float32's, and a resume is still bitwise identical."""
    dtypes = []

    def loss_fn(model, batch):
        logits = model(batch["input"])
        dtypes.append(logits.dtype)
        return cross_entropy_sum(logits, batch["labels"])

    straight = make_trainer(tmp_path / "a", base_config(max_steps=6, amp="bf16"), loss_fn=loss_fn)
    straight.fit()
    assert set(dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in straight.model.parameters())
    assert all(v.dtype == torch.float32 for s in straight.optimizer.state.values() for v in s.values()
               if torch.is_tensor(v) and v.dim() > 0)
    fp32 = make_trainer(tmp_path / "f", base_config(max_steps=6, amp="off"), loss_fn=loss_fn)
    fp32.fit()
    assert dtypes[-1] == torch.float32
    assert any(not torch.equal(a, b) for a, b in zip(straight.model.parameters(), fp32.model.parameters(), strict=True))

    make_trainer(tmp_path / "b", base_config(max_steps=4, amp="bf16"), loss_fn=loss_fn).fit()
    resumed = make_trainer(tmp_path / "b", base_config(max_steps=6, amp="bf16", resume=True), loss_fn=loss_fn)
    resumed.fit()
    assert_tree_equal(trainer_state(straight), trainer_state(resumed))
