"""SFTTask: the loss over assistant tokens, answers generated through the chat template and scored, the report
and the table against the specialists."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...batching import EpochBatches, PhasedStream
from ...corpora.instructions import LABELS, Instruction
from ...generation import generate_many
from ...metrics import bleu, chrf
from ...tokenizers import Tokenizer
from ...tokenizers.chat import encode_chat, end_of_turn, stop_ids
from ...training.losses import cross_entropy_sum
from ..base import TaskBase
from ..lm import lm_loss
from .packing import Packed, PackedCollator, packed_stream
from .settings import MERGED_FILE, Conversation, LoRASettings

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

        from ...modules.lora import LoRALinear, add_lora, merge_lora
        from ...training import load_checkpoint

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
