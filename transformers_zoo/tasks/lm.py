"""Language modelling: text -> tokens -> contiguous blocks, next-token loss, full-split evaluation, and
continuing a prompt (sampling with the KV cache, any length through a sliding window).

``LMTask`` (built by ``prepare_lm_task``) is these pieces as the ``tasks.base.Task`` that recipes/gpt.py and
the comparison grids train and evaluate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..batching import IGNORE_INDEX, EpochBatches, LMBlocks, LMCollator
from ..config import ModelConfig
from ..corpora import split_text
from ..generation import Recompute, iter_tokens, sampler
from ..settings import Settings, SettingsError
from ..tokenizers import SentencePieceTokenizer, Tokenizer, train_tokenizer
from ..training import TrainConfig
from ..training.losses import cross_entropy_sum
from ..viz import plot_self_attention
from .base import TaskBase


@dataclass(frozen=True)
class LMDataSettings(Settings):
    """The text a decoder-only LM trains on and how it is cut: ``text`` a file (None: Tiny Shakespeare), split
    by characters in order into ``split`` fractions (train, val[, test]); ``tokenizer`` char, bpe, unigram
    (``vocab`` pieces, trained on the training split), gpt2, or a checkpoint's own; random blocks of
    ``block_size`` tokens, ``batch_size`` a step; held-out splits scored whole (their first
    ``max_eval_tokens`` when given) ``eval_batch_size`` blocks at a time."""

    text: str | None = None
    tokenizer: str = "char"
    vocab: int = 2000
    block_size: int = 64
    batch_size: int = 12
    split: tuple[float, ...] = (0.9, 0.1, 0.0)
    eval_batch_size: int = 64
    max_eval_tokens: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "split", tuple(float(x) for x in self.split))
        except (TypeError, ValueError):
            raise SettingsError("split", f"expected comma-separated fractions like 0.9,0.1,0, got {self.split!r}"
                                ) from None
        self.check_positive("vocab", "block_size", "batch_size", "eval_batch_size", "max_eval_tokens")
        if len(self.split) not in (2, 3) or not all(0.0 <= x <= 1.0 for x in self.split) or sum(self.split) > 1.0001:
            raise SettingsError("split", "expected 2 or 3 fractions in [0, 1] summing to at most 1 (train,val[,test]), "
                                         f"got {','.join(map(str, self.split))}")


@dataclass(frozen=True, kw_only=True)
class LMSettings(Settings):
    """A decoder-only LM run: the model, training and data settings, the preset they came from, and ``init``
    ("hf:DIR"), the checkpoint whose weights and tokenizer the run starts from (None: from scratch)."""

    model: ModelConfig
    train: TrainConfig
    data: LMDataSettings = field(default_factory=LMDataSettings)
    preset: str | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        if self.model.positional == "learned" and self.data.block_size > self.model.max_len:
            raise SettingsError("data.block_size", f"{self.data.block_size} exceeds the model's max_len="
                                                   f"{self.model.max_len}")


@dataclass
class LMData:
    """A tokenizer and each split as one 1-D token tensor, with its character count (for bits/char)."""

    tokenizer: Tokenizer
    tokens: dict[str, torch.Tensor]
    chars: dict[str, int]


def prepare_lm_data(text: str, fractions: tuple[float, ...], tokenizer: Tokenizer | str, vocab_size: int = 0,
                    cache_dir: Path | None = None, data_dir: Path | None = None) -> LMData:
    """Split `text` by characters in order, train the tokenizer on the training split only (unless a
    trained one is given) and encode every split. The newlines are kept: they carry the layout."""
    splits = split_text(text, fractions)
    if isinstance(tokenizer, str):
        tokenizer = train_tokenizer(tokenizer, splits["train"], vocab_size, cache_dir=cache_dir, data_dir=data_dir)
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


def evaluate_heldout(model: nn.Module, lm: LMData, split: str, block_size: int, batch_size: int,
                     device: torch.device, max_tokens: int | None = None) -> dict[str, float]:
    """`evaluate_lm` on one split of `lm`: its first `max_tokens` tokens when given (then no bits per
    character: the characters of a prefix are not counted), else the whole split."""
    tokens, chars = lm.tokens[split], lm.chars[split]
    if max_tokens:
        tokens, chars = tokens[:max_tokens], None
    return evaluate_lm(model, tokens, block_size, batch_size, device, lm.tokenizer.pad_id, chars)


@torch.no_grad()
def continue_text(model: nn.Module, tokenizer: Tokenizer, prompt: str, max_new_tokens: int,
                  temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None, seed: int = 0,
                  stream: Callable[[str], object] | None = None, use_cache: bool = True) -> str:
    """Sample a continuation of `prompt` with the KV cache (or, `use_cache=False`, recomputing the whole
    sequence every step); `stream(text)` receives each piece as it comes.

    The context never exceeds the model's `max_len` (what it was trained on): when the cache is full,
    decoding restarts from the last `max_len // 2` tokens (one re-encoded prompt, then cached steps again),
    so any length can be generated at a cost amortised over `max_len // 2` tokens.
    """
    device = next(model.parameters()).device
    window = model.config.max_len
    ids = (tokenizer.encode_prompt(prompt) or [tokenizer.bos_id])[-window:]
    generator = torch.Generator(device=device).manual_seed(seed)
    choose = sampler(temperature, top_k, top_p, generator)
    decoder = model if use_cache else Recompute(model)
    was_training = model.training
    model.eval()
    out: list[int] = []
    while len(out) < max_new_tokens:
        context = (ids + out)[-window:] if not out else (ids + out)[-max(window // 2, 1):]
        budget = min(max_new_tokens - len(out), window - len(context) + 1)
        prompt_t = torch.tensor([context], device=device)
        # no EOS: the model learned running text, in which no sequence ever ends
        for token in iter_tokens(decoder, decoder.init_cache(1), prompt_t, choose, budget, eos_id=None):
            out.append(int(token[0]))
            if stream is not None:
                stream(tokenizer.decode([out[-1]]))
    model.train(was_training)
    return tokenizer.decode(out)


@dataclass
class LMTask(TaskBase):
    """Next-token prediction on one text (the ``tasks.base.Task`` of a decoder-only model): random blocks of
    ``block_size`` tokens to train on; each held-out split scored whole in non-overlapping blocks (its first
    ``max_eval_tokens`` tokens when given); samples and an attention map for the report, drawn with
    ``sample_seed``. ``dataclasses.replace(task, block_size=L)`` is the same task at another context."""

    data: LMData
    block_size: int
    batch_size: int
    eval_batch_size: int = 64
    max_eval_tokens: int | None = None
    sample_seed: int = 0

    unit = "tok"
    #: what the report shows: a sample continuing SAMPLE_PROMPT, the last layer's attention on ATTENTION_TEXT
    SAMPLE_PROMPT = "ROMEO:"
    ATTENTION_TEXT = "ROMEO:\nWhat say you, my lord?"
    #: the plots report_sections writes into the run directory, and the file of samples during training
    images = ("attention.png",)
    SAMPLES_FILE = "samples.md"

    @property
    def tokenizer(self) -> Tokenizer:
        return self.data.tokenizer

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(split for split in ("val", "test") if split in self.data.tokens)

    def train_stream(self, seed: int) -> EpochBatches:
        return train_stream(self.data.tokens["train"], self.block_size, self.batch_size, seed, self.tokenizer.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return lm_loss(model, batch)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """``loss``, ``ppl``, ``tokens`` (and ``bpc`` on a whole split) of ``split``, on the model's device."""
        device = next(model.parameters()).device
        return evaluate_heldout(model, self.data, split, self.block_size, self.eval_batch_size, device,
                                self.max_eval_tokens)

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v):,} tokens" for k, v in self.data.tokens.items())
        return f"data: {sizes}; vocabulary {self.tokenizer.vocab_size}"

    def on_eval(self, model: nn.Module, run_dir: Path, step: int, metrics: dict[str, float]) -> None:
        """Add a sample (200 tokens after a newline) to ``run_dir/samples.md``: how the text improves."""
        sample = continue_text(model, self.tokenizer, "\n", 200, seed=self.sample_seed)
        with open(run_dir / self.SAMPLES_FILE, "a", encoding="utf-8") as f:
            f.write(f"\n### step {step}, val loss {metrics['val_loss']:.4f}\n\n```\n{sample}\n```\n")

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        """A sample from ``model``, the last samples written during training; ``attention.png`` in ``run_dir``."""
        sample = continue_text(model, self.tokenizer, self.SAMPLE_PROMPT, 300, seed=self.sample_seed)
        plot_self_attention(model, self.tokenizer, self.ATTENTION_TEXT, run_dir / self.images[0])
        samples = run_dir / self.SAMPLES_FILE
        samples_md = samples.read_text(encoding="utf-8") if samples.exists() else ""
        return [(f"Sample from the best checkpoint (prompt {self.SAMPLE_PROMPT!r}, temperature 0.8)",
                 f"```\n{sample}\n```"),
                ("Samples during training", samples_md[-6000:])]


def prepare_lm_task(text: str, split: tuple[float, ...], tokenizer: Tokenizer | str, block_size: int,
                    batch_size: int, vocab_size: int = 0, eval_batch_size: int = 64,
                    max_eval_tokens: int | None = None, sample_seed: int = 0, cache_dir: Path | None = None,
                    data_dir: Path | None = None) -> LMTask:
    """The ``LMTask`` of ``text``: split by characters in ``split`` fractions, the tokenizer trained on the
    training split (a ``kind`` for ``train_tokenizer``) or given; see ``prepare_lm_data``."""
    data = prepare_lm_data(text, split, tokenizer, vocab_size, cache_dir, data_dir)
    return LMTask(data, block_size, batch_size, eval_batch_size, max_eval_tokens, sample_seed)
