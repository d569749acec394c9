"""The training loop: one engine for every recipe, single process or data-parallel under torchrun.

    trainer = Trainer(model, train_stream, loss_fn, cfg, run_dir, evaluate=None, fingerprint=None)
    summary = trainer.fit()

What a step is: `accum_steps` global batches from `train_stream`, each cut into this rank's shard,
forward + backward with the *summed* loss, then gradients scaled by world_size / (tokens of the whole
step on all ranks), so accumulation and DDP give exactly the gradient of the mean over the global batch.
A step whose loss or gradient norm is not finite is skipped (no optimizer or scheduler update; the data
still advances; `step` counts attempts, the scheduler counts applied updates).

The step does no host work it can leave out: one read of (loss, tokens, grad norm) per step, the one the
skip decision needs (and the only collective of a single process is none); RNG and data positions are read
only when a checkpoint is written (resume.py), which is what makes a resumed run bitwise identical to an
uninterrupted one. Device, precision and heap policy: device.py.

Throughput ("tokens_per_s" in metrics.jsonl, "train_tokens_per_s" in the summary) counts the *scored*
tokens `loss_fn` reports, summed over all ranks, per second spent inside training steps (data, forward,
backward, optimizer; not evaluation, logging or checkpoint writes).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed as dist
from . import evaluation, resume
from .checkpoint import step_dir
from .config import TrainConfig
from .device import HeapPolicy, autocast, cpu_has_native_bf16, resolve_device, to_device, use_bf16
from .errors import Interrupted, TrainingError
from .metrics_log import MetricsLog
from .optim import build_optimizer
from .progress import Progress
from .schedules import build_scheduler
from .signals import SignalGuard

__all__ = ["Trainer", "TrainStream", "cpu_has_native_bf16", "resolve_device", "to_device"]

Batch = dict[str, Any]
LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, "int | torch.Tensor"]]
EvaluateFn = Callable[[nn.Module], dict[str, float]]
Callback = Callable[["Trainer"], None]


class TrainStream(Protocol):
    """What the trainer needs from the data: an endless, resumable iterator of global batches.

    `epoch` and `state_dict()` describe the position of the NEXT batch (so after the last batch of an
    epoch, `epoch` is already the next one); the order must be a pure function of (seed, epoch).
    """

    epoch: int

    def __next__(self) -> Batch: ...
    def state_dict(self) -> dict[str, int]: ...
    def load_state_dict(self, state: dict[str, int]) -> None: ...


@dataclass
class _StepResult:
    loss_sum: float  # summed over every micro-batch and rank
    tokens: float  # scored tokens of the whole step, all ranks
    grad_norm: float  # before clipping
    lr: float
    applied: bool
    signum: int  # a stop signal seen by any rank (0: none)
    time_up: bool  # the max_minutes budget ran out on any rank


class Trainer:
    """Trains `model` on `train_stream` with `loss_fn`, evaluating, checkpointing and logging to `run_dir`.

    model: an nn.Module; moved to `cfg.device` here, wrapped in DDP (under torchrun) and optionally
        `torch.compile`d in `fit()`. `trainer.model` stays the plain module (checkpoints, evaluation).
    train_stream: see `TrainStream`. Under DDP every rank must build the same stream.
    loss_fn(model, batch) -> (loss_sum, n_tokens): summed loss over the scored tokens of the batch (already
        on the device and sharded for this rank) and their count. It must call `model(...)`.
    evaluate(model) -> {"val_loss": ..., ...}: run on rank 0 in eval mode without grad, every
        `cfg.eval_every` steps and at the end; must contain `cfg.best_metric`.
    fingerprint: JSON-able description of what the checkpoints belong to (model config, tokenizer hash);
        a resume with a different one is refused (None: no check).
    callbacks: each called as `callback(trainer)` after every step, once that step's checkpoint (if any)
        is written; `trainer.step` is the step just done (the resume tests send signals from here).

    Under torchrun, call `distributed.init_distributed()` before creating the Trainer. One `fit()` per
    Trainer; to continue a run, build a new one with `cfg.resume=True`.
    """

    def __init__(
        self,
        model: nn.Module,
        train_stream: TrainStream,
        loss_fn: LossFn,
        cfg: TrainConfig,
        run_dir: str | Path,
        evaluate: EvaluateFn | None = None,
        fingerprint: dict[str, Any] | None = None,
        unit: str = "tok",
        callbacks: Sequence[Callback] = (),
        heap: int | str | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.stream = train_stream
        self.loss_fn = loss_fn
        self.evaluate = evaluate
        self.fingerprint = fingerprint
        self.unit = unit  # what loss_fn counts, for the progress line ("tok", "ex" for a classifier)
        self.callbacks = list(callbacks)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = self.rank == 0
        self.device = resolve_device(cfg.device)
        self.amp = use_bf16(cfg.amp, self.device)
        self._heap = HeapPolicy(self.device, heap)  # a CPU run's memory stays flat (see device.py)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.schedule, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio, cfg.restart_at
        )
        self._params = [p for p in self.model.parameters() if p.requires_grad]

        # Loop state: everything here is saved in the checkpoint.
        self.step = 0
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.bad_steps = 0
        self.last_eval_step: int | None = None
        self.last_metrics: dict[str, Any] = {}
        self.train_tokens = 0.0
        self._elapsed_before = 0.0

        self._session_start = time.monotonic()
        self._session_tokens = 0.0
        self._session_train_s = 0.0
        self._session_steps = 0
        self._last_saved_step: int | None = None
        self._ddp: DistributedDataParallel | None = None
        self._log: MetricsLog | None = None
        self._progress: Progress | None = None
        self._guard: SignalGuard | None = None

    def fit(self) -> dict[str, Any]:
        """Train until a budget or early stopping ends the run; returns a summary dict.

        Keys: steps, best_step, best_metric, best_metric_name, wall_s (across resumes), session_wall_s,
        train_tokens_per_s (this session), train_tokens, epoch, stopped ("max_steps" | "max_epochs" |
        "max_minutes" | "early_stopping"), last_checkpoint, best_checkpoint, metrics (last evaluation).
        Raises Interrupted after saving a checkpoint on SIGINT/SIGTERM, TrainingError when training cannot
        go on (fingerprint mismatch, `max_bad_steps` non-finite steps in a row).
        """
        self._session_start = time.monotonic()
        with SignalGuard() as guard:
            self._guard = guard
            resume.start(self)
            train_model = self._wrap()
            if self.is_main:
                self._progress = Progress(self.cfg.max_steps, self.step, enabled=self.cfg.progress,
                                          unit=self.unit)
            try:
                stopped = self._loop(train_model)
                # Only when resumed at the very end: evaluate what the interrupted run did not.
                improved = False
                if self.evaluate is not None and self.last_eval_step != self.step:
                    improved = evaluation.run_evaluation(self)
                self._save(best=improved)
            finally:
                if self._progress is not None:
                    self._progress.close()
                self._guard = None
        return self._summary(stopped)

    def _save(self, best: bool = False) -> Path:
        return resume.save(self, best)

    def _wrap(self) -> nn.Module:
        """The module the loss sees: DDP under torchrun, then optionally compiled."""
        model: nn.Module = self.model
        if self.world > 1:
            self._ddp = DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.cfg.find_unused_parameters,
            )
            model = self._ddp
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    def _budget_reached(self) -> str | None:
        cfg = self.cfg
        if cfg.max_steps is not None and self.step >= cfg.max_steps:
            return "max_steps"
        if cfg.max_epochs is not None and self.stream.epoch >= cfg.max_epochs:
            return "max_epochs"
        return None

    def _loop(self, model: nn.Module) -> str:
        cfg = self.cfg
        reason = self._budget_reached()
        if cfg.max_minutes is not None and self._elapsed_before >= cfg.max_minutes * 60:
            reason = reason or "max_minutes"  # from the checkpoint's clock, so every rank agrees
        if reason is None and evaluation.catch_up(self):
            if cfg.patience is not None and self.bad_evals >= cfg.patience:
                reason = "early_stopping"
        window = {"loss": 0.0, "loss_tokens": 0.0, "tokens": 0.0, "seconds": 0.0}
        model.train()
        while reason is None:
            t0 = time.perf_counter()
            result = self._train_step(model)
            seconds = time.perf_counter() - t0
            self.step += 1
            self.train_tokens += result.tokens
            self._session_tokens += result.tokens
            self._session_train_s += seconds
            self._session_steps += 1
            window["tokens"] += result.tokens
            window["seconds"] += seconds
            if result.applied:
                window["loss"] += result.loss_sum
                window["loss_tokens"] += result.tokens
            if self._progress is not None:
                self._progress.advance()

            if result.signum:
                ckpt = self._save()
                raise Interrupted(result.signum, self.step, str(ckpt))
            if self.step % cfg.log_every == 0:
                evaluation.log_train(self, window, result.lr, result.grad_norm)
                window = dict.fromkeys(window, 0.0)
            reason = self._budget_reached() or ("max_minutes" if result.time_up else None)
            # The last step is always evaluated, before its checkpoint, so the checkpoint holds the result.
            improved = False
            if self.evaluate is not None and (
                reason is not None or (cfg.eval_every and self.step % cfg.eval_every == 0)
            ):
                improved = evaluation.run_evaluation(self)
                if reason is None and cfg.patience is not None and self.bad_evals >= cfg.patience:
                    reason = "early_stopping"
                model.train()  # evaluation restored the inner module's mode, not a DDP wrapper's
            if improved or reason is not None or (cfg.save_every and self.step % cfg.save_every == 0):
                self._save(best=improved)
            for callback in self.callbacks:
                callback(self)
        return reason

    def _train_step(self, model: nn.Module) -> _StepResult:
        cfg = self.cfg
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        tokens = torch.zeros((), dtype=torch.float64, device=self.device)
        for i in range(cfg.accum_steps):
            batch = next(self.stream)
            batch = to_device(dist.shard_batch(batch, self.rank, self.world), self.device)
            # DDP all-reduces gradients in backward; only the last micro-batch of a step needs to.
            last = i == cfg.accum_steps - 1
            sync = self._ddp.no_sync() if self._ddp is not None and not last else nullcontext()
            with sync:
                with autocast(self.amp, self.device):
                    micro_loss, micro_tokens = self.loss_fn(model, batch)
                # Backward of the *sum*: the count of the whole step is not known until every micro-batch
                # ran, so normalisation happens once below, on the gradients.
                micro_loss.backward()
            loss_sum += micro_loss.detach().double()
            tokens += torch.as_tensor(micro_tokens, device=self.device).double()

        totals = dist.all_reduce(torch.stack([loss_sum, tokens]), "sum")
        grads = [p.grad for p in self._params if p.grad is not None]
        if grads:
            # DDP averaged over ranks: multiply by world size to get the sum, divide by the global count. On the
            # device (no read): the float64 factor is rounded to the gradients' dtype as a Python float would be.
            torch._foreach_mul_(grads, torch.where(totals[1] > 0, self.world / totals[1], 0.0))
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm)
        # The step's one host read: the skip decision below needs it.
        total_loss, total_tokens, norm = torch.stack([totals[0], totals[1], grad_norm.double()]).tolist()
        self._heap.observe(batch, total_tokens)

        time_up = cfg.max_minutes is not None and self._elapsed() >= cfg.max_minutes * 60
        signum = self._guard.signum if self._guard is not None and self._guard.signum else 0
        bad = not (math.isfinite(total_loss) and math.isfinite(norm))
        if self.world > 1:  # every rank must take the same decision, or the next collectives would pair up wrong
            flags = torch.tensor([float(bad), float(signum), float(time_up)], dtype=torch.float64, device=self.device)
            flags = dist.all_reduce(flags, "max").tolist()
            bad, signum, time_up = bool(flags[0]), int(flags[1]), bool(flags[2])
        lr = self.optimizer.param_groups[0]["lr"]

        applied = not bad and total_tokens > 0
        if applied:
            self.optimizer.step()
            self.scheduler.step()
            self.bad_steps = 0
        else:
            # Weights, optimizer moments and the schedule stay as they were; only the data moved on.
            self.optimizer.zero_grad(set_to_none=True)
            if bad:
                self._bad_step(total_loss / max(total_tokens, 1.0), norm)
            elif self.is_main:
                warnings.warn(f"step {self.step + 1}: no scored tokens in the whole step; skipped", stacklevel=2)
        return _StepResult(total_loss, total_tokens, norm, lr, applied, int(signum), bool(time_up))

    def _bad_step(self, loss: float, grad_norm: float) -> None:
        self.bad_steps += 1
        step = self.step + 1
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingError(
                f"{self.bad_steps} non-finite steps in a row (steps {step - self.bad_steps + 1}-{step}, "
                f"last loss {loss}, grad norm {grad_norm}): training diverged; lower lr, raise warmup_steps, "
                "or check the data"
            )
        if self.is_main:
            warnings.warn(
                f"step {step}: non-finite loss {loss} or grad norm {grad_norm}; update skipped "
                f"({self.bad_steps}/{self.cfg.max_bad_steps} in a row)",
                RuntimeWarning,
                stacklevel=2,
            )

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._session_start)

    def _summary(self, stopped: str) -> dict[str, Any]:
        best = step_dir(self.run_dir, self.best_step) if self.best_step is not None else None
        return {
            "steps": self.step,
            "best_step": self.best_step,
            "best_metric": self.best_value,
            "best_metric_name": self.cfg.best_metric if self.evaluate is not None else None,
            "wall_s": self._elapsed(),
            "session_wall_s": time.monotonic() - self._session_start,
            "train_tokens_per_s": self._session_tokens / self._session_train_s if self._session_train_s else 0.0,
            "train_tokens": self.train_tokens,
            "epoch": self.stream.epoch,
            "stopped": stopped,
            "last_checkpoint": str(step_dir(self.run_dir, self.step)),
            "best_checkpoint": str(best) if best is not None and best.exists() else None,
            "metrics": dict(self.last_metrics),
        }

