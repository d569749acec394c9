#!/usr/bin/env python
"""MLM recipe: pre-train a BERT-style encoder by masked language modelling on a real corpus, then measure what
that is worth: fine-tune it to classify text and train the same model from scratch, in one command.

    python recipes/mlm.py                           # pretrain, then finetune and scratch (2 seeds each): one report
    python recipes/mlm.py pretrain                  # MLM on IMDB's 75k train + unsup reviews, labels unused
    python recipes/mlm.py pretrain --text my.jsonl  # ... or on your documents ({"text": ...} a line, or a .txt)
    python recipes/mlm.py fill --checkpoint RUN_DIR "the movie was [MASK] ."
    python recipes/mlm.py --eval-only --checkpoint RUN_DIR
    python recipes/mlm.py finetune --init RUN_DIR   # recipes/classify.py: fine-tune, or train from scratch
    python recipes/mlm.py predict --checkpoint RUN_DIR "a gorgeous, witty film"

The corpus is packed into blocks of whole sentences (RoBERTa's FULL-SENTENCES), a sentencepiece vocabulary is
trained on a sample of it, and 30% of the real tokens are masked afresh every batch (Wettig et al. 2022); a
deterministic 0.5% of the documents is held out and scored with a fixed mask. The tokenizer writes every text
as SST-2 is written (lower-cased Penn Treebank tokens: "did n't", --pretokenize ptb) before splitting it.
IMDB's test reviews are never pre-trained on; the report counts the SST-2 evaluation sentences that share a
word 8-gram with the corpus. The one command is three kinds of runs of the recipe pipeline in one directory:
pretrain/, then finetune/ and scratch/ (finetune-seed1/, ... for further seeds), then the comparison; --resume
continues whichever was interrupted.
Presets: tiny (seconds), cpu (2 cores, about an hour: 4 layers x 256, rope, pre-norm, 2,200 steps), gpu (one
large GPU: BERT-medium's shape, an hour). Measured figures are in the README.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import cli, pipeline, runs  # noqa: E402
from transformers_zoo.tasks import classification_settings as cls  # noqa: E402
from transformers_zoo.tasks.base import RunKind  # noqa: E402
from transformers_zoo.tasks.finetuning import CLASSIFIER_RUN, PRETRAIN_RUN, encoder_run, load_encoder_run, start_settings  # noqa: E402
from transformers_zoo.tasks.mlm import MASK_TEXT, fill_mask  # noqa: E402
from transformers_zoo.tasks.pretraining import PretrainSettings, prepare_pretrain, prepare_pretrain_task, pretrain_model  # noqa: E402
from transformers_zoo.tasks.pretraining_gain import gain_report  # noqa: E402
from transformers_zoo.training.distributed import is_main  # noqa: E402

NAME, FAMILY, DEFAULT_PRESET, SETTINGS, PROG = "mlm", "encoder_only", "cpu", PretrainSettings, "recipes/mlm.py pretrain"
prepare = prepare_pretrain

# Pre-training without dropout: a short budget under-fits a large corpus rather than over-fitting it (Geiping &
# Goldstein 2023); the fine-tuning runs put it back. The model is the classifier's, so fine-tuning fits it.
TRAIN = dict(lr=1e-3, schedule="cosine", warmup_steps=160, min_lr_ratio=0.1, max_steps=3200, max_minutes=34.0,
             weight_decay=0.01, betas=[0.9, 0.98], eps=1e-6, grad_clip=1.0, eval_every=200, save_every=200,
             log_every=20, best_metric="val_loss", best_mode="min", keep_last=1)
# corpus: "imdb" (its train + unsup reviews), "sst2" (its training phrases) or "file" (--text); packed into
# blocks of block_len tokens, batch_blocks of them a step.
DATA = dict(corpus="imdb", tokenizer="unigram", pretokenize="ptb", vocab=8000, tokenizer_sentences=200_000,
            block_len=128, batch_blocks=32, eval_batch_tokens=8192, mlm_probability=0.3, heldout_fraction=0.005,
            max_documents=None, max_eval_blocks=400, contamination_n=8)
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model": dict(cls.PRESETS["tiny"]["model"], dropout=0.0),  # seconds: a few hundred reviews
             "train": dict(TRAIN, max_steps=12, warmup_steps=2, eval_every=6, save_every=6, log_every=3,
                           max_minutes=None),
             "data": dict(DATA, tokenizer="bpe", vocab=400, block_len=64, batch_blocks=8, max_documents=300,
                          heldout_fraction=0.05, max_eval_blocks=40)},
    # 2 cores with AMX (bf16): 2,200 steps of 64 blocks (~18M block positions, ~40 minutes; the cosine decay
    # completes), then 2 seeds x (fine-tune + from scratch), ~3.5 minutes each; every stage in bf16 ("amp").
    # The budget is steps, so the figures do not depend on the machine's speed; the wall-clock cap is a safety
    # net that the report flags when it fires.
    "cpu": {"model": dict(cls.PRESETS["cpu"]["model"], dropout=0.0),
            "train": dict(TRAIN, max_steps=2200, max_minutes=120.0, amp="bf16"), "data": dict(DATA, batch_blocks=64),
            "finetune_seeds": 2, "amp": "bf16"},
    # one large GPU: 8 layers x 512, 16k vocabulary (~30M parameters), 256 blocks a step, 12k steps (~390M tokens)
    "gpu": {"model": dict(cls.PRESETS["gpu"]["model"], dropout=0.0),
            "train": dict(TRAIN, max_steps=12000, warmup_steps=600, max_minutes=60.0, lr=7e-4, eval_every=1000,
                          save_every=1000, log_every=100),
            "data": dict(DATA, vocab=16000, batch_blocks=256, eval_batch_tokens=32768, max_eval_blocks=2000)},
}
PRETRAIN_ONLY = ("data__corpus", "data__text", "data__block_len", "data__batch_blocks", "data__mlm_probability")
VOCAB = ("data__vocab", "data__tokenizer", "data__pretokenize")  # both the pre-training and from scratch
BUDGETS = ("max_steps", "max_minutes", "train__max_epochs", "pretrain_steps", "pretrain_minutes")


def run_kind(saved: dict | None) -> RunKind:
    return encoder_run(saved, default=PRETRAIN_RUN)


def add_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("pre-training data")
    cli.add_vocab_args(data)
    data.add_argument("--corpus", dest="data__corpus", choices=["imdb", "sst2"], default=None,
                      help="pre-training text: imdb = IMDB's 75k train + unsup reviews (never its test reviews), "
                           "sst2 = SST-2's training phrases (preset: imdb)")
    data.add_argument("--text", dest="data__text", type=cli.absolute, default=None, metavar="FILE",
                      help="pre-train on your own text instead: a .jsonl(.gz) file of documents ({\"text\": ...} a "
                           "line) or a text file, one document a line; a deterministic share is held out")
    for flag, tp, help_ in (("--block-len", int, "block length in tokens (preset: cpu 128)"),
                            ("--batch-blocks", int, "blocks per step (preset: cpu 64)"),
                            ("--mlm-probability", float, "share of the real tokens masked (preset: cpu 0.3)")):
        data.add_argument(flag, dest="data__" + flag[2:].replace("-", "_"), type=tp, default=None, help=help_)


def settings(args: argparse.Namespace) -> PretrainSettings:
    tree = {key: PRESETS[args.preset][key] for key in ("model", "train", "data")}
    return cli.preset_settings(sys.modules[__name__], args, tree)


def add_finetune_flags(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    cli.add_vocab_args(data)
    cli.add_labelled_data_args(data, sorted(cls.TASKS), start=True)


def finetune_settings(args: argparse.Namespace, stage: str | None = None) -> cls.ClassifySettings:
    """`mlm.py finetune`'s settings (as classify.py's); with ``stage``, the one command's ``stage`` runs' (their
    start comes once pre-training is done)."""
    tree = cls.classifier_tree(args.preset, args.data__task, stage or ("finetune" if args.init else "scratch"))
    s = cli.preset_settings(FINETUNE, args, tree)
    return s if stage else start_settings(s, cli.given_fields(args, cls.ClassifySettings))


FINETUNE = SimpleNamespace(  # `mlm.py finetune`: recipes/classify.py's runs
    NAME="mlm", PROG="recipes/mlm.py finetune", FAMILY=FAMILY, DEFAULT_PRESET="cpu", PRESETS=cls.PRESETS,
    SETTINGS=cls.ClassifySettings, add_flags=add_finetune_flags, settings=finetune_settings,
    prepare=CLASSIFIER_RUN.prepare, run_kind=encoder_run, __doc__="Fine-tune a pre-trained encoder (--init) or train "
    "it from scratch: recipes/classify.py.")


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
        pre_only = dest in PRETRAIN_ONLY or dest in ("pretrain_lr", "pretrain_steps", "pretrain_minutes")
        if stage == "pretrain" and (dest.startswith("data__") and dest not in PRETRAIN_ONLY + VOCAB
                                    or dest.startswith("train__") and dest != "train__amp") or stage != "pretrain" and pre_only:
            values[dest] = None
    if stage == "pretrain":
        values.update(max_steps=args.pretrain_steps, max_minutes=args.pretrain_minutes, train__lr=args.pretrain_lr)
    return argparse.Namespace(**values)


def new_plans(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage's settings (the fine-tuning's start comes once pre-training is done), from the preset (whose
    "amp" is every stage's) and the command line."""
    if args.train__amp is None:
        args.train__amp = PRESETS[args.preset].get("amp")
    return {"pretrain": settings(stage_args(args, "pretrain")),
            **{stage: finetune_settings(stage_args(args, stage), stage) for stage in ("finetune", "scratch")}}


