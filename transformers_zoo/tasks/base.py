"""The one interface every task offers the recipes and the comparison grids.

A task is built by its module's ``prepare_*`` function from settings and data; bad input fails there,
before a run directory exists. Then every recipe runs the same four steps::

    task = prepare_lm_task(data, text, ...)              # data + tokenizer, checked
    model = DecoderOnly(config)                          # the family the task trains
    summary = fit(task, model, train_cfg, run_dir, fp)   # the Trainer on task.train_stream / task.loss,
                                                         # selecting on task.evaluate(m, "val")
    evals = {s: task.evaluate(best, s) for s in task.eval_splits}
    sections = task.report_sections(best, run_dir)      # report.md: samples, tables, plots

``evaluate`` gives the same numbers during training (checkpoint selection), in the final report and in
``--eval-only``: one function, so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from ..batching import IGNORE_INDEX
from ..tokenizers import Tokenizer
from ..training import TrainConfig, Trainer

Batch = dict[str, torch.Tensor]


class Task(Protocol):
    """Data, loss and evaluation of one task, whatever the model family."""

    tokenizer: Tokenizer
    #: the held-out splits the report scores, "val" first (the one checkpoints are selected on)
    eval_splits: tuple[str, ...]
    #: what ``loss`` counts (the unit of the progress line's rate): "tok", "masked tok", "ex"
    unit: str

    def train_stream(self, seed: int) -> Iterator[Batch]:
        """Endless training batches, a function of ``seed`` alone; resumable (``state_dict`` /
        ``load_state_dict``) so an interrupted run continues bitwise."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(summed loss, number of units it sums over)`` of one batch."""
        ...

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics of ``split`` (``"val"``, ``"test"``, ...), without the ``val_`` prefix."""
        ...

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        """Markdown sections for report.md (``(title, body)``); plots go into ``run_dir``."""
        ...


def validation(task: Task) -> Callable[[nn.Module], dict[str, float]]:
    """The trainer's evaluation: ``task.evaluate(model, "val")`` as ``val_*`` metrics (floats only: not
    strings such as a signature, nor counts such as the number of tokens scored)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {f"val_{k}": v for k, v in task.evaluate(model, "val").items() if isinstance(v, float)}

    return evaluate


def fit(task: Task, model: nn.Module, train_cfg: TrainConfig, run_dir: Path, fingerprint: dict[str, Any],
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None, stream: Iterator[Batch] | None = None,
        on_eval: Callable[[nn.Module, int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``task`` in ``run_dir`` (or continue it: ``train_cfg.resume``); the summary of
    ``Trainer.fit``. ``evaluate`` and ``stream`` replace the task's own (a recipe that counts the tokens it
    hands out); ``on_eval(model, step, metrics)`` runs after each evaluation (a recipe that also writes a
    sample at each one)."""
    validate = evaluate or validation(task)

    def evaluate_then_tell(m: nn.Module) -> dict[str, float]:
        metrics = validate(m)
        on_eval(m, trainer.step, metrics)
        return metrics

    trainer = Trainer(model, stream if stream is not None else task.train_stream(train_cfg.seed), task.loss,
                      train_cfg, run_dir, evaluate_then_tell if on_eval else validate, fingerprint, unit=task.unit)
    return trainer.fit()


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class CountingStream:
    """A training stream that counts the input tokens (padding excluded) and the scored units (masked tokens
    or examples: what the loss counts, and so what the trainer's rate counts) of the batches it hands out,
    so a report can give input tokens/s as well. Resumable as the stream it wraps."""

    def __init__(self, stream: Any, pad_id: int):
        self.stream, self.pad_id = stream, pad_id
        self.tokens = self.units = 0

    @property
    def epoch(self) -> int:
        return self.stream.epoch

    def __iter__(self) -> CountingStream:
        return self

    def __next__(self) -> Batch:
        batch = next(self.stream)
        self.tokens += int((batch["input_ids"] != self.pad_id).sum())
        self.units += int((batch["labels"] != IGNORE_INDEX).sum())
        return batch

    def state_dict(self) -> dict[str, int]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stream.load_state_dict(state)

    def tokens_per_unit(self) -> float:
        return self.tokens / self.units if self.units else float("nan")
