"""The `knn` subcommand of recipes/gpt.py and recipes/translate.py: kNN-LM / kNN-MT on a trained run."""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from .flags import numbers


def knn_main(recipe: types.ModuleType, argv: list[str], experiment: Callable[[Any, argparse.Namespace], Any],
             add_flags: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """A recipe's `knn` command (kNN-LM / kNN-MT, `tasks.knn.run_knn`) on a trained run: ``experiment(task,
    args)`` wraps the run's task; ``add_flags`` adds the recipe's own."""
    from .. import pipeline
    from ..runs import run_dir_of
    from ..tasks.knn import KNNGrid, run_knn

    defaults = KNNGrid()
    parser = argparse.ArgumentParser(
        prog=f"recipes/{recipe.NAME}.py knn", description="Build a datastore of the run's training states into the run "
        "directory (knn-datastore/), tune lambda, T and k on validation, report test with and without retrieval, the "
        "gain against datastore size and the decoding cost: knn_report.json, knn_report.md, knn_gain.png.")
    parser.add_argument("--checkpoint", metavar="RUN_DIR", required=True, help="the trained run")
    parser.add_argument("--data-dir", default=None, help="where the data sets are (default: $TZOO_DATA_DIR)")
    parser.add_argument("--datastore", metavar="DIR", default=None,
                        help="use this datastore instead of the run's own (refused if built from other weights)")
    parser.add_argument("--fractions", type=numbers(float), default=defaults.fractions,
                        help="datastore sizes reported, as fractions of the training data (default 0.1,0.3,1.0)")
    parser.add_argument("--lambdas", type=numbers(float), default=defaults.lambdas, help="lambda values tuned")
    parser.add_argument("--temperatures", type=numbers(float), default=defaults.temperatures,
                        help="softmax temperatures over negative squared L2 distances tuned")
    parser.add_argument("--ks", type=numbers(int), default=defaults.ks, help="numbers of neighbours tuned")
    parser.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="auto",
                        help="datastore index: exact (flat), approximate (ivf, hnsw), or auto: flat up to 100k states")
    parser.add_argument("--nprobe", type=int, default=16, help="ivf cells scanned per query (default 16)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    if add_flags is not None:
        add_flags(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = KNNGrid(args.lambdas, args.temperatures, args.ks, args.fractions)
    _, task, model = pipeline.load_run(recipe, args.checkpoint, args.data_dir, args.device)
    command = " ".join([f"python recipes/{recipe.NAME}.py knn", *argv])
    result = run_knn(experiment(task, args), model, run_dir_of(args.checkpoint), grid, args.datastore, command,
                     log=lambda line: print(line, file=sys.stderr, flush=True), kind=args.index, nprobe=args.nprobe)
    print(json.dumps({split: {k: v for k, v in m.items() if k not in ("with", "without")}
                      for split, m in result["test"].items()}), "slowdown", round(result["slowdown"], 2))
    return 0