def all_runs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Pre-train, fine-tune from it and train from scratch with the same budget (each with every seed), compare.
    A new run checks the data of every stage (and trains its tokenizers) before its first step; a resumed one
    refuses any setting but the budgets before anything runs, then continues the stage that was interrupted."""
    prepared: dict[str, Any] = {}
    if args.resume:
        parent = runs.run_dir_of(args.resume)
        saved = runs.read_run_config(parent)
        if saved.get("stage") != "all":
            raise ValueError(f"--resume {args.resume}: not a run of 'recipes/mlm.py' without subcommand; resume it "
                             f"with 'recipes/mlm.py {saved.get('stage')} --resume'")
        refused = [cli.flag_of(parser, cli.field_path(d) or d) for d, v in vars(args).items() if v is not None and
                   ("__" in d or d in ("pretrain_lr", "finetune_seeds")) and d not in BUDGETS]
        refused = ["--preset"] * ("preset" in getattr(args, "_given", ())) + refused
        if refused or ("seed" in getattr(args, "_given", ()) and args.seed != saved["plans"]["finetune"]["train"]["seed"]):
            raise ValueError(f"{', '.join(refused) or f'--seed {args.seed}'}: a resumed run keeps the settings it was "
                             "started with (only --max-steps, --max-minutes, --max-epochs and --pretrain-steps/-minutes"
                             " may change); start a new run to change them")
        kinds = {"pretrain": PRETRAIN_RUN, "finetune": CLASSIFIER_RUN, "scratch": CLASSIFIER_RUN}
        plans = {name: kinds[name].SETTINGS.from_dict(plan) for name, plan in saved["plans"].items()}
        preset, seeds = saved["preset"], [tuple(r) for r in saved["runs"]]
    else:
        plans, preset = new_plans(args), args.preset
        n = args.finetune_seeds or PRESETS[preset].get("finetune_seeds", 1)
        if n < 1:
            raise ValueError(f"--finetune-seeds must be >= 1, got {n}")
        seeds = [(stage if k == 0 else f"{stage}-seed{args.seed + k}", stage, args.seed + k)
                 for k in range(n) for stage in ("finetune", "scratch")]
        prepared["pretrain"] = prepare_pretrain_task(plans["pretrain"].data, args.data_dir, contamination=True)
        CLASSIFIER_RUN.prepare(plans["scratch"], pipeline.Context(Path(args.out or "."), data_dir=args.data_dir))
        parent = runs.new_run_dir(args.out, NAME, preset)
        if is_main():
            runs.write_json(parent / "config.json", {"recipe": NAME, "stage": "all", "preset": preset, "runs": seeds,
                                                     "plans": {k: s.to_dict() for k, s in plans.items()}})
    reports: dict[str, dict[str, Any]] = {}
    for name, stage, seed in [("pretrain", "pretrain", None), *seeds]:
        run_dir = parent / name
        if (run_dir / "report.json").is_file():
            print(f"{name}: done already ({run_dir / 'report.json'})", file=sys.stderr)
            reports[name] = json.loads((run_dir / "report.json").read_text())
            continue
        resumed = (run_dir / "config.json").is_file()  # interrupted: its own config.json says what it was
        kind = encoder_run(runs.read_run_config(run_dir) if resumed else {"stage": stage})
        if resumed:
            s = cli.resumed_settings(parser, stage_args(args, stage), pipeline.settings_of(kind, runs.read_run_config(run_dir)))
        elif stage == "pretrain":
            s, task = plans["pretrain"], prepared.pop("pretrain", None)
            kind = kind if task is None else RunKind(NAME, FAMILY, SETTINGS, lambda s, ctx: (task, pretrain_model(s, task)))
        else:
            init = {"init": str(parent / "pretrain")} if stage == "finetune" else {}
            s = start_settings(plans[stage].merged({"train.seed": seed, **init}), {})
        reports[name] = pipeline.train(kind, s, pipeline.Context(run_dir, resumed, args.data_dir))
    if is_main():
        gain_report(parent, {"preset": preset, "plans": {k: s.to_dict() for k, s in plans.items()}}, reports, seeds, NAME)


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
    _, _, tokenizer, model = load_encoder_run(args.checkpoint, "pretrain")
    model.to(cli.resolve_device(args.device))
    fills = [fill_mask(model, tokenizer, text, args.top_k) for text in args.texts]  # every text checked first
    for text, masks in zip(args.texts, fills, strict=True):
        print(text)
        for i, candidates in enumerate(masks, start=1):
            for rank, (piece, prob) in enumerate(candidates, start=1):
                print(f"  mask {i}  {rank}. {piece}\t{prob:.4f}")
    return 0


ONE = SimpleNamespace(  # the command without subcommand: pre-training, then the fine-tuning runs and the comparison
    NAME=NAME, PROG="recipes/mlm.py", FAMILY=FAMILY, DEFAULT_PRESET=DEFAULT_PRESET, PRESETS=PRESETS, SETTINGS=SETTINGS,
    add_flags=add_all_flags, run_kind=run_kind, train_runs=all_runs, __doc__=__doc__,
    COMMANDS={"fill": fill_main, "predict": lambda argv: cli.predict_main(argv, "recipes/mlm.py predict")})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    recipe = {"pretrain": sys.modules[__name__], "finetune": FINETUNE}.get(argv[0] if argv else "")
    return cli.recipe_main(recipe, argv[1:]) if recipe else cli.recipe_main(ONE, argv)


if __name__ == "__main__":
    cli.main_guard(main)
