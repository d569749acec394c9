#!/usr/bin/env python
"""MLM recipe: pre-train a BERT-style encoder by masked language modelling on a real corpus, fine-tune it to
classify text, and measure what the pre-training is worth against the same model trained from scratch.

    python recipes/mlm.py                         # pretrain, then finetune and scratch (2 seeds each): one report
    python recipes/mlm.py pretrain                # MLM on IMDB's 75k train + unsup reviews, labels unused
    python recipes/mlm.py pretrain --text my.jsonl  # ... or on your documents ({"text": ...} a line, or a .txt)
    python recipes/mlm.py finetune --init RUN_DIR # classify SST-2 (--task imdb, or --train-tsv/--test-tsv)
    python recipes/mlm.py finetune                # the same model and budget, from scratch
    python recipes/mlm.py finetune --init hf:bert-base-uncased  # a Hugging Face BERT with its own WordPiece
    python recipes/mlm.py predict --checkpoint RUN_DIR "a gorgeous, witty film"
    python recipes/mlm.py fill --checkpoint RUN_DIR "the movie was [MASK] ."
    python recipes/mlm.py --eval-only --checkpoint RUN_DIR

Pre-training: the corpus is packed into blocks of whole sentences (RoBERTa's FULL-SENTENCES, [SEP] between
documents), a sentencepiece vocabulary is trained on a sample of its sentences, and a share of the real tokens
is masked afresh every batch (30% in the presets, as Wettig et al. 2022 recommend over BERT's 15%; 80% [MASK],
10% random, 10% kept); the loss is computed only at masked positions. A deterministic 0.5% of the documents
is held out and scored with a fixed mask (masked-token accuracy, perplexity). IMDB's test reviews, and any
training review that repeats one, are never pre-trained on; the report measures how many SST-2 validation
and test sentences share a word 8-gram with the pre-training text (contamination).

Fine-tuning: the pre-trained encoder and its tokenizer under a new classification head (mean pooling: MLM
never trains the [CLS] vector), the checkpoint with the best validation accuracy kept. SST-2's test set is
dev.tsv; validation is 872 whole training sentences whose phrases are all taken out of training. --task imdb
fine-tunes on IMDB's 25k train reviews (2.5k held out) at 256 tokens (head and tail of long reviews kept) and
tests on its 25k test reviews. Without --init the same architecture is trained from scratch with its own
tokenizer. With no subcommand everything runs into one directory and report.md there compares the two.
--init hf:PATH fine-tunes a Hugging Face BERT checkpoint directory (or Hub name) instead, as
BertForSequenceClassification would: its architecture, dropout and WordPiece tokenizer (vocab.txt,
tokenizer_config.json), [CLS] text [SEP] with its ids, its pooler (dense + tanh on [CLS]) and a new head.

Presets: `tiny` (seconds, smoke tests), `cpu` (2 cores, within an hour: BERT-mini's shape, 4 layers x 256,
rope, pre-norm, 30 minutes of pre-training), `gpu` (one large GPU: BERT-medium's shape, an hour). Measured
figures are in the README.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without installing
    sys.path.insert(0, str(ROOT))

from transformers_zoo import EncoderOnly, ModelConfig  # noqa: E402
from transformers_zoo.batching import IGNORE_INDEX  # noqa: E402
from transformers_zoo.cli import (  # noqa: E402
    add_common_args,
    main_guard,
    overrides,
    resolve_device,
)
from transformers_zoo.corpora import load_imdb, load_sst2, read_jsonl  # noqa: E402
from transformers_zoo.interop import hf_classifier_config, load_hf_classifier  # noqa: E402
from transformers_zoo.interop import resolve_checkpoint as resolve_hf  # noqa: E402
from transformers_zoo.runs import (  # noqa: E402
    fingerprint,
    new_run_dir,
    read_run_config,
    resume_train_settings,
    run_dir_of,
    write_json,
)
from transformers_zoo.tasks.classification import (  # noqa: E402
    LabelledData,
    classification_stream,
    classifier_from_pretrained,
    classify_loss,
    encode_examples,
    evaluate_classifier,
    load_labelled_data,
    predict_proba,
)
from transformers_zoo.tasks.mlm import (  # noqa: E402
    MASK_TEXT,
    evaluate_mlm,
    fill_mask,
    mlm_loss,
    read_sentences,
    train_sentencepiece,
)
from transformers_zoo.tasks.mlm_corpus import (  # noqa: E402
    PackedBlocks,
    ngram_overlap,
    pack_documents,
    packed_mlm_stream,
    sample_sentences,
    split_documents,
    split_sentences,
)
from transformers_zoo.tokenizers import Tokenizer, WordPieceTokenizer, load_tokenizer  # noqa: E402
from transformers_zoo.training import (  # noqa: E402
    TrainConfig,
    Trainer,
    latest_checkpoint,
    load_checkpoint,
    lr_factor,
    plot_curves,
    write_report,
)
from transformers_zoo.training.checkpoint import resolve_checkpoint, verify_checkpoint  # noqa: E402
from transformers_zoo.training.distributed import is_main  # noqa: E402
from transformers_zoo.training.metrics_log import read_metrics  # noqa: E402

RECIPE = "mlm"
STAGES = ("pretrain", "finetune", "scratch")
# Fields a fine-tuning run may change on a pre-trained encoder: they change no weight's shape or meaning.
# (max_len too, unless positions are a learned table: rope and the others are defined at any position)
FINETUNE_MODEL_FIELDS = ("pooling", "dropout", "attention_dropout", "max_len")

CPU_MODEL = dict(d_model=256, n_heads=4, n_layers=4, d_ff=1024, max_len=128, dropout=0.1, attention_dropout=0.0,
                 positional="rope", norm="layernorm", norm_first=True, ffn="gelu", bias=True, tie_embeddings=True,
                 pooling="mean")
# Pre-training without dropout: a short budget under-fits a large corpus, it does not over-fit it (as Geiping &
# Goldstein 2023 found); fine-tuning puts dropout back (FINETUNE_MODEL_FIELDS).
PRETRAIN_MODEL = dict(dropout=0.0)
PRETRAIN_TRAIN = dict(lr=1e-3, schedule="cosine", warmup_steps=160, min_lr_ratio=0.1, max_steps=3200, max_minutes=34.0,
                      weight_decay=0.01, betas=[0.9, 0.98], eps=1e-6, grad_clip=1.0, eval_every=200, save_every=200,
                      log_every=20, best_metric="val_loss", best_mode="min", keep_last=1)
# corpus: "imdb" (its train + unsup reviews), "sst2" (its training sentences) or a file (--text); the text is
# packed into blocks of block_len tokens (RoBERTa's FULL-SENTENCES), batch_blocks of them a step.
PRETRAIN_DATA = dict(corpus="imdb", tokenizer="unigram", vocab=8000, tokenizer_sentences=200_000, block_len=128,
                     batch_blocks=32, eval_batch_tokens=8192, mlm_probability=0.3, heldout_fraction=0.005,
                     max_documents=None, max_eval_blocks=400, contamination_n=8)
FINETUNE_TRAIN = dict(lr=2e-4, schedule="cosine", warmup_steps=60, min_lr_ratio=0.0, max_steps=1200, max_minutes=13.0,
                      weight_decay=0.01, betas=[0.9, 0.98], eps=1e-6, grad_clip=1.0, eval_every=100, save_every=100,
                      log_every=20, best_metric="val_accuracy", best_mode="max", patience=4,
                      find_unused_parameters=True, keep_last=1)
FINETUNE_DATA = dict(task="sst2", tokenizer="unigram", vocab=8000, batch_tokens=1024, max_sentences=64,
                     eval_batch_tokens=8192, val_fraction=0.1, token_mask=0.0, truncation="head", max_examples=None,
                     max_eval_examples=None)
# From scratch nothing is pre-trained to preserve: a fresh transformer wants a larger learning rate.
SCRATCH_TRAIN = dict(lr=5e-4)
# --task imdb: whole reviews (median ~230 words) at twice the pre-training length, the first quarter and the
# last three quarters of a long one kept (Sun et al. 2019: head+tail beats either end alone), fewer, longer
# batches and evaluations (validation is 2,500 reviews, test 25,000).
TASKS = {"sst2": {}, "imdb": {"model": dict(max_len=256),
                              "data": dict(truncation="head_tail", batch_tokens=4096, max_sentences=16),
                              "train": dict(max_steps=1500, warmup_steps=100, eval_every=300, save_every=300,
                                            max_minutes=30.0, patience=None)}}

PRESETS: dict[str, dict[str, Any]] = {
    # seconds: every stage on a few thousand SST-2 phrases
    "tiny": {
        "model": dict(CPU_MODEL, d_model=32, n_heads=2, n_layers=2, d_ff=64),
        "pretrain": {"model": PRETRAIN_MODEL,
                     "train": dict(PRETRAIN_TRAIN, max_steps=12, warmup_steps=2, eval_every=6, save_every=6,
                                   log_every=3, max_minutes=None),
                     "data": dict(PRETRAIN_DATA, tokenizer="bpe", vocab=400, block_len=64, batch_blocks=8,
                                  max_documents=300, heldout_fraction=0.05, max_eval_blocks=40)},
        "finetune": {"train": dict(FINETUNE_TRAIN, max_steps=12, warmup_steps=2, eval_every=6, save_every=6,
                                   log_every=3, max_minutes=None, patience=None, lr=1e-3),
                     "data": dict(FINETUNE_DATA, tokenizer="bpe", vocab=400, batch_tokens=1024, max_examples=1500,
                                  max_eval_examples=100)},
        "scratch": {"train": dict(lr=1e-3)},
    },
    # 2 CPU cores: at most 34 minutes of pre-training, then 2 seeds x (fine-tune + from scratch), each capped at 13
    # minutes (about 3.5 each here: 49 minutes in all, measured)
    "cpu": {"model": CPU_MODEL,
            "pretrain": {"model": PRETRAIN_MODEL, "train": PRETRAIN_TRAIN, "data": PRETRAIN_DATA},
            "finetune": {"train": FINETUNE_TRAIN, "data": FINETUNE_DATA},
            "scratch": {"train": SCRATCH_TRAIN}, "finetune_seeds": 2},
    # one large GPU: BERT-medium's shape (8 layers, 512 wide, 8 heads, 16k vocabulary, ~30M parameters), 256
    # blocks of 128 tokens a step, 12k steps (~390M tokens, ~16 passes over IMDB's ~25M) within an hour
    "gpu": {"model": dict(CPU_MODEL, d_model=512, n_heads=8, n_layers=8, d_ff=2048),
            "pretrain": {"model": PRETRAIN_MODEL,
                         "train": dict(PRETRAIN_TRAIN, max_steps=12000, warmup_steps=600, max_minutes=60.0,
                                       lr=7e-4, eval_every=1000, save_every=1000, log_every=100),
                         "data": dict(PRETRAIN_DATA, vocab=16000, batch_blocks=256, eval_batch_tokens=32768,
                                      max_eval_blocks=2000)},
            "finetune": {"train": dict(FINETUNE_TRAIN, max_steps=4000, warmup_steps=200, max_minutes=30.0, lr=5e-5,
                                       eval_every=250, save_every=250, log_every=50, patience=6),
                         "data": dict(FINETUNE_DATA, batch_tokens=2048, max_sentences=32)},
            "scratch": {"train": dict(lr=3e-4)}},
}


# ---------------------------------------------------------------------------------------------------------
# Flags and settings
# ---------------------------------------------------------------------------------------------------------


def parse_vocab(value: str) -> dict[str, Any]:
    """``--vocab 8000``, ``--vocab bpe`` or ``--vocab bpe:8000`` -> ``{"tokenizer": ..., "vocab": ...}``."""
    out: dict[str, Any] = {}
    for part in value.split(":"):
        if part.isdigit():
            out["vocab"] = int(part)
        elif part in ("unigram", "bpe"):
            out["tokenizer"] = part
        else:
            raise argparse.ArgumentTypeError(f"expected a size, unigram or bpe, or KIND:SIZE (bpe:8000), got {value!r}")
    return out


def make_parser(mode: str) -> argparse.ArgumentParser:
    """The flags of one mode: "all" (no subcommand), "pretrain" or "finetune"."""
    prog = "recipes/mlm.py" + ("" if mode == "all" else f" {mode}")
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, PRESETS, default_preset="cpu", family="encoder_only")
    data = parser.add_argument_group("data")
    data.add_argument("--vocab", type=parse_vocab, default=None, metavar="SIZE|KIND|KIND:SIZE",
                      help="sentencepiece vocabulary trained on the pre-training text (or, from scratch, the train "
                           "texts): size, kind (unigram, bpe) or both, e.g. bpe:8000 (preset: unigram:8000)")
    data.add_argument("--tokenizer", choices=["unigram", "bpe"], default=None,
                      help="sentencepiece kind (as --vocab KIND)")
    data.add_argument("--batch-tokens", type=int, default=None,
                      help="fine-tuning batch size in tokens, padding included (length-bucketed batches)")
    if mode in ("all", "pretrain"):
        data.add_argument("--corpus", choices=["imdb", "sst2"], default=None,
                          help="pre-training text: imdb = IMDB's 75k train + unsup reviews (never its test "
                               "reviews), sst2 = SST-2's training sentences (preset: imdb)")
        data.add_argument("--text", default=None, metavar="FILE",
                          help="pre-train on your own text instead: a .jsonl(.gz) file of documents "
                               "({\"text\": ...} a line) or a text file, one document a line; a deterministic "
                               "share of the documents is held out")
        data.add_argument("--block-len", type=int, default=None,
                          help="pre-training block length in tokens: whole sentences packed up to it "
                               "(preset: cpu 128)")
        data.add_argument("--batch-blocks", type=int, default=None,
                          help="pre-training blocks per step (preset: cpu 32)")
        data.add_argument("--mlm-probability", type=float, default=None,
                          help="share of the real tokens masked (preset: cpu 0.3)")
    if mode in ("all", "finetune"):
        data.add_argument("--task", choices=sorted(TASKS), default=None,
                          help="labelled data to fine-tune on: sst2 (test: dev.tsv) or imdb (25k reviews, test: "
                               "its 25k test reviews, head+tail truncation at 256 tokens) (default: sst2)")
        data.add_argument("--train-tsv", dest="tsv_train", default=None, metavar="FILE",
                          help="labelled training file (TSV with a header; default: the --task data)")
        data.add_argument("--valid-tsv", dest="tsv_valid", default=None, metavar="FILE",
                          help="validation file for checkpoint selection (default: 10%% of --train-tsv held out)")
        data.add_argument("--test-tsv", dest="tsv_test", default=None, metavar="FILE",
                          help="test file, scored once at the end")
        data.add_argument("--text-column", default=None,  # None: not given (a resume refuses it given)
                          help="column of the text (default: sentence)")
        data.add_argument("--label-column", default=None,
                          help="column of the label, integer or string, any number of classes (default: label)")
        data.add_argument("--token-mask", type=float, default=None, metavar="P",
                          help="fine-tuning regulariser: replace this share of the training tokens by [MASK], afresh "
                               "every batch (preset: cpu 0.0)")
    if mode == "finetune":
        data.add_argument("--init", default=None, metavar="RUN_DIR|hf:PATH",
                          help="pre-training run to start from, or hf:PATH, a Hugging Face BERT checkpoint "
                               "directory (or Hub name) with its vocab.txt (without it: from scratch)")
        data.add_argument("--tokenizer-from", default=None, metavar="DIR",
                          help="a run (or tokenizer folder) whose tokenizer to use; with --init it must be the "
                               "pre-training run's")
    if mode == "all":
        pre = parser.add_argument_group("pre-training budget (the flags above shape the fine-tuning runs)")
        pre.add_argument("--pretrain-steps", type=int, default=None, help="pre-training optimizer steps")
        pre.add_argument("--pretrain-minutes", type=float, default=None, help="pre-training minutes")
        pre.add_argument("--pretrain-lr", type=float, default=None, help="pre-training peak learning rate")
        pre.add_argument("--finetune-seeds", type=int, default=None, metavar="N",
                         help="fine-tune and train from scratch with N seeds (--seed, --seed+1, ...), report mean "
                              "and spread (preset: cpu 2)")
    return parser


def absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def stage_plan(args: argparse.Namespace, stage: str, cli_train: bool = True) -> dict[str, Any]:
    """Model, training and data settings of one stage: the preset with the command line applied.

    ``cli_train=False`` (the pre-training of the all-in-one mode) takes the --pretrain-* flags instead of
    the training flags, which then belong to the fine-tuning runs.
    """
    preset = copy.deepcopy(PRESETS[args.preset])
    base = "finetune" if stage == "scratch" else stage
    train = dict(preset[base]["train"])
    task_name = getattr(args, "task", None) or preset[base]["data"].get("task")
    task = TASKS[task_name] if base == "finetune" else {}
    train.update(task.get("train", {}))
    if stage == "scratch":
        train.update(preset["scratch"]["train"])
    if cli_train:
        train.update(overrides(args, "train__"))
        for key in ("max_steps", "max_minutes"):
            if getattr(args, key) is not None:
                train[key] = getattr(args, key)
    else:
        for flag, key in (("pretrain_steps", "max_steps"), ("pretrain_minutes", "max_minutes"), ("pretrain_lr", "lr")):
            if getattr(args, flag, None) is not None:
                train[key] = getattr(args, flag)
    if train.get("max_steps") and train.get("warmup_steps", 0) >= train["max_steps"]:
        if cli_train and "warmup_steps" in overrides(args, "train__"):
            raise ValueError(f"--warmup-steps {train['warmup_steps']} must be below the step budget "
                             f"{train['max_steps']}")
        train["warmup_steps"] = train["max_steps"] // 10  # a short budget given on the command line
    train.update(seed=args.seed, device=args.device)
    if args.compile:
        train["compile"] = True
    data = dict(preset[base]["data"])
    data.update(args.vocab or {})
    if args.tokenizer:
        data["tokenizer"] = args.tokenizer
    if base == "finetune":
        data.update(task.get("data", {}), task=task_name)
    if args.batch_tokens is not None and cli_train:
        data["batch_tokens"] = args.batch_tokens
    if base == "pretrain":
        data["text"] = absolute(getattr(args, "text", None))
        if data["text"]:
            data["corpus"] = "file"
        elif getattr(args, "corpus", None):
            data["corpus"] = args.corpus
        for key in ("block_len", "batch_blocks"):
            if getattr(args, key, None) is not None:
                data[key] = getattr(args, key)
        if getattr(args, "mlm_probability", None) is not None:
            data["mlm_probability"] = args.mlm_probability
        if not 0.0 < data["mlm_probability"] < 1.0:
            raise ValueError(f"--mlm-probability must be in (0, 1), got {data['mlm_probability']}")
    else:
        # (dest tsv_*: the cli module reads every train_* attribute as a training override)
        if getattr(args, "token_mask", None) is not None:
            if not 0.0 <= args.token_mask < 1.0:
                raise ValueError(f"--token-mask must be in [0, 1), got {args.token_mask}")
            data["token_mask"] = args.token_mask
        data.update(train_tsv=absolute(args.tsv_train), valid_tsv=absolute(args.tsv_valid),
                    test_tsv=absolute(args.tsv_test), text_column=args.text_column or "sentence",
                    label_column=args.label_column or "label")
    model = dict(preset["model"], **preset[base].get("model", {}), **task.get("model", {}))
    return {"model": dict(model, **overrides(args, "model__")), "train": train, "data": data}


def log(message: str) -> None:
    if is_main():
        print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Jobs: everything a stage needs, built and checked before its run directory is created
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PretrainJob:
    """Settings, tokenizer and packed text of a pre-training run; ``heldout`` are the evaluation blocks without
    their [CLS]/[SEP] ends (the evaluation adds them), ``contamination`` the n-gram overlap with SST-2's
    validation and test sentences (None when not measured)."""

    plan: dict[str, Any]
    tokenizer: Tokenizer
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    train: PackedBlocks
    heldout: list[list[int]]
    heldout_texts: list[str]
    source: str
    contamination: dict[str, Any] | None = None


@dataclass
class FinetuneJob:
    """Settings, tokenizer, labelled data and (fine-tuning) the pre-trained checkpoint of a classifier run."""

    plan: dict[str, Any]
    stage: str  # "finetune" (from a pre-trained encoder) or "scratch"
    tokenizer: Tokenizer
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    data: LabelledData
    encoded: dict[str, list[tuple[list[int], int]]]
    init_ckpt: Path | str | None = None  # a run's checkpoint folder, or "hf:DIR"
    notes: list[str] = field(default_factory=list)


def train_config(train: dict[str, Any]) -> TrainConfig:
    """The TrainConfig, its schedule checked too (the trainer would only build it in the run directory)."""
    cfg = TrainConfig.from_dict(train)
    lr_factor(cfg.schedule, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
    return cfg


def check_batch_tokens(data: dict[str, Any], cfg: ModelConfig) -> None:
    for key in ("batch_tokens", "eval_batch_tokens"):
        if data[key] < cfg.max_len:
            raise ValueError(f"{key.replace('_', '-')} {data[key]} must be at least the model's max_len {cfg.max_len} "
                             "(one full-length sentence per batch)")


def pretrain_documents(data: dict[str, Any], data_dir: str | None) -> tuple[list[str], list[str], str]:
    """``(train documents, held-out documents, where they came from)`` of the pre-training corpus."""
    corpus = data["corpus"]
    if corpus == "file":
        path = data["text"]
        is_jsonl = any(path.endswith(ext) for ext in (".jsonl", ".jsonl.gz"))
        docs = [row["text"] for row in read_jsonl(path)] if is_jsonl else read_sentences(path)
        what = f"{path}: {len(docs):,} documents"
    elif corpus == "imdb":
        # a review that also stands in the test split (the release repeats a few verbatim) is left out too
        test = {r.text for r in load_imdb("test", data_dir)}
        docs = [r.text for split in ("train", "unsup") for r in load_imdb(split, data_dir)]
        n_all = len(docs)
        docs = [d for d in docs if d not in test]
        what = (f"IMDB train + unsup reviews, labels unused ({n_all - len(docs)} that repeat a test review verbatim "
                "left out; the test reviews never used)")
    elif corpus == "sst2":
        sst2 = load_sst2(data_dir)
        train, held = [t for t, _ in sst2["train"]], [t for t, _ in sst2["val"]]
        return train, held, "SST-2 training phrases without labels; held out: the SST-2 validation sentences"
    else:
        raise ValueError(f"corpus {corpus!r} is not valid; choose imdb, sst2 or a file (--text)")
    if data.get("max_documents"):  # the smoke test: an evenly spread sample
        docs = docs[:: max(1, len(docs) // data["max_documents"])][: data["max_documents"]]
    train, held = split_documents(docs, data["heldout_fraction"])
    return train, held, f"{what}; {len(held):,} documents held out ({data['heldout_fraction']:.1%}, by text hash)"


def pretrain_job(plan: dict[str, Any], data_dir: str | None, tokenizer: Tokenizer | None = None,
                 contamination: bool = False) -> PretrainJob:
    """Read the pre-training corpus, hold out the evaluation documents, train the tokenizer (unless given: a
    resume) on a sample of the training sentences, pack both sides into blocks; optionally measure the
    overlap of the training text with SST-2's validation and test sentences."""
    data = plan["data"]
    docs, held_docs, source = pretrain_documents(data, data_dir)
    if tokenizer is None:
        tokenizer = train_sentencepiece(sample_sentences(docs, data["tokenizer_sentences"]), data["tokenizer"],
                                        data["vocab"])
    model_cfg = ModelConfig.from_dict(dict(plan["model"], vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                                           n_classes=0))
    train_cfg = train_config(plan["train"])
    if data["block_len"] > model_cfg.max_len:
        raise ValueError(f"--block-len {data['block_len']} is longer than the model's max_len {model_cfg.max_len}")
    train = pack_documents(tokenizer, docs, data["block_len"])
    held = pack_documents(tokenizer, held_docs, data["block_len"]).rows(data.get("max_eval_blocks"))
    source += (f"; packed into {len(train):,} blocks of up to {data['block_len']} tokens ({train.n_tokens:,} "
               f"tokens, {train.fill():.0%} of the positions real), {len(held):,} held-out blocks")
    overlap = None
    if contamination:
        sst2 = load_sst2(data_dir)
        overlap = {split: ngram_overlap(docs, [t for t, _ in sst2[key]], data["contamination_n"])
                   for split, key in (("sst2_dev", "test"), ("sst2_val", "val"))}
    held_texts = [s for d in held_docs for s in split_sentences(d)]
    return PretrainJob(plan, tokenizer, model_cfg, train_cfg, train, [r[1:-1] for r in held], held_texts, source,
                       overlap)


