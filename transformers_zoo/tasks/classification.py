"""Sequence classification (fine-tuning an encoder): labelled data, batches, loss, evaluation, and loading
a pre-trained encoder under a fresh classification head.

An example is ``(text, label_id)``; ``label_id`` indexes the label names, which come from the training file
(SST-2: ``negative``, ``positive``) and are stored with the run, so predictions print names. Inputs are
``[CLS] ids [SEP]`` (:class:`~transformers_zoo.batching.ClassificationCollator`, with the tokenizer's ids:
:func:`collator_for`); the model pools them
(`cls` or `mean`) and a linear layer gives ``(B, n_classes)`` logits. Loss and metrics count examples.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_model
from torch import nn

from ..batching import ClassificationCollator, EpochBatches, TokenMaskingCollator, token_budget_batches
from ..config import ModelConfig
from ..corpora import IMDB_LABELS, SST2_LABELS, DataError, load_imdb, load_sst2, read_labelled_tsv
from ..metrics import accuracy, macro_f1
from ..models.encoder_only import EncoderOnly
from ..settings import SettingsError
from ..tokenizers import Tokenizer
from ..training.checkpoint import MODEL_FILE
from ..training.losses import cross_entropy_sum
from .base import CountingStream, device_of
from .classification_settings import ClassificationDataSettings

__all__ = [
    "HEAD_PREFIX",
    "ClassificationTask",
    "LabelledData",
    "classifier_from_pretrained",
    "classify_loss",
    "classification_stream",
    "collator_for",
    "encode_examples",
    "evaluate_classifier",
    "holdout_examples",
    "load_encoder",
    "load_labelled_data",
    "load_task_data",
    "predict_proba",
    "prepare_classification_task",
]

Example = tuple[str, int]
#: Parameters of the classification head: everything else is the encoder (and the unused MLM head).
HEAD_PREFIX = "classifier."
EVAL_MAX_SENTENCES = 512


@dataclass
class LabelledData:
    """Splits of ``(text, label_id)`` examples (``train``, ``val``, and ``test`` when there is one), the label
    names the ids index, and where each split came from (for reports and error messages)."""

    splits: dict[str, list[Example]]
    label_names: list[str]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)


def holdout_examples(examples: Sequence[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """``(train, heldout)``: a deterministic ``fraction`` (at least one) of the distinct texts held out.

    The texts with the smallest sha256 are held out, with every copy of them, so the choice depends only on
    the data and no held-out text is trained on.
    """
    distinct = sorted({text for text, _ in examples}, key=lambda t: hashlib.sha256(t.encode()).digest())
    if len(distinct) < 2:
        raise DataError(f"need at least 2 distinct texts to hold some out for validation, got {len(distinct)}")
    heldout = set(distinct[: min(len(distinct) - 1, max(1, math.ceil(fraction * len(distinct))))])
    return [e for e in examples if e[0] not in heldout], [e for e in examples if e[0] in heldout]


def load_labelled_data(
    data_dir: str | os.PathLike | None,
    train_tsv: str | None = None,
    valid_tsv: str | None = None,
    test_tsv: str | None = None,
    text_column: str = "sentence",
    label_column: str = "label",
    val_fraction: float = 0.1,
    max_examples: int | None = None,
    max_eval_examples: int | None = None,
    label_names: Sequence[str] | None = None,
    task: str = "sst2",
) -> LabelledData:
    """The fine-tuning data: ``task`` "sst2" (train less its held-out ``val`` / val / test = dev.tsv) or "imdb"
    (its 25k train reviews less a held-out ``val_fraction`` / val / its 25k test reviews), or the user's
    tab-separated files.

    TSV files need a header naming ``text_column`` and ``label_column``; labels may be integers or strings,
    any number of classes. The label names are the training file's distinct labels, sorted (numerically
    when they are integers), unless ``label_names`` is given (a resumed or evaluated run passes its saved
    names, so the ids keep their meaning); the validation and test files are read against those names, so
    a label the training file lacks is a DataError naming ``file:line``, as is an empty text or label.
    Without ``valid_tsv``, ``val_fraction`` of the training texts is held out for validation; without
    ``test_tsv`` there is no test split. ``max_examples`` / ``max_eval_examples`` keep only the first rows
    (the smoke-test preset).
    """
    if train_tsv is None and task == "imdb":
        if valid_tsv or test_tsv:
            raise ValueError("a validation or test file needs a training file (without it the data is the task's)")
        names = list(IMDB_LABELS)
        train, val = holdout_examples([(r.text, names.index(r.label)) for r in load_imdb("train", data_dir)],
                                      val_fraction)
        test = [(r.text, names.index(r.label)) for r in load_imdb("test", data_dir)]
        data = LabelledData({"train": train, "val": val, "test": test}, names,
                            {"train": "imdb/train.jsonl.gz less the val reviews",
                             "val": f"imdb/train.jsonl.gz: {len(val)} reviews held out ({val_fraction:.0%})",
                             "test": "imdb/test.jsonl.gz"})
    elif train_tsv is None:
        if task != "sst2":
            raise ValueError(f"task {task!r} is not valid; choose sst2 or imdb")
        if valid_tsv or test_tsv:
            raise ValueError("a validation or test file needs a training file (without it the data is SST-2)")
        sst2 = load_sst2(data_dir)
        data = LabelledData(dict(sst2), list(SST2_LABELS),
                            {"train": "sst2/train.tsv less the val sentences and their phrases",
                             "val": f"sst2/train.tsv: {len(sst2['val'])} whole sentences held out",
                             "test": "sst2/dev.tsv"})
    else:
        train, names = read_labelled_tsv(train_tsv, text_column, label_column, labels=label_names)
        if len(names) < 2:
            raise DataError(f"only one label ({names[0]!r}) in column {label_column!r}; classification needs 2 "
                            "or more", train_tsv)
        splits = {"train": train}
        sources = {"train": str(train_tsv)}
        if valid_tsv:
            splits["val"], _ = read_labelled_tsv(valid_tsv, text_column, label_column, labels=names)
            sources["val"] = str(valid_tsv)
        else:
            splits["train"], splits["val"] = holdout_examples(train, val_fraction)
            sources["val"] = f"{train_tsv} ({val_fraction:.0%} of the texts held out)"
        if test_tsv:
            splits["test"], _ = read_labelled_tsv(test_tsv, text_column, label_column, labels=names)
            sources["test"] = str(test_tsv)
        data = LabelledData(splits, names, sources)
    for name in data.splits:
        limit = max_examples if name == "train" else max_eval_examples
        if limit:
            data.splits[name] = data.splits[name][:limit]
    return data


def load_task_data(d: ClassificationDataSettings, data_dir: str | os.PathLike | None,
                   label_names: Sequence[str] | None = None) -> LabelledData:
    """:func:`load_labelled_data` from a run's data settings."""
    return load_labelled_data(data_dir, d.train_tsv, d.valid_tsv, d.test_tsv, d.text_column, d.label_column,
                              d.val_fraction, d.max_examples, d.max_eval_examples, label_names, task=d.task)


