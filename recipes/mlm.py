#!/usr/bin/env python
"""MLM recipe: pre-train a BERT-style encoder by masked language modelling on a real corpus, then measure what
that is worth: fine-tune it to classify text and train the same model from scratch, in one command.

    python recipes/mlm.py                           # pretrain, then finetune and scratch (2 seeds each): one report
    python recipes/mlm.py pretrain                  # MLM on IMDB's 75k train + unsup reviews, labels unused
    python recipes/mlm.py pretrain --text my.jsonl  # ... or on your documents ({"text": ...} a line, or a .txt)
    python recipes/mlm.py fill --checkpoint RUN_DIR "the movie was [MASK] ."
    python recipes/mlm.py --eval-only --checkpoint RUN_DIR
    python recipes/classify.py --init RUN_DIR       # fine-tune alone (was `mlm.py finetune`; predict there too)

The corpus is packed into blocks of whole sentences (RoBERTa's FULL-SENTENCES), a sentencepiece vocabulary is
trained on a sample of it, and 30% of the real tokens are masked afresh every batch (Wettig et al. 2022); a
deterministic 0.5% of the documents is held out and scored with a fixed mask. The tokenizer writes every text
as SST-2 is written (lower-cased Penn Treebank tokens: "did n't", --pretokenize ptb) before splitting it.
IMDB's test reviews are never pre-trained on; the report counts the SST-2 evaluation sentences that share a
word 8-gram with the corpus. The one command makes pretrain/, then finetune/ and scratch/ (finetune-seed1/, ...
for further seeds), then the comparison, in one directory; --resume continues whichever was interrupted.
Presets: tiny (seconds), cpu (2 cores, about an hour: 4 layers x 256, rope, pre-norm, 2,200 steps), gpu (one
large GPU: BERT-medium's shape, an hour). Measured figures are in the README.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import cli, pipeline, runs  # noqa: E402
from transformers_zoo.tasks import classification_settings as cls  # noqa: E402
from transformers_zoo.tasks import finetuning, pretraining  # noqa: E402
from transformers_zoo.tasks.base import RunKind  # noqa: E402
from transformers_zoo.tasks.mlm import MASK_TEXT  # noqa: E402
from transformers_zoo.tasks.pretraining import PRESETS, PretrainSettings  # noqa: E402
from transformers_zoo.tasks.pretraining_gain import gain_report  # noqa: E402
from transformers_zoo.training.distributed import is_main  # noqa: E402

NAME, FAMILY, DEFAULT_PRESET, SETTINGS, PROG = "mlm", "encoder_only", "cpu", PretrainSettings, "recipes/mlm.py pretrain"
prepare = pretraining.prepare_pretrain

PRETRAIN_ONLY = ("data__corpus", "data__text", "data__block_len", "data__batch_blocks", "data__mlm_probability",
                 "pretrain_lr", "pretrain_steps", "pretrain_minutes")
VOCAB = ("data__vocab", "data__tokenizer", "data__pretokenize")  # both the pre-training and from scratch
BUDGETS = ("max_steps", "max_minutes", "train__max_epochs", "pretrain_steps", "pretrain_minutes")
run_kind = functools.partial(finetuning.encoder_run, default=finetuning.PRETRAIN_RUN)  # (or a classifier stage)


def add_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("pre-training data")
    cli.add_vocab_args(data)
    data.add_argument("--corpus", dest="data__corpus", choices=pretraining.NAMED_CORPORA,
                      default=None, help="imdb = IMDB's 75k train + unsup reviews (never its test reviews), sst2 = "
                      "SST-2's training phrases, captions(-de) = Multi30k task 2's training captions (preset: imdb)")
    data.add_argument("--text", dest="data__text", type=cli.absolute, default=None, metavar="FILE",
                      help="pre-train on your own text instead: a .jsonl(.gz) file of documents ({\"text\": ...} a "
                           "line) or a text file, one document a line; a deterministic share is held out")
    for flag, tp, help_ in (("--block-len", int, "block length in tokens (preset: cpu 128)"),
                            ("--batch-blocks", int, "blocks per step (preset: cpu 64)"),
                            ("--mlm-probability", float, "share of the real tokens masked (preset: cpu 0.3)")):
        data.add_argument(flag, dest="data__" + flag[2:].replace("-", "_"), type=tp, default=None, help=help_,
                          metavar="N" if tp is int else "P")


def settings(args: argparse.Namespace) -> PretrainSettings:
    tree = {key: PRESETS[args.preset][key] for key in ("model", "train", "data")}
    return cli.preset_settings(sys.modules[__name__], args, tree)


# ------------------------------------------------------------- the one command: pretrain, finetune, scratch


def add_all_flags(parser: argparse.ArgumentParser) -> None:
    add_flags(parser)
    cli.add_labelled_data_args(parser.add_argument_group("fine-tuning data"), sorted(cls.TASKS))
    pre = parser.add_argument_group("pre-training budget (the training flags shape the fine-tuning runs; --amp "
                                    "every stage)")
    pre.add_argument("--pretrain-steps", type=int, default=None, help="pre-training optimizer steps")
    pre.add_argument("--pretrain-minutes", type=float, default=None, help="pre-training minutes")
    pre.add_argument("--pretrain-lr", type=float, default=None, help="pre-training peak learning rate")
    pre.add_argument("--finetune-seeds", type=int, default=None, metavar="N",
                     help="fine-tune and train from scratch with N seeds (--seed, --seed+1, ...), report mean and "
                          "spread (preset: cpu 2)")


def stage_args(args: argparse.Namespace, stage: str) -> argparse.Namespace:
    """The flags one stage reads: the pre-training its data flags, --amp and its --pretrain-* budgets and rate;
    the classifier runs the others. Each stage keeps its own seed (--seed is the first seed's)."""
    values = dict(vars(args), _given=set(getattr(args, "_given", ())) - {"seed"})
    for dest in values:
        if stage != "pretrain" and dest in PRETRAIN_ONLY or stage == "pretrain" and (
                dest.startswith("data__") and dest not in PRETRAIN_ONLY + VOCAB or dest.startswith("train__") and
                dest != "train__amp"):
            values[dest] = None
    if stage == "pretrain":
        values.update(max_steps=args.pretrain_steps, max_minutes=args.pretrain_minutes, train__lr=args.pretrain_lr)
    return argparse.Namespace(**values)


def new_plans(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage's settings (the fine-tuning's start comes once pre-training is done), from the preset (whose
    "amp" is every stage's) and the command line."""
    if args.train__amp is None:
        args.train__amp = PRESETS[args.preset].get("amp")
    classifier = SimpleNamespace(SETTINGS=cls.ClassifySettings)
    return {"pretrain": settings(stage_args(args, "pretrain")), **{stage: cli.preset_settings(
        classifier, stage_args(args, stage), cls.classifier_tree(args.preset, args.data__task, stage))
        for stage in ("finetune", "scratch")}}


def resumed_plans(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Path, dict, str, list]:
    """The parent run of ``--resume``, its stages' settings, preset and runs; any setting typed but the budgets
    (and where it runs) is refused before anything runs."""
    parent = runs.run_dir_of(args.resume)
    saved = runs.read_run_config(parent)
    if saved.get("stage") != "all":
        raise ValueError(f"--resume {args.resume}: not a run of 'recipes/mlm.py' without subcommand; resume it "
                         f"with 'recipes/mlm.py {saved.get('stage')} --resume'")
    given, seed = getattr(args, "_given", ()), saved["plans"]["finetune"]["train"]["seed"]
    refused = ["--preset"] * ("preset" in given) + [cli.flag_of(parser, cli.field_path(d) or d) for d, v in vars(
        args).items() if v is not None and d not in BUDGETS and ("__" in d or d in ("pretrain_lr", "finetune_seeds"))]
    if refused or ("seed" in given and args.seed != seed):
        raise ValueError(f"{', '.join(refused) or f'--seed {args.seed}'}: a resumed run keeps the settings it was "
                         "started with (only --max-steps, --max-minutes, --max-epochs and --pretrain-steps/-minutes "
                         "may change); start a new run to change them")
    plans = {name: (PretrainSettings if name == "pretrain" else cls.ClassifySettings).from_dict(plan)
             for name, plan in saved["plans"].items()}
    return parent, plans, saved["preset"], [tuple(r) for r in saved["runs"]]


def all_runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Pre-train, fine-tune from it and train from scratch with the same budget (each with every seed), compare.
    A new run checks the data of every stage (and trains its tokenizers) before its first step."""
    pretrain = finetuning.PRETRAIN_RUN
    if args.resume:
        parent, plans, preset, seeds = resumed_plans(args, parser)
    else:
        plans, preset = new_plans(args), args.preset
        n = args.finetune_seeds or PRESETS[preset].get("finetune_seeds", 1)
        if n < 1:
            raise ValueError(f"--finetune-seeds must be >= 1, got {n}")
        seeds = [(stage if k == 0 else f"{stage}-seed{args.seed + k}", stage, args.seed + k)
                 for k in range(n) for stage in ("finetune", "scratch")]
        task = pretraining.prepare_pretrain_task(plans["pretrain"].data, args.data_dir, contamination=True)  # read once
        pretrain = RunKind(NAME, FAMILY, SETTINGS, lambda s, _: (task, pretraining.pretrain_model(s, task)))
        finetuning.prepare_classifier(plans["scratch"], pipeline.Context(Path("."), data_dir=args.data_dir))  # checked
        parent = runs.new_run_dir(args.out, NAME, preset)
    config = {"preset": preset, "plans": {k: s.to_dict() for k, s in plans.items()}}
    if is_main() and not args.resume:
        runs.write_json(parent / "config.json", {"recipe": NAME, "stage": "all", "runs": seeds, **config})
    stages = {"pretrain": "pretrain", **{name: stage for name, stage, _ in seeds}}
    parts = [("pretrain", pretrain, lambda: plans["pretrain"])] + [(name, finetuning.CLASSIFIER_RUN, functools.partial(
        lambda stage, seed: finetuning.start_settings(plans[stage].merged({"train.seed": seed, **({"init": str(
            parent / "pretrain")} if stage == "finetune" else {})}), {}), stage, seed)) for name, stage, seed in seeds]
    reports = pipeline.train_parts(parent, parts, args.data_dir, lambda name: cli.given_fields(
        stage_args(args, stages[name]), PretrainSettings if name == "pretrain" else cls.ClassifySettings))
    if is_main():
        gain_report(parent, config, reports, seeds, NAME)


def fill_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recipes/mlm.py fill",
                                     description=f"Fill in each {MASK_TEXT} of a text with a pre-trained run.")
    parser.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="pre-training run (or all-in-one run)")
    parser.add_argument("--top-k", type=int, default=5, help="candidates per mask (default 5)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("texts", nargs="+", help=f"texts with {MASK_TEXT} where a token should be filled in")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {args.top_k}")
    print("\n".join(finetuning.fill(args.checkpoint, args.texts, args.top_k, cli.resolve_device(args.device))))
    return 0


def moved(command: str, argv: list[str]) -> int:
    now = {"finetune": "recipes/classify.py --init RUN_DIR", "predict": "recipes/classify.py predict"}[command]
    raise ValueError(f"'recipes/mlm.py {command}' is now '{now}' (the same flags)")


ONE = SimpleNamespace(  # the command without subcommand: pre-training, then the fine-tuning runs and the comparison
    NAME=NAME, PROG="recipes/mlm.py", FAMILY=FAMILY, DEFAULT_PRESET=DEFAULT_PRESET, PRESETS=PRESETS, SETTINGS=SETTINGS,
    add_flags=add_all_flags, run_kind=run_kind, train_runs=all_runs, __doc__=__doc__,
    COMMANDS={"fill": fill_main, **{name: functools.partial(moved, name) for name in ("finetune", "predict")}})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "pretrain":
        return cli.recipe_main(sys.modules[__name__], argv[1:])
    return cli.recipe_main(ONE, argv)


if __name__ == "__main__":
    cli.main_guard(main)
