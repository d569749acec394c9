"""`metrics.jsonl`: one JSON object per line, per logged training step and per evaluation.

Train lines: `{"step", "split": "train", "loss", "lr", "tokens_per_s", "elapsed_s", "epoch", "grad_norm"}`;
eval lines: `{"step", "split": "val", "elapsed_s", **metrics}`. The file is appended across resumes; a
resume first drops every line past the checkpoint's step (written after it, then lost with the crash),
so each step appears once. A torn last line from a crash is dropped the same way.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"


def _clean(value: Any) -> Any:
    # JSON has no NaN/inf; write null so every line stays parseable by strict readers.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All well-formed lines of `run_dir/metrics.jsonl` (an empty list if there is none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash
        if isinstance(row, dict):
            rows.append(row)
    return rows


class MetricsLog:
    """Appends lines to `run_dir/metrics.jsonl` (create one on the writing rank only)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Keep only lines with `step <= step` (atomically), before a resumed run appends to the file."""
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path.parent) if int(r.get("step", 0)) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, row: dict[str, Any]) -> None:
        """Append one line and flush it, so `tail -f` and a crash both see complete lines."""
        line = json.dumps({k: _clean(v) for k, v in row.items()}, default=str)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