def encode_examples(tokenizer: Tokenizer, examples: Sequence[Example], max_tokens: int,
                    truncation: str = "head") -> tuple[list, int]:
    """``[(ids, label)]`` with ids cut to ``max_tokens`` (the model's ``max_len`` less CLS and SEP), and how
    many were cut. ``truncation`` "head" keeps the first tokens of a long text, "head_tail" its first quarter
    and last three quarters (Sun et al. 2019, for long reviews, whose verdict is often at the end). A text
    that encodes to nothing keeps an empty id list (the model still sees CLS SEP)."""
    if truncation not in ("head", "head_tail"):
        raise ValueError(f"truncation {truncation!r} is not valid; choose head or head_tail")
    head = max_tokens if truncation == "head" else max_tokens // 4
    encoded, n_cut = [], 0
    for ids, (_, label) in zip(tokenizer.encode_batch([text for text, _ in examples]), examples, strict=True):
        if len(ids) > max_tokens:
            n_cut += 1
            ids = ids[:head] + ids[len(ids) - (max_tokens - head):] if max_tokens > head else ids[:head]
        encoded.append((ids, label))
    return encoded, n_cut


def collator_for(tokenizer: Tokenizer | None) -> ClassificationCollator:
    """``[CLS] ids [SEP]`` padded with the tokenizer's own pad, CLS and SEP ids (a pre-trained BERT's are
    not ours): exactly what the model was trained on. None: our fixed ids."""
    if tokenizer is None:
        return ClassificationCollator()
    if tokenizer.cls_id is None or tokenizer.sep_id is None:
        raise ValueError(f"a {tokenizer.kind} tokenizer has no [CLS]/[SEP] tokens to build classifier inputs with")
    return ClassificationCollator(pad_id=tokenizer.pad_id, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id)


