"""Human-readable progress on stderr: a tqdm bar on a terminal, plain lines in logs.

A bar redrawn with carriage returns turns a log file into one unreadable line, so when stderr is not a
TTY (a batch job, `2> train.log`) each log step prints one line instead:

    step 1200/20000 | epoch 3 | loss 2.8137 | lr 4.03e-04 | 11,532 tok/s | elapsed 4m12s | eta 1h05m
"""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO

from tqdm.auto import tqdm


def format_duration(seconds: float | None) -> str:
    """Compact duration: "42s", "4m12s", "1h05m"; "?" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Progress display of the writing rank; `enabled=False` keeps stderr quiet (metrics.jsonl is
    written regardless)."""

    def __init__(self, total: int | None, initial: int, enabled: bool = True, stream: TextIO | None = None,
                 unit: str = "tok"):
        self.stream = stream or sys.stderr
        self.unit = unit  # what the counted items are: "tok" (scored tokens), "ex" (examples)
        self.enabled = enabled
        self.total = total
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = (
            tqdm(total=total, initial=initial, file=self.stream, unit="step", dynamic_ncols=True)
            if enabled and isatty
            else None
        )

    def advance(self, n: int = 1) -> None:
        """One (or `n`) optimizer steps done."""
        if self.bar is not None:
            self.bar.update(n)

    def log(self, row: dict[str, Any], eta_s: float | None) -> None:
        """Show a training log row (as written to metrics.jsonl) and the estimated time left."""
        if not self.enabled:
            return
        loss = row.get("loss")
        loss_txt = f"{loss:.4f}" if isinstance(loss, float) and math.isfinite(loss) else "nan"
        if self.bar is not None:
            rate = {f"{self.unit}_s": f"{row['tokens_per_s']:,.0f}"}
            self.bar.set_postfix(loss=loss_txt, lr=f"{row['lr']:.2e}", **rate, refresh=False)
            return
        total = f"/{self.total}" if self.total else ""
        self.message(
            f"step {row['step']}{total} | epoch {row.get('epoch', 0)} | loss {loss_txt} | lr {row['lr']:.2e} | "
            f"{row['tokens_per_s']:,.0f} {self.unit}/s | elapsed {format_duration(row['elapsed_s'])} | "
            f"eta {format_duration(eta_s)}"
        )

    def message(self, text: str) -> None:
        """A line of its own (evaluation results, checkpoint notices), without breaking the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
