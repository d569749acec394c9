"""The training loop: one engine for every recipe, single process or data-parallel under torchrun.

    trainer = Trainer(model, train_stream, loss_fn, cfg, run_dir, evaluate=None, fingerprint=None)
    summary = trainer.fit()

What a step is: `accum_steps` global batches from `train_stream`, each cut into this rank's shard,
forward + backward with the *summed* loss, then gradients scaled by world_size / (tokens of the whole
step on all ranks), so accumulation and DDP give exactly the gradient of the mean over the global batch.
A step whose loss or gradient norm is not finite is skipped (no optimizer or scheduler update; the data
still advances; `step` counts attempts, the scheduler counts applied updates).

Everything the loop depends on is in the checkpoint (model, optimizer, scheduler, data position, every
RNG, best metric, early-stopping and bad-step counters, elapsed time), so a resumed run is bitwise
identical to an uninterrupted one on the same hardware and world size.

Throughput ("tokens_per_s" in metrics.jsonl, "train_tokens_per_s" in the summary) counts the *scored*
tokens `loss_fn` reports, summed over all ranks, per second spent inside training steps (data, forward,
backward, optimizer; not evaluation, logging or checkpoint writes).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from . import distributed as dist
from . import rng
from .checkpoint import (
    MANIFEST,
    check_fingerprint,
    clear_best,
    iter_checkpoints,
    list_step_dirs,
    load_state,
    load_weights,
    prune_checkpoints,
    remove_checkpoint,
    save_checkpoint,
    set_aside,
    set_best,
    step_dir,
)
from .config import TrainConfig
from .errors import CheckpointError, Interrupted, TrainingError
from .memory import steady_heap
from .metrics_log import MetricsLog
from .optim import build_optimizer
from .progress import Progress
from .schedules import build_scheduler
from .signals import SignalGuard, scheduled_signals

Batch = dict[str, Any]
LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, "int | torch.Tensor"]]
EvaluateFn = Callable[[nn.Module], dict[str, float]]


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


def resolve_device(device: str) -> torch.device:
    """"auto" -> the current CUDA device if there is one, else CPU; "cuda" fails clearly without CUDA."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("device='cuda' was requested but CUDA is not available; use --device cpu")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (Intel AMX or AVX512-BF16, as in Sapphire Rapids
    and AMD Zen 4): there bf16 autocast trains an encoder 1.6-2.2x faster than float32 (benchmarks/amp_cpu.py)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, and absent before torch 2.3
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


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
    ) -> None:
        steady_heap()  # a CPU run's memory stays flat (see training/memory.py)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.stream = train_stream
        self.loss_fn = loss_fn
        self.evaluate = evaluate
        self.fingerprint = fingerprint
        self.unit = unit  # what loss_fn counts, for the progress line ("tok", "ex" for a classifier)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = self.rank == 0
        self._signals_at = scheduled_signals() if self.is_main else {}
        self.device = resolve_device(cfg.device)
        # bf16 autocast (weights, optimizer state and the loss stay float32): on CUDA by default; on a CPU
        # only when asked, since its speed depends on the chip (see cpu_has_native_bf16).
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        if self.amp and self.device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("amp='bf16' on a CPU without AMX or AVX512-BF16: autocast is emulated and slower than "
                          "float32 (--amp off trains in float32)", stacklevel=2)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.schedule, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio
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
        self._resume_state: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------ public

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
            self._start()
            train_model = self._wrap()
            if self.is_main:
                self._progress = Progress(self.cfg.max_steps, self.step, enabled=self.cfg.progress,
                                          unit=self.unit)
            try:
                stopped = self._loop(train_model)
                # Only when resumed at the very end: evaluate what the interrupted run did not.
                improved = False
                if self.evaluate is not None and self.last_eval_step != self.step:
                    improved = self._run_evaluation()
                self._save(best=improved)
            finally:
                if self._progress is not None:
                    self._progress.close()
                self._guard = None
        return self._summary(stopped)

    # ------------------------------------------------------------------------------------------- setup

    def _start(self) -> None:
        """Resume from the newest usable checkpoint (cfg.resume) or start fresh; prepare metrics.jsonl."""
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpt = self._on_main(self._choose_start)

        if ckpt is None:
            if self.cfg.resume and self.is_main:
                warnings.warn(f"no complete checkpoint in {self.run_dir}; starting from scratch", stacklevel=3)
            rng.seed_all(self.cfg.seed + self.rank)
        else:
            ckpt = Path(ckpt)
            state, self._resume_state = self._resume_state, None
            if state is None:  # ranks other than 0 read what rank 0 chose and verified
                state = load_state(ckpt)
                load_weights(ckpt, self.model)
            self._apply_state(state)
            self._last_saved_step = self.step
            if self.is_main:
                self._discard_newer_than(self.step)
                self._sync_best_pointer()
                if self.cfg.progress:
                    print(f"resumed from {ckpt} (step {self.step}, epoch {self.stream.epoch})", file=sys.stderr)
        if self.is_main:
            self._log = MetricsLog(self.run_dir)
            # Lines past the resume point were written after the checkpoint and are replayed now.
            self._log.truncate_after(self.step)

    def _choose_start(self) -> str | None:
        """Rank 0: the checkpoint to resume from (loaded into the model, its state kept in
        `_resume_state`), or None to start fresh. Refuses a used run directory without cfg.resume."""
        if not self.cfg.resume:
            existing = [p for _, p in list_step_dirs(self.run_dir) if (p / MANIFEST).exists()]
            if existing:
                raise TrainingError(f"{self.run_dir} already holds checkpoints (newest {existing[-1].name}); "
                                    "resume it (resume=True / --resume) or use a new run directory")
            return None
        for ckpt, manifest in iter_checkpoints(self.run_dir):  # newest first; broken ones warned about
            if self.fingerprint is not None:
                check_fingerprint(manifest.get("fingerprint"), self.fingerprint, ckpt)
            try:
                self._resume_state = load_state(ckpt)
                load_weights(ckpt, self.model)
            except CheckpointError as e:
                warnings.warn(f"skipping checkpoint: {e}", RuntimeWarning, stacklevel=2)
                continue
            return str(ckpt)
        return None

    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 only and hand its result to every rank. If it raises, every rank raises
        (rank 0 the original exception, the others a TrainingError quoting it) rather than leaving the
        other ranks waiting forever in their next collective."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:
                error = e
        shared = dist.broadcast_object(
            {"result": result, "error": None if error is None else f"rank 0 failed: {type(error).__name__}: {error}"}
        )
        if error is not None:
            raise error
        if shared["error"] is not None:
            raise TrainingError(shared["error"])
        return shared["result"]

    def _apply_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.stream.load_state_dict(state["data"])
        self.step = int(state["step"])
        self.best_value = state["best_value"]
        self.best_step = state["best_step"]
        self.bad_evals = int(state["bad_evals"])
        self.bad_steps = int(state["bad_steps"])
        self.last_eval_step = state["last_eval_step"]
        self.last_metrics = dict(state["last_metrics"])
        self.train_tokens = float(state["train_tokens"])
        self._elapsed_before = float(state["elapsed_s"])
        states = state["rng"]
        if self.rank < len(states):
            rng.restore(states[self.rank])
        else:
            # More ranks than when saved: this one has no stream to continue, so derive a fresh one.
            rng.seed_all(self.cfg.seed + self.rank + 1_000_003 * self.step)

    def _discard_newer_than(self, step: int) -> None:
        """Step directories past the resume point are incomplete or were rejected: clear them so they can
        neither shadow nor be mistaken for the checkpoints this run will write."""
        for s, d in list_step_dirs(self.run_dir):
            if s > step:
                if (d / MANIFEST).exists():
                    set_aside(d, "newer than the checkpoint resumed from, but unusable")
                else:
                    remove_checkpoint(d)

    def _sync_best_pointer(self) -> None:
        if self.best_step is not None and (step_dir(self.run_dir, self.best_step) / MANIFEST).exists():
            set_best(self.run_dir, step_dir(self.run_dir, self.best_step), self.cfg.best_metric, self.best_value)
        else:
            clear_best(self.run_dir)

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

    # -------------------------------------------------------------------------------------------- loop

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
        if reason is None and self._catch_up_evaluation():
            if cfg.patience is not None and self.bad_evals >= cfg.patience:
                reason = "early_stopping"
        window = {"loss": 0.0, "loss_tokens": 0.0, "tokens": 0.0, "seconds": 0.0}
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
                self._log_train(window, result)
                window = dict.fromkeys(window, 0.0)
            reason = self._budget_reached() or ("max_minutes" if result.time_up else None)
            # The last step is always evaluated, before its checkpoint, so the checkpoint holds the result.
            improved = False
            if self.evaluate is not None and (
                reason is not None or (cfg.eval_every and self.step % cfg.eval_every == 0)
            ):
                improved = self._run_evaluation()
                if reason is None and cfg.patience is not None and self.bad_evals >= cfg.patience:
                    reason = "early_stopping"
            if improved or reason is not None or (cfg.save_every and self.step % cfg.save_every == 0):
                self._save(best=improved)
            if self.step in self._signals_at:  # the resume tests' deterministic interruption (signals.py)
                os.kill(os.getpid(), self._signals_at[self.step])
        return reason

    def _autocast(self):
        if not self.amp:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _train_step(self, model: nn.Module) -> _StepResult:
        cfg = self.cfg
        model.train()
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
                with self._autocast():
                    micro_loss, micro_tokens = self.loss_fn(model, batch)
                # Backward of the *sum*: the count of the whole step is not known until every micro-batch
                # ran, so normalisation happens once below, on the gradients.
                micro_loss.backward()
            loss_sum += micro_loss.detach().double()
            tokens += torch.as_tensor(micro_tokens, device=self.device).double()

        totals = dist.all_reduce(torch.stack([loss_sum, tokens]), "sum")
        total_loss, total_tokens = totals.tolist()
        grads = [p.grad for p in self._params if p.grad is not None]
        # DDP averaged over ranks: multiply by world size to get the sum, divide by the global count.
        scale = self.world / total_tokens if total_tokens > 0 else 0.0
        if grads and scale != 1.0:
            torch._foreach_mul_(grads, scale)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm)

        # Every rank must take the same decision, or the next collective would pair up different steps.
        time_up = cfg.max_minutes is not None and self._elapsed() >= cfg.max_minutes * 60
        signum = self._guard.signum if self._guard is not None and self._guard.signum else 0
        not_finite = (~torch.isfinite(grad_norm)).double() + float(not math.isfinite(total_loss))
        flags = torch.stack([not_finite, torch.tensor(float(signum), dtype=torch.float64, device=self.device),
                             torch.tensor(float(time_up), dtype=torch.float64, device=self.device)])
        bad, signum_all, time_up_all = dist.all_reduce(flags, "max").tolist()
        lr = self.optimizer.param_groups[0]["lr"]
        norm = float(grad_norm)

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
        return _StepResult(total_loss, total_tokens, norm, lr, applied, int(signum_all), bool(time_up_all))

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

    # --------------------------------------------------------------------------- evaluation & logging

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.monotonic() - self._session_start)

    def _eta(self) -> float | None:
        etas = []
        if self.cfg.max_steps is not None and self._session_steps:
            per_step = (time.monotonic() - self._session_start) / self._session_steps
            etas.append(per_step * max(0, self.cfg.max_steps - self.step))
        if self.cfg.max_minutes is not None:
            etas.append(max(0.0, self.cfg.max_minutes * 60 - self._elapsed()))
        return min(etas) if etas else None

    def _log_train(self, window: dict[str, float], result: _StepResult) -> None:
        if not self.is_main:
            return
        row = {
            "step": self.step,
            "split": "train",
            "loss": window["loss"] / window["loss_tokens"] if window["loss_tokens"] else math.nan,
            "lr": result.lr,
            "tokens_per_s": window["tokens"] / window["seconds"] if window["seconds"] else 0.0,
            "elapsed_s": round(self._elapsed(), 3),
            "epoch": self.stream.epoch,
            "grad_norm": result.grad_norm,
        }
        assert self._log is not None
        self._log.write(row)
        if self._progress is not None:
            self._progress.log(row, self._eta())

    def _catch_up_evaluation(self) -> bool:
        """A run interrupted right after an eval-cadence step saved before evaluating; do it now so the
        resumed run sees the same evaluations (best checkpoint, early stopping) as an uninterrupted one."""
        cfg = self.cfg
        if (self.evaluate is not None and cfg.eval_every and self.step > 0 and self.step % cfg.eval_every == 0
                and self.last_eval_step != self.step):
            if self._run_evaluation() and self.is_main:
                set_best(self.run_dir, step_dir(self.run_dir, self.step), cfg.best_metric, self.best_value)
            return True
        return False

    def _evaluate_on_main(self) -> dict[str, Any]:
        was_training = self.model.training
        self.model.eval()
        try:
            # preserved(): evaluation may draw random numbers; training's stream must not notice.
            with torch.no_grad(), rng.preserved(), self._autocast():
                raw = self.evaluate(self.model)
        finally:
            self.model.train(was_training)
        metrics = {k: float(v) if isinstance(v, (int, float)) else v for k, v in raw.items()}
        if not isinstance(metrics.get(self.cfg.best_metric), float):
            raise TrainingError(f"evaluate() returned {sorted(metrics)} without a number for best_metric "
                                f"{self.cfg.best_metric!r}")
        return metrics

    def _run_evaluation(self) -> bool:
        """Evaluate on rank 0 (the others wait), update best / early stopping on every rank; returns
        whether `best_metric` improved."""
        cfg = self.cfg
        metrics = self._on_main(self._evaluate_on_main)
        value = metrics[cfg.best_metric]
        if not math.isfinite(value):
            improved = False
        elif self.best_value is None:
            improved = True
        else:
            improved = value < self.best_value if cfg.best_mode == "min" else value > self.best_value
        if improved:
            self.best_value, self.best_step, self.bad_evals = value, self.step, 0
        else:
            self.bad_evals += 1
        self.last_eval_step = self.step
        self.last_metrics = metrics
        if self.is_main:
            assert self._log is not None
            self._log.write({"step": self.step, "split": "val", **metrics, "elapsed_s": round(self._elapsed(), 3)})
            shown = " | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            mark = " (best)" if improved else f" (best {self.best_value} at step {self.best_step})"
            if self._progress is not None:
                self._progress.message(f"eval step {self.step} | {shown}{mark}")
        return improved

    # ----------------------------------------------------------------------------------- checkpoints

    def _check_finite(self) -> None:
        """Refuse to write NaN/inf weights or optimizer moments: a checkpoint must always be resumable."""
        tensors = [(f"parameter {n}", t) for n, t in self.model.named_parameters()]
        tensors += [(f"buffer {n}", t) for n, t in self.model.named_buffers() if t.is_floating_point()]
        for i, state in enumerate(self.optimizer.state.values()):
            tensors += [(f"optimizer state {i}.{k}", v) for k, v in state.items()
                        if isinstance(v, torch.Tensor) and v.is_floating_point()]
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(t).all().to("cpu") for _, t in tensors])
        if not bool(finite.all()):
            name = tensors[int((~finite).nonzero()[0])][0]
            raise TrainingError(f"refusing to save step {self.step}: {name} has non-finite values")

    def _state(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": 1,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data": dict(self.stream.state_dict()),
            "rng": rng_states,
            "best_metric": self.cfg.best_metric,
            "best_value": self.best_value,
            "best_step": self.best_step,
            "bad_evals": self.bad_evals,
            "bad_steps": self.bad_steps,
            "last_eval_step": self.last_eval_step,
            "last_metrics": {k: v for k, v in self.last_metrics.items() if isinstance(v, (int, float, str))},
            "train_tokens": self.train_tokens,
            "elapsed_s": self._elapsed(),
            "world_size": self.world,
        }

    def _save(self, best: bool = False) -> Path:
        """Checkpoint the current step (once per step) on rank 0; every rank takes part (RNG gather)."""
        d = step_dir(self.run_dir, self.step)
        if self._last_saved_step == self.step:
            if best and self.is_main:
                set_best(self.run_dir, d, self.cfg.best_metric, self.best_value)
            return d
        self._check_finite()
        rng_states = dist.all_gather_object(rng.capture())
        self._on_main(lambda: self._write_checkpoint(d, rng_states, best))
        self._last_saved_step = self.step
        return d

    def _write_checkpoint(self, d: Path, rng_states: list[dict[str, Any]], best: bool) -> None:
        info = {
            "fingerprint": self.fingerprint,
            "metrics": self.last_metrics if self.last_eval_step == self.step else {},
            "epoch": self.stream.epoch,
            "world_size": self.world,
            "torch_version": torch.__version__,
            "train_config": self.cfg.to_dict(),
        }
        save_checkpoint(self.run_dir, self.step, self.model, self._state(rng_states), info)
        if best:
            set_best(self.run_dir, d, self.cfg.best_metric, self.best_value)
        prune_checkpoints(self.run_dir, self.cfg.keep_last)

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

