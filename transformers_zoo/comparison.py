"""Comparing architecture variants under equal budgets: a grid is a base ModelConfig plus named cells
(a few overrides each); every (cell, seed) is trained on the same task under the same budget (equal steps,
tokens, wall time or training FLOPs) in its own run directory, writing ``result.json``; the results are then
aggregated over seeds into a table and plots. recipes/compare.py is the script around it:

    grid = load_grid("my_grid.toml", GRIDS)            # checked before anything runs
    run_cell(cell_dir, recipes)                        # one (cell, seed) from cell_dir/cell.json: a recipe's run
    rows = aggregate(results, base_name)               # mean +- std per cell, difference to the base
    write_table(rows, out, header); plot(results, out)
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from . import pipeline
from .cli import resolve_device
from .config import ModelConfig
from .runs import read_run_config, write_json
from .training.metrics_log import read_metrics

#: what every cell of a grid gets equally
BUDGETS = ("steps", "tokens", "time", "flops")
#: the model families a translation cell may choose (``family = ...``)
FAMILIES = ("encoder_decoder", "decoder_only")


# ----------------------------------------------------------------------------------------------- grids


def load_grid(name: str, builtin: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A copy of the grid ``builtin[name]``, or a TOML/JSON grid file, every cell checked to be a valid
    ModelConfig (and family) before anything runs; a bad one is a ValueError naming it."""
    if name in builtin:
        return json.loads(json.dumps(builtin[name]))
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"--grid {name}: neither a built-in grid ({', '.join(builtin)}) nor a file")
    if path.suffix == ".json":
        grid = json.loads(path.read_text())
    else:
        import tomllib

        try:
            grid = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from None
    if grid.get("task", "lm") not in RECIPES:
        raise ValueError(f"{path}: task {grid.get('task')!r} is not one of {', '.join(RECIPES)}")
    if not grid.get("cells"):
        raise ValueError(f"{path}: the grid has no [cells.<name>] tables")
    for cell, overrides in grid["cells"].items():
        try:  # validate every cell before anything runs
            model = {**grid.get("base", {}), **overrides}
            if model.pop("family", "decoder_only") not in FAMILIES:
                raise ValueError(f"family must be one of {', '.join(FAMILIES)}")
            ModelConfig.from_dict(model)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: cell {cell!r}: {err}") from None
    grid.setdefault("task", "lm")
    grid.setdefault("base", {})
    return grid


def flops_per_token(cfg: ModelConfig, n_params_nonembedding: int, context: int) -> float:
    """Training FLOPs per token (Kaplan et al. 2020): 3 x forward, forward = 2 N + 2 n_layers n_ctx d_model."""
    return 3.0 * (2.0 * n_params_nonembedding + 2.0 * cfg.n_layers * context * cfg.d_model)


def non_embedding_params(model: torch.nn.Module) -> int:
    """Parameters outside the token and learned position embeddings (what the FLOPs count multiplies)."""
    seen = {id(p) for name, p in model.named_parameters() if "embed" in name or "positional.weight" in name}
    return sum(p.numel() for p in model.parameters() if id(p) not in seen)


