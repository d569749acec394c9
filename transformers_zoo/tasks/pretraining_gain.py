"""What pre-training is worth: the classifiers fine-tuned from a pre-trained encoder against the same model
trained from scratch, one of each a seed (recipes/mlm.py's one command), and the report that compares them.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

__all__ = ["gain", "gain_report"]


def gain(reports: dict[str, dict[str, Any]], runs: list[tuple[str, str, int | None]]) -> dict[str, Any]:
    """What pre-training is worth: the mean (and std) test score (val when there is no test split; macro-F1
    when reported, else accuracy) of the ``finetune`` runs against the ``scratch`` runs, one of each a seed
    (``runs``: ``(name, stage, seed)``; ``reports``: report.json of each by name)."""
    first = reports[next(name for name, stage, _ in runs if stage == "finetune")]
    split = "test" if "test" in first["eval"] else "val"
    metric = "macro_f1" if "macro_f1" in first["eval"][split] else "accuracy"
    scores = {stage: [reports[name]["eval"][split][metric] for name, st, _ in runs if st == stage]
              for stage in ("finetune", "scratch")}
    mean = {stage: statistics.fmean(v) for stage, v in scores.items()}
    std = {stage: statistics.stdev(v) if len(v) > 1 else 0.0 for stage, v in scores.items()}
    return {"split": split, "metric": metric, "pretrained": mean["finetune"], "scratch": mean["scratch"],
            "gain": mean["finetune"] - mean["scratch"], "seeds": len(scores["finetune"]),
            "pretrained_std": std["finetune"], "scratch_std": std["scratch"],
            "per_seed": {name: reports[name]["eval"][split][metric] for name, _, _ in runs}}


def gain_report(parent: Path, config: dict[str, Any], reports: dict[str, dict[str, Any]],
                runs: list[tuple[str, str, int | None]], recipe: str = "mlm") -> dict[str, Any]:
    """Write report.json / report.md (and accuracy.png) of a run that pre-trained (``reports["pretrain"]``),
    then fine-tuned and trained from scratch with each seed (``runs``: ``(name, stage, seed)``, each run in
    ``parent/name``): pre-trained against from scratch, the mean over the seeds, one row a run."""
    from ..training import write_report
    from ..viz import plot_val_curves
    from .pretraining import contamination_line

    pre = reports["pretrain"]
    ft, sc = (reports[next(n for n, st, _ in runs if st == stage)] for stage in ("finetune", "scratch"))
    g = gain(reports, runs)
    split, metric, n = g["split"], g["metric"], g["seeds"]
    evals = {**ft["eval"], **{f"scratch_{s}": m for s, m in sc["eval"].items()}, "pretrain_val": pre["eval"]["val"]}
    report = {"recipe": recipe, "stage": "all", "config": config, "params": ft["params"],
              "wall_s": sum(r["wall_s"] for r in reports.values()), "train_tokens_per_s": pre["train_tokens_per_s"],
              "best_step": ft["best_step"], "runs": {name: name for name in reports}, "comparison": g, "eval": evals,
              "contamination": pre.get("contamination")}
    f1 = metric == "macro_f1"
    rows = []
    for name, stage, _ in runs:
        r = reports[name]
        cells = [f"{r['eval'][s].get('accuracy', float('nan')):.4f}" for s in ("val", split)]
        cells += [f"{r['eval'][split]['macro_f1']:.4f}"] if f1 else []
        start = "pre-trained + fine-tuned" if stage == "finetune" else "from scratch"
        rows.append(f"| [{name}]({name}/report.md) | {start} | {r['config']['train']['seed']} | {' | '.join(cells)} "
                    f"| {r['steps']} | {r['best_step']} | {r['wall_s'] / 60:.1f} |")
    table = (f"| run | start | seed | val accuracy | {split} accuracy{f' | {split} macro-F1' if f1 else ''} | steps "
             f"| best step | minutes |\n|{' --- |' * (8 + f1)}\n" + "\n".join(rows))
    pv = pre["eval"]["val"]
    sections = [
        ("Pre-trained against from scratch",
         f"{table}\n\nMean {split} {metric} over {n} seed{'s' if n > 1 else ''}: pre-trained "
         f"**{g['pretrained']:.4f}** (std {g['pretrained_std']:.4f}), from scratch **{g['scratch']:.4f}** (std "
         f"{g['scratch_std']:.4f}). Pre-training adds **{g['gain'] * 100:+.2f} points** (same architecture and "
         "fine-tuning budget)."),
        ("Pre-training", f"{pre['steps']} steps, {pre['wall_s'] / 60:.1f} minutes, {pre['train_tokens_per_s']:,.0f} "
                         f"tokens/s; held-out masked-token accuracy {pv['masked_accuracy']:.4f}, perplexity "
                         f"{pv['ppl']:.2f}. Details: [pretrain/report.md](pretrain/report.md)")]
    if pre.get("contamination"):
        sections.append(("Contamination", contamination_line(pre["contamination"])))
    curves = {f"{'pre-trained' if st == 'finetune' else 'scratch'} seed {reports[name]['config']['train']['seed']}":
              parent / name for name, st, _ in runs}
    write_report(parent, report, sections, ["accuracy.png"] if plot_val_curves(curves, parent / "accuracy.png") else [])
    print(f"done: {parent}  {split} {metric} over {n} seed(s): pre-trained {g['pretrained']:.4f}, scratch "
          f"{g['scratch']:.4f} ({g['gain'] * 100:+.2f} points)", file=sys.stderr, flush=True)
    return report
