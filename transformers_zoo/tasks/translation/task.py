"""TranslationTask: translation as the `tasks.base.TaskBase` every recipe runs through `pipeline`.

    task = prepare_translation_task(pairs, data_settings, search_settings, max_len=256)
    task.fit(model, train_cfg, run_dir)                  # token-budget batches, label-smoothed loss
    final, chosen = task.final_model(run_dir, new_model)  # the better on validation of best and averaged weights
    evals = task.evaluate_all(final, run_dir)            # loss, greedy and beam sacreBLEU / chrF, hypothesis files

`evaluate` gives the same numbers during training (checkpoint selection), in the report and in --eval-only.
The model family is a format (`FORMATS`): an encoder-decoder reads the source and decodes from BOS; a
decoder-only model reads it as a prefix (`prefix_lm.PrefixFormat`; recipes/compare.py's `families` grid).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...batching import EpochBatches, TranslationCollator, collate_batches, token_budget_batches
from ...config import ModelConfig
from ...generation import generate_many
from ...runs import tokenizer_cache_dir
from ...settings import SettingsError
from ...tokenizers import Tokenizer
from ...training.losses import cross_entropy_sum
from ..base import TaskBase, fit
from . import report, weights
from .data import Pair, TranslationData, load_tokenizers, prepare_translation_data, save_tokenizers
from .prefix_lm import PrefixFormat
from .settings import SearchSettings, TranslationDataSettings

Batch = dict[str, torch.Tensor]


class EncoderDecoderFormat:
    """How an encoder-decoder reads translation pairs: the source ids, then `[BOS] y` in and `y [EOS]` out."""

    images: tuple[str, ...] = ("attention.png",)  # report.md's cross-attention map

    @staticmethod
    def width(example: Pair) -> int:
        """Width of a pair in a padded batch: the longer of the source and the shifted target."""
        return max(len(example[0]), len(example[1]) + 1)

    @staticmethod
    def collator(tokenizer: Tokenizer) -> TranslationCollator:
        return TranslationCollator(tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)

    @staticmethod
    def loss(model: nn.Module, batch: Batch, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed (label-smoothed) cross-entropy of `tgt_out (B, T)` given `src (B, S)` and `tgt_in (B, T)`,
        and the number of scored target tokens."""
        logits = model(batch["src"], batch["tgt_in"])  # (B, T, V)
        return cross_entropy_sum(logits, batch["tgt_out"], label_smoothing)

    @staticmethod
    def generate(model: nn.Module, sources: Sequence[Sequence[int]], tokenizer: Tokenizer, **search: Any
                 ) -> list[list[int]]:
        """Target ids of each source (ids ending in EOS), decoded from the target tokenizer's BOS."""
        return generate_many(model, sources, start=tokenizer.bos_id, eos_id=tokenizer.eos_id, **search)


#: the model families a translation task trains, and how each reads the pairs
FORMATS = {"encoder_decoder": EncoderDecoderFormat(), "decoder_only": PrefixFormat()}


