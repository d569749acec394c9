"""Instruction tuning (supervised fine-tuning) of a decoder: conversations packed into blocks, loss on the
assistant's tokens only, answers generated through the chat template and scored.

    task, model = prepare_sft(settings, ctx)   # recipes/sft.py's prepare: data, tokenizer with chat tokens, model
    task.loss(model, batch)                    # cross-entropy over assistant tokens (replies and their end of turn)
    task.evaluate(model, "test")               # greedy answers: BLEU (test_2016_flickr en->de), SST-2 accuracy,
                                               # the share in the asked format; the loss of the references

Packing: each conversation is encoded by ``encode_training`` (ids, and which are the assistant's), and whole
conversations are packed first-fit, in a seeded order, into blocks of ``block_size + 1`` tokens (inputs and
shifted labels); the rest of a block is padding (masked, never scored). A conversation longer than a block is
dropped, not truncated (a cut reply would teach the model to stop mid-answer): the count is printed and reported.
Attention is causal over the whole block, so a conversation sees the ones packed before it (no
document-causal mask: the model's stack takes one key mask per row; every conversation opens with the
template's start marker, which tells the boundaries, and its loss covers its own replies only).

A run from scratch (no ``init``) first trains ``pretrain_steps`` steps of next-token prediction on running text
(:func:`corpora.instructions.pretraining_text`), then instruction-tunes: one stream (:class:`PhasedStream`), one
schedule, one resumable run.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..batching import IGNORE_INDEX, EpochBatches
from ..batching.batches import derive_seed
from ..batching.collators import pad
from ..config import ModelConfig
from ..corpora.instructions import LABELS, Instruction
from ..generation import generate_many
from ..metrics import bleu, chrf
from ..settings import Settings, SettingsError
from ..tokenizers import Tokenizer
from ..tokenizers.chat import encode_chat, encode_training, end_of_turn, stop_ids
from ..training import TrainConfig
from ..training.losses import cross_entropy_sum
from .base import TaskBase
from .lm import lm_loss

Conversation = Sequence[dict[str, str]]
#: a LoRA run's final weights, adapters merged: the plain model's state dict
MERGED_FILE = "model.safetensors"


@dataclass(frozen=True)
class SFTDataSettings(Settings):
    """What an instruction-tuning run trains on: ``conversations`` a JSONL file (None: the zoo's instruction set,
    ``per_task`` examples of each task, ``val_per_task`` held out each; ``sst2_val`` whole SST-2 sentences held out
    for validation, 0 for a quick row slice; ``imdb_reviews`` IMDB train reviews, 0 for none); packed into blocks
    of ``block_size`` tokens, ``batch_size`` a step. ``test_size`` caps each scored test set (None: all of
    test_2016_flickr and SST-2 dev), answered ``eval_batch_size`` at a time with at most ``max_new_tokens``. From
    scratch: a ``tokenizer`` (bpe or unigram, ``vocab`` pieces) trained on the pre-training text (its first
    ``pretrain_chars`` characters), and ``pretrain_steps`` steps on that text before instruction tuning."""

    conversations: str | None = None
    per_task: int | None = 20000
    val_per_task: int = 200
    sst2_val: int = 872
    imdb_reviews: int | None = None
    block_size: int = 256
    batch_size: int = 16
    test_size: int | None = None
    eval_batch_size: int = 32
    max_new_tokens: int = 64
    tokenizer: str = "bpe"
    vocab: int = 8000
    pretrain_steps: int = 0
    pretrain_chars: int | None = 20_000_000

    EVALUABLE = ("test_size", "eval_batch_size", "max_new_tokens")

    def __post_init__(self) -> None:
        self.check_positive("per_task", "val_per_task", "block_size", "batch_size", "test_size", "eval_batch_size",
                            "max_new_tokens", "vocab", "pretrain_chars")
        self.check_choice("tokenizer", ("bpe", "unigram"))
        if self.pretrain_steps < 0:
            raise SettingsError("pretrain_steps", f"must be >= 0, got {self.pretrain_steps}")


@dataclass(frozen=True)
class LoRASettings(Settings):
    """LoRA adapters (``rank`` 0: full fine-tuning): ``alpha`` (the update is scaled by alpha / rank), ``targets``
    (names of the linear layers that get one: ``qkv``, ``out``, ``gate_up``, ``up``, ``down``, ``q``, ``kv``),
    ``dropout`` on the adapters' input."""

    rank: int = 0
    alpha: float = 16.0
    targets: tuple[str, ...] = ("qkv", "out")
    dropout: float = 0.0

    def __post_init__(self) -> None:
        targets = self.targets.split(",") if isinstance(self.targets, str) else self.targets
        object.__setattr__(self, "targets", tuple(t.strip() for t in targets if t.strip()))
        if self.rank < 0:
            raise SettingsError("rank", f"must be >= 0 (0: full fine-tuning), got {self.rank}")
        if self.rank and not self.targets:
            raise SettingsError("targets", "name at least one linear layer (e.g. qkv,out)")
        self.check_range("dropout", 0.0, 1.0, high_open=True)