def classification_stream(examples: Sequence[tuple[list[int], int]], max_tokens: int, seed: int,
                          max_sentences: int | None = None, token_mask: float = 0.0,
                          tokenizer: Tokenizer | None = None) -> EpochBatches:
    """Endless, resumable batches ``{"input_ids": (B, T), "labels": (B,)}``: length-bucketed token-budget
    batches (``B * T <= max_tokens``, at most ``max_sentences`` rows), reshuffled every epoch. With
    ``token_mask`` > 0 that share of the tokens is replaced by [MASK], afresh in every batch
    (:class:`~transformers_zoo.batching.TokenMaskingCollator`). ``tokenizer`` gives the special ids (default:
    ours, see :mod:`~transformers_zoo.tokenizers`)."""
    lengths = [len(ids) + 2 for ids, _ in examples]
    collate = collator_for(tokenizer)
    if token_mask and tokenizer is None:
        collate = TokenMaskingCollator(seed, token_mask)
    elif token_mask:
        if tokenizer.mask_id is None:
            raise ValueError(f"token masking needs a [MASK] token, which this {tokenizer.kind} tokenizer lacks")
        collate = TokenMaskingCollator(seed, token_mask, tokenizer.mask_id, collate, frozenset(tokenizer.special_ids))
    return EpochBatches(examples, lambda epoch: token_budget_batches(
        lengths, max_tokens, seed=seed, epoch=epoch, max_sentences=max_sentences), collate)


def classify_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the batch's examples and their count (the trainer divides)."""
    logits = model(batch["input_ids"], head="classify")  # (B, C)
    return cross_entropy_sum(logits, batch["labels"])


@torch.no_grad()
def predict_proba(model: nn.Module, examples: Sequence[tuple[list[int], int]], max_tokens: int,
                  device: torch.device, tokenizer: Tokenizer | None = None) -> torch.Tensor:
    """Class probabilities ``(N, C)`` of encoded examples, in their order (batched by length); ``tokenizer``
    gives the special ids (default: ours)."""
    lengths = [len(ids) + 2 for ids, _ in examples]
    batches = token_budget_batches(lengths, max_tokens, seed=0, epoch=0, shuffle=False,
                                   max_sentences=EVAL_MAX_SENTENCES)
    collate = collator_for(tokenizer)
    was_training = model.training
    model.eval()
    probs = torch.empty(len(examples), model.config.n_classes)
    for indices in batches:
        batch = collate([examples[i] for i in indices])
        logits = model(batch["input_ids"].to(device), head="classify").float()
        probs[indices] = logits.softmax(-1).cpu()
    model.train(was_training)
    return probs


def evaluate_classifier(model: nn.Module, examples: Sequence[tuple[list[int], int]], max_tokens: int,
                        device: torch.device, tokenizer: Tokenizer | None = None) -> dict[str, float]:
    """``loss`` (mean cross-entropy), ``accuracy``, ``macro_f1`` (more than two classes only; with two,
    accuracy is the usual number) and ``examples``, over encoded ``(ids, label)`` examples."""
    if not examples:
        raise DataError("no examples to evaluate")
    probs = predict_proba(model, examples, max_tokens, device, tokenizer)
    labels = torch.tensor([label for _, label in examples])
    preds = probs.argmax(-1)
    n_classes = probs.size(-1)
    out = {"loss": float(F.nll_loss(probs.clamp_min(1e-12).log(), labels)), "accuracy": accuracy(preds, labels)}
    if n_classes > 2:
        out["macro_f1"] = macro_f1(preds, labels, n_classes)
    out["examples"] = len(examples)
    return out


def load_encoder(model: nn.Module, ckpt_dir: str | os.PathLike) -> list[str]:
    """Load a pre-trained checkpoint's weights into ``model``: every parameter but the classification head,
    which keeps its fresh initialisation. Returns the names of the parameters it left alone.

    The checkpoint must hold exactly this model's encoder (same architecture and vocabulary) and no head:
    anything else is a ValueError naming the file and the first differing names.
    """
    path = Path(ckpt_dir) / MODEL_FILE
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (SafetensorError, FileNotFoundError) as err:
        raise ValueError(f"{path}: cannot read the pre-trained weights ({err})") from None
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"{path} does not fit this model: {str(err).strip().splitlines()[-1]}") from None
    not_head = sorted(name for name in missing if not name.startswith(HEAD_PREFIX))
    if not_head or unexpected:
        raise ValueError(f"{path} does not fit this model: missing {not_head[:5]}, unexpected {sorted(unexpected)[:5]}")
    head = [name for name, _ in model.named_parameters() if name.startswith(HEAD_PREFIX)]
    if head and not set(head) <= set(missing):
        raise ValueError(f"{path} already has a classification head (a fine-tuned run?); pass a pre-training run")
    return sorted(missing)


