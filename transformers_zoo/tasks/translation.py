"""Translation: sentence pairs -> subword ids, token-budget batches, label-smoothed loss, search, BLEU.

    src_tok, tgt_tok = train_tokenizers(pairs["train"], vocab_size=8000)        # joint BPE: one object
    examples, skipped = encode_pairs(pairs["train"], src_tok, tgt_tok, max_len=512)
    stream = train_stream(examples, max_tokens=4000, seed=0)                      # for the Trainer
    loss_sum, n = translation_loss(model, batch, label_smoothing=0.1)
    hyps = translate(model, tgt_tok, sentences, src_tokenizer=src_tok, beam_size=5)
    scores = score(hyps, refs)                                                    # bleu, chrf, signatures
    steps = average_checkpoints(run_dir, 5, model)                                # fairseq's average_checkpoints

Every source sentence ends with EOS (as in fairseq): the encoder always sees at least one token and a
fixed anchor at the end. Targets are `[BOS] y` in and `y [EOS]` out (`batching.TranslationCollator`).
The ids are the tokenizers' own: a pre-trained Marian tokenizer has other EOS and pad ids, and no BOS (its
decoder starts from pad, which is its `bos_id`); pass them on as `pad_id`, `bos_id`, `eos_id`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..batching import EpochBatches, TranslationCollator, collate_batches, pad, token_budget_batches
from ..corpora import DataError, check_lengths
from ..generation import beam_search, greedy, strip_special
from ..metrics import bleu, chrf
from ..modules import record_attention
from ..tokenizers import BOS, EOS, PAD, Tokenizer, train_tokenizer
from ..training.checkpoint import iter_checkpoints, load_weights
from ..training.losses import cross_entropy_sum

__all__ = [
    "Pair",
    "TranslationData",
    "average_checkpoints",
    "cross_attention",
    "encode_pairs",
    "evaluate_loss",
    "example_width",
    "examples_table",
    "generate_ids",
    "length_sorted_batches",
    "prepare_translation_data",
    "score",
    "scores_table",
    "selection_table",
    "target_ids",
    "train_stream",
    "train_tokenizers",
    "translate",
    "translation_loss",
    "write_hypotheses",
]

Pair = tuple[list[int], list[int]]  # (source ids ending in EOS, target ids without specials)


@dataclass
class TranslationData:
    """The tokenizers and every split twice: raw text pairs (what BLEU scores) and id pairs (what losses use).

    With a joint vocabulary `src_tokenizer is tgt_tokenizer`. `skipped[split]` counts training pairs dropped
    for being longer than the model's `max_len` (evaluation splits are truncated instead, never dropped).
    """

    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    pairs: dict[str, list[tuple[str, str]]]
    examples: dict[str, list[Pair]]
    skipped: dict[str, int]

    @property
    def joint(self) -> bool:
        return self.src_tokenizer is self.tgt_tokenizer


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def train_tokenizers(train_pairs: Sequence[tuple[str, str]], vocab_size: int, joint: bool = True,
                     model_type: str = "bpe", cache_dir: str | os.PathLike | None = None
                     ) -> tuple[Tokenizer, Tokenizer]:
    """Sentencepiece model(s) trained on the training split only: one joint model over both sides
    (returned twice, the same object) or one per language. Cached in `cache_dir` when given."""

    def fit(texts: list[str], which: str) -> Tokenizer:
        return train_tokenizer(model_type, texts, vocab_size, cache_dir=cache_dir, what=which)

    if joint:
        tok = fit([text for pair in train_pairs for text in pair], "joint")
        return tok, tok
    return fit([s for s, _ in train_pairs], "source"), fit([t for _, t in train_pairs], "target")


def encode_pairs(pairs: Sequence[tuple[str, str]], src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer,
                 max_len: int | None = None, policy: str = "skip", what: str = "pairs") -> tuple[list[Pair], int]:
    """Token ids of each pair: `(source ids + [EOS], target ids)`; returns `(examples, n_affected)`.

    `max_len` (the model's) bounds both sides: the source with its EOS and the target with its BOS (or EOS),
    so neither stack sees a position past `max_len - 1`. `policy` is `corpora.check_lengths`'s: training
    skips longer pairs, evaluation truncates them.
    """
    src_ids = src_tokenizer.encode_batch([s for s, _ in pairs])
    tgt_ids = tgt_tokenizer.encode_batch([t for _, t in pairs])
    examples = [([*s, src_tokenizer.eos_id], t) for s, t in zip(src_ids, tgt_ids, strict=True)]
    if max_len is None:
        return examples, 0
    # The source already holds its EOS; the target gains one token (BOS in, EOS out) in the collator.
    kept, affected = check_lengths([(s, [*t, tgt_tokenizer.eos_id]) for s, t in examples], max_len, what, policy)
    return [(s, t[:-1]) for s, t in kept], affected


def prepare_translation_data(pairs: dict[str, list[tuple[str, str]]], vocab_size: int = 8000, joint: bool = True,
                             model_type: str = "bpe", cache_dir: str | os.PathLike | None = None,
                             max_len: int | None = None,
                             tokenizers: tuple[Tokenizer, Tokenizer] | None = None) -> TranslationData:
    """Train the tokenizer(s) on `pairs["train"]` (unless `tokenizers` are given) and encode every split."""
    if "train" not in pairs:
        raise DataError(f"no training split among {sorted(pairs)}")
    src_tok, tgt_tok = tokenizers or train_tokenizers(pairs["train"], vocab_size, joint, model_type, cache_dir)
    examples, skipped = {}, {}
    for split, split_pairs in pairs.items():
        policy = "skip" if split == "train" else "truncate"
        examples[split], skipped[split] = encode_pairs(split_pairs, src_tok, tgt_tok, max_len, policy, split)
    if not examples["train"]:
        raise DataError(f"every training pair is longer than max_len={max_len}")
    return TranslationData(src_tok, tgt_tok, pairs, examples, skipped)


def target_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """`pad_id`, `bos_id` (the decoder's start) and `eos_id` of a target tokenizer, as keyword arguments."""
    return {"pad_id": tokenizer.pad_id, "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}


def example_width(example: Pair) -> int:
    """Width of a pair in a padded batch: the longer of the source and the shifted target."""
    src, tgt = example
    return max(len(src), len(tgt) + 1)


def train_stream(examples: Sequence[Pair], max_tokens: int, seed: int, pad_id: int = PAD, *, bos_id: int = BOS,
                 eos_id: int = EOS) -> EpochBatches:
    """Endless, resumable batches of similar-length pairs, at most `max_tokens` padded tokens per side
    (fairseq's `--max-tokens`); the batches of each epoch are shuffled from `(seed, epoch)`. The ids are the
    target tokenizer's (`bos_id` is the decoder's start token: pad for Marian)."""
    lengths = [example_width(e) for e in examples]
    return EpochBatches(examples, lambda epoch: token_budget_batches(lengths, max_tokens, seed=seed, epoch=epoch),
                        TranslationCollator(pad_id, bos_id, eos_id))


def translation_loss(model: nn.Module, batch: dict[str, torch.Tensor], label_smoothing: float = 0.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (label-smoothed) cross-entropy of `tgt_out (B, T)` given `src (B, S)` and `tgt_in (B, T)`,
    and the number of scored target tokens. Bind `label_smoothing` with functools.partial for the Trainer."""
    logits = model(batch["src"], batch["tgt_in"])  # (B, T, V)
    return cross_entropy_sum(logits, batch["tgt_out"], label_smoothing)


@torch.no_grad()
def evaluate_loss(model: nn.Module, examples: Sequence[Pair], max_tokens: int, device: torch.device | str,
                  pad_id: int = PAD, *, bos_id: int = BOS, eos_id: int = EOS) -> dict[str, float]:
    """Mean per-token cross-entropy (no smoothing: the model's real likelihood) over every pair of a split.

    Returns `loss` (nats/token), `ppl` and `tokens` (scored target tokens, EOS included).
    """
    if not examples:
        raise ValueError("no examples to evaluate")
    lengths = [example_width(e) for e in examples]
    batches = token_budget_batches(lengths, max(max_tokens, max(lengths)), seed=0, epoch=0, shuffle=False)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in collate_batches(examples, batches, TranslationCollator(pad_id, bos_id, eos_id)):
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, n = translation_loss(model, batch)
        total += float(loss)
        count += int(n)
    model.train(was_training)
    loss = total / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "tokens": count}


# ---------------------------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------------------------


def length_sorted_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices grouped longest first so that `len(batch) * longest <= max_tokens` (at least one each)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


@torch.no_grad()
def generate_ids(model: nn.Module, sources: Sequence[Sequence[int]], *, beam_size: int = 5,
                 length_penalty: float = 1.0, max_len_a: float = 1.2, max_len_b: int = 10, max_tokens: int = 6000,
                 bos_id: int = BOS, eos_id: int = EOS, device: torch.device | str | None = None) -> list[list[int]]:
    """Target ids (no BOS/EOS/padding) for each source id list, in input order.

    Sources are sorted by length and batched so that `batch * longest source * beam_size <= max_tokens`;
    each batch may generate `max_len_a * longest source + max_len_b` tokens (fairseq's `--max-len-a/b`),
    capped by learned positions' `max_len`. `beam_size=1` is greedy search (identical results, faster).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size} must be >= 1")
    device = next(model.parameters()).device if device is None else torch.device(device)
    pad_id = model.config.pad_id
    lengths = [max(len(s), 1) for s in sources]
    limit = model.config.max_len - 1 if model.config.positional == "learned" else None
    was_training = model.training
    model.eval()
    out: list[list[int]] = [[] for _ in sources]
    for batch in length_sorted_batches(lengths, max(max_tokens // beam_size, 1)):
        src = pad([list(sources[i]) or [eos_id] for i in batch], pad_id).to(device)  # (B, S)
        budget = int(max_len_a * src.shape[1] + max_len_b)
        if limit is not None:
            budget = min(budget, limit)
        prompt = torch.full((len(batch), 1), bos_id, dtype=torch.long, device=device)  # (B, 1)
        cache = model.init_cache(src)
        if beam_size == 1:
            rows = greedy(model, cache, prompt, budget, eos_id).tolist()  # (B, n)
        else:
            hyps = beam_search(model, cache, prompt, budget, eos_id, beam_size=beam_size,
                               length_penalty=length_penalty)
            rows = [h[0].tokens for h in hyps]
        for i, row in zip(batch, rows, strict=True):  # each row within its own length budget
            out[i] = strip_special(row[: int(max_len_a * lengths[i] + max_len_b)], eos_id, pad_id)
    model.train(was_training)
    return out


def translate(model: nn.Module, tokenizer: Tokenizer, sentences: Sequence[str], *,
              src_tokenizer: Tokenizer | None = None, beam_size: int = 5, length_penalty: float = 1.0,
              max_len_a: float = 1.2, max_len_b: int = 10, max_tokens: int = 6000,
              device: torch.device | str | None = None) -> list[str]:
    """Translate `sentences` (one per item) into detokenized text, in the order given.

    `tokenizer` decodes the output (and encodes the input unless a separate `src_tokenizer` is given); its
    `bos_id` starts decoding and its `eos_id` ends it. Sources longer than learned positions allow are cut to
    `max_len`. See `generate_ids` for the rest.
    """
    src_tokenizer = src_tokenizer or tokenizer
    max_src = model.config.max_len if model.config.positional == "learned" else None
    sources = [[*ids[: None if max_src is None else max_src - 1], src_tokenizer.eos_id]
               for ids in src_tokenizer.encode_batch(list(sentences))]
    ids = generate_ids(model, sources, beam_size=beam_size, length_penalty=length_penalty, max_len_a=max_len_a,
                       max_len_b=max_len_b, max_tokens=max_tokens, bos_id=tokenizer.bos_id,
                       eos_id=tokenizer.eos_id, device=device)
    return [tokenizer.decode(row) for row in ids]


@torch.no_grad()
def cross_attention(model: nn.Module, src_ids: Sequence[int], tgt_ids: Sequence[int], layer: int = -1,
                    bos_id: int = BOS) -> torch.Tensor:
    """Cross-attention weights `(H, T, S)` of one decoder layer on a teacher-forced pass: query row `t` is
    the step that predicts `(tgt_ids + [EOS])[t]` from `[BOS] + tgt_ids[:t]`; key column `s` is `src_ids[s]`."""
    device = next(model.parameters()).device
    src = torch.tensor([list(src_ids)], device=device)  # (1, S)
    tgt_in = torch.tensor([[bos_id, *tgt_ids]], device=device)  # (1, T)
    n_layers = len(model.decoder.layers)
    name = f"decoder.layers.{layer % n_layers}.cross_attn"
    was_training = model.training
    model.eval()
    with record_attention(model) as attn:
        model(src, tgt_in)
        weights = attn[name].weights
    model.train(was_training)
    return weights[0]


# ---------------------------------------------------------------------------------------------------------
# Scores and checkpoint averaging
# ---------------------------------------------------------------------------------------------------------


def score(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float | str]:
    """sacreBLEU corpus BLEU and chrF of detokenized hypotheses, with both signatures:
    `{"bleu", "chrf", "signature" (BLEU's), "chrf_signature"}`."""
    bleu_score, bleu_sig = bleu(hyps, refs)
    chrf_score, chrf_sig = chrf(hyps, refs)
    return {"bleu": bleu_score, "chrf": chrf_score, "signature": bleu_sig, "chrf_signature": chrf_sig}


def average_checkpoints(run_dir: str | os.PathLike, last: int, model: nn.Module,
                        on_load: Callable[[Path], None] | None = None) -> list[Path]:
    """Load into `model` the element-wise mean of the weights of the newest `last` complete checkpoints
    of `run_dir` (fairseq's `scripts/average_checkpoints.py`); returns the directories used, oldest first.

    Broken or incomplete checkpoints are skipped with a warning. Means are taken in float64 and cast back;
    integer buffers come from the newest checkpoint. Tied weights stay tied (they are one tensor).
    """
    if last < 1:
        raise ValueError(f"average of the last {last} checkpoints: need at least 1")
    dirs = [d for d, _ in iter_checkpoints(run_dir)][:last]
    if not dirs:
        raise FileNotFoundError(f"{run_dir}: no complete checkpoint to average")
    sums: dict[str, torch.Tensor] = {}
    for d in dirs:  # newest first: integer buffers keep the newest values
        load_weights(d, model)
        if on_load is not None:
            on_load(d)
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                sums.setdefault(name, tensor.clone())
            elif name in sums:
                sums[name] += tensor.double()
            else:
                sums[name] = tensor.double().clone()
    state = model.state_dict()
    averaged = {name: (total / len(dirs)).to(state[name].dtype) if state[name].is_floating_point() else total
                for name, total in sums.items()}
    model.load_state_dict(averaged)
    return dirs[::-1]


# ---------------------------------------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------------------------------------


def write_hypotheses(out_dir: Path, split: str, tgt: str, texts: dict[str, list[str]]) -> dict[str, str]:
    """Write `hyp/<split>.<tgt>` (beam), `hyp/<split>.greedy.<tgt>` and `hyp/<split>.ref.<tgt>` under `out_dir`,
    one detokenized sentence a line; returns their paths relative to `out_dir` (keyed like `texts`)."""
    names = {"hypotheses": f"{split}.{tgt}", "hypotheses_greedy": f"{split}.greedy.{tgt}",
             "references": f"{split}.ref.{tgt}"}
    (out_dir / "hyp").mkdir(parents=True, exist_ok=True)
    written = {}
    for key, name in names.items():
        (out_dir / "hyp" / name).write_text("".join(line + "\n" for line in texts[key]), encoding="utf-8")
        written[key] = f"hyp/{name}"
    return written


def scores_table(evals: dict[str, dict[str, Any]], ev: dict[str, Any]) -> str:
    """Beam and greedy sacreBLEU / chrF per test split, with the signatures."""
    tests = {split: m for split, m in evals.items() if "bleu" in m}
    if not tests:
        return "(no test split)"
    b = f"beam {ev['beam']}"
    rows = [f"| split | pairs | BLEU ({b}) | BLEU (greedy) | chrF ({b}) | chrF (greedy) | loss |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for split, m in tests.items():
        rows.append(f"| {split} | {m['sentences']:,} | {m['bleu']:.2f} | {m['bleu_greedy']:.2f} | {m['chrf']:.2f} | "
                    f"{m['chrf_greedy']:.2f} | {m['loss']:.4f} |")
    first = next(iter(tests.values()))
    rows += ["", f"Length penalty {ev['length_penalty']:g}, at most {ev['max_len_a']:g} x source + {ev['max_len_b']} "
             "tokens. sacreBLEU signatures:", f"BLEU `{first['signature']}`, chrF `{first['chrf_signature']}`."]
    return "\n".join(rows)


def selection_table(candidates: dict[str, dict], chosen: str, select: str) -> str:
    """Best vs averaged weights on validation, marking the one used for the test sets."""
    rows = [f"Selected by validation {'loss' if select == 'loss' else 'greedy BLEU'}: **{chosen}**.", "",
            "| weights | steps | val loss | val BLEU (greedy) | val chrF (greedy) |",
            "| --- | --- | ---: | ---: | ---: |"]
    for key, c in candidates.items():
        steps = ", ".join(str(s) for s in c["steps"])
        rows.append(f"| {key}{' (used)' if key == chosen else ''} | {steps} | {c['loss']:.4f} | "
                    f"{c['bleu_greedy']:.2f} | {c['chrf_greedy']:.2f} |")
    return "\n".join(rows)


def examples_table(pairs: list[tuple[str, str]], hyps: list[str] | None, n: int = 5) -> str:
    """The first `n` pairs as a markdown table: source, reference, translation."""
    if not hyps:
        return "(no test split)"
    rows = ["| source | reference | translation |", "| --- | --- | --- |"]
    for (src, ref), hyp in list(zip(pairs, hyps, strict=True))[:n]:
        rows.append(f"| {_cell(src)} | {_cell(ref)} | {_cell(hyp)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