def labelled_data(plan: dict[str, Any], data_dir: str | None, label_names: list[str] | None = None) -> LabelledData:
    d = plan["data"]
    return load_labelled_data(data_dir, d["train_tsv"], d["valid_tsv"], d["test_tsv"], d["text_column"],
                              d["label_column"], d["val_fraction"], d.get("max_examples"), d.get("max_eval_examples"),
                              label_names, task=d.get("task", "sst2"))


def tokenizer_dir(path: str | Path) -> Path:
    """The tokenizer folder of a run directory (or of the all-in-one run's pre-training), or ``path`` itself."""
    p = Path(path)
    for candidate in (p, p / "tokenizer", p / "pretrain" / "tokenizer"):
        if (candidate / "tokenizer.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no tokenizer here (expected a run directory or a folder with tokenizer.json)")


def pretrain_run_dir(path: str | Path) -> Path:
    """The pre-training run meant by ``path``: a pretrain run (or one of its checkpoints) or an all-in-one run."""
    try:
        run_dir = run_dir_of(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--init {err}") from None
    stage = read_run_config(run_dir).get("stage")
    if stage == "all":
        run_dir = run_dir / "pretrain"
        stage = read_run_config(run_dir).get("stage")
    if stage != "pretrain":
        raise ValueError(f"--init {path}: not a pre-training run (its stage is {stage!r}); pass a run of "
                         "'recipes/mlm.py pretrain'")
    return run_dir


def checked_checkpoint(path: str | Path, run_dir: Path, tokenizer: Tokenizer) -> Path:
    """The best checkpoint of ``path`` (or the checkpoint folder it names), refused when it was trained with
    another tokenizer than ``run_dir/tokenizer``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such run directory or checkpoint")
    ckpt = resolve_checkpoint(p if (p / "manifest.json").exists() or p.name.startswith("step_") else run_dir)
    saved = (verify_checkpoint(ckpt).get("fingerprint") or {}).get("tokenizer")
    if saved is not None and saved != tokenizer.fingerprint:
        raise ValueError(f"checkpoint {ckpt} was trained with another tokenizer ({saved[:12]}) than "
                         f"{run_dir / 'tokenizer'} ({tokenizer.fingerprint[:12]}); they must belong together")
    return ckpt


def finetune_job(plan: dict[str, Any], stage: str, data: LabelledData, *, init: str | Path | None = None,
                 tokenizer_from: str | None = None, cli_model: dict[str, Any] | None = None) -> FinetuneJob:
    """A fine-tuning job: with ``init`` the pre-trained run's tokenizer, architecture and best checkpoint
    (only pooling and dropout may change), else a tokenizer trained on the train texts (or ``tokenizer_from``'s)
    and the plan's architecture."""
    init_ckpt = None
    if is_hf(init):
        return hf_finetune_job(plan, stage, data, str(init), tokenizer_from, cli_model or {})
    if init is not None:
        init_run = pretrain_run_dir(init)
        tokenizer = load_tokenizer(init_run / "tokenizer")
        if tokenizer_from is not None:
            other = load_tokenizer(tokenizer_dir(tokenizer_from))
            if other.fingerprint != tokenizer.fingerprint:
                raise ValueError(f"--tokenizer-from {tokenizer_from}: its tokenizer ({other.fingerprint[:12]}) is not "
                                 f"the one --init {init} was pre-trained with ({tokenizer.fingerprint[:12]}); a "
                                 "pre-trained encoder only understands its own token ids (leave --tokenizer-from out)")
        init_ckpt = checked_checkpoint(init, init_run, tokenizer)
        arch = dict(read_run_config(init_run)["model"])
        for key, value in (cli_model or {}).items():
            if key not in FINETUNE_MODEL_FIELDS and arch.get(key) != value:
                raise ValueError(f"--{key.replace('_', '-')} {value}: the architecture comes from --init ({key}="
                                 f"{arch.get(key)}); fine-tuning may change only "
                                 f"{', '.join('--' + f.replace('_', '-') for f in FINETUNE_MODEL_FIELDS)}")
        model = dict(arch, **{k: plan["model"][k] for k in FINETUNE_MODEL_FIELDS if k in plan["model"]})
        if arch.get("positional") == "learned" and model["max_len"] != arch["max_len"]:
            raise ValueError(f"max_len {model['max_len']}: the pre-trained encoder has a learned position table of "
                             f"{arch['max_len']}; fine-tune it at --max-len {arch['max_len']}")
        plan = dict(plan, model=model, data=dict(plan["data"], tokenizer=tokenizer.settings.get("model_type"),
                                                 vocab=tokenizer.vocab_size))
    elif tokenizer_from is not None:
        tokenizer = load_tokenizer(tokenizer_dir(tokenizer_from))
        model = plan["model"]
    else:
        tokenizer = train_sentencepiece([t for t, _ in data.splits["train"]], plan["data"]["tokenizer"],
                                        plan["data"]["vocab"])
        model = plan["model"]
    model_cfg = ModelConfig.from_dict(dict(model, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                                           n_classes=data.n_classes))
    return build_finetune_job(plan, stage, tokenizer, model_cfg, data, init_ckpt)


def is_hf(init: str | Path | None) -> bool:
    return init is not None and str(init).startswith("hf:")


def hf_model(init: str, cfg: ModelConfig) -> tuple[EncoderOnly, list[str]]:
    """The Hugging Face BERT of ``init`` under a head of ``cfg.n_classes``, with ``cfg``'s dropout and pooling."""
    return load_hf_classifier(init, cfg.n_classes, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
                              pooling=cfg.pooling)


def hf_finetune_job(plan: dict[str, Any], stage: str, data: LabelledData, init: str, tokenizer_from: str | None,
                    cli_model: dict[str, Any]) -> FinetuneJob:
    """Fine-tuning a Hugging Face BERT checkpoint: its architecture and dropout (the command line may change
    only FINETUNE_MODEL_FIELDS), its WordPiece tokenizer, BERT's pooler unless --pooling says otherwise."""
    directory = resolve_hf(init)
    init = f"hf:{directory.resolve()}"
    if tokenizer_from is not None:
        raise ValueError(f"--tokenizer-from {tokenizer_from}: with --init hf:PATH the tokenizer is the checkpoint's")
    for key, value in cli_model.items():
        if key not in FINETUNE_MODEL_FIELDS or key == "max_len":
            raise ValueError(f"--{key.replace('_', '-')} {value}: the architecture comes from --init {init}; "
                             "fine-tuning may change only --pooling, --dropout, --attention-dropout")
    cfg = hf_classifier_config(directory, data.n_classes, **cli_model)
    tokenizer = WordPieceTokenizer.from_hf(directory)
    if tokenizer.vocab_size > cfg.vocab_size or tokenizer.pad_id != cfg.pad_id:
        raise ValueError(f"--init {init}: vocab.txt ({tokenizer.vocab_size} pieces, [PAD] {tokenizer.pad_id}) does "
                         f"not fit config.json (vocab_size {cfg.vocab_size}, pad_token_id {cfg.pad_id})")
    plan = dict(plan, model=cfg.to_dict(), data=dict(plan["data"], tokenizer="wordpiece", vocab=tokenizer.vocab_size))
    return build_finetune_job(plan, stage, tokenizer, cfg, data, init)


def build_finetune_job(plan: dict[str, Any], stage: str, tokenizer: Tokenizer, model_cfg: ModelConfig,
                       data: LabelledData, init_ckpt: Path | str | None) -> FinetuneJob:
    train_cfg = train_config(plan["train"])
    check_batch_tokens(plan["data"], model_cfg)
    encoded, notes = {}, []
    for split, examples in data.splits.items():
        encoded[split], n_cut = encode_examples(tokenizer, examples, model_cfg.max_len - 2,
                                                plan["data"].get("truncation", "head"))
        if n_cut:
            notes.append(f"{split}: {n_cut} texts cut to max_len={model_cfg.max_len} tokens")
    return FinetuneJob(plan, stage, tokenizer, model_cfg, train_cfg, data, encoded, init_ckpt, notes)


# ---------------------------------------------------------------------------------------------------------
# Running a stage
# ---------------------------------------------------------------------------------------------------------


class CountingStream:
    """The trainer's batch stream, counting input tokens (padding excluded) and scored units (masked tokens or
    examples: what the loss counts, and so what the trainer's tokens/s counts) of the batches it hands out,
    so a report can give input tokens/s as well."""

    def __init__(self, stream: Any, pad_id: int):
        self.stream, self.pad_id = stream, pad_id
        self.tokens = self.units = 0

    @property
    def epoch(self) -> int:
        return self.stream.epoch

    def __iter__(self) -> CountingStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        batch = next(self.stream)
        self.tokens += int((batch["input_ids"] != self.pad_id).sum())
        self.units += int((batch["labels"] != IGNORE_INDEX).sum())
        return batch

    def state_dict(self) -> dict[str, int]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stream.load_state_dict(state)

    def tokens_per_unit(self) -> float:
        return self.tokens / self.units if self.units else float("nan")


def stage_config(stage: str, preset: str, job: PretrainJob | FinetuneJob, **extra: Any) -> dict[str, Any]:
    return {"recipe": RECIPE, "stage": stage, "preset": preset, "model": job.model_cfg.to_dict(),
            "train": job.train_cfg.to_dict(), "data": job.plan["data"],
            "tokenizer_fingerprint": job.tokenizer.fingerprint, **extra}


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def run_pretrain(job: PretrainJob, run_dir: Path, preset: str, resume: bool = False) -> dict[str, Any]:
    """Train (or continue) a pre-training run in ``run_dir``; evaluate its best checkpoint; write the report."""
    tok, cfg, data = job.tokenizer, job.model_cfg, job.plan["data"]
    config = stage_config("pretrain", preset, job, data_source=job.source)
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            tok.save(run_dir / "tokenizer")
        write_json(run_dir / "config.json", config)
    log(f"pretrain: {job.source}; {tok.settings.get('model_type')} vocabulary {tok.vocab_size:,}")
    if job.contamination:
        log("contamination: " + contamination_line(job.contamination))
    torch.manual_seed(job.train_cfg.seed)
    model = EncoderOnly(cfg)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: EncoderOnly, {params:,} parameters -> {run_dir}")
    stream = CountingStream(packed_mlm_stream(job.train, data["batch_blocks"], job.train_cfg.seed, tok,
                                              cfg.vocab_size, data["mlm_probability"]), tok.pad_id)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        res = evaluate_mlm(m, job.heldout, data["eval_batch_tokens"], device_of(m), cfg.vocab_size,
                           data["mlm_probability"])
        return {f"val_{k}": v for k, v in res.items()}

    summary = Trainer(model, stream, mlm_loss, job.train_cfg, run_dir, evaluate, fingerprint(cfg, tok),
                      unit="masked tok").fit()
    if not is_main():
        return {}
    model = EncoderOnly(cfg).to(device_of(model))
    manifest = load_checkpoint(run_dir, model)
    val = evaluate_mlm(model, job.heldout, data["eval_batch_tokens"], device_of(model), cfg.vocab_size,
                       data["mlm_probability"])
    fills = sample_fills(model, tok, job.heldout_texts)
    report = {"recipe": RECIPE, "stage": "pretrain", "config": config, "params": params,
              "wall_s": summary["wall_s"],
              "train_tokens_per_s": summary["train_tokens_per_s"] * stream.tokens_per_unit(),
              "train_masked_tokens_per_s": summary["train_tokens_per_s"], "best_step": summary["best_step"],
              "steps": summary["steps"], "stopped": summary["stopped"],
              "checkpoint": manifest["path"], "eval": {"val": val}, "fills": fills,
              "contamination": job.contamination}
    rows = "\n".join(f"| {f['text']} | {f['original']} | " + ", ".join(f"{t} {p:.2f}" for t, p in f["top"]) + " |"
                     for f in fills)
    sections = [("Data", job.source),
                ("Held-out evaluation (best checkpoint, fixed mask)",
                 f"masked-token accuracy {val['masked_accuracy']:.4f}, perplexity {val['ppl']:.2f} over "
                 f"{val['masked_tokens']:,} masked tokens"),
                ("Filling in one word of held-out sentences",
                 "| text | original | top 5 |\n| --- | --- | --- |\n" + rows)]
    if job.contamination:
        examples = "\n".join(f"- {e['text']!r} (shares {e['ngram']!r})"
                             for e in job.contamination["sst2_dev"]["examples"])
        sections.insert(1, ("Contamination: the pre-training text against the evaluation sentences",
                            contamination_line(job.contamination) + ("\n\nFirst SST-2 dev sentences with a shared "
                                                                     "n-gram:\n" + examples if examples else "")))
    write_report(run_dir, report, sections, images=[p.name for p in plot_curves(run_dir)])
    log(f"pretrain done: {run_dir}  val masked accuracy {val['masked_accuracy']:.4f}  ppl {val['ppl']:.2f}")
    return report


def contamination_line(overlap: dict[str, Any]) -> str:
    """One line on how much of SST-2's evaluation sentences the pre-training text holds."""
    return "; ".join(f"{name.replace('_', ' ')}: {o['contaminated']} of {o['texts']} sentences "
                     f"({o['contaminated_fraction']:.1%}) share a word {o['n']}-gram with the pre-training text "
                     f"({o['ngram_fraction']:.2%} of their {o['n']}-grams)" for name, o in overlap.items())


def sample_fills(model: EncoderOnly, tokenizer: Tokenizer, texts: list[str], n: int = 8) -> list[dict[str, Any]]:
    """Mask the longest single-token word of a few texts and record the model's top 5 for it."""
    out = []
    for text in texts:
        words = text.split()
        single = [(len(w), -i, i) for i, w in enumerate(words) if len(tokenizer.encode(w)) == 1 and w.isalpha()]
        if len(words) < 4 or not single or len(tokenizer.encode(text)) > model.config.max_len - 2:
            continue
        i = max(single)[2]
        masked = " ".join(MASK_TEXT if j == i else w for j, w in enumerate(words))
        out.append({"text": masked, "original": words[i], "top": fill_mask(model, tokenizer, masked, 5)[0]})
        if len(out) == n:
            break
    return out


def run_finetune(job: FinetuneJob, run_dir: Path, preset: str, resume: bool = False) -> dict[str, Any]:
    """Train (or continue) a classifier run in ``run_dir``; evaluate its best checkpoint; write the report."""
    tok, cfg, data, names = job.tokenizer, job.model_cfg, job.plan["data"], job.data.label_names
    config = stage_config(job.stage, preset, job, labels=names, data_sources=job.data.sources,
                          init_checkpoint=None if job.init_ckpt is None else str(job.init_ckpt))
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume:
            tok.save(run_dir / "tokenizer")
        write_json(run_dir / "labels.json", names)
        write_json(run_dir / "config.json", config)
    counts = ", ".join(f"{s} {len(e):,}" for s, e in job.encoded.items())
    log(f"{job.stage}: {job.data.n_classes} classes {names[:10]}; examples: {counts}")
    for note in job.notes:
        log(f"note: {note}")
    torch.manual_seed(job.train_cfg.seed)
    if job.init_ckpt is not None and not (resume and latest_checkpoint(run_dir) is not None):
        if is_hf(job.init_ckpt):
            model, new = hf_model(str(job.init_ckpt), cfg)
            log(f"initialised from {job.init_ckpt}" + "".join(f"; {n}" for n in new))
        else:
            model = classifier_from_pretrained(cfg, job.init_ckpt)
            log(f"encoder initialised from {job.init_ckpt}; classifier head new")
    else:
        model = EncoderOnly(cfg)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: EncoderOnly + {cfg.pooling} pooling + linear head, {params:,} parameters -> {run_dir}")
    stream = CountingStream(classification_stream(job.encoded["train"], data["batch_tokens"], job.train_cfg.seed,
                                                  data.get("max_sentences"), data.get("token_mask", 0.0), tok),
                            tok.pad_id)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        res = evaluate_classifier(m, job.encoded["val"], data["eval_batch_tokens"], device_of(m), tok)
        return {f"val_{k}": v for k, v in res.items()}

    trainer = Trainer(model, stream, classify_loss, job.train_cfg, run_dir, evaluate,
                      fingerprint(cfg, tok, labels=list(names)), unit="ex")
    summary = trainer.fit()
    if not is_main():
        return {}
    model = EncoderOnly(cfg).to(device_of(model))
    manifest = load_checkpoint(run_dir, model)
    evals = {s: evaluate_classifier(model, job.encoded[s], data["eval_batch_tokens"], device_of(model), tok)
             for s in ("val", "test") if s in job.encoded}
    report = {"recipe": RECIPE, "stage": job.stage, "config": config, "params": params, "wall_s": summary["wall_s"],
              "train_examples_per_s": summary["train_tokens_per_s"],
              "train_tokens_per_s": summary["train_tokens_per_s"] * stream.tokens_per_unit(),
              "best_step": summary["best_step"], "steps": summary["steps"], "stopped": summary["stopped"],
              "checkpoint": manifest["path"], "labels": names, "init_checkpoint": config["init_checkpoint"],
              "eval": evals}
    split = "test" if "test" in job.encoded else "val"
    probs = predict_proba(model, job.encoded[split], data["eval_batch_tokens"], device_of(model), tok)
    sections = [("Data", "\n".join(f"- {s}: {src}" for s, src in job.data.sources.items())),
                (f"Confusion matrix ({split}; rows: true label, columns: predicted)",
                 confusion_table(probs, job.data.splits[split], names)),
                (f"Mistakes ({split}, first 8)", mistakes(probs, job.data.splits[split], names))]
    images = [p.name for p in plot_curves(run_dir)]
    if plot_accuracy({job.stage: run_dir}, run_dir / "accuracy.png"):
        images.append("accuracy.png")
    write_report(run_dir, report, sections, images)
    shown = "  ".join(f"{s} accuracy {m['accuracy']:.4f}"
                      + (f" macro-F1 {m['macro_f1']:.4f}" if "macro_f1" in m else "") for s, m in evals.items())
    log(f"{job.stage} done: {run_dir}  {shown}")
    return report


def confusion_table(probs: torch.Tensor, examples: list[tuple[str, int]], names: list[str]) -> str:
    """Markdown table of counts: rows the true label, columns the predicted one (``probs (N, C)``)."""
    counts = [[0] * len(names) for _ in names]
    for pred, (_, label) in zip(probs.argmax(-1).tolist(), examples, strict=True):
        counts[label][pred] += 1
    head = "| true \\ predicted | " + " | ".join(names) + " |\n|" + " --- |" * (len(names) + 1)
    return head + "\n" + "\n".join(f"| {name} | " + " | ".join(map(str, row)) + " |"
                                  for name, row in zip(names, counts, strict=True))


def mistakes(probs: torch.Tensor, examples: list[tuple[str, int]], names: list[str], n: int = 8) -> str:
    """The first ``n`` misclassified texts with their true and predicted label."""
    lines = []
    for (text, label), p in zip(examples, probs, strict=True):
        pred = int(p.argmax())
        if pred != label:
            lines.append(f"- {text!r}: true {names[label]}, predicted {names[pred]} ({float(p[pred]):.2f})")
            if len(lines) == n:
                break
    return "\n".join(lines) or "(none)"


def plot_accuracy(runs: dict[str, Path], path: Path) -> bool:
    """Validation accuracy against step for each run; False when there is nothing to plot."""
    curves = {name: [(r["step"], r["val_accuracy"]) for r in read_metrics(d)
                     if r.get("split") == "val" and isinstance(r.get("val_accuracy"), (int, float))]
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
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


# ---------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------


def setup(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    resolve_device(args.device)  # fails clearly now rather than after the data is prepared
    if args.resume and args.out:
        raise ValueError("--resume continues the run in its own directory; leave --out out")
    out = Path(args.out) if args.out else None
    if out is not None and out.is_dir() and any((d / "checkpoints").is_dir() and any((d / "checkpoints").iterdir())
                                                for d in (out, *out.iterdir())):
        raise ValueError(f"--out {out}: already holds a run; continue it with --resume {out} or choose another --out")


# Flags (dests) a resume cannot change: the data of its stages, the start of fine-tuning, the stages of the
# one command. The budgets may change, everything else is refused (runs.resume_train_settings).
RESUME_FIXED = ("vocab", "tokenizer", "batch_tokens", "corpus", "text", "block_len", "batch_blocks",
                "mlm_probability", "task", "tsv_train", "tsv_valid", "tsv_test", "text_column", "label_column",
                "token_mask", "init", "tokenizer_from", "pretrain_lr", "finetune_seeds")


def resume_args(args: argparse.Namespace, pretrain_of_all: bool = False) -> argparse.Namespace:
    """The flags one stage's resume reads: in the one command, the pre-training takes --pretrain-steps/-minutes
    as its budgets (--max-steps/--max-minutes are the fine-tuning runs'), and each stage keeps its own seed
    (--seed was checked against the base seed once, `check_resume`)."""
    values = dict(vars(args), _given=set(getattr(args, "_given", ())) - {"seed"})
    if pretrain_of_all:
        values.update(max_steps=args.pretrain_steps, max_minutes=args.pretrain_minutes, train__max_epochs=None)
    return argparse.Namespace(**values)


def check_resume(args: argparse.Namespace, saved_train: dict[str, Any]) -> None:
    """Refuse, before any stage runs, a flag a resume would ignore (or that would change the run halfway)."""
    resume_train_settings(saved_train, args, RESUME_FIXED)


def resume_plan(saved: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """A stage's plan from its config.json: only the budgets (and where it runs) from the command line."""
    return {"model": saved["model"], "train": resume_train_settings(saved["train"], args, RESUME_FIXED),
            "data": saved["data"]}


def resume_pretrain(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    saved = read_run_config(run_dir)
    job = pretrain_job(resume_plan(saved, args), args.data_dir, load_tokenizer(run_dir / "tokenizer"),
                       contamination=True)
    return run_pretrain(job, run_dir, saved["preset"], resume=True)


def resume_finetune(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    saved = read_run_config(run_dir)
    plan = resume_plan(saved, args)
    data = labelled_data(plan, args.data_dir, saved["labels"])
    init = saved.get("init_checkpoint")
    init = init if is_hf(init) or init is None else Path(init)
    if init is not None and latest_checkpoint(run_dir) is None and not Path(str(init).removeprefix("hf:")).is_dir():
        raise FileNotFoundError(f"{init}: the pre-trained checkpoint this run starts from is gone")
    job = build_finetune_job(plan, saved["stage"], load_tokenizer(run_dir / "tokenizer"),
                             ModelConfig.from_dict(saved["model"]), data, init)
    return run_finetune(job, run_dir, saved["preset"], resume=True)


def pretrain_main(args: argparse.Namespace) -> int:
    setup(args)
    if args.resume:
        run_dir = run_dir_of(args.resume)
        check_resume(args, read_run_config(run_dir)["train"])
        resume_pretrain(run_dir, args)
        return 0
    job = pretrain_job(stage_plan(args, "pretrain"), args.data_dir, contamination=True)
    run_pretrain(job, new_run_dir(args.out, f"{RECIPE}-pretrain", args.preset), args.preset)
    return 0


def finetune_main(args: argparse.Namespace) -> int:
    setup(args)
    if args.resume:
        run_dir = run_dir_of(args.resume)
        check_resume(args, read_run_config(run_dir)["train"])
        resume_finetune(run_dir, args)
        return 0
    stage = "finetune" if args.init else "scratch"
    if args.init:
        if args.vocab or args.tokenizer:
            raise ValueError("--vocab/--tokenizer: with --init the tokenizer is the pre-training run's")
        if is_hf(args.init):
            resolve_hf(args.init)  # a wrong --init fails before any data is read
        else:
            pretrain_run_dir(args.init)
    plan = stage_plan(args, stage)
    data = labelled_data(plan, args.data_dir)
    job = finetune_job(plan, stage, data, init=args.init, tokenizer_from=args.tokenizer_from,
                       cli_model=overrides(args, "model__"))
    run_finetune(job, new_run_dir(args.out, f"{RECIPE}-{stage}", args.preset), args.preset)
    return 0


def seed_runs(preset: str, seed: int, n_seeds: int | None) -> list[tuple[str, str, int]]:
    """``(directory, stage, seed)`` of the fine-tuning and from-scratch runs of the all-in-one mode: the first
    seed's are ``finetune/`` and ``scratch/``, further seeds' ``finetune-seed{S}/`` and ``scratch-seed{S}/``."""
    n = n_seeds or PRESETS[preset].get("finetune_seeds", 1)
    if n < 1:
        raise ValueError(f"--finetune-seeds must be >= 1, got {n}")
    return [(stage if k == 0 else f"{stage}-seed{seed + k}", stage, seed + k)
            for k in range(n) for stage in ("finetune", "scratch")]


def all_main(args: argparse.Namespace) -> int:
    """Pre-train, fine-tune from it, train from scratch with the fine-tuning budget (each with every seed),
    compare."""
    setup(args)
    if args.resume:
        parent = run_dir_of(args.resume)
        saved = read_run_config(parent)
        if saved.get("stage") != "all":
            raise ValueError(f"--resume {args.resume}: not a run of 'recipes/mlm.py' without subcommand; resume it "
                             f"with 'recipes/mlm.py {saved.get('stage')} --resume'")
        plans, preset = saved["plans"], saved["preset"]
        check_resume(args, plans["finetune"]["train"])
        runs = [tuple(r) for r in saved.get("runs", [("finetune", "finetune", None), ("scratch", "scratch", None)])]
    else:
        plans = {"pretrain": stage_plan(args, "pretrain", cli_train=False), "finetune": stage_plan(args, "finetune"),
                 "scratch": stage_plan(args, "scratch")}
        preset = args.preset
        runs = seed_runs(preset, args.seed, args.finetune_seeds)
        parent = None
    # Everything that can be checked is checked before the first minute of training: data of all stages,
    # tokenizers, model and training settings.
    data = labelled_data(plans["finetune"], args.data_dir)
    pre_job = pretrain_job(plans["pretrain"], args.data_dir, contamination=True)
    scratch_job = finetune_job(plans["scratch"], "scratch", data)
    train_config(plans["finetune"]["train"])
    if not args.resume:
        parent = new_run_dir(args.out, RECIPE, args.preset)
        if is_main():
            write_json(parent / "config.json", {"recipe": RECIPE, "stage": "all", "preset": preset, "plans": plans,
                                                "runs": runs})
    assert parent is not None
    reports: dict[str, dict[str, Any]] = {}
    for name, stage, seed in [("pretrain", "pretrain", None), *runs]:
        run_dir = parent / name
        if (run_dir / "report.json").is_file():
            log(f"{name}: done already ({run_dir / 'report.json'})")
            reports[name] = json.loads((run_dir / "report.json").read_text())
        elif (run_dir / "config.json").is_file():
            if stage == "pretrain":
                reports[name] = resume_pretrain(run_dir, resume_args(args, pretrain_of_all=True))
            else:
                reports[name] = resume_finetune(run_dir, resume_args(args))
        elif stage == "pretrain":
            reports[name] = run_pretrain(pre_job, run_dir, preset)
        else:
            plan = plans[stage] if seed is None else with_seed(plans[stage], seed)
            job = (finetune_job(plan, "finetune", data, init=parent / "pretrain") if stage == "finetune"
                   else dataclasses.replace(scratch_job, plan=plan, train_cfg=train_config(plan["train"])))
            reports[name] = run_finetune(job, run_dir, preset)
    if is_main():
        compare_report(parent, preset, plans, reports, runs)
    return 0


def with_seed(plan: dict[str, Any], seed: int) -> dict[str, Any]:
    return dict(plan, train=dict(plan["train"], seed=seed))


def compare_report(parent: Path, preset: str, plans: dict, reports: dict[str, dict[str, Any]],
                   runs: list[tuple[str, str, int | None]]) -> dict[str, Any]:
    """report.json / report.md of the all-in-one run: pre-trained against from-scratch accuracy, the mean over
    the fine-tuning seeds (each seed's run in its own row)."""
    ft, sc, pre = reports["finetune"], reports["scratch"], reports["pretrain"]
    split = "test" if "test" in ft["eval"] else "val"
    metric = "macro_f1" if "macro_f1" in ft["eval"][split] else "accuracy"
    by_stage = {stage: [reports[name] for name, st, _ in runs if st == stage] for stage in ("finetune", "scratch")}
    scores = {stage: [r["eval"][split][metric] for r in rs] for stage, rs in by_stage.items()}
    mean = {stage: statistics.fmean(v) for stage, v in scores.items()}
    spread = {stage: statistics.stdev(v) if len(v) > 1 else 0.0 for stage, v in scores.items()}
    evals = {"val": ft["eval"]["val"], **({"test": ft["eval"]["test"]} if "test" in ft["eval"] else {}),
             **{f"scratch_{s}": m for s, m in sc["eval"].items()}, "pretrain_val": pre["eval"]["val"]}
    comparison = {"split": split, "metric": metric, "pretrained": mean["finetune"], "scratch": mean["scratch"],
                  "gain": mean["finetune"] - mean["scratch"], "seeds": len(scores["finetune"]),
                  "pretrained_std": spread["finetune"], "scratch_std": spread["scratch"],
                  "per_seed": {name: reports[name]["eval"][split][metric] for name, _, _ in runs}}
    report = {"recipe": RECIPE, "stage": "all", "config": {"preset": preset, "plans": plans},
              "params": ft["params"], "wall_s": sum(r["wall_s"] for r in reports.values()),
              "train_tokens_per_s": pre["train_tokens_per_s"], "best_step": ft["best_step"],
              "runs": {name: name for name in reports}, "comparison": comparison, "eval": evals,
              "contamination": pre.get("contamination")}
    rows = []
    for name, stage, _ in runs:
        r = reports[name]
        cells = [f"{r['eval'][s].get('accuracy', float('nan')):.4f}" for s in ("val", split)]
        f1 = f" | {r['eval'][split]['macro_f1']:.4f}" if "macro_f1" in r["eval"][split] else ""
        label = "pre-trained + fine-tuned" if stage == "finetune" else "from scratch"
        rows.append(f"| [{name}]({name}/report.md) | {label} | {r['config']['train']['seed']} | {' | '.join(cells)}"
                    f"{f1} | {r['steps']} | {r['best_step']} | {r['wall_s'] / 60:.1f} |")
    f1_head = f" | {split} macro-F1" if metric == "macro_f1" else ""
    table = (f"| run | start | seed | val accuracy | {split} accuracy{f1_head} | steps | best step | minutes |\n"
             f"| --- | --- | --- | --- | --- |{' --- |' if f1_head else ''} --- | --- | --- |\n" + "\n".join(rows))
    pv = pre["eval"]["val"]
    n = comparison["seeds"]
    sections = [
        ("Pre-trained against from scratch",
         f"{table}\n\nMean {split} {metric} over {n} seed{'s' if n > 1 else ''}: pre-trained "
         f"**{mean['finetune']:.4f}** (std {spread['finetune']:.4f}), from scratch **{mean['scratch']:.4f}** "
         f"(std {spread['scratch']:.4f}). Pre-training adds **{comparison['gain'] * 100:+.2f} points** (same "
         "architecture and fine-tuning budget)."),
        ("Pre-training", f"{pre['steps']} steps, {pre['wall_s'] / 60:.1f} minutes, "
                         f"{pre['train_tokens_per_s']:,.0f} tokens/s; held-out masked-token accuracy "
                         f"{pv['masked_accuracy']:.4f}, perplexity {pv['ppl']:.2f}. Details: "
                         "[pretrain/report.md](pretrain/report.md)"),
    ]
    if pre.get("contamination"):
        sections.append(("Contamination", contamination_line(pre["contamination"])))
    curves = {f"{'pre-trained' if st == 'finetune' else 'scratch'} seed {reports[name]['config']['train']['seed']}":
              parent / name for name, st, _ in runs}
    images = ["accuracy.png"] if plot_accuracy(curves, parent / "accuracy.png") else []
    write_report(parent, report, sections, images)
    log(f"done: {parent}  {split} {metric} over {n} seed(s): pre-trained {mean['finetune']:.4f}, "
        f"scratch {mean['scratch']:.4f} ({comparison['gain'] * 100:+.2f} points)")
    return report


# ---------------------------------------------------------------------------------------------------------
# Using a trained run: evaluate, predict, fill
# ---------------------------------------------------------------------------------------------------------


def load_run(path: str, want: str) -> tuple[Path, dict[str, Any], Tokenizer, EncoderOnly]:
    """The model of a run (best checkpoint, or the checkpoint folder given) with its tokenizer, checked to
    belong together. An all-in-one run gives its ``want`` sub-run ("finetune" or "pretrain")."""
    run_dir = run_dir_of(path)
    config = read_run_config(run_dir)
    if config.get("stage") == "all":
        run_dir, path = run_dir / want, str(run_dir / want)
        config = read_run_config(run_dir)
    if config.get("recipe") != RECIPE:
        raise ValueError(f"{run_dir}: not a run of recipes/mlm.py (recipe {config.get('recipe')!r})")
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model = EncoderOnly(ModelConfig.from_dict(config["model"]))
    load_checkpoint(checked_checkpoint(path, run_dir, tokenizer), model)
    model.eval()
    return run_dir, config, tokenizer, model


def predict_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="recipes/mlm.py predict",
                                     description="Classify texts with a fine-tuned run: label name and probability.")
    parser.add_argument("--checkpoint", required=True, metavar="RUN_DIR", help="fine-tuning run (or all-in-one run)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("texts", nargs="+", help="texts to classify")
    args = parser.parse_args(argv)
    run_dir, config, tokenizer, model = load_run(args.checkpoint, "finetune")
    if config["stage"] == "pretrain":
        raise ValueError(f"--checkpoint {args.checkpoint}: a pre-training run has no classifier; use 'fill', or "
                         "fine-tune it first")
    model.to(resolve_device(args.device))
    names = config["labels"]
    encoded, _ = encode_examples(tokenizer, [(t, 0) for t in args.texts], model.config.max_len - 2)
    probs = predict_proba(model, encoded, 8192, device_of(model), tokenizer)
    for text, p in zip(args.texts, probs, strict=True):
        best = int(p.argmax())
        print(f"{names[best]}\t{float(p[best]):.4f}\t{text}")
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
    _, _, tokenizer, model = load_run(args.checkpoint, "pretrain")
    model.to(resolve_device(args.device))
    fills = [fill_mask(model, tokenizer, text, args.top_k) for text in args.texts]  # every text checked first
    for text, masks in zip(args.texts, fills, strict=True):
        print(text)
        for i, candidates in enumerate(masks, start=1):
            for rank, (piece, prob) in enumerate(candidates, start=1):
                print(f"  mask {i}  {rank}. {piece}\t{prob:.4f}")
    return 0


def eval_only(args: argparse.Namespace) -> int:
    """Evaluate a run's best checkpoint (or the checkpoint folder given) on its held-out data again."""
    if not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint RUN_DIR")
    top = run_dir_of(args.checkpoint)
    stage = read_run_config(top).get("stage")
    targets = sorted(str(d) for d in top.iterdir() if (d / "config.json").is_file()) if stage == "all" else [
        args.checkpoint]
    device = resolve_device(args.device)
    results = {}
    for target in targets:
        run_dir, config, tokenizer, model = load_run(target, "finetune")
        model.to(device)
        plan = {"model": config["model"], "train": config["train"], "data": config["data"]}
        if config["stage"] == "pretrain":
            job = pretrain_job(plan, args.data_dir, tokenizer)
            res = {"val": evaluate_mlm(model, job.heldout, plan["data"]["eval_batch_tokens"], device,
                                       model.config.vocab_size, plan["data"]["mlm_probability"])}
        else:
            data = labelled_data(plan, args.data_dir, config["labels"])
            job = build_finetune_job(plan, config["stage"], tokenizer, model.config, data, None)
            res = {s: evaluate_classifier(model, job.encoded[s], plan["data"]["eval_batch_tokens"], device, tokenizer)
                   for s in ("val", "test") if s in job.encoded}
        results[run_dir.name if stage == "all" else config["stage"]] = res
        for split, metrics in res.items():
            shown = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            print(f"{run_dir.name if stage == 'all' else config['stage']} {split}: {shown}")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "eval.json", {"checkpoint": str(args.checkpoint), "eval": results})
    return 0


COMMANDS = {"pretrain": pretrain_main, "finetune": finetune_main, "all": all_main}


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "predict":
        return predict_main(argv[1:])
    if argv and argv[0] == "fill":
        return fill_main(argv[1:])
    mode = argv[0] if argv and argv[0] in COMMANDS else "all"
    args = make_parser(mode).parse_args(argv[1:] if argv and argv[0] in COMMANDS else argv)
    return eval_only(args) if args.eval_only else COMMANDS[mode](args)


if __name__ == "__main__":
    main_guard(main)
