"""Evaluation and logging during training: the evaluation cadence and its bookkeeping (best metric, early
stopping), the train rows of metrics.jsonl and the progress line."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from . import distributed as dist
from . import rng
from .checkpoint import set_best, step_dir
from .device import autocast
from .errors import TrainingError

if TYPE_CHECKING:
    from .trainer import Trainer


def eta(t: Trainer) -> float | None:
    etas = []
    if t.cfg.max_steps is not None and t._session_steps:
        per_step = (time.monotonic() - t._session_start) / t._session_steps
        etas.append(per_step * max(0, t.cfg.max_steps - t.step))
    if t.cfg.max_minutes is not None:
        etas.append(max(0.0, t.cfg.max_minutes * 60 - t._elapsed()))
    return min(etas) if etas else None


def log_train(t: Trainer, window: dict[str, float], lr: float, grad_norm: float) -> None:
    if not t.is_main:
        return
    row = {
        "step": t.step,
        "split": "train",
        "loss": window["loss"] / window["loss_tokens"] if window["loss_tokens"] else math.nan,
        "lr": lr,
        "tokens_per_s": window["tokens"] / window["seconds"] if window["seconds"] else 0.0,
        "elapsed_s": round(t._elapsed(), 3),
        "epoch": t.stream.epoch,
        "grad_norm": grad_norm,
    }
    assert t._log is not None
    t._log.write(row)
    if t._progress is not None:
        t._progress.log(row, eta(t))


def catch_up(t: Trainer) -> bool:
    """A run interrupted right after an eval-cadence step saved before evaluating; do it now so the
    resumed run sees the same evaluations (best checkpoint, early stopping) as an uninterrupted one."""
    cfg = t.cfg
    if (t.evaluate is not None and cfg.eval_every and t.step > 0 and t.step % cfg.eval_every == 0
            and t.last_eval_step != t.step):
        if run_evaluation(t) and t.is_main:
            set_best(t.run_dir, step_dir(t.run_dir, t.step), cfg.best_metric, t.best_value)
        return True
    return False


def _evaluate_on_main(t: Trainer) -> dict[str, Any]:
    was_training = t.model.training
    t.model.eval()
    try:
        # preserved(): evaluation may draw random numbers; training's stream must not notice.
        with torch.no_grad(), rng.preserved(), autocast(t.amp, t.device):
            raw = t.evaluate(t.model)
    finally:
        t.model.train(was_training)
    metrics = {k: float(v) if isinstance(v, (int, float)) else v for k, v in raw.items()}
    if not isinstance(metrics.get(t.cfg.best_metric), float):
        raise TrainingError(f"evaluate() returned {sorted(metrics)} without a number for best_metric "
                            f"{t.cfg.best_metric!r}")
    return metrics


def run_evaluation(t: Trainer) -> bool:
    """Evaluate on rank 0 (the others wait), update best / early stopping on every rank; returns
    whether `best_metric` improved."""
    cfg = t.cfg
    metrics = dist.on_main(lambda: _evaluate_on_main(t), t.is_main)
    value = metrics[cfg.best_metric]
    if not math.isfinite(value):
        improved = False
    elif t.best_value is None:
        improved = True
    else:
        improved = value < t.best_value if cfg.best_mode == "min" else value > t.best_value
    if improved:
        t.best_value, t.best_step, t.bad_evals = value, t.step, 0
    else:
        t.bad_evals += 1
    t.last_eval_step = t.step
    t.last_metrics = metrics
    if t.is_main:
        assert t._log is not None
        t._log.write({"step": t.step, "split": "val", **metrics, "elapsed_s": round(t._elapsed(), 3)})
        shown = " | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        mark = " (best)" if improved else f" (best {t.best_value} at step {t.best_step})"
        if t._progress is not None:
            t._progress.message(f"eval step {t.step} | {shown}{mark}")
    return improved
