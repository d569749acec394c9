"""Masked language modelling (BERT pre-training): sentences -> token ids, dynamic masking, the masked-token
loss, a held-out evaluation with a fixed mask, and filling in `[MASK]` from text.

Every example is one sentence (or one line of a text file), encoded as ``[CLS] ids [SEP]`` by
:class:`~transformers_zoo.batching.MLMCollator`, which masks 15% of the real tokens (80% MASK, 10% random,
10% unchanged; CLS/SEP/padding never). The loss runs the output projection only on the masked positions
(``model(ids, select=labels != -100)``): with 15% masking that skips 85% of the largest matrix product.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from os import PathLike

import torch
from torch import nn

from ..batching import IGNORE_INDEX, EpochBatches, MLMCollator, token_budget_batches
from ..corpora import DataError, read_text
from ..tokenizers import SentencePieceTokenizer, Tokenizer, train_tokenizer
from ..training.losses import cross_entropy_sum

__all__ = [
    "EVAL_MASK_SEED",
    "MASK_TEXT",
    "encode_masked_text",
    "encode_sentences",
    "evaluate_mlm",
    "fill_mask",
    "mlm_loss",
    "mlm_stream",
    "read_sentences",
    "split_heldout",
    "train_sentencepiece",
]

#: The seed of the evaluation mask. Fixed (not the run's --seed), so every run scores the same positions of
#: the same held-out text and their masked accuracy and perplexity can be compared.
EVAL_MASK_SEED = 1_000_003
#: What stands for the mask token in text given to :func:`fill_mask`.
MASK_TEXT = "[MASK]"
#: Rows per evaluation batch at most (the token budget usually binds first).
EVAL_MAX_SENTENCES = 512


def read_sentences(path: str | PathLike) -> list[str]:
    """One example per non-blank line of a text file (``.gz`` too), surrounding whitespace stripped.

    Blank lines (paragraph breaks) are skipped; a file with no text is a DataError naming it.
    """
    texts = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not texts:
        raise DataError("no non-blank lines", path)
    return texts


def split_heldout(texts: Sequence[str], fraction: float = 0.05) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: a deterministic ``fraction`` of the texts, at least one, held out.

    The held-out texts are those with the smallest sha256, so the choice depends on the texts alone (not on
    a seed or the file's order); every copy of a held-out text leaves the training side, so no held-out
    sentence is ever seen in training. Fewer than two distinct texts is a DataError.
    """
    distinct = sorted(set(texts), key=lambda t: hashlib.sha256(t.encode()).digest())
    if len(distinct) < 2:
        raise DataError(f"need at least 2 distinct lines to hold some out for evaluation, got {len(distinct)}")
    n_heldout = min(len(distinct) - 1, max(1, math.ceil(fraction * len(distinct))))
    heldout = set(distinct[:n_heldout])
    return [t for t in texts if t not in heldout], [t for t in texts if t in heldout]


def train_sentencepiece(texts: Sequence[str], kind: str, vocab_size: int, pretokenize: str | None = None) -> Tokenizer:
    """A sentencepiece model (``kind`` "unigram" or "bpe") trained on ``texts`` only; ``vocab_size`` is an upper
    bound (a small corpus gets a smaller vocabulary instead of an error; the recipe prints the size it got).
    ``pretokenize="ptb"`` puts every text into SST-2's form first (lower-cased Penn Treebank tokens)."""
    if kind not in ("unigram", "bpe"):
        raise ValueError(f"tokenizer kind {kind!r} is not valid; choose unigram or bpe")
    return train_tokenizer(kind, texts, vocab_size, hard_vocab_limit=False, pretokenize=pretokenize)


def encode_sentences(tokenizer: Tokenizer, texts: Sequence[str], max_tokens: int) -> tuple[list[list[int]], int]:
    """Token ids of each text, split into consecutive chunks of at most ``max_tokens`` (the model's
    ``max_len`` less CLS and SEP), so no text is lost; returns ``(sequences, n_split)``, where ``n_split``
    counts the texts that needed more than one chunk. Texts that encode to nothing are dropped."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    seqs: list[list[int]] = []
    n_split = 0
    for ids in tokenizer.encode_batch(texts):
        n_split += len(ids) > max_tokens
        seqs.extend(ids[i : i + max_tokens] for i in range(0, len(ids), max_tokens))
    return seqs, n_split


def mlm_stream(seqs: Sequence[list[int]], max_tokens: int, seed: int, vocab_size: int,
               mlm_probability: float = 0.15) -> EpochBatches:
    """Endless, resumable batches ``{"input_ids": (B, T), "labels": (B, T)}`` over ``seqs``.

    Length-bucketed token-budget batches (``B * T <= max_tokens``, counting CLS and SEP), reshuffled every
    epoch; a fresh mask per batch and epoch (dynamic masking), reproducible from ``seed``.
    """
    lengths = [len(s) + 2 for s in seqs]
    collate = MLMCollator(vocab_size=vocab_size, seed=seed, mlm_probability=mlm_probability)
    return EpochBatches(seqs, lambda epoch: token_budget_batches(lengths, max_tokens, seed=seed, epoch=epoch),
                        collate)


def mlm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy over the masked positions and their count; logits only where masked."""
    labels = batch["labels"]
    chosen = labels != IGNORE_INDEX  # (B, T)
    logits = model(batch["input_ids"], select=chosen)  # (N, V), N = masked positions
    return cross_entropy_sum(logits, labels[chosen])


