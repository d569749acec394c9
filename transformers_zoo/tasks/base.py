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
from dataclasses import dataclass
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


class TaskBase:
    """What the recipe pipeline (``pipeline.train``) asks of a task beyond the ``Task`` protocol, with the
    defaults most tasks want: save the tokenizer, select the best checkpoint, evaluate every held-out split.
    A task overrides what it does differently (translation averages checkpoints; the LM writes samples)."""

    tokenizer: Tokenizer
    eval_splits: tuple[str, ...]
    unit = "tok"
    #: once a CPU run's step shapes vary: pin glibc's heap at this many bytes (None: 128 KiB) or "release" its free
    #: pages after every step (training.device.HeapPolicy: which is faster depends on the task's buffers)
    heap: int | str | None = None
    #: plots ``report_sections`` writes into the run directory (names relative to it)
    images: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line on the data, printed when a run starts."""
        return f"data: {type(self).__name__}; vocabulary {self.tokenizer.vocab_size}"

    def save(self, run_dir: Path) -> None:
        """What a new run keeps beside its checkpoints so it can be rebuilt: the tokenizer."""
        self.tokenizer.save(run_dir / "tokenizer")

    def settings_changes(self) -> dict[str, Any]:
        """Settings the data decided, as dotted paths (a fine-tuning run's tokenizer is its encoder's): the run's
        config.json records them (the model's vocabulary is recorded anyway)."""
        return {}

    def config_extra(self) -> dict[str, Any]:
        """Information for ``config.json`` beside the settings."""
        return {"tokenizer_fingerprint": self.tokenizer.fingerprint}

    def fingerprint(self, model: nn.Module) -> dict[str, Any]:
        """What the run's checkpoints belong to (a resume with another model or tokenizer is refused)."""
        return {"model": model.config.to_dict(), "tokenizer": self.tokenizer.fingerprint}

    def on_eval(self, model: nn.Module, run_dir: Path, step: int, metrics: dict[str, float]) -> None:
        """Called after each evaluation during training (a sample, a plot); nothing by default."""

    def fit(self, model: nn.Module, train_cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
        """Train ``model`` in ``run_dir`` (or continue it); the Trainer's summary."""
        on_eval = None
        if type(self).on_eval is not TaskBase.on_eval:
            def on_eval(m: nn.Module, step: int, metrics: dict[str, float]) -> None:
                self.on_eval(m, run_dir, step, metrics)
        return fit(self, model, train_cfg, run_dir, self.fingerprint(model), on_eval=on_eval)

    def final_model(self, run_dir: Path, new_model: Callable[[], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
        """The weights the report evaluates, in a model from ``new_model()``, and what to say about them in
        report.json (``{}``; translation says which of best and averaged it chose): the best checkpoint."""
        from ..training import load_checkpoint

        model = new_model()
        load_checkpoint(run_dir, model)
        return model, {}

    def load_trained(self, checkpoint: str | Path, run_dir: Path, model: nn.Module) -> nn.Module:
        """The weights of a trained run that ``checkpoint`` names, in ``model`` (--eval-only, subcommands): for
        the run directory itself ``final_model``'s, else that checkpoint folder's."""
        from ..training import load_checkpoint

        if Path(checkpoint).resolve() == Path(run_dir).resolve():
            return self.final_model(run_dir, lambda: model)[0]
        load_checkpoint(checkpoint, model)
        return model

    def evaluate_all(self, model: nn.Module, out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        """``evaluate`` on every held-out split (``out_dir``: where a task writes files such as hypotheses)."""
        return {split: self.evaluate(model, split) for split in self.eval_splits}

    def report_extra(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Keys for report.json beside the pipeline's, from the Trainer's summary."""
        return {}

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        return []

    def eval_lines(self, evals: dict[str, dict[str, Any]]) -> list[str]:
        """What --eval-only prints: one line of metrics per split."""
        return [f"{split}: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())
                for split, m in evals.items()]

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        """The figures of the last line a run prints."""
        return "  ".join(f"{split} loss {m['loss']:.4f}" for split, m in evals.items() if "loss" in m)


@dataclass(frozen=True)
class RunKind:
    """What the pipeline asks of a recipe module, for a recipe whose runs come in kinds (recipes/mlm.py:
    pre-training and classifier runs): the name config.json records, the model family, the settings class and
    ``prepare(settings, ctx) -> (task, model)``. A recipe's ``run_kind(saved_config)`` picks one."""

    NAME: str
    FAMILY: str
    SETTINGS: type
    prepare: Callable[..., tuple[Any, nn.Module]]


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
                      train_cfg, run_dir, evaluate_then_tell if on_eval else validate, fingerprint, unit=task.unit,
                      heap=getattr(task, "heap", None))
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
