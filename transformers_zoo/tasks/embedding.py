"""Sentence embeddings trained contrastively, evaluated by caption-to-caption retrieval (Multi30k task 2).

Training pairs are two captions of one image (paraphrases); each batch holds ``batch_size`` distinct images, so
the other captions of the batch are the negatives. The loss is symmetric InfoNCE (CLIP's, van den Oord et al.
2018) over cosine similarities divided by ``temperature``. With ``text`` (unsupervised SimCSE, Gao et al. 2021)
a pair is one text twice: dropout makes the two views differ. Evaluation ranks, for each caption of a split,
all the others (relevant: the other captions of its image): dense R@1/5/10 and MRR on every split, and on the
test split BM25 and hybrid (reciprocal-rank fusion of both) rows beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..batching import derive_seed, pad
from ..config import ModelConfig
from ..corpora import MULTI30K_TASK2_LANGS
from ..retrieval.captions import bm25_rankings, caption_set, retrieval_rows
from ..retrieval.encode import encode_texts, frame_ids
from ..settings import Settings
from ..tokenizers import Tokenizer
from ..training import TrainConfig
from .base import TaskBase

__all__ = ["EmbedDataSettings", "EmbedSettings", "EmbeddingTask", "PairStream"]

ROWS = ("dense", "bm25", "hybrid")
METRICS = ("r@1", "r@5", "r@10", "mrr")


@dataclass(frozen=True)
class EmbedDataSettings(Settings):
    """What a sentence encoder trains and is evaluated on: Multi30k task 2 captions in ``lang`` (pairs of one
    image's captions), or the texts of ``text`` (SimCSE); ``tokenizer`` trained on them (``vocab`` pieces; an
    ``--init`` run brings its own); texts cut to ``max_tokens``; ``batch_size`` pairs a step; ``temperature``
    of InfoNCE; ``max_train_images`` / ``max_eval_images`` cut the data (smoke tests)."""

    lang: str = "en"
    text: str | None = None
    tokenizer: str = "unigram"
    vocab: int = 8000
    max_tokens: int = 64
    batch_size: int = 128
    temperature: float = 0.05
    max_train_images: int | None = None
    max_eval_images: int | None = None
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        self.check_choice("lang", MULTI30K_TASK2_LANGS)
        self.check_choice("tokenizer", ("char", "bpe", "unigram"))
        self.check_positive("vocab", "max_tokens", "batch_size", "temperature", "max_train_images",
                            "max_eval_images", "eval_batch_size")


@dataclass(frozen=True, kw_only=True)
class EmbedSettings(Settings):
    """A sentence-encoder run: model, training and data settings, the preset, and ``init``: the start (None:
    from scratch; a pre-training run of recipes/mlm.py; ``hf:DIR`` a BERT or sentence-transformers checkpoint)."""

    model: ModelConfig
    train: TrainConfig
    data: EmbedDataSettings = field(default_factory=EmbedDataSettings)
    preset: str | None = None
    init: str | None = None


class PairStream:
    """Endless, resumable batches ``{"a": (B, Ta), "b": (B, Tb)}``: row i of both are two different members of
    one group (two captions of one image; a SimCSE group has one text, given twice). Groups are visited in a
    random order per epoch, ``batch_size`` distinct groups a batch; everything is a function of (seed, epoch,
    position)."""

    def __init__(self, groups: Sequence[Sequence[Sequence[int]]], batch_size: int, seed: int, pad_id: int):
        if len(groups) < 2:
            raise ValueError(f"contrastive training needs at least 2 groups of texts, got {len(groups)}")
        self.groups, self.seed, self.pad_id = groups, seed, pad_id
        self.batch_size = min(batch_size, len(groups))
        self.epoch, self.position = 0, 0

    def __iter__(self) -> PairStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.position + self.batch_size > len(self.groups):  # drop the ragged end: every batch is full
            self.epoch, self.position = self.epoch + 1, 0
        order = np.random.default_rng(derive_seed(self.seed, self.epoch)).permutation(len(self.groups))
        chosen = order[self.position:self.position + self.batch_size]
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, self.position))
        a, b = [], []
        for g in chosen:
            members = self.groups[g]
            i, j = rng.choice(len(members), size=2, replace=False) if len(members) > 1 else (0, 0)
            a.append(members[i]), b.append(members[j])
        self.position += self.batch_size
        return {"a": pad(a, self.pad_id), "b": pad(b, self.pad_id)}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired vectors ``(B, D)``: row i of ``a`` must pick row i of ``b`` among all rows of
    ``b``, and the other way round; mean over rows of both directions."""
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class EmbeddingTask(TaskBase):
    """Contrastive training on groups of paraphrases; caption retrieval on ``eval_images`` per split."""

    unit = "pair"

    def __init__(self, tokenizer: Tokenizer, train_groups: list[list[str]], eval_images: dict[str, list[list[str]]],
                 settings: EmbedDataSettings, max_len: int, source: str):
        self.tokenizer, self.settings, self.source = tokenizer, settings, source
        self.max_tokens = min(settings.max_tokens, max_len)
        self.train_texts = sum(len(g) for g in train_groups)
        self.groups = [frame_ids(tokenizer, g, self.max_tokens) for g in train_groups]
        self.eval_splits = tuple(eval_images)
        self.test_split = self.eval_splits[-1]
        self.eval_sets = {s: caption_set(images) for s, images in eval_images.items()}
        self.eval_rows = {s: frame_ids(tokenizer, texts, self.max_tokens) for s, (texts, _) in self.eval_sets.items()}
        self._bm25: dict[str, np.ndarray] = {}

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {len(t)} captions" for s, (t, _) in self.eval_sets.items())
        return (f"data: {self.source}: {len(self.groups)} training groups ({self.train_texts} texts); evaluation "
                f"{sizes}; vocabulary {self.tokenizer.vocab_size}")

    def train_stream(self, seed: int) -> PairStream:
        return PairStream(self.groups, self.settings.batch_size, seed, self.tokenizer.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        a, b = model(batch["a"], head="embed"), model(batch["b"], head="embed")
        return info_nce(a, b, self.settings.temperature) * len(a), len(a)

    def embed_split(self, model: nn.Module, split: str) -> np.ndarray:
        return encode_texts(model, self.eval_rows[split], self.tokenizer.pad_id, self.settings.eval_batch_size,
                            normalize=True).numpy()

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Dense ``r@1, r@5, r@10, mrr`` (percent); on the test split also ``bm25_*`` and ``hybrid_*``."""
        texts, relevant = self.eval_sets[split]
        vectors = self.embed_split(model, split)
        if split != self.test_split:
            return retrieval_rows(texts, relevant, vectors, lang=None)["dense"]
        if split not in self._bm25:
            self._bm25[split] = bm25_rankings(texts, self.settings.lang)
        rows = retrieval_rows(texts, relevant, vectors, self._bm25[split])
        return {(k if row == "dense" else f"{row}_{k}"): v for row, m in rows.items() for k, v in m.items()}

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        split = self.test_split
        metrics = self.evaluate(model, split)
        head = "| ranker | " + " | ".join(m.upper() for m in METRICS) + " |\n|---|" + "---:|" * len(METRICS) + "\n"
        body = "".join(f"| {row} | " + " | ".join(f"{metrics[(m if row == 'dense' else f'{row}_{m}')]:.1f}"
                                                  for m in METRICS) + " |\n" for row in ROWS)
        n = len(self.eval_sets[split][0])
        return [(f"Caption retrieval, {split} ({self.settings.lang})",
                 f"For each of {n} captions, rank the other {n - 1}; relevant: the other captions of its image. "
                 f"Dense: cosine of the trained encoder; BM25: bm25s (k1 1.5, b 0.75, stop words); hybrid: "
                 f"reciprocal-rank fusion (k 60) of both. Percent; MRR over the top 100.\n\n" + head + body)]

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        m = evals[self.test_split]
        return (f"{self.test_split} R@1 dense {m['r@1']:.1f}, BM25 {m['bm25_r@1']:.1f}, hybrid {m['hybrid_r@1']:.1f}; "
                f"MRR dense {m['mrr']:.1f}, BM25 {m['bm25_mrr']:.1f}, hybrid {m['hybrid_mrr']:.1f}")