@dataclass(frozen=True, kw_only=True)
class SFTSettings(Settings):
    """An instruction-tuning run: model, training, data and LoRA settings, the preset, ``init`` (a gpt.py run
    directory or "hf:DIR"; None: from scratch, pre-trained first) and ``specialists`` (run directories of
    translate.py and classify.py whose test figures the report sets beside this model's)."""

    model: ModelConfig
    train: TrainConfig
    data: SFTDataSettings = field(default_factory=SFTDataSettings)
    lora: LoRASettings = field(default_factory=LoRASettings)
    preset: str | None = None
    init: str | None = None
    specialists: tuple[str, ...] = ()

    EVALUABLE = ("specialists",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "specialists", tuple(self.specialists or ()))
        if self.init is None and self.lora.rank:
            raise SettingsError("lora.rank", "LoRA adapts a trained model: give `init` (a gpt.py run or hf:PATH)")
        if self.init is not None and self.data.pretrain_steps:
            raise SettingsError("data.pretrain_steps", "pre-training is for a model trained from scratch, not `init`")
        if self.data.pretrain_steps and self.train.max_steps and self.data.pretrain_steps >= self.train.max_steps:
            raise SettingsError("data.pretrain_steps", f"must be below the step budget {self.train.max_steps}",
                                value=self.data.pretrain_steps)
        if self.model.positional == "learned" and self.data.block_size > self.model.max_len:
            raise SettingsError("data.block_size", f"{self.data.block_size} exceeds the model's max_len="
                                                   f"{self.model.max_len}")


# ------------------------------------------------------------------------------------------- packing

@dataclass
class Packed:
    """Blocks of ``block_size + 1`` token ids with, for each, whether it is trained (an assistant token), and how
    many conversations were packed and dropped (longer than a block)."""

    blocks: list[tuple[list[int], list[bool]]]
    conversations: int
    dropped: int


def encode_all(tokenizer: Tokenizer, conversations: Sequence[Conversation]) -> list[tuple[list[int], list[bool]]]:
    return [encode_training(tokenizer, c, f"conversation {i}") for i, c in enumerate(conversations)]


def pack(encoded: Sequence[tuple[list[int], list[bool]]], block_size: int, seed: int) -> Packed:
    """First-fit packing of whole conversations, in a seeded order, into blocks of ``block_size + 1`` tokens."""
    order = torch.randperm(len(encoded), generator=torch.Generator().manual_seed(seed)).tolist()
    size = block_size + 1
    blocks: list[tuple[list[int], list[bool]]] = []
    dropped = 0
    for i in order:
        ids, trained = encoded[i]
        if len(ids) > size:
            dropped += 1
            continue
        if not blocks or len(blocks[-1][0]) + len(ids) > size:
            blocks.append(([], []))
        blocks[-1][0].extend(ids)
        blocks[-1][1].extend(trained)
    return Packed(blocks, len(encoded) - dropped, dropped)


@dataclass(frozen=True)
class PackedCollator:
    """Blocks -> ``{"input_ids": (B, T), "labels": (B, T)}``: labels shifted by one, IGNORE_INDEX where the
    target is not an assistant token and on the padding."""

    pad_id: int

    def __call__(self, blocks: Sequence[tuple[list[int], list[bool]]]) -> dict[str, torch.Tensor]:
        inputs = [ids[:-1] for ids, _ in blocks]
        labels = [[t if keep else IGNORE_INDEX for t, keep in zip(ids[1:], trained[1:], strict=True)]
                  for ids, trained in blocks]
        return {"input_ids": pad(inputs, self.pad_id), "labels": pad(labels, IGNORE_INDEX)}


