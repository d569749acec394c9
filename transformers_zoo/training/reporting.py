"""End-of-run artefacts: loss / learning-rate plots from metrics.jsonl, and report.json + report.md.

Plots use matplotlib's object API with the Agg canvas directly, so importing this module never changes
the global backend of a notebook or script that also uses pyplot.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_write, atomic_write_text
from .metrics_log import read_metrics


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def _xy(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    return [p[0] for p in points], [p[1] for p in points]


def _val_loss(row: dict[str, Any]) -> float | None:
    value = row.get("val_loss", row.get("loss"))
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def plot_curves(run_dir: str | os.PathLike) -> list[Path]:
    """Write `loss.png` (train and validation loss against step) and `lr.png` (learning rate against
    step) into `run_dir` from its metrics.jsonl. Returns the paths written (none without data)."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    written: list[Path] = []

    train_pts = [(r["step"], r["loss"]) for r in train if isinstance(r.get("loss"), (int, float))]
    val_pts = [(r["step"], v) for r in val if (v := _val_loss(r)) is not None]
    if train_pts or val_pts:
        fig, ax = _figure()
        if train_pts:
            ax.plot(*_xy(train_pts), label="train", linewidth=1.2)
        if val_pts:
            ax.plot(*_xy(val_pts), label="validation", marker="o", markersize=3, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (per token)")
        ax.grid(alpha=0.3)
        ax.legend()
        _save(fig, run_dir / "loss.png")
        written.append(run_dir / "loss.png")

    lr_pts = [(r["step"], r["lr"]) for r in train if isinstance(r.get("lr"), (int, float))]
    if lr_pts:
        fig, ax = _figure()
        ax.plot(*_xy(lr_pts), linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.grid(alpha=0.3)
        _save(fig, run_dir / "lr.png")
        written.append(run_dir / "lr.png")
    return written


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _eval_table(evals: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown table, one row per split, one column per numeric metric; other values listed below."""
    columns: list[str] = []
    for metrics in evals.values():
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in columns:
                columns.append(k)
    lines = []
    if columns:
        lines.append("| split | " + " | ".join(columns) + " |")
        lines.append("| --- | " + " | ".join("---:" for _ in columns) + " |")
        for split, metrics in evals.items():
            cells = [_fmt(metrics[c]) if c in metrics else "" for c in columns]
            lines.append(f"| {split} | " + " | ".join(cells) + " |")
    others = [(s, k, v) for s, m in evals.items() for k, v in m.items() if k not in columns]
    if others:
        lines.append("")
        lines.extend(f"- {s} {k}: `{v}`" for s, k, v in others)
    return lines


_SUMMARY_KEYS = (
    ("params", "parameters"),
    ("best_step", "best step"),
    ("steps", "steps"),
    ("wall_s", "wall time (s)"),
    ("train_tokens_per_s", "train tokens/s"),
)


def write_report(
    run_dir: str | os.PathLike,
    report: dict[str, Any],
    sections: Sequence[tuple[str, str]] = (),
    images: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write `report.json` (the dict as given, atomically) and `report.md` into `run_dir`.

    `report` follows the shape in DESIGN.md: `recipe`, `params`, `wall_s`, `train_tokens_per_s`,
    `best_step`, and `eval` keyed by split (`{"val": {"loss": 1.93}, "test": {"bleu": 33.1, ...}}`).
    report.md has a title, the summary numbers, a table of eval metrics per split, then each
    `(title, markdown)` section and each image (a path relative to `run_dir`, or absolute).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = run_dir / "report.json", run_dir / "report.md"
    atomic_write_text(json_path, json.dumps(report, indent=2, default=str) + "\n")

    title = report.get("recipe") or run_dir.name
    lines = [f"# {title} report", ""]
    summary = [(label, report[key]) for key, label in _SUMMARY_KEYS if report.get(key) is not None]
    if summary:
        lines.extend(f"- {label}: {_fmt(value)}" for label, value in summary)
        lines.append("")
    evals = report.get("eval") or {}
    if evals:
        lines.extend(["## Evaluation", "", *_eval_table(evals), ""])
    for heading, body in sections:
        lines.extend([f"## {heading}", "", body.rstrip(), ""])
    if images:
        lines.extend(["## Plots", ""])
        for image in images:
            p = Path(image)
            rel = os.path.relpath(p, run_dir) if p.is_absolute() else str(p)
            lines.extend([f"![{p.stem}]({Path(rel).as_posix()})", ""])
    atomic_write_text(md_path, "\n".join(lines).rstrip() + "\n")
    return json_path, md_path