@torch.no_grad()
def evaluate_mlm(model: nn.Module, seqs: Sequence[list[int]], max_tokens: int, device: torch.device,
                 vocab_size: int, mlm_probability: float = 0.15) -> dict[str, float]:
    """Masked-token loss, perplexity and accuracy over ``seqs`` with a fixed mask (:data:`EVAL_MASK_SEED`).

    The batches are fixed too (sorted by length, no shuffling), so the same model and data always give the
    same numbers. Returns ``loss`` (nats per masked token), ``ppl``, ``masked_accuracy`` (top-1 prediction
    equals the original token) and ``masked_tokens``.
    """
    lengths = [len(s) + 2 for s in seqs]
    batches = token_budget_batches(lengths, max_tokens, seed=0, epoch=0, shuffle=False,
                                   max_sentences=EVAL_MAX_SENTENCES)
    collate = MLMCollator(vocab_size=vocab_size, seed=EVAL_MASK_SEED, mlm_probability=mlm_probability)
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for index, indices in enumerate(batches):
        batch = collate([seqs[i] for i in indices], epoch=0, index=index)
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        chosen = labels != IGNORE_INDEX
        if not bool(chosen.any()):
            continue
        logits = model(ids, select=chosen).float()  # (N, V)
        loss, n = cross_entropy_sum(logits, labels[chosen])
        total += float(loss)
        correct += int((logits.argmax(-1) == labels[chosen]).sum())
        count += int(n)
    model.train(was_training)
    if count == 0:
        raise DataError("the held-out text has no maskable tokens to evaluate on")
    loss = total / count
    return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "masked_accuracy": correct / count,
            "masked_tokens": count}


def encode_masked_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` where each literal ``[MASK]`` becomes the MASK id.

    The tokenizers keep ``[MASK]`` a control symbol, so raw text can never produce the mask id by accident
    (and sentencepiece would spell the string out byte by byte); the text is therefore split at ``[MASK]``
    and the parts encoded separately. Each part gets sentencepiece's word-start marker, which is what a
    space before the next word gives, so ``"was [MASK] ."`` encodes ``was`` and ``.`` as in running text.
    """
    parts = text.split(MASK_TEXT)
    ids: list[int] = []
    for i, part in enumerate(parts):
        if part.strip():
            ids.extend(tokenizer.encode(part.strip()))
        if i + 1 < len(parts):
            ids.append(tokenizer.mask_id)
    return ids


@torch.no_grad()
def fill_mask(model: nn.Module, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """The ``top_k`` most likely tokens (decoded text, probability) for each ``[MASK]`` of ``text``, in order.

    The input is ``[CLS] ids [SEP]`` as in pre-training; ``text`` without ``[MASK]`` or longer than the
    model's ``max_len`` is a ValueError.
    """
    ids = encode_masked_text(tokenizer, text)
    if tokenizer.mask_id not in ids:
        raise ValueError(f"no {MASK_TEXT} in the text {text!r}: write {MASK_TEXT} where a word should be filled in")
    row = [tokenizer.cls_id, *ids, tokenizer.sep_id]
    max_len = getattr(getattr(model, "config", None), "max_len", None)
    if max_len is not None and len(row) > max_len:
        raise ValueError(f"the text is {len(row)} tokens with CLS and SEP, longer than the model's max_len={max_len}")
    device = next(model.parameters()).device
    input_ids = torch.tensor([row], device=device)
    was_training = model.training
    model.eval()
    probs = model(input_ids, select=input_ids == tokenizer.mask_id).float().softmax(-1)  # (n_masks, V)
    model.train(was_training)
    k = min(top_k, probs.size(-1))
    out = []
    for p in probs:
        top = p.topk(k)
        out.append([(_show(tokenizer, int(i)), float(v)) for v, i in zip(top.values, top.indices, strict=True)])
    return out


def _show(tokenizer: Tokenizer, token: int) -> str:
    """A token as text: the decoded piece, marked ``##`` when it continues a word (BERT's convention), or
    the raw piece for specials and byte pieces that decode to nothing."""
    text, piece = tokenizer.decode([token]), tokenizer.id_to_piece(token)
    if not text.strip():
        return piece
    return text if piece.startswith("\u2581") or not isinstance(tokenizer, SentencePieceTokenizer) else "##" + text