def classifier_from_pretrained(config: ModelConfig, ckpt_dir: str | os.PathLike) -> EncoderOnly:
    """An :class:`EncoderOnly` with a classification head (``config.n_classes > 0``) whose encoder is the
    pre-trained one in ``ckpt_dir`` and whose head is freshly initialised (from the current torch seed)."""
    if config.n_classes < 1:
        raise ValueError("classifier_from_pretrained needs config.n_classes > 0")
    model = EncoderOnly(config)
    load_encoder(model, ckpt_dir)
    return model


# ---------------------------------------------------------------------------------------------------------
# The task: what a classifier run trains on, evaluates and reports
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ClassificationTask:
    """Labelled data encoded for a model of ``max_len`` (``encoded[split]``: ``[(ids, label)]``), with the
    batch settings of ``settings`` (``batch_tokens``, ``max_sentences``, ``token_mask``, ``eval_batch_tokens``)
    and the ``notes`` a person should see (texts cut to max_len)."""

    # batches of every length: buffers of 0.1-4 MiB from glibc's heap (training.device); measured 2026-12-07 on 2
    # cores (cpu preset): 443 examples/s against 380 pinned at 128 KiB and 386 releasing; 0.87 GB, not 0.67
    heap = 4 << 20
    data: LabelledData
    tokenizer: Tokenizer
    settings: ClassificationDataSettings
    encoded: dict[str, list[tuple[list[int], int]]]
    notes: list[str] = field(default_factory=list)
    unit: str = "ex"

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(s for s in ("val", "test") if s in self.encoded)

    @property
    def report_split(self) -> str:
        """The split the report's tables show: test when there is one."""
        return "test" if "test" in self.encoded else "val"

    def train_stream(self, seed: int) -> CountingStream:
        s = self.settings
        return CountingStream(classification_stream(self.encoded["train"], s.batch_tokens, seed, s.max_sentences,
                                                    s.token_mask, self.tokenizer), self.tokenizer.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return classify_loss(model, batch)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return evaluate_classifier(model, self.encoded[split], self.settings.eval_batch_tokens, device_of(model),
                                   self.tokenizer)

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        split, names = self.report_split, self.data.label_names
        probs = predict_proba(model, self.encoded[split], self.settings.eval_batch_tokens, device_of(model),
                              self.tokenizer)
        return [("Data", "\n".join(f"- {s}: {src}" for s, src in self.data.sources.items())),
                (f"Confusion matrix ({split}; rows: true label, columns: predicted)",
                 confusion_table(probs, self.data.splits[split], names)),
                (f"Mistakes ({split}, first 8)", mistakes(probs, self.data.splits[split], names))]


def prepare_classification_task(data: LabelledData, tokenizer: Tokenizer, settings: ClassificationDataSettings,
                                max_len: int) -> ClassificationTask:
    """Encode every split for a model of ``max_len`` (``settings.truncation``: "head" or "head_tail"),
    checking that the batch budgets hold one full-length text."""
    for key in ("batch_tokens", "eval_batch_tokens"):
        if getattr(settings, key) < max_len:
            raise SettingsError(f"data.{key}", f"must be at least the model's max_len {max_len} (one full-length "
                                               "sentence per batch)", value=getattr(settings, key))
    encoded, notes = {}, []
    for split, examples in data.splits.items():
        encoded[split], n_cut = encode_examples(tokenizer, examples, max_len - 2, settings.truncation)
        if n_cut:
            notes.append(f"{split}: {n_cut} texts cut to max_len={max_len} tokens")
    return ClassificationTask(data, tokenizer, settings, encoded, notes)


def confusion_table(probs: torch.Tensor, examples: Sequence[Example], names: list[str]) -> str:
    """Markdown table of counts: rows the true label, columns the predicted one (``probs (N, C)``)."""
    counts = [[0] * len(names) for _ in names]
    for pred, (_, label) in zip(probs.argmax(-1).tolist(), examples, strict=True):
        counts[label][pred] += 1
    head = "| true \\ predicted | " + " | ".join(names) + " |\n|" + " --- |" * (len(names) + 1)
    return head + "\n" + "\n".join(f"| {name} | " + " | ".join(map(str, row)) + " |"
                                   for name, row in zip(names, counts, strict=True))


def mistakes(probs: torch.Tensor, examples: Sequence[Example], names: list[str], n: int = 8) -> str:
    """The first ``n`` misclassified texts with their true and predicted label."""
    lines = []
    for (text, label), p in zip(examples, probs, strict=True):
        pred = int(p.argmax())
        if pred != label:
            lines.append(f"- {text!r}: true {names[label]}, predicted {names[pred]} ({float(p[pred]):.2f})")
            if len(lines) == n:
                break
    return "\n".join(lines) or "(none)"
