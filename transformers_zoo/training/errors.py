"""Exceptions of the training engine: what a recipe catches and how it maps them to exit codes."""

from __future__ import annotations

import signal


class TrainingError(RuntimeError):
    """Training cannot go on: a resume fingerprint mismatch, too many non-finite steps, a bad config.

    The message is one line that says what went wrong and, where it can, what to do about it.
    """


class CheckpointError(TrainingError):
    """A checkpoint is incomplete, corrupt or unsafe to load (names the directory and the file)."""


class Interrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a checkpoint at a step boundary.

    `exit_code` is the conventional shell status for death by that signal (128 + signum: 130 for SIGINT,
    143 for SIGTERM); recipes end with `sys.exit(err.exit_code)` so schedulers see a normal preemption.
    It deliberately does not derive from KeyboardInterrupt: the checkpoint is already safe.
    """

    def __init__(self, signum: int, step: int | None = None, checkpoint: str | None = None) -> None:
        self.signum = int(signum)
        self.step = step
        self.checkpoint = checkpoint
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = f"signal {self.signum}"
        super().__init__(f"interrupted by {name} at step {step}; checkpoint: {checkpoint}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
