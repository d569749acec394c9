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
word 8-gram with the corpus.
Presets: tiny (seconds), cpu (2 cores, within an hour: 4 layers x 256, rope, pre-norm), gpu (one large GPU:
BERT-medium's shape, an hour). Measured figures are in the README.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from recipes import classify  # noqa: E402  (the classification recipe: fine-tuning and from-scratch runs)
from transformers_zoo import EncoderOnly, ModelConfig, cli, runs  # noqa: E402
from transformers_zoo.tasks import finetuning  # noqa: E402
from transformers_zoo.tasks.base import device_of, fit  # noqa: E402
from transformers_zoo.tasks.classification import load_task_data  # noqa: E402
from transformers_zoo.tasks.mlm import MASK_TEXT, fill_mask  # noqa: E402
from transformers_zoo.tasks.pretraining import contamination_line, prepare_pretrain_task, sample_fills  # noqa: E402
from transformers_zoo.tokenizers import Tokenizer, load_tokenizer  # noqa: E402
from transformers_zoo.training import TrainConfig, load_checkpoint, plot_curves, write_report  # noqa: E402
from transformers_zoo.training.distributed import is_main  # noqa: E402

RECIPE, log = classify.RECIPE, classify.log

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
    "tiny": {"model": dict(classify.PRESETS["tiny"]["model"], dropout=0.0),  # seconds: a few hundred reviews
             "train": dict(TRAIN, max_steps=12, warmup_steps=2, eval_every=6, save_every=6, log_every=3,
                           max_minutes=None),
             "data": dict(DATA, tokenizer="bpe", vocab=400, block_len=64, batch_blocks=8, max_documents=300,
                          heldout_fraction=0.05, max_eval_blocks=40)},
    # 2 cores with AMX (bf16): 2,200 steps of 64 blocks (~18M block positions, ~40 minutes; the cosine decay
    # completes), then 2 seeds x (fine-tune + from scratch), ~3.5 minutes each; every stage in bf16 ("amp").
    # The budget is steps, so the figures do not depend on the machine's speed; the wall-clock cap is a safety
    # net that the report flags when it fires.
    "cpu": {"model": dict(classify.PRESETS["cpu"]["model"], dropout=0.0),
            "train": dict(TRAIN, max_steps=2200, max_minutes=120.0, amp="bf16"), "data": dict(DATA, batch_blocks=64),
            "finetune_seeds": 2, "amp": "bf16"},
    # one large GPU: 8 layers x 512, 16k vocabulary (~30M parameters), 256 blocks a step, 12k steps (~390M tokens)
    "gpu": {"model": dict(classify.PRESETS["gpu"]["model"], dropout=0.0),
            "train": dict(TRAIN, max_steps=12000, warmup_steps=600, max_minutes=60.0, lr=7e-4, eval_every=1000,
                          save_every=1000, log_every=100),
            "data": dict(DATA, vocab=16000, batch_blocks=256, eval_batch_tokens=32768, max_eval_blocks=2000)},
}


