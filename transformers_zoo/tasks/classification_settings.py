"""The settings of a classifier run (fine-tuning a pre-trained encoder, or the same model from scratch) and its
presets, shared by recipes/classify.py and the fine-tuning stages of recipes/mlm.py's one command.

    tree = classifier_tree("cpu", task="imdb", stage="finetune")   # preset, then the task's, then the stage's
    settings = ClassifySettings.from_dict(tree)                     # frozen, validated, JSON round trip

``stage`` is "finetune" (``init`` given: a pre-training run or ``hf:PATH``) or "scratch": from scratch nothing
pre-trained is to be preserved, and a fresh transformer wants a larger learning rate (the preset's ``scratch``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..config import ModelConfig
from ..settings import Settings, SettingsError
from ..training import TrainConfig

TASKS_NAMES = ("sst2", "imdb")
TOKENIZERS = ("unigram", "bpe", "wordpiece")  # wordpiece: a Hugging Face BERT's own, never trained here


@dataclass(frozen=True)
class ClassificationDataSettings(Settings):
    """The labelled data and how it is batched: ``task`` sst2 (test: dev.tsv) or imdb (its 25k test reviews), or
    the user's TSV files (``train_tsv``, ``valid_tsv``: else ``val_fraction`` of the train texts held out,
    ``test_tsv``: scored once) with their ``text_column`` and ``label_column``; the tokenizer trained on the
    train texts from scratch (``tokenizer``, ``vocab``, ``pretokenize``; with an init they name the encoder's);
    length-bucketed batches of ``batch_tokens`` (padding included, at most ``max_sentences`` rows);
    ``truncation`` of long texts (head, or head_tail for long reviews); ``token_mask``, a share of the training
    tokens replaced by [MASK] afresh every batch; ``max_examples`` / ``max_eval_examples`` keep the first rows."""

    task: str = "sst2"
    train_tsv: str | None = None
    valid_tsv: str | None = None
    test_tsv: str | None = None
    text_column: str = "sentence"
    label_column: str = "label"
    tokenizer: str = "unigram"
    pretokenize: str = "ptb"
    vocab: int = 8000
    batch_tokens: int = 1024
    max_sentences: int | None = 64
    eval_batch_tokens: int = 8192
    val_fraction: float = 0.1
    token_mask: float = 0.0
    truncation: str = "head"
    max_examples: int | None = None
    max_eval_examples: int | None = None

    def __post_init__(self) -> None:
        self.check_choice("task", TASKS_NAMES)
        self.check_choice("tokenizer", TOKENIZERS)
        self.check_choice("pretokenize", ("none", "ptb"))
        self.check_choice("truncation", ("head", "head_tail"))
        self.check_positive("vocab", "batch_tokens", "max_sentences", "eval_batch_tokens", "max_examples",
                            "max_eval_examples")
        self.check_range("val_fraction", 0.0, 1.0, high_open=True)
        self.check_range("token_mask", 0.0, 1.0, high_open=True)
        if (self.valid_tsv or self.test_tsv) and not self.train_tsv:
            raise SettingsError("data.valid_tsv" if self.valid_tsv else "data.test_tsv",
                                "needs data.train_tsv (without it the data is the task's)")


@dataclass(frozen=True, kw_only=True)
class ClassifySettings(Settings):
    """A classifier run: model, training and data settings, the preset they came from, ``init`` (the
    pre-training run, or one checkpoint folder of it, or ``hf:DIR``, its encoder starts from; None: from scratch)
    and ``tokenizer_from`` (a run or tokenizer folder whose tokenizer a run from scratch reads)."""

    model: ModelConfig
    train: TrainConfig
    data: ClassificationDataSettings = field(default_factory=ClassificationDataSettings)
    preset: str | None = None
    init: str | None = None
    tokenizer_from: str | None = None

    @property
    def stage(self) -> str:
        return "scratch" if self.init is None else "finetune"

    @classmethod
    def from_config(cls, saved: dict[str, Any]) -> ClassifySettings:
        """From a run's config.json, also one written before these settings (its start was `init_checkpoint`)."""
        names = set(cls.__dataclass_fields__)
        tree = {k: v for k, v in saved.items() if k in names}
        if "init" not in saved and saved.get("init_checkpoint"):
            tree["init"] = saved["init_checkpoint"]
        return cls.from_dict(tree)


# ---------------------------------------------------------------------------------------------------- presets

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
# task imdb: whole reviews (median ~230 words) at twice the pre-training length, fewer, longer batches and
# evaluations (validation is 2,500 reviews, test 25,000).
TASKS = {"sst2": {}, "imdb": {"model": dict(max_len=256),
                              "data": dict(truncation="head_tail", batch_tokens=4096, max_sentences=16),
                              "train": dict(max_steps=1500, warmup_steps=100, eval_every=300, save_every=300,
                                            max_minutes=30.0, patience=None)}}
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


def classifier_tree(preset: str, task: str | None, stage: str) -> dict[str, Any]:
    """The settings tree of a classifier run before the command line: the preset's, with the task's changes
    (``task`` None: the preset's task) and, ``stage`` "scratch", the preset's learning rate from scratch."""
    p = copy.deepcopy(PRESETS[preset])
    name = task or p["data"]["task"]
    if name not in TASKS:
        raise SettingsError("data.task", f"{name!r} is not one of {', '.join(TASKS)}")
    changes = TASKS[name]
    train = {**p["train"], **changes.get("train", {}), **(p["scratch"] if stage == "scratch" else {})}
    return {"model": {**p["model"], **changes.get("model", {})}, "train": train,
            "data": {**p["data"], **changes.get("data", {}), "task": name}, "preset": preset}
