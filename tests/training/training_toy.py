"""A tiny language model, a resumable stream and a loss for the training-engine tests.

The model has dropout (so the RNG state matters for resume) and an output layer tied to the input
embedding (so shared tensors go through checkpoints); the stream has an odd number of batches per epoch
(so accumulation groups straddle epoch boundaries) and a varying number of scored tokens per batch (so
the per-token normalisation across micro-batches and ranks is really tested).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from transformers_zoo.training import TrainConfig, Trainer, cross_entropy_sum

VOCAB = 50
REPO_ROOT = Path(__file__).resolve().parents[2]


class TinyLM(nn.Module):
    """Embedding -> dropout -> Linear/tanh -> LayerNorm -> Linear tied to the embedding."""

    def __init__(self, vocab: int = VOCAB, d: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        return self.head(self.norm(torch.tanh(self.proj(self.drop(self.embed(x))))))


class ToyStream:
    """Endless stream of global batches; the order within an epoch is a permutation seeded by (seed, epoch).

    `epoch` / `state_dict()` give the position of the next batch (eager roll-over to the next epoch).
    """

    def __init__(self, n_batches: int = 11, batch_size: int = 4, seq_len: int = 6, seed: int = 0) -> None:
        self.n_batches, self.batch_size, self.seq_len, self.seed = n_batches, batch_size, seq_len, seed
        self.epoch = 0
        self.index = 0

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        return torch.randperm(self.n_batches, generator=g).tolist()

    def batch(self, batch_id: int, epoch: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + batch_id)
        tokens = torch.randint(0, VOCAB, (self.batch_size, self.seq_len + 1), generator=g)
        labels = tokens[:, 1:].clone()
        for r in range(self.batch_size):  # padding of varying length: a different token count per row
            pad = (batch_id + r) % 3
            if pad:
                labels[r, -pad:] = -100
        return {
            "input": tokens[:, :-1],
            "labels": labels,
            "batch_id": torch.full((self.batch_size,), batch_id),
            "epoch": torch.full((self.batch_size,), epoch),
        }

    def __iter__(self) -> ToyStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        out = self.batch(self._order(self.epoch)[self.index], self.epoch)
        self.index += 1
        if self.index == self.n_batches:
            self.epoch, self.index = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return cross_entropy_sum(model(batch["input"]), batch["labels"], label_smoothing=0.1)


class Recorder:
    """Loss wrapper that records (epoch, batch_id) of each micro-batch and can inject NaN losses or hooks."""

    def __init__(self, loss_fn=lm_loss, nan_calls: set[int] | None = None, hook=None) -> None:
        self.loss_fn, self.nan_calls, self.hook = loss_fn, nan_calls or set(), hook
        self.calls = 0
        self.seen: list[tuple[int, int]] = []

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        self.seen.append((int(batch["epoch"][0]), int(batch["batch_id"][0])))
        loss, n = self.loss_fn(model, batch)
        if self.calls in self.nan_calls:
            loss = loss * float("nan")
        return loss, n


def make_evaluate(stream: ToyStream | None = None):
    """Validation loss on two fixed batches. It also draws a random number, as a sampling evaluation
    would, to prove that evaluation cannot shift the training RNG."""
    stream = stream or ToyStream(seed=99)
    batches = [stream.batch(i) for i in range(2)]

    def evaluate(model: nn.Module) -> dict[str, float]:
        torch.rand(3)
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for b in batches:
            loss, n = lm_loss(model, {k: v.to(device) for k, v in b.items()})
            total, count = total + float(loss), count + int(n)
        return {"val_loss": total / count}

    return evaluate


FINGERPRINT = {"model": {"vocab": VOCAB, "d": 16}, "tokenizer_sha256": "0" * 8}


def base_config(**overrides: Any) -> TrainConfig:
    """Settings shared by the tests: tiny, deterministic, quiet."""
    cfg = dict(lr=3e-3, warmup_steps=3, schedule="inverse_sqrt", max_steps=14, accum_steps=2, eval_every=4,
               save_every=1, log_every=1, keep_last=2, device="cpu", seed=7, progress=False, grad_clip=1.0)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def make_trainer(run_dir: Path, cfg: TrainConfig, loss_fn=None, evaluate="default", model_seed: int = 0,
                 fingerprint: dict | None = None, stream: ToyStream | None = None) -> Trainer:
    torch.manual_seed(model_seed)
    model = TinyLM()
    return Trainer(
        model,
        stream or ToyStream(),
        loss_fn or Recorder(),
        cfg,
        run_dir,
        evaluate=make_evaluate() if evaluate == "default" else evaluate,
        fingerprint=copy.deepcopy(fingerprint if fingerprint is not None else FINGERPRINT),
    )


def assert_tree_equal(a: Any, b: Any, where: str = "") -> None:
    """Bitwise equality of nested dicts / lists / tuples of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"tensors differ at {where}"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"keys differ at {where}: {set(a) ^ set(b)}"
        for k in a:
            assert_tree_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_tree_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# Parts of state.pt that describe the training trajectory (not wall time or evaluation bookkeeping, which
# legitimately differ when one run was split into several).
TRAJECTORY_KEYS = ("step", "optimizer", "scheduler", "data", "rng", "bad_steps", "train_tokens")


def assert_same_checkpoint(a_dir: Path, b_dir: Path) -> None:
    """Two checkpoints hold bitwise the same weights, optimizer, scheduler, data position and RNG states."""
    from safetensors.torch import load_file

    from transformers_zoo.training.checkpoint import load_state

    assert_tree_equal(load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors"), "model")
    sa, sb = load_state(a_dir), load_state(b_dir)
    for key in TRAJECTORY_KEYS:
        assert_tree_equal(sa[key], sb[key], key)


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """A deep copy of what a step may change: weights, optimizer and scheduler state."""
    return copy.deepcopy({
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
    })


def subprocess_env() -> dict[str, str]:
    """Environment for child Pythons: the repo importable, one thread (as in-process), quiet."""
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONWARNINGS"] = "ignore"
    return env
