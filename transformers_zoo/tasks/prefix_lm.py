"""Translation with a decoder-only model: the source is a prefix, the loss is on the target only.

One causal stream per pair, `source ids + [SEP] + target ids + [EOS]`; the model reads the source and
learns to continue it with the translation. Decoding prompts with `source + [SEP]` (left-padded in a
batch) and runs the same `generation.beam_search` as the encoder-decoder, so a comparison of the two
families differs only in the model. Pairs come from `tasks.translation` (source ids ending in EOS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..batching import IGNORE_INDEX, EpochBatches, collate_batches, pad, token_budget_batches
from ..generation import beam_search, greedy, strip_special
from ..tokenizers import EOS, PAD, SEP
from ..training.losses import cross_entropy_sum
from .translation import Pair, length_sorted_batches


def source_prefix(example: Pair) -> list[int]:
    """`source ids + [SEP]` (the translation examples' trailing EOS replaced by SEP)."""
    src = list(example[0])
    if src and src[-1] == EOS:
        src = src[:-1]
    return [*src, SEP]


def prefix_width(example: Pair) -> int:
    """Length of the model input: prefix + target (the final EOS is only a label)."""
    return len(source_prefix(example)) + len(example[1])


class PrefixLMCollator:
    """Pairs -> `{"input_ids": (B, T), "labels": (B, T)}`, right-padded; labels score the target and its
    EOS only (the prefix and padding hold IGNORE_INDEX)."""

    def __init__(self, pad_id: int = PAD):
        self.pad_id = pad_id

    def __call__(self, examples: Sequence[Pair]) -> dict[str, torch.Tensor]:
        inputs, labels = [], []
        for example in examples:
            prefix, tgt = source_prefix(example), list(example[1])
            seq = [*prefix, *tgt, EOS]
            inputs.append(seq[:-1])
            labels.append([IGNORE_INDEX] * (len(prefix) - 1) + [*tgt, EOS])
        return {"input_ids": pad(inputs, self.pad_id), "labels": pad(labels, IGNORE_INDEX)}


def prefix_train_stream(examples: Sequence[Pair], max_tokens: int, seed: int, pad_id: int = PAD) -> EpochBatches:
    """Token-budget batches of prefix sequences, shuffled per epoch from `(seed, epoch)`, resumable."""
    widths = [prefix_width(e) for e in examples]
    return EpochBatches(examples, lambda epoch: token_budget_batches(widths, max_tokens, seed=seed, epoch=epoch),
                        PrefixLMCollator(pad_id))


def prefix_lm_loss(model: nn.Module, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy of the target tokens (and EOS) given the source prefix, and their count."""
    return cross_entropy_sum(model(batch["input_ids"]), batch["labels"], label_smoothing)


@torch.no_grad()
def evaluate_prefix_loss(model: nn.Module, examples: Sequence[Pair], max_tokens: int, device: torch.device | str,
                         pad_id: int = PAD) -> dict[str, float]:
    """Mean target-token cross-entropy over a split: the same quantity `translation.evaluate_loss` reports."""
    widths = [prefix_width(e) for e in examples]
    batches = token_budget_batches(widths, max(max_tokens, max(widths)), seed=0, epoch=0, shuffle=False)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in collate_batches(examples, batches, PrefixLMCollator(pad_id)):
        loss, n = prefix_lm_loss(model, {k: v.to(device) for k, v in batch.items()})
        total += float(loss)
        count += int(n)
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "tokens": count}


@torch.no_grad()
def generate_prefix_ids(model: nn.Module, sources: Sequence[Sequence[int]], *, beam_size: int = 5,
                        length_penalty: float = 1.0, max_len_a: float = 1.2, max_len_b: int = 10,
                        max_tokens: int = 6000, eos_id: int = EOS) -> list[list[int]]:
    """Target ids for each source (ids ending in EOS, as `translation.encode_pairs` makes them), in input
    order: batches of left-padded `source + [SEP]` prompts, then greedy (beam 1) or beam search."""
    device = next(model.parameters()).device
    pad_id = model.config.pad_id
    prefixes = [source_prefix((list(s), [])) for s in sources]
    was_training = model.training
    model.eval()
    out: list[list[int]] = [[] for _ in sources]
    for batch in length_sorted_batches([len(p) for p in prefixes], max(max_tokens // beam_size, 1)):
        width = max(len(prefixes[i]) for i in batch)
        prompt = torch.stack([F.pad(torch.tensor(prefixes[i]), (width - len(prefixes[i]), 0), value=pad_id)
                              for i in batch]).to(device)  # (B, P), left-padded
        mask = prompt != pad_id
        budget = int(max_len_a * (width - 1) + max_len_b)
        if model.config.positional == "learned":
            budget = min(budget, model.config.max_len - width)
        cache = model.init_cache(len(batch))
        if beam_size == 1:
            rows = greedy(model, cache, prompt, budget, eos_id, prompt_mask=mask).tolist()
        else:
            hyps = beam_search(model, cache, prompt, budget, eos_id, beam_size=beam_size,
                               length_penalty=length_penalty, prompt_mask=mask)
            rows = [h[0].tokens for h in hyps]
        for i, row in zip(batch, rows, strict=True):  # each row within its own length budget
            out[i] = strip_special(row[: int(max_len_a * (len(prefixes[i]) - 1) + max_len_b)], eos_id, pad_id)
    model.train(was_training)
    return out