@dataclass
class TranslationTask(TaskBase):
    """Token-budget batches of `data`'s training pairs, the label-smoothed loss, and `evaluate` (loss, greedy and
    beam-search sacreBLEU / chrF); the final weights are the better on validation of the best checkpoint and
    the average of the last ones. `family` is the model trained (a key of FORMATS)."""

    # token-budget batches of every length: buffers of 0.1-4 MiB from the heap, not mapped afresh each step; measured
    # 2026-12-07 on 2 cores (cpu preset, 3 min): 3,450 tok/s against 3,080 pinned at 128 KiB, 2,960 releasing,
    # ~3,540 unmanaged; a whole cpu run (2,100 steps, 31 min) peaked at 1.37 GB, 14% of its CPU time in page faults
    heap = 4 << 20
    data: TranslationData
    settings: TranslationDataSettings
    search: SearchSettings
    label_smoothing: float = 0.0
    family: str = "encoder_decoder"
    #: the texts (report.SPLIT_TEXTS) of each test split's latest `evaluate`, for hypothesis files and examples
    translations: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    #: what `final_model` chose and compared (report.json's "selected" and "candidates")
    selection: dict[str, Any] = field(default_factory=dict)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FORMATS:
            raise ValueError(f"family {self.family!r}: translation trains {' or '.join(FORMATS)}")
        self.format = FORMATS[self.family]
        self.images = self.format.images

    @property
    def tokenizer(self) -> Tokenizer:
        """The target tokenizer (the joint one with one vocabulary)."""
        return self.data.tgt_tokenizer

    @property
    def src_tokenizer(self) -> Tokenizer:
        return self.data.src_tokenizer

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", *(split for split in self.data.pairs if split not in ("train", "val")))

    def describe(self) -> str:
        """One line on the data: the language pair, the pairs per split, skipped pairs and the vocabularies."""
        td, src, tgt = self.data, self.settings.src, self.settings.tgt
        vocab = f"joint vocabulary {self.tokenizer.vocab_size}" if td.joint else \
            f"vocabularies {self.src_tokenizer.vocab_size} ({src}) + {self.tokenizer.vocab_size} ({tgt})"
        skipped = f" ({td.skipped['train']} longer than max_len skipped)" if td.skipped["train"] else ""
        return (f"data: {src}->{tgt}, " + ", ".join(f"{s} {len(p):,}" for s, p in td.pairs.items())
                + f" pairs{skipped}; {vocab}")

    def model_config(self, config: ModelConfig) -> ModelConfig:
        """``config`` sized for the tokenizers; separate vocabularies get separate source and target embeddings."""
        config = config.replace(vocab_size=self.tokenizer.vocab_size, pad_id=self.tokenizer.pad_id)
        if self.data.joint:
            return config
        return config.replace(share_src_tgt_embeddings=False, src_vocab_size=self.src_tokenizer.vocab_size)

    # -- run directory ----------------------------------------------------------------------------------------
    def save(self, run_dir: Path) -> None:
        save_tokenizers(self.data, run_dir)

    def config_extra(self) -> dict[str, Any]:
        return {"tokenizer_fingerprint": self.tokenizer.fingerprint,
                "src_tokenizer_fingerprint": self.src_tokenizer.fingerprint}

    def fingerprint(self, model: nn.Module) -> dict[str, Any]:
        """The model config and both tokenizers' hashes (and the family, when not an encoder-decoder)."""
        family = {} if self.family == "encoder_decoder" else {"family": self.family}
        return {**weights.fingerprint_of(model.config, self.src_tokenizer, self.tokenizer), **family}

    # -- training -----------------------------------------------------------------------------------------------
    def train_stream(self, seed: int) -> Iterator[Batch]:
        """Endless, resumable batches of similar-length pairs, at most `max_tokens` padded tokens per side
        (fairseq's `--max-tokens`); the batches of each epoch are shuffled from `(seed, epoch)`."""
        examples = self.data.examples["train"]
        widths = [self.format.width(e) for e in examples]
        return EpochBatches(examples, lambda epoch: token_budget_batches(widths, self.settings.max_tokens, seed=seed,
                                                                         epoch=epoch),
                            self.format.collator(self.tokenizer))

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return self.format.loss(model, batch, self.label_smoothing)

    def fit(self, model: nn.Module, train_cfg: Any, run_dir: Path) -> dict[str, Any]:
        """Train, validating on loss only (or greedy BLEU too when checkpoints are selected on it)."""
        return fit(self, model, train_cfg, run_dir, self.fingerprint(model), evaluate=self.validation_metrics)

    def validation_metrics(self, model: nn.Module) -> dict[str, float]:
        """The trainer's evaluation: `val_loss`, `val_ppl` and, when checkpoints are selected on BLEU,
        `val_bleu` (greedy); `evaluate(model, "val")` with the `val_` prefix, decoding only when needed."""
        m = self.evaluate(model, "val", translations=self.search.select == "bleu")
        out = {"val_loss": m["loss"], "val_ppl": m["ppl"]}
        if "bleu_greedy" in m:
            out["val_bleu"] = m["bleu_greedy"]
        return out

    # -- evaluation ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def split_loss(self, model: nn.Module, split: str) -> dict[str, float]:
        """Mean per-token cross-entropy (no smoothing: the model's real likelihood) over every pair of `split`:
        `loss` (nats/token), `ppl` and `tokens` (scored target tokens, EOS included)."""
        examples = self.data.examples[split]
        if not examples:
            raise ValueError(f"no examples to evaluate in {split}")
        widths = [self.format.width(e) for e in examples]
        batches = token_budget_batches(widths, max(self.settings.eval_max_tokens, max(widths)), seed=0, epoch=0,
                                       shuffle=False)
        device, was_training = next(model.parameters()).device, model.training
        model.eval()
        total, count = 0.0, 0
        for batch in collate_batches(examples, batches, self.format.collator(self.tokenizer)):
            loss, n = self.format.loss(model, {k: v.to(device) for k, v in batch.items()})
            total += float(loss)
            count += int(n)
        model.train(was_training)
        loss = total / max(count, 1)
        return {"loss": loss, "ppl": math.exp(min(loss, 100.0)), "tokens": count}

    def translate(self, model: nn.Module, split: str, beam_size: int) -> list[str]:
        """Detokenized translations of the sources of `split`, in order (the run's search settings)."""
        ids = self.format.generate(model, [src for src, _ in self.data.examples[split]], self.tokenizer,
                                   max_tokens=self.settings.eval_max_tokens, **self.search.generation(beam_size))
        return [self.tokenizer.decode(row) for row in ids]

    def evaluate(self, model: nn.Module, split: str, *, translations: bool = True,
                 out_dir: Path | None = None) -> dict[str, Any]:
        """Metrics of `split`: `loss` and `ppl` (no smoothing), then with `translations` greedy `bleu_greedy`
        and `chrf_greedy`, and for a test split beam-search `bleu`, `chrf` and their `signature`,
        `chrf_signature` and the number of `sentences`. With `out_dir`, a test split's hypotheses and
        references are written to `out_dir/hyp/` and their paths added (`hypotheses`, ...)."""
        res = self.split_loss(model, split)
        entry: dict[str, Any] = {"loss": res["loss"], "ppl": res["ppl"]}
        if not translations:
            return entry
        refs = [t for _, t in self.data.pairs[split]]
        if split == "val":  # what checkpoints are compared on: greedy search
            greedy_scores = report.score(self.translate(model, split, 1), refs)
            return {**entry, "bleu_greedy": greedy_scores["bleu"], "chrf_greedy": greedy_scores["chrf"]}
        beam = self.translate(model, split, self.search.beam)
        greedy = beam if self.search.beam == 1 else self.translate(model, split, 1)
        greedy_scores = report.score(greedy, refs)
        entry.update(**report.score(beam, refs), bleu_greedy=greedy_scores["bleu"],
                     chrf_greedy=greedy_scores["chrf"], sentences=len(refs))
        self.translations[split] = dict(zip(report.SPLIT_TEXTS, (beam, greedy, refs), strict=True))
        if out_dir is not None:
            entry.update(report.write_hypotheses(Path(out_dir), split, self.settings.tgt, self.translations[split]))
        return entry

    def final_model(self, run_dir: Path, new_model: Callable[[], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
        """The better on validation of the best checkpoint and the average of the last ones (saved in
        `run_dir/averaged/`); report.json gets `selected` (which, its steps and path) and `candidates`."""
        model, self.selection = weights.select_weights(self, run_dir, new_model)
        return model, {k: self.selection[k] for k in ("selected", "candidates")}

    def load_trained(self, checkpoint: str | Path, run_dir: Path, model: nn.Module) -> nn.Module:
        return weights.load_selected(checkpoint, run_dir, model, self.fingerprint(model))[0]

    def evaluate_all(self, model: nn.Module, out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        """Validation (as `final_model` scored it, when it chose `model`), then every test split, writing the
        hypothesis files into `out_dir`."""
        chosen = self.selection.get("model") is model
        val = self.selection["val"] if chosen else self.evaluate(model, "val")
        self.evals = {"val": val, **{split: self.evaluate(model, split, out_dir=out_dir)
                                     for split in self.eval_splits[1:]}}
        return self.evals

    # -- report -------------------------------------------------------------------------------------------------
    def report_extra(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {"search": {k: v for k, v in self.search.to_dict().items() if k not in ("select", "average_last")}}

    def report_sections(self, model: nn.Module, run_dir: Path, evals: dict[str, dict[str, Any]] | None = None,
                        candidates: dict[str, dict[str, Any]] | None = None, chosen: str | None = None
                        ) -> list[tuple[str, str]]:
        """report.md's test scores, checkpoint selection (`candidates` and `chosen`: `final_model`'s unless
        given) and example translations; writes `attention.png` (encoder-decoder). `evals`: `evaluate`'s results
        per split (the last `evaluate_all`'s, else evaluated here)."""
        evals = evals or self.evals or {split: self.evaluate(model, split) for split in self.eval_splits}
        candidates = candidates or self.selection.get("candidates")
        chosen = chosen or self.selection.get("selected", {}).get("checkpoint", "best")
        show = self.eval_splits[1] if len(self.eval_splits) > 1 else "val"
        sections = [("Test scores", report.scores_table(evals, self.search))]
        if candidates is not None:
            sections.append(("Checkpoint selection on validation",
                             report.selection_table(candidates, chosen, self.search.select)))
        hyps = self.translations.get(show, {}).get("hypotheses")
        sections.append((f"Example translations ({show}, beam {self.search.beam})",
                         report.examples_table(self.data.pairs[show], hyps)))
        if self.images:
            report.attention_map(model, self.src_tokenizer, self.tokenizer, self.data.pairs[show][0][0],
                                 Path(run_dir) / self.images[0], self.search, heads="all")
        return sections

    def eval_lines(self, results: dict[str, dict[str, Any]]) -> list[str]:
        return report.eval_lines(results, self.search)

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        which = self.selection.get("selected", {}).get("checkpoint", "best")
        return f"[{which}]  " + "  ".join(f"{split} BLEU {m['bleu']:.2f} (greedy {m['bleu_greedy']:.2f})"
                                          for split, m in evals.items() if "bleu" in m)


def prepare_translation_task(pairs: dict[str, list[tuple[str, str]]], data: TranslationDataSettings,
                             search: SearchSettings, max_len: int,
                             tokenizers: tuple[Tokenizer, Tokenizer] | None = None, label_smoothing: float = 0.0,
                             family: str = "encoder_decoder") -> TranslationTask:
    """Cut the held-out splits to `data.eval_limit` pairs, train the tokenizers on the training split (cached,
    see `runs.tokenizer_cache_dir`) unless given, encode every split for a model of `max_len` positions, and
    check that `data.max_tokens` holds the longest training pair."""
    if data.eval_limit:
        pairs = {split: p if split == "train" else p[:data.eval_limit] for split, p in pairs.items()}
    cache_dir = tokenizer_cache_dir() if tokenizers is None else None
    td = prepare_translation_data(pairs, data.vocab, not data.separate_vocab, data.tokenizer, cache_dir, max_len,
                                  tokenizers)
    longest = max(FORMATS[family].width(e) for e in td.examples["train"])
    if longest > data.max_tokens:
        raise SettingsError("data.max_tokens", f"{data.max_tokens} cannot hold the longest training pair ({longest} "
                                               "tokens); raise it, or lower the model's max_len")
    return TranslationTask(td, data, search, label_smoothing, family)


def translate(model: nn.Module, tokenizer: Tokenizer, sentences: Sequence[str], *,
              src_tokenizer: Tokenizer | None = None, **search: Any) -> list[str]:
    """Translate `sentences` with an encoder-decoder into detokenized text, in the order given. `tokenizer`
    decodes the output (and encodes the input unless a separate `src_tokenizer` is given); sources longer than
    learned positions allow are cut to `max_len`. `search`: `generation.generate_many`'s (beam_size, ...)."""
    src_tokenizer = src_tokenizer or tokenizer
    max_src = model.config.max_len if model.config.positional == "learned" else None
    sources = [[*ids[: None if max_src is None else max_src - 1], src_tokenizer.eos_id]
               for ids in src_tokenizer.encode_batch(list(sentences))]
    return [tokenizer.decode(row) for row in EncoderDecoderFormat.generate(model, sources, tokenizer, **search)]


def translate_lines(model: nn.Module, src_tok: Tokenizer, tgt_tok: Tokenizer, sentences: Sequence[str],
                    search: SearchSettings) -> list[str]:
    """One translation per sentence (recipes/translate.py's `translate` command); an empty sentence stays an
    empty line, so output lines match input lines."""
    hyps = iter(translate(model, tgt_tok, [s for s in sentences if s], src_tokenizer=src_tok, **search.generation()))
    return [next(hyps) if sentence else "" for sentence in sentences]


__all__ = ["FORMATS", "EncoderDecoderFormat", "TranslationTask", "load_tokenizers", "prepare_translation_task",
           "translate", "translate_lines"]
