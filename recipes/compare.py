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

A cell is a run of recipes/gpt.py ("lm": characters, 90/10 split) or recipes/translate.py ("translation":
Multi30k en->de), so its directory holds that recipe's config.json, checkpoints and report. In translation
grids a cell may set `family = "encoder_decoder"` or `"decoder_only"` (translate.py --family: the source is
a prefix of one causal stream); both report sacreBLEU of the same beam search on test_2016_flickr (the first
`eval_limit` pairs of validation and each test set at small presets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from transformers_zoo.cli import main_guard  # noqa: E402
from transformers_zoo.comparison import BUDGETS, load_grid, run_cell, run_cells, summarize  # noqa: E402
from transformers_zoo.pipeline import recipe_from_file  # noqa: E402
from transformers_zoo.runs import write_json  # noqa: E402

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
# LM cells read characters, the first 90% for training and the rest for validation (as nanoGPT)
LM_DATA = dict(tokenizer="char", split=[0.9, 0.1, 0.0], eval_batch_size=64)


# ------------------------------------------------------------------------------------------- the grid


def plan_cells(grid: dict[str, Any], preset: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (cell, seed) of the grid: the settings of its run of recipes/gpt.py ("lm") or recipes/translate.py
    ("translation"), and the budget that sets its steps once the data and model are known."""
    budget = args.budget_value if args.budget_value is not None else preset["budget"][args.budget]
    cells = []
    for name, overrides in grid["cells"].items():
        model = {**grid["base"], **preset["model"], **overrides}
        family = model.pop("family", "encoder_decoder")
        for seed in range(args.seed, args.seed + args.seeds):
            train = {**TRAIN_BASE, **preset["train"], "seed": seed, "device": args.device,  # max_steps: until the
                     "max_steps": preset["budget"]["steps"]}  # budget sets it, once the data and model are built
            if grid["task"] == "lm":
                settings = {"model": model, "train": train, "preset": f"compare-{args.preset}",
                            "data": {**LM_DATA, **preset["data"], "text": args.text}}
            else:
                data = dict(preset["data"])
                settings = {"model": model, "train": train, "family": family, "preset": f"compare-{args.preset}",
                            "eval": {"beam": data.pop("beam"), "average_last": 1}, "data": data}
            cells.append({"task": grid["task"], "cell": name, "seed": seed, "settings": settings,
                          "budget_kind": args.budget, "budget": budget, "eval_lengths": grid.get("eval_lengths", []),
                          "data_dir": args.data_dir, "threads": args.threads})
    return cells


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
        here = Path(__file__).parent
        run_cell(Path(sys.argv[2]), {name: recipe_from_file(here / f"{name}.py") for name in ("gpt", "translate")})
        return 0
    args = parse_args(sys.argv[1:])
    grid = load_grid(args.grid, GRIDS)
    preset = PRESETS[args.preset][grid["task"]]
    if args.text and not Path(args.text).is_file():
        raise FileNotFoundError(f"--text {args.text}: no such file")
    out = Path(args.out or f"runs/compare-{Path(args.grid).stem}-{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    cells = plan_cells(grid, preset, args)
    write_json(out / "grid.json", {"grid": grid, "preset": args.preset, "budget": args.budget, "cells": cells})
    code = run_cells(out, cells, Path(__file__).resolve())
    if code:
        return code
    header = (f"# compare: grid {args.grid}, preset {args.preset}, equal {args.budget} "
              f"({cells[0]['budget']:g}), {args.seeds} seed(s)")
    print(summarize(out, grid, header))
    return 0


if __name__ == "__main__":
    main_guard(main)
