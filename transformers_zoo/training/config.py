"""TrainConfig: every knob of the training loop in one frozen, JSON-serialisable dataclass.

Recipes build it from their flags, store `dataclasses.asdict(cfg)` in the run's `config.json` and pass it
to `Trainer`; `TrainConfig.from_dict` rebuilds it. Choices are plain strings checked in `__post_init__`
with an error that names the field and lists the valid values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

SCHEDULES = ("inverse_sqrt", "cosine", "constant")
BEST_MODES = ("min", "max")
DEVICES = ("auto", "cpu", "cuda")
AMPS = ("auto", "bf16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters and bookkeeping of one training run.

    Budgets: at least one of `max_steps`, `max_epochs`, `max_minutes` is required; training stops at the
    first one reached. `max_minutes` counts wall time across resumes (it is stored in the checkpoint).
    Cadences are in optimizer steps: `eval_every` / `save_every` None mean "only at the end" (a checkpoint
    is also written when an evaluation finds a new best, and on SIGINT/SIGTERM). `patience` counts
    evaluations without improvement of `best_metric` (None: no early stopping). `amp="auto"` means bf16
    autocast on CUDA and none on CPU; `amp="bf16"` autocasts on either (on a CPU with AMX or AVX512-BF16 an
    encoder trains 1.6-2.2x faster than in float32, benchmarks/amp_cpu.py; elsewhere bf16 is emulated and
    slower); `amp="off"` trains in float32. `grad_clip=0` turns clipping off. `restart_at`: the schedule
    (warmup, decay) runs to that step and starts over there, for a run of two phases (a task sets it).
    """

    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-9
    schedule: str = "inverse_sqrt"
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.1
    restart_at: int | None = None
    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = None
    accum_steps: int = 1
    grad_clip: float = 1.0
    eval_every: int | None = 1000
    log_every: int = 100
    save_every: int | None = 1000
    keep_last: int = 3
    best_metric: str = "val_loss"
    best_mode: str = "min"
    patience: int | None = None
    max_bad_steps: int = 5
    device: str = "auto"
    amp: str = "auto"
    compile: bool = False
    seed: int = 0
    resume: bool = False
    find_unused_parameters: bool = False
    progress: bool = True

    #: what a resumed run may change (see settings.resumable_paths): its budgets and where it runs
    RESUMABLE: ClassVar[tuple[str, ...]] = ("max_steps", "max_minutes", "max_epochs", "device", "compile", "resume",
                                            "progress")
    #: fields that config.json files written before 2026-12-06 hold and that are gone: read and dropped, so those
    #: runs still resume and evaluate (label_smoothing was never read by the Trainer; it is translation's now)
    RETIRED: ClassVar[tuple[str, ...]] = ("label_smoothing",)

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; keep the dataclass hashable and equal after a round trip.
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("best_mode", self.best_mode, BEST_MODES)
        _choice("device", self.device, DEVICES)
        _choice("amp", self.amp, AMPS)
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("TrainConfig needs a budget: set max_steps, max_epochs or max_minutes")
        _positive("max_steps", self.max_steps)
        _positive("max_epochs", self.max_epochs)
        _positive("max_minutes", self.max_minutes)
        _positive("accum_steps", self.accum_steps)
        _positive("log_every", self.log_every)
        _positive("eval_every", self.eval_every)
        _positive("save_every", self.save_every)
        _positive("keep_last", self.keep_last)
        _positive("max_bad_steps", self.max_bad_steps)
        _positive("patience", self.patience)
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.schedule == "inverse_sqrt" and self.warmup_steps == 0:
            raise ValueError("TrainConfig.schedule='inverse_sqrt' needs warmup_steps > 0 (lr peaks there)")
        if self.schedule == "cosine" and self.max_steps is None:
            raise ValueError("TrainConfig.schedule='cosine' needs max_steps (the step where lr reaches its floor)")
        if self.schedule == "cosine" and self.max_steps <= self.warmup_steps:
            raise ValueError(f"cosine needs max_steps > warmup_steps, got {self.max_steps} <= {self.warmup_steps}")
        if self.restart_at is not None:
            _positive("restart_at", self.restart_at)
            if self.max_steps is not None and self.restart_at >= self.max_steps:
                raise ValueError(f"TrainConfig.restart_at must be below max_steps, got {self.restart_at} >= "
                                 f"{self.max_steps}")
            if self.schedule == "cosine" and min(self.restart_at, (self.max_steps or 0) - self.restart_at) \
                    <= self.warmup_steps:
                raise ValueError(f"cosine with restart_at={self.restart_at} needs both phases longer than "
                                 f"warmup_steps={self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"TrainConfig.grad_clip must be >= 0 (0 = off), got {self.grad_clip}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (`asdict`), the inverse of `from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict()` output; unknown keys are an error naming them (`RETIRED` ones are dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k not in cls.RETIRED}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**d)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"TrainConfig.{name}={value!r} is not one of {', '.join(choices)}")


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"TrainConfig.{name} must be > 0 (or None where allowed), got {value}")
