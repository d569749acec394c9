"""Plots a person looks at: self- and cross-attention heat maps, and one validation metric of several runs
against step (a run's own loss and learning-rate curves live in training/reporting)."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def plot_val_curves(runs: dict[str, Path], path: str | Path, metric: str = "val_accuracy",
                    ylabel: str = "validation accuracy") -> bool:
    """``metric`` against step for each run (name -> run directory, read from its metrics.jsonl), one line a
    run, saved as a PNG at ``path``; False (and no file) when no run logged it yet."""
    from .training.metrics_log import read_metrics

    curves = {name: [(r["step"], r[metric]) for r in read_metrics(d)
                     if r.get("split") == "val" and isinstance(r.get(metric), (int, float))]
              for name, d in runs.items()}
    if not any(curves.values()):
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in curves.items():
        if points:
            ax.plot([s for s, _ in points], [a for _, a in points], marker="o", markersize=3, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(Path(path), format="png")
    return True


def plot_attention(weights: torch.Tensor, query_labels: list[str], path: str | Path,
                   key_labels: list[str] | None = None, title: str = "") -> Path:
    """Save a grid of heat maps, one per head, of `weights (H, Tq, Tk)` (rows: queries, columns: keys)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = weights.detach().float().cpu()
    if weights.dim() == 2:
        weights = weights[None]
    key_labels = query_labels if key_labels is None else key_labels
    n_heads = weights.shape[0]
    cols = min(n_heads, 4)
    rows = math.ceil(n_heads / cols)
    size = max(3.0, 0.22 * max(weights.shape[1], weights.shape[2]))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= n_heads:
            ax.axis("off")
            continue
        ax.imshow(weights[h].numpy(), cmap="viridis", vmin=0.0, aspect="auto")
        ax.set_title(f"head {h}", fontsize=9)
        ax.set_xticks(range(len(key_labels)))
        ax.set_xticklabels([_show(t) for t in key_labels], rotation=90, fontsize=7)
        ax.set_yticks(range(len(query_labels)))
        ax.set_yticklabels([_show(t) for t in query_labels], fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _show(piece: str) -> str:
    return {"\n": "\\n", " ": "␣"}.get(piece, piece)


def plot_self_attention(model, tokenizer, text: str, path: str | Path) -> Path:
    """The last layer's self-attention of a decoder-only `model` on `text` (cut to `max_len` tokens), one
    map per head, rows the queries and columns the keys; returns `path`."""
    from .modules import record_attention

    device = next(model.parameters()).device
    ids = torch.tensor([tokenizer.encode(text)[: model.config.max_len]], device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), record_attention(model) as attn:
        model(ids)
    model.train(was_training)
    last = attn[f"stack.layers.{len(model.stack.layers) - 1}.self_attn"].weights[0]
    return plot_attention(last, [tokenizer.id_to_piece(i) for i in ids[0].tolist()], path,
                          title=f"last layer self-attention on {text!r}")


def plot_cross_attention(weights: torch.Tensor, src_pieces: list[str], tgt_pieces: list[str], path: str | Path,
                         heads: str = "mean", title: str = "") -> Path:
    """Plot cross-attention `weights (H, T, S)` of one decoder layer: rows are the output tokens `tgt_pieces`,
    columns the source tokens `src_pieces`; one map (`heads="mean"`) or one per head (`"all"`); returns `path`.
    The caller computes the weights (a teacher-forced pass over a translation: tasks.translation.report)."""
    if heads == "mean":
        weights = weights.mean(dim=0, keepdim=True)
    what = "mean of heads" if heads == "mean" else "per head"
    return plot_attention(weights, tgt_pieces, path, key_labels=src_pieces,
                          title=f"cross-attention, last decoder layer ({what})" + (f"\n{title}" if title else ""))
