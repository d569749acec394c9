"""Sentence embeddings trained contrastively, evaluated by caption-to-caption retrieval (Multi30k task 2), or
by English<->German retrieval (``lang="en-de"``: one multilingual encoder trained on task 1's parallel pairs).

Training pairs are two captions of one image (paraphrases); each batch holds ``batch_size`` distinct images, so
the other captions of the batch are the negatives. The loss is symmetric InfoNCE (CLIP's, van den Oord et al.
2018) over cosine similarities divided by ``temperature``. With ``text`` (unsupervised SimCSE, Gao et al. 2021)
a pair is one text twice: dropout makes the two views differ. Evaluation ranks, for each caption of a split,
all the others (relevant: the other captions of its image): dense R@1/5/10 and MRR on every split, and on the
test split BM25 and hybrid (reciprocal-rank fusion of both) rows beside it. With ``lang="en-de"`` a pair is an
English caption and its German translation, and each English sentence of a split ranks all the German ones (and
the other way round; relevant: its translation): a measure of one vector space shared by two languages.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..batching import PhasedStream, derive_seed, pad
from ..config import ModelConfig
from ..corpora import MULTI30K_TASK2_LANGS, load_multi30k, load_multi30k_captions
from ..retrieval.captions import DEPTH, bm25_rankings, caption_set, retrieval_rows
from ..retrieval.documents import read_corpus
from ..retrieval.encode import embed_by_length, encode_texts, frame_ids
from ..retrieval.metrics import ranking_metrics
from ..settings import Settings, SettingsError
from ..tokenizers import Tokenizer
from ..training import TrainConfig
from ..training.device import autocast, cpu_has_native_bf16
from .base import TaskBase
from .finetuning import is_hf, load_encoder_run
from .mlm import mlm_loss
from .mlm_corpus import PackedBlocks, pack_documents, packed_mlm_stream

__all__ = ["CrossLingualTask", "EmbedDataSettings", "EmbedSettings", "EmbeddingTask", "PairStream", "embedding_task",
           "init_encoder", "supcon"]

ROWS = ("dense", "bm25", "hybrid")
CROSS_LINGUAL = "en-de"  # the lang of a multilingual encoder: English<->German retrieval on Multi30k task 1
METRICS = ("r@1", "r@5", "r@10", "mrr")


@dataclass(frozen=True)
class EmbedDataSettings(Settings):
    """What a sentence encoder trains and is evaluated on: Multi30k task 2 captions in ``lang`` (pairs of one
    image's captions), task 1's English-German pairs (``lang="en-de"``), or the texts of ``text`` (SimCSE);
    ``tokenizer`` trained on them (``vocab`` pieces; an ``--init`` run brings its own); texts cut to
    ``max_tokens``; ``batch_size`` pairs a step; ``temperature`` of InfoNCE; ``max_train_images`` /
    ``max_eval_images`` cut the data (smoke tests; pairs for ``en-de``). ``views``: captions of one image in a
    batch; 2 is a pair (symmetric InfoNCE); more (up to Multi30k's 5) make every other caption of the image a
    positive of each (``supcon``: Khosla et al. 2020's loss over all the batch's captions). SimCSE and en-de
    groups are pairs whatever ``views`` says. ``mlm_steps``: a masked-LM phase first, on the training texts packed
    into blocks of ``max_tokens`` (``mlm_blocks`` a step, ``mlm_probability`` of the tokens masked), so a run
    from scratch starts its contrastive phase from a pre-trained encoder (the schedule restarts between).
    ``mlm_amp="auto"`` runs that phase under bf16 autocast where bf16 is native (CUDA; a CPU with AMX or
    AVX512-BF16: blocks of 64 tokens train 1.2x faster there, where the short captions of the contrastive phase
    train slower: it stays float32); "off" keeps the run's precision."""

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
    views: int = 2
    mlm_steps: int = 0
    mlm_blocks: int = 64
    mlm_probability: float = 0.3
    mlm_amp: str = "auto"

    def __post_init__(self) -> None:
        self.check_choice("lang", (*MULTI30K_TASK2_LANGS, CROSS_LINGUAL))
        self.check_choice("tokenizer", ("char", "bpe", "unigram"))
        self.check_positive("vocab", "max_tokens", "batch_size", "temperature", "max_train_images",
                            "max_eval_images", "eval_batch_size")
        if not 2 <= self.views <= 5:
            raise SettingsError("views", "must be 2-5 (captions of one image a batch; 2: a pair)", value=self.views)
        if self.mlm_steps < 0:
            raise SettingsError("mlm_steps", "must be >= 0 (0: no masked-LM phase)", value=self.mlm_steps)
        self.check_positive("mlm_blocks")
        self.check_range("mlm_probability", 0.0, 1.0, high_open=True)
        self.check_positive("mlm_probability")
        self.check_choice("mlm_amp", ("auto", "off"))


@dataclass(frozen=True, kw_only=True)
class EmbedSettings(Settings):
    """A sentence-encoder run: model, training and data settings, the preset, and ``init``: the start (None:
    from scratch; a pre-training run of recipes/mlm.py; ``hf:DIR`` a BERT or sentence-transformers checkpoint)."""

    model: ModelConfig
    train: TrainConfig
    data: EmbedDataSettings = field(default_factory=EmbedDataSettings)
    preset: str | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        steps = self.data.mlm_steps
        if steps and self.train.max_steps is not None and steps >= self.train.max_steps:
            raise SettingsError("data.mlm_steps", f"must be below the step budget {self.train.max_steps}", value=steps)
        if steps and self.train.restart_at != steps:  # each phase warms up and decays, as two runs would
            object.__setattr__(self, "train", dataclasses.replace(self.train, restart_at=steps))


class PairStream:
    """Endless, resumable batches ``{"views": (B * views, T)}``: rows ``i * views ...`` are ``views`` different
    members of group i (captions of one image, distinct while the group has that many; a SimCSE group has one
    text, given twice). Groups are visited in a random order per epoch, ``batch_size`` distinct groups a batch;
    everything is a function of (seed, epoch, position)."""

    def __init__(self, groups: Sequence[Sequence[Sequence[int]]], batch_size: int, seed: int, pad_id: int,
                 views: int = 2):
        if len(groups) < 2:
            raise ValueError(f"contrastive training needs at least 2 groups of texts, got {len(groups)}")
        self.groups, self.seed, self.pad_id, self.views = groups, seed, pad_id, views
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
        rows = []
        for g in chosen:
            members = self.groups[g]
            picks = (rng.choice(len(members), size=self.views, replace=len(members) < self.views)
                     if len(members) > 1 else [0] * self.views)
            rows.append([members[i] for i in picks])
        self.position += self.batch_size
        return {"views": pad([text for group in rows for text in group], self.pad_id)}

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def supcon(vectors: torch.Tensor, views: int, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE (SupCon's L_out, Khosla et al. 2020) of ``(B * views, D)`` vectors, group-major:
    each vector's softmax runs over all the others (cosine / temperature), and its loss is the mean negative log
    probability of the ``views - 1`` others of its group; mean over vectors."""
    z = F.normalize(vectors.float(), dim=-1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    group = torch.arange(len(z), device=z.device) // views
    positive = (group[:, None] == group[None, :]).fill_diagonal_(False)
    log_p = logits.log_softmax(dim=-1)
    return -(log_p.masked_fill(~positive, 0.0).sum(dim=-1) / (views - 1)).mean()


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of paired vectors ``(B, D)``: row i of ``a`` must pick row i of ``b`` among all rows of
    ``b``, and the other way round; mean over rows of both directions."""
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class EmbeddingTask(TaskBase):
    """Contrastive training on groups of paraphrases; caption retrieval on ``eval_images`` per split."""

    unit = "pair"
    # many buffers of 0.1-4 MiB (short texts in chunks): from the heap, not mapped afresh each step; measured
    # 2026-12-06 on 2 cores: 1.3x (masked LM) and 1.4x (contrastive) the steps/s, peak memory 1.7 GB, not 1.5
    heap = 4 << 20

    def __init__(self, tokenizer: Tokenizer, train_groups: list[list[str]], eval_images: dict[str, list[list[str]]],
                 settings: EmbedDataSettings, max_len: int, source: str):
        self.tokenizer, self.settings, self.source = tokenizer, settings, source
        self.max_tokens = min(settings.max_tokens, max_len)
        self.train_texts = sum(len(g) for g in train_groups)
        self.groups = [frame_ids(tokenizer, g, self.max_tokens) for g in train_groups]
        self.mlm_blocks: PackedBlocks | None = None
        if settings.mlm_steps:  # the masked-LM phase reads every training text once per epoch, packed
            self.mlm_blocks = pack_documents(tokenizer, list(dict.fromkeys(t for g in train_groups for t in g)),
                                             self.max_tokens)
            self.unit = "ex"  # a block of texts in the masked-LM phase, a group (an image's captions) after
        # captions of one image a batch: as many as asked while groups have them (a SimCSE text or an en-de pair: 2)
        self.views = min(settings.views, max(2, min((len(g) for g in train_groups), default=2)))
        self.eval_splits = tuple(eval_images)
        self.test_split = self.eval_splits[-1]
        self.set_eval(eval_images)

    def set_eval(self, eval_images: dict[str, list[list[str]]]) -> None:
        self.eval_sets = {s: caption_set(images) for s, images in eval_images.items()}
        self.eval_rows = {s: frame_ids(self.tokenizer, t, self.max_tokens) for s, (t, _) in self.eval_sets.items()}
        self._bm25: dict[str, np.ndarray] = {}

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {len(t)} captions" for s, (t, _) in self.eval_sets.items())
        return (f"data: {self.source}: {len(self.groups)} training groups ({self.train_texts} texts); evaluation "
                f"{sizes}; vocabulary {self.tokenizer.vocab_size}" + self.mlm_line())

    def mlm_line(self) -> str:
        if self.mlm_blocks is None:
            return ""
        d, b = self.settings, self.mlm_blocks
        return (f"\nphase 1: {d.mlm_steps} steps of masked LM ({d.mlm_probability:.0%} masked) on the training texts "
                f"packed into {len(b):,} blocks of up to {self.max_tokens} tokens, {d.mlm_blocks} a step; then "
                f"contrastive (the schedule starts over)")

    def train_stream(self, seed: int) -> PairStream | PhasedStream:
        pairs = PairStream(self.groups, self.settings.batch_size, seed, self.tokenizer.pad_id, self.views)
        if self.mlm_blocks is None:
            return pairs
        d, tok = self.settings, self.tokenizer
        mlm = packed_mlm_stream(self.mlm_blocks, d.mlm_blocks, seed, tok, tok.vocab_size, d.mlm_probability)
        return PhasedStream(mlm, pairs, d.mlm_steps)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        if "labels" in batch:  # the masked-LM phase: mean over masked tokens, counted as blocks
            device = batch["input_ids"].device
            native = device.type == "cuda" or cpu_has_native_bf16()
            with autocast(self.settings.mlm_amp == "auto" and native, device):
                total, masked = mlm_loss(model, batch)
            blocks = len(batch["input_ids"])
            return total.float() * blocks / masked.clamp(min=1), blocks
        vectors = embed_by_length(model, batch["views"], self.tokenizer.pad_id)
        groups, temperature = len(vectors) // self.views, self.settings.temperature
        if self.views == 2:  # pairs: symmetric InfoNCE between the first and the second of each group
            return info_nce(vectors[0::2], vectors[1::2], temperature) * groups, groups
        return supcon(vectors, self.views, temperature) * groups, groups  # every caption a positive of the others

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


class CrossLingualTask(EmbeddingTask):
    """A multilingual encoder: trained on translation pairs, evaluated by English->German and German->English
    retrieval among a split's pairs (``eval_pairs``: ``{split: [(en, de), ...]}``); dense rows only (BM25 cannot
    match across languages). ``r@k`` / ``mrr`` are English->German (val ``mrr`` selects the checkpoint),
    ``de_en_*`` the other way."""

    def set_eval(self, eval_pairs: dict[str, list[tuple[str, str]]]) -> None:
        self.eval_sets = {s: ([en for en, _ in p], [de for _, de in p]) for s, p in eval_pairs.items()}
        self.eval_rows = {s: tuple(frame_ids(self.tokenizer, side, self.max_tokens) for side in sides)
                          for s, sides in self.eval_sets.items()}

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {len(en)} pairs" for s, (en, _) in self.eval_sets.items())
        return (f"data: {self.source}: {len(self.groups)} training pairs; evaluation {sizes}; joint vocabulary "
                f"{self.tokenizer.vocab_size}")

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        en, de = (encode_texts(model, rows, self.tokenizer.pad_id, self.settings.eval_batch_size, normalize=True)
                  for rows in self.eval_rows[split])
        relevant = [{i} for i in range(len(en))]
        out = {}
        for prefix, queries, docs in (("", en, de), ("de_en_", de, en)):
            ranked = (queries @ docs.T).topk(min(DEPTH, len(docs)), dim=1).indices.numpy()
            out.update({prefix + k: v for k, v in ranking_metrics(ranked, relevant).items()})
        return out

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        split = self.test_split
        m = self.evaluate(model, split)
        head = "| direction | " + " | ".join(k.upper() for k in METRICS) + " |\n|---|" + "---:|" * len(METRICS) + "\n"
        rows = "".join(f"| {name} | " + " | ".join(f"{m[prefix + k]:.1f}" for k in METRICS) + " |\n"
                       for name, prefix in (("English -> German", ""), ("German -> English", "de_en_")))
        n = len(self.eval_sets[split][0])
        return [(f"Cross-lingual retrieval, {split}",
                 f"Each of {n} sentences ranks the {n} sentences of the other language; relevant: its translation "
                 f"(chance R@1 {100 / n:.1f}). Cosine of the one encoder; percent; MRR over the top {DEPTH}.\n\n"
                 + head + rows)]

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        m = evals[self.test_split]
        return (f"{self.test_split} en->de R@1 {m['r@1']:.1f} MRR {m['mrr']:.1f}; de->en R@1 {m['de_en_r@1']:.1f} "
                f"MRR {m['de_en_mrr']:.1f}")


@functools.lru_cache(maxsize=1)
def init_encoder(init: str, pooling: str | None) -> tuple[dict, dict, object]:
    """The ``init`` encoder's config (``pooling``: None keeps a sentence-transformers checkpoint's, else mean),
    weights and tokenizer, read once for both a recipe's settings and its prepare."""
    if is_hf(init):
        from transformers_zoo.interop.sentence_transformers import load_sentence_encoder

        encoder = load_sentence_encoder(init, pooling or "mean")
        model, tok = encoder.model, encoder.tokenizer
    else:
        _, _, tok, model = load_encoder_run(init, "pretrain")
    pooling = pooling or (model.config.pooling if is_hf(init) else "mean")  # a checkpoint's own, else mean
    return dict(model.config.to_dict(), n_classes=0, pooling=pooling), model.state_dict(), tok


def embedding_task(d: EmbedDataSettings, data_dir: str | None, tokenizer_for: Any, max_len: int) -> EmbeddingTask:
    """The task of ``d``: its training groups and held-out sets read (Multi30k task 2 captions, task 1 pairs for
    ``en-de``, or ``text`` for SimCSE with the captions' held-out sets), ``tokenizer_for(texts)`` giving the
    tokenizer (trained on the training texts, or the run's)."""
    if d.lang == CROSS_LINGUAL:
        pairs = load_multi30k(data_dir, "en", "de")
        evals = {"val": pairs["val"][:d.max_eval_images], "test_2016": pairs["test_2016_flickr"][:d.max_eval_images]}
        groups = [list(p) for p in pairs["train"][:d.max_train_images]]
        if d.text:
            raise ValueError("--text (SimCSE) trains on one language's texts; en-de trains on translation pairs")
        texts = [t for g in groups for t in g]
        return CrossLingualTask(tokenizer_for(texts), groups, evals, d, max_len, "Multi30k task 1 en-de pairs")
    images = load_multi30k_captions(data_dir, d.lang, ("val", "test_2016") if d.text else ("train", "val", "test_2016"))
    evals = {split: images[split][:d.max_eval_images] for split in ("val", "test_2016")}
    if d.text:
        groups, source = [[t] for t in read_corpus(d.text)[1][:d.max_train_images]], f"SimCSE on {d.text}"
    else:
        groups, source = images["train"][:d.max_train_images], f"Multi30k task 2 caption pairs ({d.lang})"
    return EmbeddingTask(tokenizer_for([t for g in groups for t in g]), groups, evals, d, max_len, source)
