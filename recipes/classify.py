#!/usr/bin/env python
"""Classification recipe: fine-tune a pre-trained encoder under a new head, or train it from scratch; test once.

    python recipes/classify.py --init RUN_DIR                # SST-2, from a run of recipes/mlm.py pretrain
    python recipes/classify.py                               # the same model and budget, from scratch
    python recipes/classify.py --init RUN_DIR --task imdb    # IMDB's reviews (test: its 25k test reviews)
    python recipes/classify.py --train-tsv t.tsv --test-tsv e.tsv --label-column topic   # your own data
    python recipes/classify.py --init hf:bert-base-uncased   # a Hugging Face BERT with its own WordPiece
    python recipes/classify.py predict --checkpoint RUN_DIR "a gorgeous, witty film"
    python recipes/classify.py --eval-only --checkpoint RUN_DIR

`recipes/mlm.py finetune` and `mlm.py predict` are these commands; `recipes/mlm.py` alone pre-trains, runs
both starts and compares them. The encoder is mean-pooled (MLM never trains the [CLS] vector) under a
linear head; the checkpoint with the best validation accuracy is kept. SST-2's test set is dev.tsv, its
validation 872 whole training sentences whose phrases all leave training. --task imdb trains at 256 tokens,
keeping the head and tail of a long review (Sun et al. 2019). From scratch, a sentencepiece vocabulary is
trained on the train texts. --init hf:PATH builds BertForSequenceClassification's model: its pooler, ids.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import EncoderOnly, ModelConfig, cli, runs  # noqa: E402
from transformers_zoo.tasks import finetuning  # noqa: E402
from transformers_zoo.tasks.base import Task, device_of, fit  # noqa: E402
from transformers_zoo.tasks.classification import (  # noqa: E402
    LabelledData,
    encode_examples,
    load_task_data,
    predict_proba,
    prepare_classification_task,
)
from transformers_zoo.tasks.mlm import train_sentencepiece  # noqa: E402
from transformers_zoo.tokenizers import load_tokenizer  # noqa: E402
from transformers_zoo.training import TrainConfig, latest_checkpoint, load_checkpoint, plot_curves, write_report  # noqa: E402
from transformers_zoo.training.distributed import is_main  # noqa: E402
from transformers_zoo.viz import plot_val_curves  # noqa: E402

RECIPE = "mlm"  # the encoder-only family's runs, whatever their stage: "pretrain", "finetune" or "scratch"

MODEL = dict(d_model=256, n_heads=4, n_layers=4, d_ff=1024, max_len=128, dropout=0.1, attention_dropout=0.0,
             positional="rope", norm="layernorm", norm_first=True, ffn="gelu", bias=True, tie_embeddings=True,
             pooling="mean")
TRAIN = dict(lr=2e-4, schedule="cosine", warmup_steps=60, min_lr_ratio=0.0, max_steps=1200, max_minutes=13.0,
             weight_decay=0.01, betas=[0.9, 0.98], eps=1e-6, grad_clip=1.0, eval_every=100, save_every=100,
             log_every=20, best_metric="val_accuracy", best_mode="max", patience=4, find_unused_parameters=True,
             keep_last=1)
DATA = dict(task="sst2", tokenizer="unigram", pretokenize="ptb", vocab=8000, batch_tokens=1024, max_sentences=64,
            eval_batch_tokens=8192, val_fraction=0.1, token_mask=0.0, truncation="head", max_examples=None,
            max_eval_examples=None)
# --task imdb: whole reviews (median ~230 words) at twice the pre-training length, fewer, longer batches and
# evaluations (validation is 2,500 reviews, test 25,000).
TASKS = {"sst2": {}, "imdb": {"model": dict(max_len=256),
                              "data": dict(truncation="head_tail", batch_tokens=4096, max_sentences=16),
                              "train": dict(max_steps=1500, warmup_steps=100, eval_every=300, save_every=300,
                                            max_minutes=30.0, patience=None)}}
# From scratch nothing pre-trained is to be preserved: a fresh transformer wants a larger learning rate.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model": dict(MODEL, d_model=32, n_heads=2, n_layers=2, d_ff=64),  # seconds, a few thousand phrases
             "train": dict(TRAIN, max_steps=12, warmup_steps=2, eval_every=6, save_every=6, log_every=3,
                           max_minutes=None, patience=None, lr=1e-3),
             "data": dict(DATA, tokenizer="bpe", vocab=400, max_examples=1500, max_eval_examples=100),
             "scratch": dict(lr=1e-3)},
    "cpu": {"model": MODEL, "train": TRAIN, "data": DATA, "scratch": dict(lr=5e-4)},  # ~3.5 min a run on 2 cores
    "gpu": {"model": dict(MODEL, d_model=512, n_heads=8, n_layers=8, d_ff=2048),  # BERT-medium's shape
            "train": dict(TRAIN, max_steps=4000, warmup_steps=200, max_minutes=30.0, lr=5e-5, eval_every=250,
                          save_every=250, log_every=50, patience=6),
            "data": dict(DATA, batch_tokens=2048, max_sentences=32), "scratch": dict(lr=3e-4)},
}
# Flags (dests) a resume cannot change (runs.resume_train_settings refuses them): the data and the start.
RESUME_FIXED = ("vocab", "tokenizer", "pretokenize", "batch_tokens", "corpus", "text", "block_len",
                "batch_blocks", "mlm_probability", "task", "tsv_train", "tsv_valid", "tsv_test", "text_column",
                "label_column", "token_mask", "init", "tokenizer_from", "pretrain_lr", "finetune_seeds")


# ------------------------------------------------------------------------------------------- flags, settings


def make_parser(prog: str = "recipes/classify.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_common_args(parser, PRESETS, default_preset="cpu", family="encoder_only")
    data = parser.add_argument_group("data")
    cli.add_vocab_args(data)
    cli.add_labelled_data_args(data, sorted(TASKS))
    data.add_argument("--init", default=None, metavar="RUN_DIR|hf:PATH",
                      help="pre-training run to start from, or hf:PATH, a Hugging Face BERT checkpoint directory (or "
                           "Hub name) with its vocab.txt (without it: from scratch)")
    data.add_argument("--tokenizer-from", default=None, metavar="DIR",
                      help="a run (or tokenizer folder) whose tokenizer to use; with --init it must be the "
                           "pre-training run's")
    return parser


def plan(args: argparse.Namespace, stage: str) -> dict[str, Any]:
    """Model, training and data settings of a "finetune" or "scratch" run: preset, task, command line."""
    preset = copy.deepcopy(PRESETS[args.preset])
    name = args.task or preset["data"]["task"]
    task = TASKS[name]
    train = {**preset["train"], **task.get("train", {}), **(preset["scratch"] if stage == "scratch" else {})}
    data = cli.tokenizer_settings(preset["data"], args)
    data.update(task.get("data", {}), task=name)
    if args.batch_tokens is not None:
        data["batch_tokens"] = args.batch_tokens
    if args.token_mask is not None:
        if not 0.0 <= args.token_mask < 1.0:
            raise ValueError(f"--token-mask must be in [0, 1), got {args.token_mask}")
        data["token_mask"] = args.token_mask
    data.update(train_tsv=cli.absolute(args.tsv_train), valid_tsv=cli.absolute(args.tsv_valid),
                test_tsv=cli.absolute(args.tsv_test), text_column=args.text_column or "sentence",
                label_column=args.label_column or "label")
    model = {**preset["model"], **task.get("model", {}), **cli.overrides(args, "model__")}
    return {"model": model, "train": cli.train_settings(train, args), "data": data}


def log(message: str) -> None:
    if is_main():
        print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- a run: start, data, model, train


@dataclass
class Job:
    """Everything a run needs, built and checked before its run directory exists."""

    plan: dict[str, Any]
    stage: str
    task: Task
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    init: Path | str | None = None


def start_of(plan: dict[str, Any], data: LabelledData, init: str | Path | None = None,
             tokenizer_from: str | None = None, cli_model: dict[str, Any] | None = None) -> finetuning.Start:
    """The pre-trained encoder of ``init`` with its tokenizer, or the plan's model with a tokenizer of its own
    (``tokenizer_from``'s, or one trained on the train texts)."""
    if init is not None:
        return finetuning.start_from(init, plan["model"], cli_model or {}, data.n_classes, tokenizer_from)
    if tokenizer_from is not None:
        tok = load_tokenizer(finetuning.tokenizer_dir(tokenizer_from))
    else:
        texts = [t for t, _ in data.splits["train"]]
        tok = train_sentencepiece(texts, *(plan["data"].get(k) for k in ("tokenizer", "vocab", "pretokenize")))
    model = dict(plan["model"], vocab_size=tok.vocab_size, pad_id=tok.pad_id, n_classes=data.n_classes)
    return finetuning.Start(tok, model)


def prepare(plan: dict[str, Any], stage: str, data: LabelledData, start: finetuning.Start) -> Job:
    tok = start.tokenizer
    if start.init is not None:  # the run's data settings name the tokenizer it reads
        plan = dict(plan, data=dict(plan["data"], **finetuning.tokenizer_data(tok)))
    cfg = ModelConfig.from_dict(start.model)
    task = prepare_classification_task(data, tok, plan["data"], cfg.max_len)
    return Job(plan, stage, task, cfg, TrainConfig.from_dict(plan["train"]), start.init)


def run(job: Job, run_dir: Path, preset: str, resume: bool = False) -> dict[str, Any]:
    """Train (or continue) a classifier in ``run_dir``; evaluate its best checkpoint; write the report."""
    task, cfg, tok, names = job.task, job.model_cfg, job.task.tokenizer, job.task.data.label_names
    config = {"recipe": RECIPE, "stage": job.stage, "preset": preset, "model": cfg.to_dict(),
              "train": job.train_cfg.to_dict(), "data": job.plan["data"], "tokenizer_fingerprint": tok.fingerprint,
              "labels": names, "data_sources": task.data.sources,
              "init_checkpoint": None if job.init is None else str(job.init)}
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            tok.save(run_dir / "tokenizer")
        runs.write_json(run_dir / "labels.json", names)
        runs.write_json(run_dir / "config.json", config)
    log(f"{job.stage}: {len(names)} classes {names[:10]}; examples: "
        + ", ".join(f"{s} {len(e):,}" for s, e in task.encoded.items()))
    for note in task.notes:
        log(f"note: {note}")
    torch.manual_seed(job.train_cfg.seed)
    fresh = not (resume and latest_checkpoint(run_dir) is not None)  # a resumed run has weights of its own
    model, how = finetuning.initial_classifier(cfg, job.init if fresh else None)
    if fresh:
        log(how)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: EncoderOnly + {cfg.pooling} pooling + linear head, {params:,} parameters -> {run_dir}")
    stream = task.train_stream(job.train_cfg.seed)
    summary = fit(task, model, job.train_cfg, run_dir, runs.fingerprint(cfg, tok, labels=list(names)), stream=stream)
    if not is_main():
        return {}
    model = EncoderOnly(cfg).to(device_of(model))
    manifest = load_checkpoint(run_dir, model)  # the best
    evals = {split: task.evaluate(model, split) for split in task.eval_splits}
    report = {"recipe": RECIPE, "stage": job.stage, "config": config, "params": params, "wall_s": summary["wall_s"],
              "train_examples_per_s": summary["train_tokens_per_s"],
              "train_tokens_per_s": summary["train_tokens_per_s"] * stream.tokens_per_unit(),
              "best_step": summary["best_step"], "steps": summary["steps"], "stopped": summary["stopped"],
              "checkpoint": manifest["path"], "labels": names, "init_checkpoint": config["init_checkpoint"],
              "eval": evals}
    images = [p.name for p in plot_curves(run_dir)]
    if plot_val_curves({job.stage: run_dir}, run_dir / "accuracy.png"):
        images.append("accuracy.png")
    write_report(run_dir, report, task.report_sections(model, run_dir), images)
    log(f"{job.stage} done: {run_dir}  " + "  ".join(
        f"{s} accuracy {m['accuracy']:.4f}" + (f" macro-F1 {m['macro_f1']:.4f}" if "macro_f1" in m else "")
        for s, m in evals.items()))
    return report


def resume_plan(saved: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A run's plan from its config.json: only the budgets (and where it runs) from the command line."""
    return {"model": saved["model"], "train": runs.resume_train_settings(saved["train"], args, RESUME_FIXED),
            "data": saved["data"]}


def resume(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    saved = runs.read_run_config(run_dir)
    plan_ = resume_plan(saved, args)
    data = load_task_data(plan_["data"], args.data_dir, saved["labels"])
    init = saved.get("init_checkpoint")
    init = init if finetuning.is_hf(init) or init is None else Path(init)
    if init is not None and latest_checkpoint(run_dir) is None and not Path(str(init).removeprefix("hf:")).is_dir():
        raise FileNotFoundError(f"{init}: the pre-trained checkpoint this run starts from is gone")
    start = finetuning.Start(load_tokenizer(run_dir / "tokenizer"), saved["model"], init)
    return run(prepare(plan_, saved["stage"], data, start), run_dir, saved["preset"], resume=True)


# ------------------------------------------------------------------------------------------------- commands


def train_main(args: argparse.Namespace) -> int:
    cli.setup_run(args)
    if args.resume:
        resume(runs.run_dir_of(args.resume), args)
        return 0
    stage = "finetune" if args.init else "scratch"
    if args.init and (args.vocab or args.tokenizer or args.pretokenize):
        raise ValueError("--vocab/--tokenizer/--pretokenize: with --init the tokenizer is the pre-training run's")
    if args.init:
        finetuning.check_init(args.init)
    plan_ = plan(args, stage)
    data = load_task_data(plan_["data"], args.data_dir)
    start = start_of(plan_, data, args.init, args.tokenizer_from, cli.overrides(args, "model__"))
    job = prepare(plan_, stage, data, start)
    run(job, runs.new_run_dir(args.out, f"{RECIPE}-{stage}", args.preset), args.preset)
    return 0


def predict_main(argv: list[str], prog: str = "recipes/classify.py predict") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Classify texts with a fine-tuned run: label, probability.")
    parser.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="fine-tuning run (or all-in-one run)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("texts", nargs="+", help="texts to classify")
    args = parser.parse_args(argv)
    _, config, tokenizer, model = finetuning.load_encoder_run(args.checkpoint, "finetune", RECIPE)
    if config["stage"] == "pretrain":
        raise ValueError(f"--checkpoint {args.checkpoint}: a pre-training run has no classifier; use 'fill', or "
                         "fine-tune it first")
    model.to(cli.resolve_device(args.device))
    encoded, _ = encode_examples(tokenizer, [(t, 0) for t in args.texts], model.config.max_len - 2)
    for text, p in zip(args.texts, predict_proba(model, encoded, 8192, device_of(model), tokenizer), strict=True):
        best = int(p.argmax())
        print(f"{config['labels'][best]}\t{float(p[best]):.4f}\t{text}")
    return 0


def eval_only(args: argparse.Namespace) -> int:
    """Evaluate a run's best checkpoint (or the checkpoint folder given) on its held-out data again."""
    if not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint RUN_DIR")
    results = finetuning.evaluate_run(args.checkpoint, args.data_dir, cli.resolve_device(args.device), RECIPE)
    for name, splits in results.items():
        for split, metrics in splits.items():
            print(f"{name} {split}: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                  for k, v in metrics.items()))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        runs.write_json(Path(args.out) / "eval.json", {"checkpoint": str(args.checkpoint), "eval": results})
    return 0


def main(argv: list[str] | None = None, prog: str = "recipes/classify.py") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "predict":
        return predict_main(argv[1:], f"{prog} predict")
    args = make_parser(prog).parse_args(argv)
    return eval_only(args) if args.eval_only else train_main(args)


if __name__ == "__main__":
    cli.main_guard(main)
