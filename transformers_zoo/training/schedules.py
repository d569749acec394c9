"""Learning-rate schedules as multipliers of the peak lr, wrapped in `torch.optim.lr_scheduler.LambdaLR`.

Step numbering: LambdaLR calls the multiplier with the number of optimizer updates already applied
(0 before the first one); we turn that into the 1-based step `s` that is about to run, so that the
warmup reaches the peak lr exactly at step `warmup_steps`, as in Vaswani et al. (2017).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR


def inverse_sqrt(warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup to 1 at `warmup_steps`, then decay as sqrt(warmup / s) (Vaswani: min(s/w, sqrt(w/s)))."""
    if warmup_steps <= 0:
        raise ValueError(f"inverse_sqrt needs warmup_steps > 0, got {warmup_steps}")
    w = float(warmup_steps)

    def factor(done: int) -> float:
        s = done + 1
        return min(s / w, math.sqrt(w / s))

    return factor


def cosine(warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.1) -> Callable[[int], float]:
    """Linear warmup to 1, then half a cosine down to `min_lr_ratio` at `max_steps` (and flat after)."""
    if max_steps <= warmup_steps:
        raise ValueError(f"cosine needs max_steps > warmup_steps, got {max_steps} <= {warmup_steps}")

    def factor(done: int) -> float:
        s = done + 1
        if s < warmup_steps:
            return s / warmup_steps
        progress = min(1.0, (s - warmup_steps) / (max_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def constant(warmup_steps: int = 0) -> Callable[[int], float]:
    """1 after an optional linear warmup."""

    def factor(done: int) -> float:
        s = done + 1
        return s / warmup_steps if s < warmup_steps else 1.0

    return factor


def restarted(first: Callable[[int], float], second: Callable[[int], float], at: int) -> Callable[[int], float]:
    """``first`` for the first ``at`` steps, then ``second`` from its own step 1: a two-phase run (pre-training,
    then the task) whose second phase warms up and decays again, as a second run started from the first would."""

    def factor(done: int) -> float:
        return first(done) if done < at else second(done - at)

    return factor


def lr_factor(
    schedule: str, warmup_steps: int, max_steps: int | None = None, min_lr_ratio: float = 0.1,
    restart_at: int | None = None,
) -> Callable[[int], float]:
    """The multiplier function of a schedule by name: "inverse_sqrt", "cosine" or "constant"; with
    ``restart_at`` the schedule runs over steps 1..restart_at, then again over the steps left."""
    if restart_at:
        if max_steps is not None and restart_at >= max_steps:
            raise ValueError(f"restart_at must be below max_steps, got {restart_at} >= {max_steps}")
        rest = None if max_steps is None else max_steps - restart_at
        return restarted(lr_factor(schedule, warmup_steps, restart_at, min_lr_ratio),
                         lr_factor(schedule, warmup_steps, rest, min_lr_ratio), restart_at)
    if schedule == "inverse_sqrt":
        return inverse_sqrt(warmup_steps)
    if schedule == "cosine":
        if max_steps is None:
            raise ValueError("the cosine schedule needs max_steps")
        return cosine(warmup_steps, max_steps, min_lr_ratio)
    if schedule == "constant":
        return constant(warmup_steps)
    raise ValueError(f"unknown schedule {schedule!r}; choose inverse_sqrt, cosine or constant")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    warmup_steps: int,
    max_steps: int | None = None,
    min_lr_ratio: float = 0.1,
    restart_at: int | None = None,
) -> LambdaLR:
    """A LambdaLR over every parameter group. Its state_dict holds only numbers (the multiplier is a
    plain closure, which LambdaLR does not serialise), so it loads with `torch.load(weights_only=True)`."""
    return LambdaLR(optimizer, lr_factor(schedule, warmup_steps, max_steps, min_lr_ratio, restart_at))
