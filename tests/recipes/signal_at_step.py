"""Run a recipe that interrupts itself at chosen steps: the resume tests' deterministic interruption.

    python tests/recipes/signal_at_step.py SPEC recipes/gpt.py [recipe args...]

SPEC is "K:TERM" (or "K:KILL", "K:INT"; several comma-separated; "" for none): every Trainer the recipe
builds gets a callback that sends this process that signal once step K is done (its checkpoint, if any,
written), without sleeping and guessing where the run is. The library reads nothing of this: the hook is a
`Trainer(callbacks=...)` entry, added here by wrapping `Trainer.__init__` before the recipe runs.
"""

from __future__ import annotations

import functools
import os
import runpy
import signal
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from transformers_zoo.training import Trainer  # noqa: E402


def parse(spec: str) -> dict[int, signal.Signals]:
    """"7:TERM,27:KILL" -> {7: SIGTERM, 27: SIGKILL}."""
    out = {}
    for item in spec.split(",") if spec else ():
        at, _, name = item.partition(":")
        out[int(at)] = signal.Signals["SIG" + (name or "TERM").upper()]
    return out


def signal_at(spec: str) -> Callable[[Trainer], None]:
    """A Trainer callback that signals this process after the steps `spec` names (on rank 0 only)."""
    at = parse(spec)

    def callback(trainer: Trainer) -> None:
        if trainer.is_main and trainer.step in at:
            os.kill(os.getpid(), at[trainer.step])

    return callback


def install(spec: str) -> None:
    """Give every Trainer built from now on the `signal_at(spec)` callback."""
    callback, init = signal_at(spec), Trainer.__init__

    @functools.wraps(init)
    def init_with_signals(self: Trainer, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        self.callbacks.append(callback)

    Trainer.__init__ = init_with_signals


if __name__ == "__main__":
    spec, script, *args = sys.argv[1:]
    install(spec)
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).resolve().parent)  # as when the recipe is run directly
    runpy.run_path(script, run_name="__main__")