def packed_stream(packed: Packed, batch_size: int, seed: int, pad_id: int) -> EpochBatches:
    """The blocks in a new seeded order every epoch, ``batch_size`` a batch; resumable."""

    def batches(epoch: int) -> list[list[int]]:
        order = torch.randperm(len(packed.blocks), generator=torch.Generator().manual_seed(
            derive_seed(seed, epoch) % 2**62)).tolist()
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    return EpochBatches(packed.blocks, batches, PackedCollator(pad_id))


class PhasedStream:
    """The first ``first_batches`` batches of ``first`` (pre-training text), then ``second`` (conversations):
    resumable as both are, its position included."""

    def __init__(self, first: EpochBatches | None, second: EpochBatches, first_batches: int):
        self.first, self.second, self.first_batches = first, second, first_batches if first is not None else 0
        self.emitted = 0

    @property
    def epoch(self) -> int:
        return self.second.epoch

    def __iter__(self) -> PhasedStream:
        return self

    def __next__(self) -> dict[str, torch.Tensor]:
        source = self.first if self.emitted < self.first_batches else self.second
        self.emitted += 1
        return next(source)

    def state_dict(self) -> dict[str, Any]:
        return {"emitted": self.emitted, "second": self.second.state_dict(),
                **({"first": self.first.state_dict()} if self.first is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.emitted = int(state["emitted"])
        self.second.load_state_dict(state["second"])
        if self.first is not None:
            self.first.load_state_dict(state["first"])


# ------------------------------------------------------------------------------------------- answering

@torch.no_grad()
def answer(model: nn.Module, tokenizer: Tokenizer, prompts: Sequence[Conversation], max_new_tokens: int = 64,
           batch_size: int = 32) -> list[str]:
    """Greedy replies to ``prompts`` (conversations ending with a user turn), through the chat template, each
    stopped at the template's end of turn or EOS (``stop_ids``)."""
    eot = end_of_turn(tokenizer)
    stops = stop_ids(tokenizer)
    ids = [encode_chat(tokenizer, p) for p in prompts]
    room = model.config.max_len - max_new_tokens
    ids = [x[-room:] if len(x) > room else x for x in ids]  # the end of an over-long prompt (rare in these sets)
    longest = max((len(x) for x in ids), default=1)
    outs = generate_many(model, ids, eos_id=eot if eot is not None else tokenizer.eos_id, beam_size=1, max_len_a=0,
                         max_len_b=max_new_tokens, max_tokens=batch_size * (longest + max_new_tokens))
    replies = []
    for out in outs:
        cut = next((i for i, t in enumerate(out) if t in stops), len(out))
        replies.append(tokenizer.decode(out[:cut]).strip())
    return replies


def parses(task: str, reply: str) -> bool:
    """Whether ``reply`` is in the format ``task`` asks: a label (sentiment), a non-empty single line (translation)."""
    if task == "sentiment":
        return reply.strip().lower() in LABELS
    return bool(reply.strip()) and "\n" not in reply.strip()


# ------------------------------------------------------------------------------------------- the task

@dataclass
class SFTTask(TaskBase):
    """Instruction tuning: packed training conversations (after ``pretrain`` batches of running text when given),
    val loss on packed held-out conversations (checkpoint selection), and on ``test`` greedy answers to the held-out
    instructions: BLEU and chrF of en->de translations (test_2016_flickr), SST-2 dev accuracy, the share of answers
    in the asked format, and the loss of the reference answers."""

    tokenizer: Tokenizer
    train: Packed
    val: Packed
    test: Packed
    tests: list[Instruction]
    batch_size: int
    eval_batch_size: int = 32
    max_new_tokens: int = 64
    pretrain: EpochBatches | None = None
    pretrain_batches: int = 0
    trainable: int = 0
    lora: dict[str, Any] = field(default_factory=dict)
    specialists: tuple[str, ...] = ()
    lora_settings: LoRASettings | None = None
    _wall_s: float | None = None
    _evals: dict[str, Any] = field(default_factory=dict)

    unit = "tok"
    SAMPLES = 6

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", "test")

    def describe(self) -> str:
        pre = f"; first {self.pretrain_batches} steps on running text" if self.pretrain_batches else ""
        return (f"data: {self.train.conversations:,} training conversations in {len(self.train.blocks):,} blocks "
                f"({self.train.dropped} longer than a block dropped), {self.val.conversations:,} val, "
                f"{len(self.tests):,} test instructions{pre}; vocabulary {self.tokenizer.vocab_size}")

    def train_stream(self, seed: int) -> PhasedStream:
        return PhasedStream(self.pretrain, packed_stream(self.train, self.batch_size, seed, self.tokenizer.pad_id),
                            self.pretrain_batches)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return lm_loss(model, batch)

    @torch.no_grad()
    def packed_loss(self, model: nn.Module, packed: Packed) -> dict[str, float]:
        device = next(model.parameters()).device
        collate = PackedCollator(self.tokenizer.pad_id)
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for i in range(0, len(packed.blocks), self.eval_batch_size):
            batch = collate(packed.blocks[i:i + self.eval_batch_size])
            loss, n = cross_entropy_sum(model(batch["input_ids"].to(device)).float(), batch["labels"].to(device))
            total, count = total + float(loss), count + int(n)
        model.train(was_training)
        mean = total / max(count, 1)
        return {"loss": mean, "ppl": math.exp(min(mean, 50.0)), "tokens": count}

    def evaluate(self, model: nn.Module, split: str, out_dir: Path | None = None) -> dict[str, Any]:
        """``val``: the loss of the assistant tokens. ``test``: that loss on the test instructions, and their greedy
        answers scored (``out_dir``: the answers written to ``answers/test.tsv``)."""
        if split == "val":
            return self.packed_loss(model, self.val)
        metrics: dict[str, Any] = self.packed_loss(model, self.test)
        replies = answer(model, self.tokenizer, [t.prompt for t in self.tests], self.max_new_tokens,
                         self.eval_batch_size)
        by_task: dict[str, list[tuple[Instruction, str]]] = {}
        for inst, reply in zip(self.tests, replies, strict=True):
            by_task.setdefault(inst.task, []).append((inst, reply))
        if "translate_en_de" in by_task:
            pairs = by_task["translate_en_de"]
            hyps, refs = [r for _, r in pairs], [i.reference for i, _ in pairs]
            metrics["bleu"], metrics["signature"] = bleu(hyps, refs)
            metrics["chrf"], _ = chrf(hyps, refs)
            metrics["n_translation"] = len(pairs)
        if "sentiment" in by_task:
            pairs = by_task["sentiment"]
            metrics["accuracy"] = sum(r.strip().lower() == i.reference for i, r in pairs) / len(pairs)
            metrics["n_sentiment"] = len(pairs)
        for task, pairs in sorted(by_task.items()):
            metrics[f"parsed_{task}"] = sum(parses(task, r) for _, r in pairs) / len(pairs)
        metrics["parsed"] = sum(parses(i.task, r) for i, r in zip(self.tests, replies, strict=True)) / len(replies)
        if out_dir is not None:
            path = Path(out_dir) / "answers" / "test.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            rows = ["task\tprompt\treference\tanswer"] + [
                "\t".join(" ".join(x.split()) for x in (i.task, i.prompt[-1]["content"], i.reference, r))
                for i, r in zip(self.tests, replies, strict=True)]
            path.write_text("\n".join(rows) + "\n", encoding="utf-8")
            metrics["answers"] = "answers/test.tsv"
        return metrics

    def final_model(self, run_dir: Path, new_model) -> tuple[nn.Module, dict[str, Any]]:
        """The best checkpoint; under LoRA its adapters merged into the weights (:func:`merge_lora`), saved as the
        plain model's ``run_dir/model.safetensors`` (what chat and serving load: no adapter code needed)."""
        from safetensors.torch import save_model

        from ..modules.lora import LoRALinear, add_lora, merge_lora
        from ..training import load_checkpoint

        if self.lora_settings is None:
            return super().final_model(run_dir, new_model)
        lora = self.lora_settings
        model = new_model()
        if not any(isinstance(m, LoRALinear) for m in model.modules()):  # the pipeline's fresh model, not prepare's
            add_lora(model, lora.targets, lora.rank, lora.alpha, lora.dropout)
        load_checkpoint(run_dir, model)
        merge_lora(model).eval()
        save_model(model, str(Path(run_dir) / MERGED_FILE))
        return model, {"merged": MERGED_FILE}

    def evaluate_all(self, model: nn.Module, out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        self._evals = {split: self.evaluate(model, split, out_dir) for split in self.eval_splits}
        return self._evals

    def report_extra(self, summary: dict[str, Any]) -> dict[str, Any]:
        self._wall_s = summary.get("wall_s")
        return {"trainable_params": self.trainable, "lora": self.lora or None,
                "conversations": {"train": self.train.conversations, "dropped_too_long": self.train.dropped,
                                  "blocks": len(self.train.blocks), "pretrain_steps": self.pretrain_batches}}

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        test = evals.get("test", {})
        parts = [f"val loss {evals['val']['loss']:.4f}"] if "val" in evals else []
        parts += [f"{k} {test[k]:.4f}" for k in ("bleu", "accuracy", "parsed") if k in test]
        return "  ".join(parts)

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        total = self.lora["total_params"] if self.lora else sum(p.numel() for p in model.parameters())
        sections = [("One model against the specialists", specialists_table(self._evals.get("test", {}),
                                                                            self._wall_s, self.specialists)),
                    ("Parameters", f"{self.trainable:,} trained of {total:,} "
                                   f"({trained_what(self.lora, self.trainable)}); "
                                   f"{self.train.dropped} training conversations longer than a block dropped.")]
        picks = [t for t in self.tests if t.task == "translate_en_de"][:3] + \
                [t for t in self.tests if t.task == "sentiment"][:3]
        replies = answer(model, self.tokenizer, [t.prompt for t in picks], self.max_new_tokens) if picks else []
        lines = [f"- **{t.task}** `{t.prompt[-1]['content'][:160]}` -> `{r}` (reference: `{t.reference}`)"
                 for t, r in zip(picks, replies, strict=True)]
        sections.append(("Answers (greedy, through the chat template)", "\n".join(lines)))
        if self.lora:
            sections.append(("LoRA", f"rank {self.lora['rank']}, alpha {self.lora['alpha']}, on "
                                     f"{', '.join(self.lora['targets'])}: {self.lora['adapter_params']:,} adapter "
                                     f"parameters trained ({self.trainable:,} trainable in all) of "
                                     f"{self.lora['total_params']:,}; merged into the weights on save "
                                     "(model.safetensors)."))
        return sections


def trained_what(lora: dict[str, Any], trainable: int) -> str:
    if not lora:
        return "all: full fine-tuning"
    rows = trainable - lora["adapter_params"]
    extra = f", and {rows:,} in the chat markers' embedding rows" if rows else ""
    return f"LoRA adapters{extra}"


def specialists_table(ours: dict[str, Any], wall_s: float | None, runs: Sequence[str]) -> str:
    """Markdown: this model's test BLEU (test_2016_flickr en->de) and SST-2 dev accuracy beside those of
    translate.py and classify.py runs (their report.json), with the training time of each."""
    def fmt(x: Any, scale: float = 1.0) -> str:
        return "-" if x is None else f"{x * scale:.1f}"

    def minutes(s: Any) -> str:
        return "-" if s is None else f"{s / 60:.0f} min"

    rows = ["| model | test_2016_flickr en->de BLEU | SST-2 dev accuracy (%) | training time |",
            "| --- | --- | --- | --- |",
            f"| this instruction-tuned decoder (one model, all tasks) | {fmt(ours.get('bleu'))} | "
            f"{fmt(ours.get('accuracy'), 100)} | {minutes(wall_s)} |"]
    for run in runs:
        report = read_report(run)
        if report is None:
            rows.append(f"| {run} | (no report.json yet) | | |")
            continue
        evals = report.get("eval", {})
        bleu_ = next((m.get("bleu") for s, m in evals.items() if s.startswith("test_2016") and "bleu" in m), None)
        acc = evals.get("test", {}).get("accuracy") if report.get("recipe") != "translate" else None
        init = report.get("config", {}).get("init")  # a fine-tuned specialist: its pre-training's time too
        before = read_report(init) if isinstance(init, str) and not init.startswith("hf:") else None
        extra = f" + {minutes(before.get('wall_s'))} pre-training" if before else ""
        rows.append(f"| {report.get('recipe')}.py specialist ({Path(run).name}) | {fmt(bleu_)} | {fmt(acc, 100)} | "
                    f"{minutes(report.get('wall_s'))}{extra} |")
    if not runs:
        rows.append("\n(no specialist runs given: `--specialists RUN_DIR,...`)")
    return "\n".join(rows)


def read_report(run: str | Path) -> dict[str, Any] | None:
    import json

    path = Path(run) / "report.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------------------------- where a run starts

@functools.lru_cache(maxsize=1)
def load_start(init: str, data_dir: str | None) -> tuple[nn.Module, Tokenizer]:
    """The model and tokenizer an ``init`` names: "hf:PATH" (a GPT-2 or Llama-family checkpoint, its tokenizer and
    chat template if it has one) or a recipes/gpt.py run directory (its best checkpoint and tokenizer); read once
    for both the settings and ``prepare``."""
    from ..interop import load_hf_lm
    from ..models.decoder_only import DecoderOnly
    from ..runs import read_run_config, run_dir_of
    from ..tokenizers import load_tokenizer
    from ..training import load_checkpoint
    from .lm import LMSettings

    if init.startswith("hf:"):
        return load_hf_lm(init, data_dir)
    run_dir = run_dir_of(init)
    saved = read_run_config(run_dir)
    if saved.get("recipe") != "gpt":
        raise ValueError(f"--init {init}: a run of recipes/{saved.get('recipe')}.py; give a recipes/gpt.py run or "
                         "hf:PATH")
    lm = LMSettings.from_dict({k: v for k, v in saved.items() if k in ("model", "train", "data", "preset", "init")})
    model = DecoderOnly(lm.model)
    load_checkpoint(init, model)
    return model, load_tokenizer(run_dir / "tokenizer")


def chat_rows(tokenizer: Tokenizer) -> list[int]:
    """The ids our chat markers took (ChatTokenizer): the embedding rows instruction tuning must train even under
    LoRA (a new token has only the mean row it started from). None for a checkpoint with its own template."""
    from ..tokenizers.chat import ChatTokenizer

    return sorted(tokenizer.piece_ids.values()) if isinstance(tokenizer, ChatTokenizer) else []


def train_rows_only(model: nn.Module, rows: Sequence[int]) -> int:
    """Make the embedding (and an untied output) trainable in ``rows`` only: their gradient is masked to those rows
    and they get no weight decay, so AdamW leaves every other row bitwise as it was. Returns the trained count."""
    weights = {id(w): w for w in (model.embed.weight, model.lm_head.weight)}.values()
    for w in weights:
        mask = torch.zeros(w.shape[0], 1, dtype=w.dtype, device=w.device)
        mask[list(rows)] = 1.0
        w.requires_grad_(True)
        w.register_hook(lambda g, m=mask: g * m)
    model.lm_head.no_weight_decay = True  # a decoupled decay would move the frozen rows
    return sum(len(rows) * w.shape[1] for w in weights)


def prepare_sft(s: SFTSettings, ctx) -> tuple[SFTTask, nn.Module]:
    """The instruction set (or ``data.conversations``), the tokenizer with chat tokens (the run's, ``init``'s, or
    trained here on the pre-training text), the packed data and the model: ``init``'s weights with rows for the
    chat markers (mean-initialised), or fresh ones from the seed; LoRA adapters when ``lora.rank``."""
    from ..corpora import resolve_data_dir
    from ..corpora.instructions import load_instructions, load_sources, pretraining_text, read_conversations
    from ..models.decoder_only import DecoderOnly, grow_vocab
    from ..modules.lora import add_lora, lora_parameter_count
    from ..runs import cache_dir, tokenizer_cache_dir
    from ..tokenizers import load_tokenizer, train_tokenizer
    from ..tokenizers.chat import with_chat_tokens
    from .lm import train_stream

    d, seed = s.data, s.train.seed
    convs = read_conversations(d.conversations) if d.conversations else None  # a bad file fails first, in one line
    data_dir = resolve_data_dir(ctx.data_dir)
    sets = load_instructions(data_dir, cache_dir(), d.sst2_val, d.imdb_reviews, seed, per_task=d.per_task,
                             val_per_task=d.val_per_task, test_size=d.test_size)
    sources = functools.cache(lambda: load_sources(data_dir, d.sst2_val, d.imdb_reviews, seed))  # read when needed
    start = load_start(s.init, str(data_dir)) if s.init and not ctx.has_checkpoint else None
    if ctx.resumed:
        tok = load_tokenizer(ctx.run_dir / "tokenizer")
    elif start is not None:
        tok = with_chat_tokens(start[1])
    else:
        text = pretraining_text(sources(), min(d.pretrain_chars or 5_000_000, 5_000_000), seed)
        tok = with_chat_tokens(train_tokenizer(d.tokenizer, text, d.vocab, cache_dir=tokenizer_cache_dir()))
    if convs is not None:
        order = torch.randperm(len(convs), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = max(1, len(convs) // 20)  # 5% held out for validation, at least one
        val_convs = [convs[i] for i in order[:n_val]]
        train_convs = [convs[i] for i in order[n_val:]] or val_convs
    else:
        train_convs, val_convs = [i.messages for i in sets["train"]], [i.messages for i in sets["val"]]
    blocks = d.block_size
    train = pack(encode_all(tok, train_convs), blocks, seed) if not ctx.for_eval else Packed([], 0, 0)
    if train.dropped:
        print(f"data: {train.dropped} of {len(train_convs)} training conversations are longer than a block of "
              f"{blocks} tokens: dropped", file=sys.stderr)
    val = pack(encode_all(tok, val_convs), blocks, seed)
    test = pack(encode_all(tok, [i.messages for i in sets["test"]]), blocks, seed)
    pretrain = None
    if d.pretrain_steps and not ctx.for_eval:
        lines = pretraining_text(sources(), d.pretrain_chars, seed).split("\n")
        base = getattr(tok, "base", tok)
        ids = [t for row in base.encode_batch(lines) for t in (*row, tok.eos_id)]
        pretrain = train_stream(torch.tensor(ids), blocks, d.batch_size, seed, tok.pad_id)

    torch.manual_seed(seed)  # the initial weights
    vocab = max(tok.vocab_size, s.model.vocab_size if s.init else 0)
    model = DecoderOnly(s.model.replace(vocab_size=vocab, **({} if s.init else {"pad_id": tok.pad_id})))
    if start is not None:  # a new run (or one stopped before its first checkpoint) starts from init's weights
        model.load_state_dict(grow_vocab(start[0], vocab).state_dict())
        print(f"model: initialised from {s.init}", file=sys.stderr)
    trainable = sum(p.numel() for p in model.parameters())
    lora: dict[str, Any] = {}
    if s.lora.rank:
        total = sum(p.numel() for p in model.parameters())
        names = add_lora(model, s.lora.targets, s.lora.rank, s.lora.alpha, s.lora.dropout)
        adapters = lora_parameter_count(model)
        trainable = adapters + (train_rows_only(model, chat_rows(tok)) if chat_rows(tok) else 0)
        lora = {"rank": s.lora.rank, "alpha": s.lora.alpha, "targets": list(s.lora.targets), "modules": len(names),
                "adapter_params": adapters, "total_params": total + adapters}
    task = SFTTask(tok, train, val, test, sets["test"], d.batch_size, d.eval_batch_size, d.max_new_tokens, pretrain,
                   d.pretrain_steps if pretrain is not None else 0, trainable, lora, s.specialists,
                   s.lora if s.lora.rank else None)
    return task, model


def load_chat_model(checkpoint: str | Path, device: str = "auto") -> tuple[nn.Module, Tokenizer]:
    """An sft run's model for chat and serving, and its tokenizer (with the chat template): a LoRA run's merged
    ``model.safetensors`` (plain weights), else the run's best checkpoint (or the checkpoint folder given)."""
    from safetensors.torch import load_model

    from ..models.decoder_only import DecoderOnly
    from ..runs import read_run_config, run_dir_of
    from ..tokenizers import load_tokenizer
    from ..training import load_checkpoint
    from ..training.trainer import resolve_device

    run_dir = run_dir_of(checkpoint)
    settings = SFTSettings.from_dict({k: v for k, v in read_run_config(run_dir).items()
                                      if k in {f.name for f in dataclasses.fields(SFTSettings)}})
    model = DecoderOnly(settings.model)
    merged = run_dir / MERGED_FILE
    if settings.lora.rank and Path(checkpoint).resolve() == run_dir.resolve() and merged.is_file():
        load_model(model, str(merged))
    elif settings.lora.rank:
        from ..modules.lora import add_lora, merge_lora

        add_lora(model, settings.lora.targets, settings.lora.rank, settings.lora.alpha, settings.lora.dropout)
        load_checkpoint(checkpoint, model)
        merge_lora(model)
    else:
        load_checkpoint(checkpoint, model)
    return model.to(resolve_device(device)).eval(), load_tokenizer(run_dir / "tokenizer")