def make_parser(mode: str) -> argparse.ArgumentParser:
    """The flags of "all" (no subcommand: the pre-training flags, then the fine-tuning runs') or "pretrain"."""
    parser = argparse.ArgumentParser(prog="recipes/mlm.py" + (" pretrain" if mode == "pretrain" else ""),
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_common_args(parser, PRESETS, default_preset="cpu", family="encoder_only")
    data = parser.add_argument_group("pre-training data")
    cli.add_vocab_args(data)
    data.add_argument("--corpus", choices=["imdb", "sst2"], default=None,
                      help="pre-training text: imdb = IMDB's 75k train + unsup reviews (never its test reviews), "
                           "sst2 = SST-2's training phrases (preset: imdb)")
    data.add_argument("--text", default=None, metavar="FILE",
                      help="pre-train on your own text instead: a .jsonl(.gz) file of documents ({\"text\": ...} a "
                           "line) or a text file, one document a line; a deterministic share is held out")
    data.add_argument("--block-len", type=int, default=None, help="block length in tokens (preset: cpu 128)")
    data.add_argument("--batch-blocks", type=int, default=None, help="blocks per step (preset: cpu 32)")
    data.add_argument("--mlm-probability", type=float, default=None,
                      help="share of the real tokens masked (preset: cpu 0.3)")
    if mode == "all":
        cli.add_labelled_data_args(parser.add_argument_group("fine-tuning data"), sorted(classify.TASKS))
        pre = parser.add_argument_group("pre-training budget (the training flags shape the fine-tuning runs; "
                                        "--amp every stage)")
        pre.add_argument("--pretrain-steps", type=int, default=None, help="pre-training optimizer steps")
        pre.add_argument("--pretrain-minutes", type=float, default=None, help="pre-training minutes")
        pre.add_argument("--pretrain-lr", type=float, default=None, help="pre-training peak learning rate")
        pre.add_argument("--finetune-seeds", type=int, default=None, metavar="N",
                         help="fine-tune and train from scratch with N seeds (--seed, --seed+1, ...), report mean "
                              "and spread (preset: cpu 2)")
    return parser


def plan(args: argparse.Namespace, in_all: bool = False) -> dict[str, Any]:
    """Model, training and data settings of a pre-training run; in the one command (``in_all``) its budgets
    are the --pretrain-* flags, the training flags being the fine-tuning runs'."""
    preset = copy.deepcopy(PRESETS[args.preset])
    given = {key: getattr(args, flag) for flag, key in (("pretrain_steps", "max_steps"), ("pretrain_minutes",
             "max_minutes"), ("pretrain_lr", "lr")) if getattr(args, flag) is not None} if in_all else None
    data = cli.tokenizer_settings(preset["data"], args)
    data["text"] = cli.absolute(args.text)
    data["corpus"] = "file" if data["text"] else args.corpus or data["corpus"]
    data.update({k: getattr(args, k) for k in ("block_len", "batch_blocks", "mlm_probability")
                 if getattr(args, k) is not None})
    if not 0.0 < data["mlm_probability"] < 1.0:
        raise ValueError(f"--mlm-probability must be in (0, 1), got {data['mlm_probability']}")
    model = {**preset["model"], **cli.overrides(args, "model__")}
    return {"model": model, "train": cli.train_settings(preset["train"], args, given), "data": data}


def prepare(plan_: dict[str, Any], data_dir: str | None, tokenizer: Tokenizer | None = None) -> classify.Job:
    """The pre-training job: settings checked first, then the corpus read, split, tokenized (a tokenizer trained
    unless given: a resume) and packed, and its overlap with SST-2's evaluation sentences measured."""
    train_cfg = TrainConfig.from_dict(plan_["train"])
    ModelConfig.from_dict(dict(plan_["model"], vocab_size=plan_["data"]["vocab"], n_classes=0))
    task = prepare_pretrain_task(plan_["data"], data_dir, plan_["model"]["max_len"], tokenizer, contamination=True)
    tok = task.tokenizer
    cfg = ModelConfig.from_dict(dict(plan_["model"], vocab_size=tok.vocab_size, pad_id=tok.pad_id, n_classes=0))
    return classify.Job(plan_, "pretrain", task, cfg, train_cfg)


def run_pretrain(job: classify.Job, run_dir: Path, preset: str, resume: bool = False) -> dict[str, Any]:
    """Train (or continue) a pre-training run in ``run_dir``; evaluate its best checkpoint; write the report."""
    task, cfg, tok = job.task, job.model_cfg, job.task.tokenizer
    config = {"recipe": RECIPE, "stage": "pretrain", "preset": preset, "model": cfg.to_dict(),
              "train": job.train_cfg.to_dict(), "data": job.plan["data"], "tokenizer_fingerprint": tok.fingerprint,
              "data_source": task.source}
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            tok.save(run_dir / "tokenizer")
        runs.write_json(run_dir / "config.json", config)
    log(f"pretrain: {task.source}; {tok.settings.get('model_type')} vocabulary {tok.vocab_size:,}")
    if task.contamination:
        log("contamination: " + contamination_line(task.contamination))
    torch.manual_seed(job.train_cfg.seed)
    model = EncoderOnly(cfg)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: EncoderOnly, {params:,} parameters -> {run_dir}")
    stream = task.train_stream(job.train_cfg.seed)
    summary = fit(task, model, job.train_cfg, run_dir, runs.fingerprint(cfg, tok), stream=stream)
    if not is_main():
        return {}
    model = EncoderOnly(cfg).to(device_of(model))
    manifest = load_checkpoint(run_dir, model)  # the best
    val = task.evaluate(model, "val")
    report = {"recipe": RECIPE, "stage": "pretrain", "config": config, "params": params, "wall_s": summary["wall_s"],
              "train_tokens_per_s": summary["train_tokens_per_s"] * stream.tokens_per_unit(),
              "train_masked_tokens_per_s": summary["train_tokens_per_s"], "best_step": summary["best_step"],
              "steps": summary["steps"], "stopped": summary["stopped"], "checkpoint": manifest["path"],
              "eval": {"val": val}, "fills": sample_fills(model, tok, task.heldout_texts),
              "contamination": task.contamination}
    write_report(run_dir, report, task.report_sections(model, run_dir), [p.name for p in plot_curves(run_dir)])
    log(f"pretrain done: {run_dir}  val masked accuracy {val['masked_accuracy']:.4f}  ppl {val['ppl']:.2f}")
    return report


def resume_pretrain(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    saved = runs.read_run_config(run_dir)
    job = prepare(classify.resume_plan(saved, args), args.data_dir, load_tokenizer(run_dir / "tokenizer"))
    return run_pretrain(job, run_dir, saved["preset"], resume=True)


def pretrain_main(args: argparse.Namespace) -> int:
    cli.setup_run(args)
    if args.resume:
        resume_pretrain(runs.run_dir_of(args.resume), args)
    else:
        run_pretrain(prepare(plan(args), args.data_dir), runs.new_run_dir(args.out, f"{RECIPE}-pretrain", args.preset),
                     args.preset)
    return 0


# ------------------------------------------------------------- the one command: pretrain, finetune, scratch


def seed_runs(preset: str, seed: int, n_seeds: int | None) -> list[tuple[str, str, int]]:
    """``(directory, stage, seed)`` of the fine-tuning and from-scratch runs: the first seed's are ``finetune/``
    and ``scratch/``, further seeds' ``finetune-seed{S}/`` and ``scratch-seed{S}/``."""
    n = n_seeds or PRESETS[preset].get("finetune_seeds", 1)
    if n < 1:
        raise ValueError(f"--finetune-seeds must be >= 1, got {n}")
    return [(stage if k == 0 else f"{stage}-seed{seed + k}", stage, seed + k)
            for k in range(n) for stage in ("finetune", "scratch")]


def resume_args(args: argparse.Namespace, pretrain: bool = False) -> argparse.Namespace:
    """The flags one stage's resume reads: the pre-training's budgets are --pretrain-steps/-minutes, and each
    stage keeps its own seed (--seed was checked against the base seed once, in all_main)."""
    values = dict(vars(args), _given=set(getattr(args, "_given", ())) - {"seed"})
    if pretrain:
        values.update(max_steps=args.pretrain_steps, max_minutes=args.pretrain_minutes, train__max_epochs=None)
    return argparse.Namespace(**values)


def all_main(args: argparse.Namespace) -> int:
    """Pre-train, fine-tune from it and train from scratch with the same budget (each with every seed), compare.
    A new run checks everything (the data of every stage, tokenizers, settings) before its first step."""
    cli.setup_run(args)
    if args.train__amp is None and not args.resume:  # the preset's precision of every stage
        args.train__amp = PRESETS[args.preset].get("amp")
    pre_job = data = scratch = None
    if args.resume:
        parent = runs.run_dir_of(args.resume)
        saved = runs.read_run_config(parent)
        if saved.get("stage") != "all":
            raise ValueError(f"--resume {args.resume}: not a run of 'recipes/mlm.py' without subcommand; resume it "
                             f"with 'recipes/mlm.py {saved.get('stage')} --resume'")
        plans, preset, seeds = saved["plans"], saved["preset"], [tuple(r) for r in saved["runs"]]
        runs.resume_train_settings(plans["finetune"]["train"], args, classify.RESUME_FIXED)  # refused before any stage
    else:
        plans = {"pretrain": plan(args, in_all=True), "finetune": classify.plan(args, "finetune"),
                 "scratch": classify.plan(args, "scratch")}
        preset, seeds = args.preset, seed_runs(args.preset, args.seed, args.finetune_seeds)
        TrainConfig.from_dict(plans["finetune"]["train"])
        data = load_task_data(plans["finetune"]["data"], args.data_dir)
        pre_job = prepare(plans["pretrain"], args.data_dir)
        scratch = classify.start_of(plans["scratch"], data)
        classify.prepare(plans["scratch"], "scratch", data, scratch)
        parent = runs.new_run_dir(args.out, RECIPE, args.preset)
        if is_main():
            runs.write_json(parent / "config.json", {"recipe": RECIPE, "stage": "all", "preset": preset,
                                                     "plans": plans, "runs": seeds})
    reports: dict[str, dict[str, Any]] = {}
    for name, stage, seed in [("pretrain", "pretrain", None), *seeds]:
        run_dir = parent / name
        if (run_dir / "report.json").is_file():
            log(f"{name}: done already ({run_dir / 'report.json'})")
            reports[name] = json.loads((run_dir / "report.json").read_text())
        elif (run_dir / "config.json").is_file():  # interrupted: its own config.json says what it was
            reports[name] = (resume_pretrain(run_dir, resume_args(args, pretrain=True)) if stage == "pretrain"
                             else classify.resume(run_dir, resume_args(args)))
        elif stage == "pretrain":
            reports[name] = run_pretrain(pre_job or prepare(plans["pretrain"], args.data_dir), run_dir, preset)
        else:
            plan_ = plans[stage] if seed is None else dict(plans[stage], train=dict(plans[stage]["train"], seed=seed))
            data = data or load_task_data(plan_["data"], args.data_dir)
            if stage == "finetune":
                start = classify.start_of(plan_, data, parent / "pretrain")
            else:  # one tokenizer for every seed's run from scratch
                start = scratch = scratch or classify.start_of(plan_, data)
            reports[name] = classify.run(classify.prepare(plan_, stage, data, start), run_dir, preset)
    if is_main():
        finetuning.gain_report(parent, {"preset": preset, "plans": plans}, reports, seeds, RECIPE)
    return 0


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
    _, _, tokenizer, model = finetuning.load_encoder_run(args.checkpoint, "pretrain", RECIPE)
    model.to(cli.resolve_device(args.device))
    fills = [fill_mask(model, tokenizer, text, args.top_k) for text in args.texts]  # every text checked first
    for text, masks in zip(args.texts, fills, strict=True):
        print(text)
        for i, candidates in enumerate(masks, start=1):
            for rank, (piece, prob) in enumerate(candidates, start=1):
                print(f"  mask {i}  {rank}. {piece}\t{prob:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else None
    if command == "finetune":
        return classify.main(argv[1:], "recipes/mlm.py finetune")
    if command == "predict":
        return classify.main(argv, "recipes/mlm.py")
    if command == "fill":
        return fill_main(argv[1:])
    mode = "pretrain" if command == "pretrain" else "all"
    args = make_parser(mode).parse_args(argv[1:] if mode == "pretrain" else argv)
    if args.eval_only:
        return classify.eval_only(args)
    return pretrain_main(args) if mode == "pretrain" else all_main(args)


if __name__ == "__main__":
    cli.main_guard(main)
