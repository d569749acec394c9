"""Language modelling: text -> tokens -> contiguous blocks, next-token loss, full-split evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..batching import IGNORE_INDEX, EpochBatches, LMBlocks, LMCollator
from ..corpora import split_text
from ..tokenizers import CharTokenizer, GPT2Tokenizer, SentencePieceTokenizer, Tokenizer
from ..training.losses import cross_entropy_sum


@dataclass
class LMData:
    """A tokenizer and each split as one 1-D token tensor, with its character count (for bits/char)."""

    tokenizer: Tokenizer
    tokens: dict[str, torch.Tensor]
    chars: dict[str, int]


def train_tokenizer(kind: str, train_text: str, vocab_size: int, cache_dir: Path | None,
                    data_dir: Path | None = None) -> Tokenizer:
    """`char`: one id per character of the training split; `bpe`/`unigram`: sentencepiece on its lines;
    `gpt2`: GPT-2's pre-trained byte-level BPE (nothing trained; its rank file from `data_dir`)."""
    if kind == "gpt2":
        return GPT2Tokenizer.fetch(data_dir)
    if kind == "char":
        return CharTokenizer.train(train_text)
    if kind in ("bpe", "unigram"):
        lines = [line for line in train_text.splitlines() if line.strip()]
        return SentencePieceTokenizer.train(lines, vocab_size=vocab_size, model_type=kind, cache_dir=cache_dir)
    raise ValueError(f"--tokenizer {kind!r} is not valid; choose one of: char, bpe, unigram, gpt2")


def prepare_lm_data(text: str, fractions: tuple[float, ...], tokenizer: Tokenizer | str, vocab_size: int = 0,
                    cache_dir: Path | None = None, data_dir: Path | None = None) -> LMData:
    """Split `text` by characters in order, train the tokenizer on the training split only (unless a
    trained one is given) and encode every split. The newlines are kept: they carry the layout."""
    splits = split_text(text, fractions)
    if isinstance(tokenizer, str):
        tokenizer = train_tokenizer(tokenizer, splits["train"], vocab_size, cache_dir, data_dir)
    tokens = {name: torch.tensor(encode_text(tokenizer, s), dtype=torch.long) for name, s in splits.items()}
    return LMData(tokenizer, tokens, {name: len(s) for name, s in splits.items()})


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Encode a long text; sentencepiece sees it line by line (it drops newlines), which are put back."""
    if not isinstance(tokenizer, SentencePieceTokenizer):  # char and byte-level BPE keep newlines themselves
        return tokenizer.encode(text)
    newline = tokenizer.encode("\n")
    out: list[int] = []
    lines = text.split("\n")
    for i, line in enumerate(tokenizer.encode_batch(lines)):
        out.extend(line)
        if i + 1 < len(lines):
            out.extend(newline or [])
    return out


def train_stream(tokens: torch.Tensor, block_size: int, batch_size: int, seed: int, pad_id: int) -> EpochBatches:
    """Random contiguous blocks (nanoGPT's sampling), resumable; an epoch covers the tokens about once."""
    blocks = LMBlocks(tokens, block_size)
    return EpochBatches(blocks, lambda epoch: blocks.train_batches(batch_size, seed=seed, epoch=epoch),
                        LMCollator(pad_id))


def lm_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over the scored positions, and their count."""
    logits = model(batch["input_ids"])
    return cross_entropy_sum(logits, batch["labels"])


@torch.no_grad()
def evaluate_lm(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int, device: torch.device,
                pad_id: int, n_chars: int | None = None) -> dict[str, float]:
    """Loss over a whole split: non-overlapping blocks, every token scored once (the first excepted).

    Returns `loss` (nats/token), `ppl`, `tokens`, and `bpc` (bits per character) when `n_chars` is given.
    """
    blocks = LMBlocks(tokens, block_size)
    collate = LMCollator(pad_id)
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    for starts in blocks.eval_batches(batch_size):
        batch = collate([blocks[s] for s in starts])
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        # padding of the last block is masked through the labels; the model must not see it as a token
        mask = (labels != IGNORE_INDEX) if (labels == IGNORE_INDEX).any() else None
        logits = model(ids, mask) if mask is not None else model(ids)
        loss, n = cross_entropy_sum(logits.float(), labels)
        total += float(loss)
        count += int(n)
    model.train(was_training)
    loss = total / max(count, 1)
    out = {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": count}
    if n_chars:
        out["bpc"] = total / math.log(2) / n_chars
    return out
