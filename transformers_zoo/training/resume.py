"""A run's state in and out of checkpoints: what a checkpoint holds besides the weights, where a resumed run
starts, how that state is put back, and which checkpoints past it are discarded.

Everything the loop depends on is saved (model, optimizer, scheduler, data position, every RNG, best metric,
early-stopping and bad-step counters, elapsed time), so a resumed run is bitwise identical to an
uninterrupted one on the same hardware and world size. RNG and data positions are read only when a
checkpoint is written: between checkpoints the step does no bookkeeping for resume at all.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

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
from .errors import CheckpointError, TrainingError
from .metrics_log import MetricsLog

if TYPE_CHECKING:
    from .trainer import Trainer


def start(t: Trainer) -> None:
    """Resume `t` from the newest usable checkpoint (cfg.resume) or start fresh; prepare metrics.jsonl."""
    if t.is_main:
        t.run_dir.mkdir(parents=True, exist_ok=True)
    found: list[Any] = [None]
    ckpt = dist.on_main(lambda: _choose_start(t, found), t.is_main)
    if ckpt is None:
        if t.cfg.resume and t.is_main:
            warnings.warn(f"no complete checkpoint in {t.run_dir}; starting from scratch", stacklevel=4)
        rng.seed_all(t.cfg.seed + t.rank)
    else:
        ckpt = Path(ckpt)
        state = found[0]
        if state is None:  # ranks other than 0 read what rank 0 chose and verified
            state = load_state(ckpt)
            load_weights(ckpt, t.model)
        apply_state(t, state)
        t._last_saved_step = t.step
        if t.is_main:
            discard_newer_than(t.run_dir, t.step)
            sync_best_pointer(t)
            if t.cfg.progress:
                print(f"resumed from {ckpt} (step {t.step}, epoch {t.stream.epoch})", file=sys.stderr)
    if t.is_main:
        t._log = MetricsLog(t.run_dir)
        # Lines past the resume point were written after the checkpoint and are replayed now.
        t._log.truncate_after(t.step)


def _choose_start(t: Trainer, found: list[Any]) -> str | None:
    """Rank 0: the checkpoint to resume from (loaded into the model, its state put in `found[0]`), or None
    to start fresh. Refuses a used run directory without cfg.resume."""
    if not t.cfg.resume:
        existing = [d for _, d in list_step_dirs(t.run_dir) if (d / MANIFEST).exists()]
        if existing:
            raise TrainingError(f"{t.run_dir} already holds checkpoints (newest {existing[-1].name}); "
                                "resume it (resume=True / --resume) or use a new run directory")
        return None
    for ckpt, manifest in iter_checkpoints(t.run_dir):  # newest first; broken ones warned about
        if t.fingerprint is not None:
            check_fingerprint(manifest.get("fingerprint"), t.fingerprint, ckpt)
        try:
            found[0] = load_state(ckpt)
            load_weights(ckpt, t.model)
        except CheckpointError as e:
            warnings.warn(f"skipping checkpoint: {e}", RuntimeWarning, stacklevel=2)
            continue
        return str(ckpt)
    return None


def apply_state(t: Trainer, state: dict[str, Any]) -> None:
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.stream.load_state_dict(state["data"])
    t.step = int(state["step"])
    t.best_value = state["best_value"]
    t.best_step = state["best_step"]
    t.bad_evals = int(state["bad_evals"])
    t.bad_steps = int(state["bad_steps"])
    t.last_eval_step = state["last_eval_step"]
    t.last_metrics = dict(state["last_metrics"])
    t.train_tokens = float(state["train_tokens"])
    t._elapsed_before = float(state["elapsed_s"])
    states = state["rng"]
    if t.rank < len(states):
        rng.restore(states[t.rank])
    else:
        # More ranks than when saved: this one has no stream to continue, so derive a fresh one.
        rng.seed_all(t.cfg.seed + t.rank + 1_000_003 * t.step)


def discard_newer_than(run_dir: Path, step: int) -> None:
    """Step directories past the resume point are incomplete or were rejected: clear them so they can
    neither shadow nor be mistaken for the checkpoints this run will write."""
    for s, d in list_step_dirs(run_dir):
        if s > step:
            if (d / MANIFEST).exists():
                set_aside(d, "newer than the checkpoint resumed from, but unusable")
            else:
                remove_checkpoint(d)


def sync_best_pointer(t: Trainer) -> None:
    if t.best_step is not None and (step_dir(t.run_dir, t.best_step) / MANIFEST).exists():
        set_best(t.run_dir, step_dir(t.run_dir, t.best_step), t.cfg.best_metric, t.best_value)
    else:
        clear_best(t.run_dir)


def check_finite(t: Trainer) -> None:
    """Refuse to write NaN/inf weights or optimizer moments: a checkpoint must always be resumable."""
    tensors = [(f"parameter {n}", p) for n, p in t.model.named_parameters()]
    tensors += [(f"buffer {n}", b) for n, b in t.model.named_buffers() if b.is_floating_point()]
    for i, state in enumerate(t.optimizer.state.values()):
        tensors += [(f"optimizer state {i}.{k}", v) for k, v in state.items()
                    if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not tensors:
        return
    finite = torch.stack([torch.isfinite(x).all().to("cpu") for _, x in tensors])
    if not bool(finite.all()):
        name = tensors[int((~finite).nonzero()[0])][0]
        raise TrainingError(f"refusing to save step {t.step}: {name} has non-finite values")


def capture_state(t: Trainer, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
    """state.pt: everything but the weights that the loop depends on (see `apply_state`)."""
    return {
        "format": 1,
        "step": t.step,
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "data": dict(t.stream.state_dict()),
        "rng": rng_states,
        "best_metric": t.cfg.best_metric,
        "best_value": t.best_value,
        "best_step": t.best_step,
        "bad_evals": t.bad_evals,
        "bad_steps": t.bad_steps,
        "last_eval_step": t.last_eval_step,
        "last_metrics": {k: v for k, v in t.last_metrics.items() if isinstance(v, (int, float, str))},
        "train_tokens": t.train_tokens,
        "elapsed_s": t._elapsed(),
        "world_size": t.world,
    }


def save(t: Trainer, best: bool = False) -> Path:
    """Checkpoint the current step (once per step) on rank 0; every rank takes part (RNG gather)."""
    d = step_dir(t.run_dir, t.step)
    if t._last_saved_step == t.step:
        if best and t.is_main:
            set_best(t.run_dir, d, t.cfg.best_metric, t.best_value)
        return d
    check_finite(t)
    rng_states = dist.all_gather_object(rng.capture())
    dist.on_main(lambda: _write(t, d, rng_states, best), t.is_main)
    t._last_saved_step = t.step
    return d


def _write(t: Trainer, d: Path, rng_states: list[dict[str, Any]], best: bool) -> None:
    info = {
        "fingerprint": t.fingerprint,
        "metrics": t.last_metrics if t.last_eval_step == t.step else {},
        "epoch": t.stream.epoch,
        "world_size": t.world,
        "torch_version": torch.__version__,
        "train_config": t.cfg.to_dict(),
    }
    save_checkpoint(t.run_dir, t.step, t.model, capture_state(t, rng_states), info)
    if best:
        set_best(t.run_dir, d, t.cfg.best_metric, t.best_value)
    prune_checkpoints(t.run_dir, t.cfg.keep_last)
