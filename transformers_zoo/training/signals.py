"""Graceful stop on SIGINT / SIGTERM: remember the signal, let the loop finish its step and save.

Cluster schedulers preempt jobs with SIGTERM and a grace period; Ctrl-C sends SIGINT. Raising from the
handler would tear a step (or a checkpoint write) in half, so the handler only sets a flag that the
training loop reads at the next step boundary. A second signal means "now": the process exits at once
with status 128 + signum (checkpoints are crash-safe, so the worst case is losing the current step).

The resume tests interrupt a run deterministically through a `Trainer(callbacks=...)` hook of their own
(tests/recipes/signal_at_step.py), not through anything read here.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """Context manager that installs the flag-setting handlers and restores the previous ones on exit.

    Handlers can only be installed from the main thread; elsewhere (a notebook's worker thread, a test
    runner) the guard is inert and `signum` stays None.
    """

    def __init__(self, signals: tuple[int, ...] = DEFAULT_SIGNALS) -> None:
        self.signals = signals
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            # None means the old handler was installed from C; the default is the closest we can restore.
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            sys.stderr.write(f"\n{name} received again: exiting now\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"\n{name} received: saving a checkpoint after this step (send again to exit now)\n")
        sys.stderr.flush()