def cell_slug(name: str) -> str:
    """A cell's name as a folder name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")


# ------------------------------------------------------------------------------------------- one cell


def run_cell(cell_dir: Path, recipes: dict[str, ModuleType]) -> None:
    """Train and evaluate one (cell, seed) described by ``cell_dir/cell.json`` as a run of its task's recipe
    (``recipes[RECIPES[task]]``: recipes/gpt.py for "lm", recipes/translate.py for "translation") through
    ``pipeline.train``, so a cell directory is that recipe's run directory (config.json, checkpoints,
    metrics.jsonl, report.json, report.md; resumed when it holds one); then write ``result.json``."""
    spec = json.loads((cell_dir / "cell.json").read_text())
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    recipe = recipes[RECIPES[spec["task"]]]
    resumed = (cell_dir / "config.json").exists()
    if resumed:
        settings = pipeline.settings_of(recipe, read_run_config(cell_dir)).merged({"train.resume": True})
    else:
        settings = recipe.SETTINGS.from_dict(spec["settings"])
    cost_file = cell_dir / "cost.json"

    def budget(task: Any, model: torch.nn.Module, settings: Any) -> dict[str, Any]:
        cost = COSTS[spec["task"]](task, model, settings)
        write_json(cost_file, cost)
        return budget_changes(spec["budget_kind"], spec["budget"], cost["tokens_per_step"], cost["flops_per_token"])

    report = pipeline.train(recipe, settings, pipeline.Context(cell_dir, resumed, spec["data_dir"]), budget)
    fields = {"extrapolation": {}}
    if spec["task"] == "translation":
        test = report["eval"][TRANSLATION_TEST]
        hyps = (cell_dir / test["hypotheses"]).read_text(encoding="utf-8").splitlines()
        fields.update(bleu=test["bleu"], bleu_sentences=len(hyps))
    elif spec.get("eval_lengths"):
        _, task, model = pipeline.load_run(recipe, cell_dir, spec["data_dir"], spec["settings"]["train"]["device"])
        fields["extrapolation"] = extrapolate(task, model, spec["eval_lengths"])
    finish_cell(cell_dir, spec, report, resolve_device(settings.train.device), **json.loads(cost_file.read_text()),
                **fields)


def run_cells(out: Path, cells: list[dict[str, Any]], script: Path) -> int:
    """Run every (cell, seed) of a grid, each in its own process (``script _cell DIR``) in
    ``out/cells/<cell>-s<seed>/``; one whose `result.json` exists is not run again, so a grid started again with the
    same ``out`` continues. 0, or the failed cell's exit status (its directory is kept)."""
    start = time.monotonic()
    for i, spec in enumerate(cells, 1):
        cell_dir = out / "cells" / f"{cell_slug(spec['cell'])}-s{spec['seed']}"
        if (cell_dir / "result.json").exists():
            print(f"[{i}/{len(cells)}] {spec['cell']} seed {spec['seed']}: done already", file=sys.stderr)
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        write_json(cell_dir / "cell.json", spec)
        print(f"[{i}/{len(cells)}] {spec['cell']} seed {spec['seed']} ({time.monotonic() - start:.0f}s so far)",
              file=sys.stderr)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.run([sys.executable, str(script), "_cell", str(cell_dir)], env=env)
        if proc.returncode != 0:
            print(f"error: cell {spec['cell']!r} seed {spec['seed']} failed (exit {proc.returncode}); its run "
                  f"directory {cell_dir} is kept and the grid resumes there when run again", file=sys.stderr)
            return proc.returncode if proc.returncode > 128 else 1
    return 0



def lm_cost(task: Any, model: torch.nn.Module, settings: Any) -> dict[str, float]:
    """A decoder-only LM cell: its training FLOPs per token and tokens per step."""
    block = settings.data.block_size
    return {"params": sum(p.numel() for p in model.parameters()), "tokens_per_step": block * settings.data.batch_size,
            "flops_per_token": flops_per_token(model.config, non_embedding_params(model), block)}


def translation_cost(task: Any, model: torch.nn.Module, settings: Any) -> dict[str, float]:
    """A translation cell: training FLOPs per scored target token, 6 x (non-embedding) parameters x the tokens
    each reads (an encoder-decoder's encoder reads the source, its decoder the target; a decoder-only model
    reads both), and the padded tokens per step."""
    train_ex = task.data.examples["train"]
    src_len = statistics.fmean(len(s) for s, _ in train_ex)  # source + EOS (or + SEP as a prefix)
    tgt_len = statistics.fmean(len(t) + 1 for _, t in train_ex)  # target + EOS
    if settings.family == "encoder_decoder":
        enc = non_embedding_params(model.encoder)
        fpt = 6.0 * (enc * src_len + (non_embedding_params(model) - enc) * tgt_len) / tgt_len
    else:
        fpt = 6.0 * non_embedding_params(model) * (src_len + tgt_len) / tgt_len
    return {"params": sum(p.numel() for p in model.parameters()), "tokens_per_step": settings.data.max_tokens,
            "flops_per_token": fpt}


