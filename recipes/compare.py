#!/usr/bin/env python
"""Compare architectures and variants on the same data under one budget.

    python recipes/compare.py --grid variants --preset cpu --seeds 3      # one-factor ablation of a GPT
    python recipes/compare.py --grid extrapolation --preset cpu           # train at L, evaluate at L, 2L, 4L
    python recipes/compare.py --grid families --preset cpu                # translation: encoder-decoder vs
                                                                          # decoder-only with a source prefix
    python recipes/compare.py --grid my_grid.toml --budget flops          # a grid of your own

A grid is a base model config plus named cells, each a few ModelConfig overrides. Every cell is trained
once per seed under the same budget: equal steps, equal tokens, equal wall time or equal training FLOPs
(`--budget`). Each (cell, seed) runs in its own process in `OUT/cells/<cell>-s<seed>/` (a full run
directory, resumable); a cell whose `result.json` exists is not run again, so an interrupted grid just
continues when started again with the same `--out`. The grid then writes `OUT/table.md` (params, FLOPs
per token, tokens/s, validation loss mean +- std over seeds, peak memory), `OUT/results.json`, and plots
of validation loss against steps, wall time and FLOPs (`loss_vs_*.png`).

Grid files (TOML, or JSON with the same keys):

    task = "lm"                      # "lm": Tiny Shakespeare (or --text FILE); "translation": Multi30k en->de
    [base]                           # ModelConfig fields shared by every cell
    d_model = 128
    n_layers = 4
    [cells.rope]                     # one table per cell: the fields that differ from base
    positional = "rope"
    [cells.swiglu]
    ffn = "swiglu"

In translation grids a cell may set `family = "encoder_decoder"` or `"decoder_only"` (the source then is a
prefix of one causal stream and only the target is scored); both use the same beam search and report
sacreBLEU on test_2016_flickr (the first `eval_limit` sentences at small presets).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from transformers_zoo import DecoderOnly, EncoderDecoder, ModelConfig  # noqa: E402
from transformers_zoo.cli import main_guard, resolve_device  # noqa: E402
from transformers_zoo.corpora import load_multi30k, load_tinyshakespeare, read_text, resolve_data_dir  # noqa: E402
from transformers_zoo.runs import write_json  # noqa: E402
from transformers_zoo.tasks.lm import evaluate_lm, lm_loss, prepare_lm_data, train_stream  # noqa: E402
from transformers_zoo.tasks.prefix_lm import (  # noqa: E402
    evaluate_prefix_loss,
    generate_prefix_ids,
    prefix_lm_loss,
    prefix_train_stream,
)
from transformers_zoo.tasks.translation import (  # noqa: E402
    evaluate_loss,
    generate_ids,
    prepare_translation_data,
    score,
    translation_loss,
)
from transformers_zoo.tasks.translation import train_stream as mt_train_stream  # noqa: E402
from transformers_zoo.training import TrainConfig, Trainer, load_checkpoint  # noqa: E402
from transformers_zoo.training.metrics_log import read_metrics  # noqa: E402

BUDGETS = ("steps", "tokens", "time", "flops")

# The base of the built-in LM grids: a small GPT-2-style char model (learned positions, pre-LN, GELU, MHA).
LM_BASE = dict(d_model=128, n_heads=4, n_layers=4, max_len=128, dropout=0.0, positional="learned",
               norm="layernorm", norm_first=True, ffn="gelu", bias=False)

VARIANT_CELLS: dict[str, dict[str, Any]] = {
    "base (learned, pre-LN, gelu, MHA)": {},
    # fixed sinusoids have unit amplitude: without the sqrt(d_model) scale (Vaswani et al.) they drown
    # the N(0, 0.02) token embeddings and the model barely sees which token it reads
    "sinusoidal": {"positional": "sinusoidal", "scale_embeddings": True},
    "rope": {"positional": "rope"},
    "alibi": {"positional": "alibi"},
    "relative": {"positional": "relative"},
    "post-LN": {"norm_first": False},
    "pre-RMSNorm": {"norm": "rmsnorm"},
    "relu": {"ffn": "relu"},
    "swiglu": {"ffn": "swiglu"},
    "geglu": {"ffn": "geglu"},
    "GQA (2 kv heads)": {"n_kv_heads": 2},
    "MQA (1 kv head)": {"n_kv_heads": 1},
}
EXTRAPOLATION_CELLS = {p: {"positional": p} for p in ("learned", "rope", "alibi", "relative")}
EXTRAPOLATION_CELLS["sinusoidal (x sqrt(d) embeddings)"] = VARIANT_CELLS["sinusoidal"]

# Translation (Multi30k en->de) by the two generative families at (nearly) matched size: the decoder-only
# model reads the source as a prefix and has as many layers as the encoder and decoder together.
MT_BASE = dict(n_heads=4, dropout=0.1, positional="sinusoidal", scale_embeddings=True, ffn="relu", max_len=256)
FAMILY_CELLS = {
    "encoder-decoder (2+2 layers)": {"family": "encoder_decoder", "n_layers": 2},
    "decoder-only (4 layers, source prefix)": {"family": "decoder_only", "n_layers": 4},
}
FAMILIES = {"encoder_decoder": EncoderDecoder, "decoder_only": DecoderOnly}

GRIDS: dict[str, dict[str, Any]] = {
    "variants": {"task": "lm", "base": LM_BASE, "cells": VARIANT_CELLS},
    "families": {"task": "translation", "base": MT_BASE, "cells": FAMILY_CELLS},
    "extrapolation": {"task": "lm", "base": LM_BASE, "cells": EXTRAPOLATION_CELLS, "eval_lengths": [1, 2, 4]},
}

# Sizes per preset and task; the model overrides apply on top of the grid's base.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "lm": {"model": dict(d_model=32, n_heads=4, n_layers=1, max_len=32),
               "data": dict(block_size=32, batch_size=8, max_eval_tokens=4000),
               "train": dict(lr=2e-3, warmup_steps=3, eval_every=5),
               "budget": {"steps": 10, "tokens": 2560, "time": 0.1, "flops": 2e9}},
        "translation": {"model": dict(d_model=32, n_heads=4, d_ff=64),
                        "data": dict(vocab=1000, max_tokens=1500, eval_limit=30, beam=2),
                        "train": dict(lr=3e-3, warmup_steps=3, eval_every=5),
                        "budget": {"steps": 10, "tokens": 15000, "time": 0.1, "flops": 2e10}},
    },
    "cpu": {
        "lm": {"model": dict(max_len=64), "data": dict(block_size=64, batch_size=16, max_eval_tokens=None),
               "train": dict(lr=2e-3, warmup_steps=40, eval_every=100),
               "budget": {"steps": 400, "tokens": 400 * 16 * 64, "time": 1.5, "flops": 3e13}},
        "translation": {"model": dict(d_model=128, n_heads=4, d_ff=512),
                        "data": dict(vocab=4000, max_tokens=2000, eval_limit=300, beam=5),
                        "train": dict(lr=2e-3, warmup_steps=100, eval_every=100),
                        "budget": {"steps": 600, "tokens": 600 * 2000, "time": 5.0, "flops": 1e14}},
    },
    "gpu": {
        "lm": {"model": dict(d_model=384, n_heads=6, n_layers=6, max_len=256),
               "data": dict(block_size=256, batch_size=64, max_eval_tokens=None),
               "train": dict(lr=1e-3, warmup_steps=100, eval_every=250),
               "budget": {"steps": 3000, "tokens": 3000 * 64 * 256, "time": 10.0, "flops": 5e16}},
        "translation": {"model": dict(d_model=512, n_heads=8, d_ff=2048),
                        "data": dict(vocab=8000, max_tokens=8000, eval_limit=None, beam=5),
                        "train": dict(lr=1e-3, warmup_steps=1000, eval_every=500),
                        "budget": {"steps": 8000, "tokens": 8000 * 8000, "time": 30.0, "flops": 5e17}},
    },
}
TRAIN_BASE = dict(schedule="cosine", min_lr_ratio=0.1, betas=[0.9, 0.99], eps=1e-8, weight_decay=0.1, grad_clip=1.0,
                  log_every=50, save_every=100, keep_last=1)


# ----------------------------------------------------------------------------------------------- grids


def load_grid(name: str) -> dict[str, Any]:
    """A built-in grid by name, or a TOML/JSON grid file."""
    if name in GRIDS:
        return json.loads(json.dumps(GRIDS[name]))
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"--grid {name}: neither a built-in grid ({', '.join(GRIDS)}) nor a file")
    if path.suffix == ".json":
        grid = json.loads(path.read_text())
    else:
        import tomllib

        try:
            grid = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from None
    if grid.get("task", "lm") not in TASKS:
        raise ValueError(f"{path}: task {grid.get('task')!r} is not one of {', '.join(TASKS)}")
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
    seen = {id(p) for name, p in model.named_parameters() if "embed" in name or "positional.weight" in name}
    return sum(p.numel() for p in model.parameters() if id(p) not in seen)


def cell_slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")


# ------------------------------------------------------------------------------------------- one cell


def run_cell(cell_dir: Path) -> None:
    """Train and evaluate one (cell, seed) as described by `cell_dir/cell.json`; write `result.json`."""
    spec = json.loads((cell_dir / "cell.json").read_text())
    torch.manual_seed(spec["seed"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    TASKS[spec["task"]](spec, cell_dir)


def budget_steps(spec: dict[str, Any], train: dict[str, Any], tokens_per_step: float, fpt: float) -> None:
    """Turn the grid's budget into the TrainConfig's: steps, or minutes for an equal-wall-time budget."""
    kind, budget = spec["budget_kind"], spec["budget"]
    if kind == "steps":
        train["max_steps"] = int(budget)
    elif kind == "tokens":
        train["max_steps"] = max(1, int(budget // tokens_per_step))
    elif kind == "flops":
        train["max_steps"] = max(1, int(budget // (fpt * tokens_per_step)))
    else:  # equal wall time: the schedule cannot know the step count, so decay by inverse sqrt instead of cosine
        train.update(max_minutes=float(budget), schedule="inverse_sqrt", max_steps=None)


def finish_cell(cell_dir: Path, spec: dict[str, Any], summary: dict[str, Any], device: torch.device,
                **fields: Any) -> None:
    rows = read_metrics(cell_dir)
    curve = [{"step": r["step"], "elapsed_s": r.get("elapsed_s"), "val_loss": r["val_loss"]}
             for r in rows if r.get("split") == "val" and r.get("val_loss") is not None]
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    write_json(cell_dir / "result.json", {
        "cell": spec["cell"], "seed": spec["seed"], "steps": summary["steps"], "wall_s": summary["wall_s"],
        "tokens_per_s": summary["train_tokens_per_s"], "best_val_loss": summary["best_metric"],
        "final_val_loss": curve[-1]["val_loss"] if curve else None, "peak_memory_mb": peak_mb, "curve": curve,
        "extrapolation": {}, **fields})


def run_lm_cell(spec: dict[str, Any], cell_dir: Path) -> None:
    """A decoder-only LM on characters; optionally evaluated at longer contexts (extrapolation)."""
    data, seed = spec["data"], spec["seed"]
    device = resolve_device(spec["device"])
    text = read_text(data["text"]) if data.get("text") else load_tinyshakespeare(resolve_data_dir(spec["data_dir"]))
    lm = prepare_lm_data(text, (0.9, 0.1, 0.0), "char")
    tok = lm.tokenizer
    cfg = ModelConfig.from_dict({**spec["model"], "vocab_size": tok.vocab_size, "pad_id": tok.pad_id})
    model = DecoderOnly(cfg)
    params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(cfg, non_embedding_params(model), data["block_size"])
    tokens_per_step = data["block_size"] * data["batch_size"]
    train = dict(spec["train"], seed=seed, device=spec["device"], resume=(cell_dir / "checkpoints").exists())
    budget_steps(spec, train, tokens_per_step, fpt)
    val = lm.tokens["val"] if not data.get("max_eval_tokens") else lm.tokens["val"][: data["max_eval_tokens"]]

    def evaluate(m) -> dict[str, float]:
        return {"val_loss": evaluate_lm(m, val, data["block_size"], 64, device, tok.pad_id)["loss"]}

    stream = train_stream(lm.tokens["train"], data["block_size"], data["batch_size"], seed, tok.pad_id)
    trainer = Trainer(model, stream, lm_loss, TrainConfig.from_dict(train), cell_dir, evaluate=evaluate,
                      fingerprint={"model": cfg.to_dict()})
    summary = trainer.fit()
    best = DecoderOnly(cfg).to(device)
    load_checkpoint(cell_dir, best)
    extrapolation = {}
    for factor in spec.get("eval_lengths", []):
        length = factor * data["block_size"]
        if cfg.positional == "learned" and length > cfg.max_len:
            extrapolation[str(factor)] = None  # learned positions stop at max_len
            continue
        extrapolation[str(factor)] = evaluate_lm(best, val, length, max(1, 64 // factor), device, tok.pad_id)["loss"]
    finish_cell(cell_dir, spec, summary, device, params=params, flops_per_token=fpt, tokens_per_step=tokens_per_step,
                extrapolation=extrapolation)


def run_translation_cell(spec: dict[str, Any], cell_dir: Path) -> None:
    """Multi30k en->de by an encoder-decoder or a decoder-only model (source as a prefix): the same data,
    vocabulary, batches (by padded tokens), loss on target tokens, and beam search; BLEU on test_2016_flickr."""
    data, seed = spec["data"], spec["seed"]
    device = resolve_device(spec["device"])
    model_fields = dict(spec["model"])
    family = model_fields.pop("family", "encoder_decoder")
    pairs = load_multi30k(resolve_data_dir(spec["data_dir"]), "en", "de")
    pairs = {k: v for k, v in pairs.items() if k in ("train", "val", "test_2016_flickr")}
    mt = prepare_translation_data(pairs, vocab_size=data["vocab"], joint=True,
                                  max_len=ModelConfig.from_dict(model_fields).max_len)
    tok = mt.src_tokenizer
    cfg = ModelConfig.from_dict({**model_fields, "vocab_size": tok.vocab_size, "pad_id": tok.pad_id})
    model = FAMILIES[family](cfg)
    params = sum(p.numel() for p in model.parameters())
    # training FLOPs per scored target token: 6 x (non-embedding) parameters x the tokens each reads
    train_ex = mt.examples["train"]
    src_len = statistics.fmean(len(s) for s, _ in train_ex)  # source + EOS (or + SEP as a prefix)
    tgt_len = statistics.fmean(len(t) + 1 for _, t in train_ex)  # target + EOS
    if family == "encoder_decoder":
        enc = non_embedding_params(model.encoder)
        dec = non_embedding_params(model) - enc
        fpt = 6.0 * (enc * src_len + dec * tgt_len) / tgt_len
        stream = mt_train_stream(train_ex, data["max_tokens"], seed, tok.pad_id)
        loss_fn, eval_loss, generate = translation_loss, evaluate_loss, generate_ids
    else:
        fpt = 6.0 * non_embedding_params(model) * (src_len + tgt_len) / tgt_len
        stream = prefix_train_stream(train_ex, data["max_tokens"], seed, tok.pad_id)
        loss_fn, eval_loss, generate = prefix_lm_loss, evaluate_prefix_loss, generate_prefix_ids
    train = dict(spec["train"], seed=seed, device=spec["device"], label_smoothing=0.1,
                 resume=(cell_dir / "checkpoints").exists())
    budget_steps(spec, train, data["max_tokens"], fpt)

    def evaluate(m) -> dict[str, float]:
        return {"val_loss": eval_loss(m, mt.examples["val"], 6000, device, tok.pad_id)["loss"]}

    trainer = Trainer(model, stream, functools.partial(loss_fn, label_smoothing=0.1), TrainConfig.from_dict(train),
                      cell_dir, evaluate=evaluate, fingerprint={"model": cfg.to_dict(), "family": family})
    summary = trainer.fit()
    best = FAMILIES[family](cfg).to(device)
    load_checkpoint(cell_dir, best)
    limit = data.get("eval_limit")
    test = mt.examples["test_2016_flickr"][:limit]
    refs = [t for _, t in mt.pairs["test_2016_flickr"][:limit]]
    hyps = [tok.decode(ids) for ids in generate(best, [s for s, _ in test], beam_size=data["beam"])]
    (cell_dir / "hyp.de").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    finish_cell(cell_dir, spec, summary, device, params=params, flops_per_token=fpt,
                tokens_per_step=data["max_tokens"], bleu=score(hyps, refs)["bleu"], bleu_sentences=len(hyps))


TASKS = {"lm": run_lm_cell, "translation": run_translation_cell}


# ------------------------------------------------------------------------------------------- the grid


def plan_cells(grid: dict[str, Any], preset: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    budget = args.budget_value if args.budget_value is not None else preset["budget"][args.budget]
    cells = []
    for name, overrides in grid["cells"].items():
        for seed in range(args.seed, args.seed + args.seeds):
            cells.append({
                "task": grid["task"], "cell": name, "seed": seed,
                "model": {**grid["base"], **preset["model"], **overrides},
                "train": {**TRAIN_BASE, **preset["train"]}, "data": {**preset["data"], "text": args.text},
                "budget_kind": args.budget, "budget": budget, "eval_lengths": grid.get("eval_lengths", []),
                "device": args.device, "data_dir": args.data_dir, "threads": args.threads,
            })
    return cells


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


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="recipes/compare.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="variants", help=f"built-in grid ({', '.join(GRIDS)}) or a TOML/JSON file")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="model and budget size")
    parser.add_argument("--budget", default="steps", choices=BUDGETS,
                        help="what every cell gets equally: optimizer steps, training tokens, wall time or FLOPs")
    parser.add_argument("--budget-value", type=float, default=None,
                        help="the budget's amount (steps, tokens, minutes or FLOPs; default: the preset's)")
    parser.add_argument("--seeds", type=int, default=1, help="repeats per cell with seeds seed, seed+1, ...")
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--out", default=None, help="grid directory (default runs/compare-<grid>-<preset>)")
    parser.add_argument("--data-dir", default=None, help="data sets folder (default: env TZOO_DATA_DIR, else data/)")
    parser.add_argument("--text", default=None, help="language-model this text file instead of Tiny Shakespeare")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per cell")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    return args


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "_cell":  # internal: one cell in its own process
        run_cell(Path(sys.argv[2]))
        return 0
    args = parse_args(sys.argv[1:])
    grid = load_grid(args.grid)
    preset = PRESETS[args.preset][grid["task"]]
    if args.text and not Path(args.text).is_file():
        raise FileNotFoundError(f"--text {args.text}: no such file")
    out = Path(args.out or f"runs/compare-{Path(args.grid).stem}-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    cells = plan_cells(grid, preset, args)
    write_json(out / "grid.json", {"grid": grid, "preset": args.preset, "budget": args.budget, "cells": cells})
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
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_cell", str(cell_dir)], env=env)
        if proc.returncode != 0:
            print(f"error: cell {spec['cell']!r} seed {spec['seed']} failed (exit {proc.returncode}); its run "
                  f"directory {cell_dir} is kept and the grid resumes there when run again", file=sys.stderr)
            return proc.returncode if proc.returncode > 128 else 1
    results = [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json"))]
    names = list(grid["cells"])
    results = [r for r in results if r["cell"] in grid["cells"]]
    results.sort(key=lambda r: (names.index(r["cell"]), r["seed"]))
    rows = aggregate(results, names[0])
    header = (f"# compare: grid {args.grid}, preset {args.preset}, equal {args.budget} "
              f"({cells[0]['budget']:g}), {args.seeds} seed(s)\n\nBest validation loss per run (nats/token); "
              f"Δ vs the first cell ({names[0]}); a difference is 'beyond spread' when it exceeds the sum of "
              "both cells' standard deviations over seeds.")
    table = write_table(rows, out, header)
    plots = plot(results, out)
    write_json(out / "results.json", {"rows": rows, "runs": results})
    print(table)
    print(f"wrote {out / 'table.md'}, {', '.join(p.name for p in plots)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main_guard(main)
