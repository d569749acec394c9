"""Translation data: sentence pairs per split -> tokenizers -> id pairs, and the run directory's tokenizers.

    pairs = load_pairs(settings, data_dir)                      # train, val, then every test split
    td = prepare_translation_data(pairs, vocab_size=8000)       # joint BPE trained on train; every split encoded

Every source sentence ends with EOS (as in fairseq): the encoder always sees at least one token and a fixed
anchor at the end. Targets are `[BOS] y` in and `y [EOS]` out (`batching.TranslationCollator`). The ids are
the tokenizers' own: a pre-trained Marian tokenizer has other EOS and pad ids, and no BOS (its decoder starts
from pad, which is its `bos_id`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...corpora import DataError, check_lengths, load_multi30k, read_parallel, resolve_data_dir
from ...tokenizers import Tokenizer, load_tokenizer, train_tokenizer
from .settings import TranslationDataSettings

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


def load_pairs(data: TranslationDataSettings, data_dir: str | os.PathLike | None) -> dict[str, list[tuple[str, str]]]:
    """Sentence pairs per split: train, val, then every test split. Every file is read (and checked) here."""
    if data.own_files:
        pairs = {"train": read_parallel(data.train_src, data.train_tgt),
                 "val": read_parallel(data.valid_src, data.valid_tgt)}
    else:
        pairs = load_multi30k(resolve_data_dir(data_dir), data.src, data.tgt)
        for split in ("train", "val"):
            if split not in pairs:
                raise DataError(f"Multi30k has no {split} split for {data.src}-{data.tgt}",
                                resolve_data_dir(data_dir) / "multi30k")
    for name, (src, tgt) in data.tests.items():
        pairs[name] = read_parallel(src, tgt)
    return pairs


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


def save_tokenizers(td: TranslationData, run_dir: Path) -> None:
    """`tokenizer/` (joint or target) and, with separate vocabularies, `tokenizer-src/`."""
    td.tgt_tokenizer.save(run_dir / "tokenizer")
    if not td.joint:
        td.src_tokenizer.save(run_dir / "tokenizer-src")


def load_tokenizers(run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    """(source, target) tokenizers of a run; the same object when the vocabulary is joint."""
    tgt = load_tokenizer(run_dir / "tokenizer")
    src = load_tokenizer(run_dir / "tokenizer-src") if (run_dir / "tokenizer-src").is_dir() else tgt
    return src, tgt