#: each grid task's recipe (by NAME) and training cost
RECIPES = {"lm": "gpt", "translation": "translate"}
COSTS = {"lm": lm_cost, "translation": translation_cost}
TRANSLATION_TEST = "test_2016_flickr"


def budget_changes(kind: str, budget: float, tokens_per_step: float, fpt: float) -> dict[str, Any]:
    """The grid's budget as training settings: steps, or minutes for an equal-wall-time budget."""
    if kind == "steps":
        return {"train.max_steps": int(budget)}
    if kind == "tokens":
        return {"train.max_steps": max(1, int(budget // tokens_per_step))}
    if kind == "flops":
        return {"train.max_steps": max(1, int(budget // (fpt * tokens_per_step)))}
    # equal wall time: the schedule cannot know the step count, so decay by inverse sqrt instead of cosine
    return {"train.max_minutes": float(budget), "train.schedule": "inverse_sqrt", "train.max_steps": None}


def extrapolate(task: Any, model: torch.nn.Module, factors: list[int]) -> dict[str, float | None]:
    """Validation loss of the trained LM at ``factor`` x its training context (None where learned positions
    end)."""
    out: dict[str, float | None] = {}
    for factor in factors:
        length = factor * task.block_size
        if model.config.positional == "learned" and length > model.config.max_len:
            out[str(factor)] = None  # learned positions stop at max_len
            continue
        longer = replace(task, block_size=length, eval_batch_size=max(1, 64 // factor))
        out[str(factor)] = longer.evaluate(model, "val")["loss"]
    return out


def finish_cell(cell_dir: Path, spec: dict[str, Any], report: dict[str, Any], device: torch.device,
                **fields: Any) -> None:
    """Write ``cell_dir/result.json``: the run's report figures, its validation curve, peak memory and ``fields``."""
    rows = read_metrics(cell_dir)
    curve = [{"step": r["step"], "elapsed_s": r.get("elapsed_s"), "val_loss": r["val_loss"]}
             for r in rows if r.get("split") == "val" and r.get("val_loss") is not None]
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    write_json(cell_dir / "result.json", {
        "cell": spec["cell"], "seed": spec["seed"], "steps": report["steps"], "wall_s": report["wall_s"],
        "tokens_per_s": report["train_tokens_per_s"], "best_val_loss": report["best_metric"],
        "final_val_loss": curve[-1]["val_loss"] if curve else None, "peak_memory_mb": peak_mb, "curve": curve,
        **fields})


# ---------------------------------------------------------------------------------------------- results


def summarize(out: Path, grid: dict[str, Any], header: str) -> str:
    """Read every cell's ``result.json`` under ``out``, aggregate them over seeds, and write ``table.md`` (returned),
    ``results.json`` and the plots."""
    names = list(grid["cells"])
    results = [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json"))]
    results = sorted((r for r in results if r["cell"] in grid["cells"]), key=lambda r: (names.index(r["cell"]),
                                                                                         r["seed"]))
    rows = aggregate(results, names[0])
    table = write_table(rows, out, header + "\n\nBest validation loss per run (nats/token); Δ vs the first cell "
                        f"({names[0]}); a difference is 'beyond spread' when it exceeds the sum of both cells' "
                        "standard deviations over seeds.")
    plots = plot(results, out)
    write_json(out / "results.json", {"rows": rows, "runs": results})
    print(f"wrote {out / 'table.md'}, {', '.join(p.name for p in plots)}", file=sys.stderr)
    return table


def aggregate(results: list[dict[str, Any]], base_name: str) -> list[dict[str, Any]]:
    """Mean and spread per cell, in grid order; a difference to the base counts only beyond the spread."""
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_cell.setdefault(r["cell"], []).append(r)
    rows = []
    for name, runs in by_cell.items():
        losses = [r["best_val_loss"] for r in runs]
        rows.append({
            "cell": name, "seeds": len(runs), "params": runs[0]["params"],
            "flops_per_token": runs[0]["flops_per_token"],
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in runs),
            "steps": statistics.median(r["steps"] for r in runs),
            "val_loss": statistics.fmean(losses), "val_loss_std": statistics.stdev(losses) if len(losses) > 1 else 0.0,
            "peak_memory_mb": max(r["peak_memory_mb"] for r in runs),
            "bleu": _mean_or_none([r.get("bleu") for r in runs]),
            "extrapolation": {k: _mean_or_none([r["extrapolation"].get(k) for r in runs])
                              for k in runs[0]["extrapolation"]},
        })
    base = next((r for r in rows if r["cell"] == base_name), None)
    for r in rows:
        if base is None or r is base:
            r["delta"], r["beyond_spread"] = None, None
            continue
        r["delta"] = r["val_loss"] - base["val_loss"]
        spread = r["val_loss_std"] + base["val_loss_std"]
        r["beyond_spread"] = abs(r["delta"]) > spread if r["seeds"] > 1 and base["seeds"] > 1 else None
    return rows


def _mean_or_none(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def write_table(rows: list[dict[str, Any]], out: Path, header: str) -> str:
    with_bleu = any(r.get("bleu") is not None for r in rows)
    bleu_head, bleu_rule = (" BLEU (beam) |", " ---: |") if with_bleu else ("", "")
    lines = [header, "",
             "| cell | params | FLOPs/token | tokens/s | steps | val loss (mean ± std) | Δ vs base | beyond spread |"
             " peak mem (MB) |" + bleu_head,
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: | ---: |" + bleu_rule]
    for r in sorted(rows, key=lambda r: r["val_loss"]):
        delta = "" if r["delta"] is None else f"{r['delta']:+.4f}"
        beyond = "" if r["beyond_spread"] is None else ("yes" if r["beyond_spread"] else "no")
        bleu = f" {r['bleu']:.2f} |" if with_bleu and r.get("bleu") is not None else (" |" if with_bleu else "")
        lines.append(f"| {r['cell']} | {r['params']:,} | {r['flops_per_token']:.3g} | {r['tokens_per_s']:,.0f} | "
                     f"{r['steps']:.0f} | {r['val_loss']:.4f} ± {r['val_loss_std']:.4f} | {delta} | {beyond} | "
                     f"{r['peak_memory_mb']:.0f} |" + bleu)
    factors = sorted({k for r in rows for k in r["extrapolation"]}, key=float)
    if factors:
        lines += ["", "Validation loss when evaluated at longer contexts than trained (× training block size):", "",
                  "| cell | " + " | ".join(f"{f}×" for f in factors) + " |",
                  "| --- | " + " | ".join("---:" for _ in factors) + " |"]
        for r in sorted(rows, key=lambda r: r["cell"]):
            cells = [("n/a" if r["extrapolation"].get(f) is None else f"{r['extrapolation'][f]:.4f}") for f in factors]
            lines.append(f"| {r['cell']} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (out / "table.md").write_text(text)
    return text


def plot(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """Validation loss against steps, wall time and FLOPs: one line per cell (mean over seeds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    axes = {"steps": ("step", lambda p, r: p["step"]),
            "time": ("wall time (s)", lambda p, r: p["elapsed_s"] or 0.0),
            "flops": ("training FLOPs", lambda p, r: p["step"] * r["tokens_per_step"] * r["flops_per_token"])}
    cells = list(dict.fromkeys(r["cell"] for r in results))
    for key, (label, x_of) in axes.items():
        fig = Figure(figsize=(8, 5), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for n_cell, cell in enumerate(cells):
            runs = [r for r in results if r["cell"] == cell and r["curve"]]
            if not runs:
                continue
            n = min(len(r["curve"]) for r in runs)
            xs = [statistics.fmean(x_of(r["curve"][i], r) for r in runs) for i in range(n)]
            ys = [statistics.fmean(r["curve"][i]["val_loss"] for r in runs) for i in range(n)]
            # matplotlib's cycle has 10 colours: past them a new line style, so no two cells look alike
            ax.plot(xs, ys, color=f"C{n_cell % 10}", linestyle=("-", "--", ":")[n_cell // 10 % 3], marker="o",
                    markersize=2, linewidth=1.2, label=cell)
        ax.set_xlabel(label)
        ax.set_ylabel("validation loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"loss_vs_{key}.png"
        fig.savefig(path)
        paths.append(path)
    return paths
