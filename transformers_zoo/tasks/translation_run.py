"""A translation run: its data settings -> sentence pairs -> a `TranslationTask` (the Task of `tasks.base`),
the tokenizers and weights of a run directory, and the final choice between best and averaged weights.

    pairs = load_pairs(data, data_dir)                              # train, val, then every test split
    task = prepare_translation_task(pairs, data, search, max_len)   # tokenizers trained (cached), pairs encoded
    summary = fit(task, model, train_cfg, run_dir, fingerprint_of(cfg, task.src_tokenizer, task.tokenizer),
                  evaluate=task.validation_metrics)
    best, selected, candidates = select_weights(task, run_dir, lambda: EncoderDecoder(cfg), fingerprint)
    evals = {split: task.evaluate(best, split, out_dir=run_dir) for split in task.eval_splits}
    sections = task.report_sections(best, run_dir, evals, candidates, selected["checkpoint"])

`data` holds the recipe's data settings (`corpus`, `files`, `tests`, `src`, `tgt`, `tokenizer`, `vocab`,
`joint`, `max_tokens`, `eval_limit`, `eval_max_tokens`); `search` its evaluation settings (`beam`,
`length_penalty`, `max_len_a`, `max_len_b`, `select`, `average_last`), as config.json stores them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch import nn

from ..config import ModelConfig
from ..corpora import DataError, load_multi30k, read_parallel, resolve_data_dir
from ..models import EncoderDecoder
from ..runs import fingerprint, read_run_config, run_dir_of, tokenizer_cache_dir, write_json
from ..tokenizers import Tokenizer, load_tokenizer
from ..training.checkpoint import MODEL_FILE, load_checkpoint, load_weights
from ..viz import plot_cross_attention
from .prefix_lm import evaluate_prefix_loss, generate_prefix_ids, prefix_lm_loss, prefix_train_stream, prefix_width
from .translation import (
    TranslationData,
    average_checkpoints,
    evaluate_loss,
    example_width,
    examples_table,
    prepare_translation_data,
    score,
    scores_table,
    selection_table,
    target_ids,
    train_stream,
    translate,
    translation_loss,
    write_hypotheses,
)

Batch = dict[str, torch.Tensor]
SPLIT_TEXTS = ("hypotheses", "hypotheses_greedy", "references")


# ---------------------------------------------------------------------------------------------------------
# Data and the task
# ---------------------------------------------------------------------------------------------------------


def load_pairs(data: dict[str, Any], data_dir: str | None) -> dict[str, list[tuple[str, str]]]:
    """Sentence pairs per split: train, val, then every test split. Every file is read (and checked) here."""
    if data["corpus"] == "multi30k":
        pairs = load_multi30k(resolve_data_dir(data_dir), data["src"], data["tgt"])
        for split in ("train", "val"):
            if split not in pairs:
                raise DataError(f"Multi30k has no {split} split for {data['src']}-{data['tgt']}",
                                resolve_data_dir(data_dir) / "multi30k")
    else:
        pairs = {split: read_parallel(*data["files"][split]) for split in ("train", "val")}
    for name, (src, tgt) in data.get("tests", {}).items():
        pairs[name] = read_parallel(src, tgt)
    return pairs


def test_splits(pairs: dict[str, Any]) -> list[str]:
    """Every split but train and val, in order."""
    return [split for split in pairs if split not in ("train", "val")]


@dataclass
class TranslationTask:
    """Translation as a `tasks.base.Task`: token-budget batches of `data`'s training pairs, the label-smoothed
    loss, and `evaluate` (loss, greedy and beam-search sacreBLEU / chrF) used alike for checkpoint
    selection, the final report and `--eval-only`. `family` is the model trained: "encoder_decoder", or
    "decoder_only" with the source as a prefix (`tasks.prefix_lm`; no cross-attention map then)."""

    data: TranslationData
    settings: dict[str, Any]  # the data settings: max_tokens, eval_max_tokens, tgt (names hypothesis files)
    search: dict[str, Any]  # beam, length_penalty, max_len_a, max_len_b, select
    label_smoothing: float = 0.0
    family: str = "encoder_decoder"
    unit: str = "tok"
    #: the images `report_sections` writes into the run directory (beside the loss and lr curves)
    plots: tuple[str, ...] = ("attention.png",)
    #: the texts (SPLIT_TEXTS) of each test split's latest `evaluate`, for hypothesis files and examples
    translations: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in ("encoder_decoder", "decoder_only"):
            raise ValueError(f"family {self.family!r}: translation trains encoder_decoder or decoder_only")
        if self.family == "decoder_only":
            self.plots = ()

    @property
    def tokenizer(self) -> Tokenizer:
        """The target tokenizer (the joint one with one vocabulary)."""
        return self.data.tgt_tokenizer

    @property
    def src_tokenizer(self) -> Tokenizer:
        return self.data.src_tokenizer

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return ("val", *test_splits(self.data.pairs))

    @property
    def eval_max_tokens(self) -> int:
        return self.settings.get("eval_max_tokens", 6000)

    def describe(self) -> str:
        """One line on the data: the language pair, the pairs per split, skipped pairs and the vocabularies."""
        td, src, tgt = self.data, self.settings["src"], self.settings["tgt"]
        vocab = f"joint vocabulary {self.tokenizer.vocab_size}" if td.joint else \
            f"vocabularies {self.src_tokenizer.vocab_size} ({src}) + {self.tokenizer.vocab_size} ({tgt})"
        skipped = f" ({td.skipped['train']} longer than max_len skipped)" if td.skipped["train"] else ""
        return (f"data: {src}->{tgt}, " + ", ".join(f"{s} {len(p):,}" for s, p in td.pairs.items())
                + f" pairs{skipped}; {vocab}")

    def train_stream(self, seed: int) -> Iterator[Batch]:
        examples, max_tokens = self.data.examples["train"], self.settings["max_tokens"]
        if self.family == "decoder_only":
            return prefix_train_stream(examples, max_tokens, seed, self.tokenizer.pad_id)
        return train_stream(examples, max_tokens, seed, **target_ids(self.tokenizer))

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        loss_fn = prefix_lm_loss if self.family == "decoder_only" else translation_loss
        return loss_fn(model, batch, label_smoothing=self.label_smoothing)

    def translate(self, model: nn.Module, split: str, beam_size: int) -> list[str]:
        """Detokenized translations of the sources of `split`, in order (the run's search settings)."""
        kwargs = {k: self.search[k] for k in ("length_penalty", "max_len_a", "max_len_b")}
        if self.family == "decoder_only":
            sources = [s for s, _ in self.data.examples[split]]
            ids = generate_prefix_ids(model, sources, beam_size=beam_size, max_tokens=self.eval_max_tokens,
                                      eos_id=self.tokenizer.eos_id, **kwargs)
            return [self.tokenizer.decode(row) for row in ids]
        return translate(model, self.tokenizer, [s for s, _ in self.data.pairs[split]],
                         src_tokenizer=self.src_tokenizer, beam_size=beam_size, max_tokens=self.eval_max_tokens,
                         **kwargs)

    def evaluate(self, model: nn.Module, split: str, *, translations: bool = True,
                 out_dir: Path | None = None) -> dict[str, Any]:
        """Metrics of `split`: `loss` and `ppl` (no smoothing), then with `translations` greedy `bleu_greedy`
        and `chrf_greedy`, and for a test split beam-search `bleu`, `chrf` and their `signature`,
        `chrf_signature` and the number of `sentences`. With `out_dir`, a test split's hypotheses and
        references are written to `out_dir/hyp/` and their paths added (`hypotheses`, ...)."""
        device = next(model.parameters()).device
        if self.family == "decoder_only":
            res = evaluate_prefix_loss(model, self.data.examples[split], self.eval_max_tokens, device,
                                       self.tokenizer.pad_id)
        else:
            res = evaluate_loss(model, self.data.examples[split], self.eval_max_tokens, device,
                                **target_ids(self.tokenizer))
        entry: dict[str, Any] = {"loss": res["loss"], "ppl": res["ppl"]}
        if not translations:
            return entry
        refs = [t for _, t in self.data.pairs[split]]
        beam_size = self.search["beam"]
        if split == "val":  # what checkpoints are compared on: greedy search
            greedy_scores = score(self.translate(model, split, 1), refs)
            return {**entry, "bleu_greedy": greedy_scores["bleu"], "chrf_greedy": greedy_scores["chrf"]}
        beam = self.translate(model, split, beam_size)
        greedy = beam if beam_size == 1 else self.translate(model, split, 1)
        greedy_scores = score(greedy, refs)
        entry.update(**score(beam, refs), bleu_greedy=greedy_scores["bleu"], chrf_greedy=greedy_scores["chrf"],
                     sentences=len(refs))
        self.translations[split] = dict(zip(SPLIT_TEXTS, (beam, greedy, refs), strict=True))
        if out_dir is not None:
            entry.update(write_hypotheses(Path(out_dir), split, self.settings["tgt"], self.translations[split]))
        return entry

    def validation_metrics(self, model: nn.Module) -> dict[str, float]:
        """The trainer's evaluation: `val_loss`, `val_ppl` and, when checkpoints are selected on BLEU,
        `val_bleu` (greedy); `evaluate(model, "val")` with the `val_` prefix, decoding only when needed."""
        m = self.evaluate(model, "val", translations=self.search.get("select") == "bleu")
        out = {"val_loss": m["loss"], "val_ppl": m["ppl"]}
        if "bleu_greedy" in m:
            out["val_bleu"] = m["bleu_greedy"]
        return out

    def report_sections(self, model: nn.Module, run_dir: Path, evals: dict[str, dict[str, Any]] | None = None,
                        candidates: dict[str, dict[str, Any]] | None = None, chosen: str = "best"
                        ) -> list[tuple[str, str]]:
        """report.md's test scores, checkpoint selection (when `candidates`, from `select_weights`, are given)
        and example translations; writes `attention.png` (encoder-decoder). `evals` are `evaluate`'s results
        per split (evaluated here when not given)."""
        if evals is None:
            evals = {split: self.evaluate(model, split) for split in self.eval_splits}
        tests = test_splits(self.data.pairs)
        show = tests[0] if tests else "val"
        sections = [("Test scores", scores_table(evals, self.search))]
        if candidates is not None:
            sections.append(("Checkpoint selection on validation",
                             selection_table(candidates, chosen, self.search["select"])))
        hyps = self.translations.get(show, {}).get("hypotheses")
        sections.append((f"Example translations ({show}, beam {self.search['beam']})",
                         examples_table(self.data.pairs[show], hyps)))
        if self.family == "encoder_decoder":
            plot_cross_attention(model, self.src_tokenizer, self.tokenizer, self.data.pairs[show][0][0],
                                 Path(run_dir) / self.plots[0], self.search, heads="all")
        return sections


def prepare_translation_task(pairs: dict[str, list[tuple[str, str]]], data: dict[str, Any],
                             search: dict[str, Any], max_len: int,
                             tokenizers: tuple[Tokenizer, Tokenizer] | None = None, label_smoothing: float = 0.0,
                             family: str = "encoder_decoder") -> TranslationTask:
    """Cut the evaluation splits to `data["eval_limit"]`, train the tokenizers on the training split (cached,
    see `runs.tokenizer_cache_dir`) unless given, encode every split for a model of `max_len` positions, and
    check that `data["max_tokens"]` holds the longest training pair."""
    limit = data.get("eval_limit")
    if limit:
        pairs = {split: p if split == "train" else p[:limit] for split, p in pairs.items()}
    cache = tokenizer_cache_dir() if tokenizers is None else None
    td = prepare_translation_data(pairs, data.get("vocab", 8000), data.get("joint", True),
                                  data.get("tokenizer", "bpe"), cache, max_len, tokenizers)
    width = prefix_width if family == "decoder_only" else example_width
    longest = max(width(e) for e in td.examples["train"])
    if longest > data["max_tokens"]:
        raise ValueError(f"--max-tokens {data['max_tokens']} cannot hold the longest training pair ({longest} "
                         "tokens); raise --max-tokens or lower --max-len")
    return TranslationTask(td, data, search, label_smoothing, family)


# ---------------------------------------------------------------------------------------------------------
# Run directories: tokenizers, weights
# ---------------------------------------------------------------------------------------------------------


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


def fingerprint_of(cfg: ModelConfig, src_tok: Tokenizer, tgt_tok: Tokenizer) -> dict[str, Any]:
    """What a checkpoint belongs to: the model config and both tokenizers' hashes."""
    return fingerprint(cfg, tgt_tok, src_tokenizer=src_tok.fingerprint)


def select_weights(task: TranslationTask, run_dir: Path, new_model: Callable[[], nn.Module],
                   fingerprint: dict[str, Any]) -> tuple[nn.Module, dict[str, Any], dict[str, dict[str, Any]]]:
    """The better on validation (`search["select"]`: loss or greedy BLEU) of the best checkpoint and the
    average of the last `search["average_last"]` ones (saved in `run_dir/averaged/`); returns `(model,
    selected, candidates)`: `selected` names the weights (`checkpoint`, `steps`, `select`, `path`),
    `candidates` holds each one's `steps` and validation scores. `new_model()` builds an empty model."""
    ev = task.search
    model = new_model()
    manifest = load_checkpoint(run_dir, model)
    candidates = {"best": {"steps": [manifest["step"]], **task.evaluate(model, "val")}}
    chosen, selected_path = model, None
    if ev["average_last"] > 1:
        averaged = new_model()
        dirs = average_checkpoints(run_dir, ev["average_last"], averaged)
        if len(dirs) > 1:
            steps = [int(d.name.split("_")[1]) for d in dirs]
            avg_dir = run_dir / "averaged"
            avg_dir.mkdir(exist_ok=True)
            save_model(averaged, str(avg_dir / MODEL_FILE), force_contiguous=True)
            write_json(avg_dir / "averaged.json", {"steps": steps, "fingerprint": fingerprint})
            candidates["averaged"] = {"steps": steps, **task.evaluate(averaged, "val")}
            better = (candidates["averaged"]["loss"] < candidates["best"]["loss"] if ev["select"] == "loss"
                      else candidates["averaged"]["bleu_greedy"] > candidates["best"]["bleu_greedy"])
            if better:
                chosen, selected_path = averaged, avg_dir
    name = "averaged" if selected_path is not None else "best"
    selected = {"checkpoint": name, "steps": candidates[name]["steps"], "select": ev["select"],
                "path": str((selected_path or Path(manifest["path"])).relative_to(run_dir))}
    return chosen, selected, candidates


def print_evaluation(task: TranslationTask, model: nn.Module, out_dir: Path | None = None
                     ) -> dict[str, dict[str, Any]]:
    """`evaluate` every split of `task` (`--eval-only`), printing one line each and the BLEU signature;
    with `out_dir`, test hypotheses and references go to `out_dir/hyp/`. Returns the metrics per split."""
    ev = task.search
    results = {"val": task.evaluate(model, "val")}
    print("val: " + "  ".join(f"{k} {v:.4f}" for k, v in results["val"].items()))
    for split in task.eval_splits[1:]:
        results[split] = m = task.evaluate(model, split, out_dir=out_dir)
        print(f"{split}: BLEU {m['bleu']:.2f} chrF {m['chrf']:.2f} (beam {ev['beam']}, length penalty "
              f"{ev['length_penalty']:g})  greedy: BLEU {m['bleu_greedy']:.2f} chrF {m['chrf_greedy']:.2f}  "
              f"loss {m['loss']:.4f}")
    signature = next((m["signature"] for m in results.values() if "signature" in m), None)
    if signature:
        print(f"BLEU signature: {signature}")
    return results


def load_trained(checkpoint: str, device: torch.device) -> tuple[EncoderDecoder, Tokenizer, Tokenizer, dict, str]:
    """Model, (source, target) tokenizers, config and a description of the weights of `--checkpoint`.

    A run directory gives the weights its report selected (averaged or best; the best checkpoint while no
    report exists yet); `RUN_DIR/averaged` or `RUN_DIR/checkpoints/step_*` give those weights.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such run directory")
    run_dir = run_dir_of(path)
    config = read_run_config(run_dir)
    if config.get("recipe") != "translate":
        raise ValueError(f"--checkpoint {checkpoint}: a {config.get('recipe')!r} run, not a translate run")
    src_tok, tgt_tok = load_tokenizers(run_dir)
    cfg = ModelConfig.from_dict(config["model"])
    model = EncoderDecoder(cfg).to(device)
    if path.resolve() == run_dir.resolve() and _selected(run_dir) == "averaged":
        path = run_dir / "averaged"
    if path.name == "averaged" and (path / MODEL_FILE).is_file():
        load_weights(path, model)
        steps = json.loads((path / "averaged.json").read_text()).get("steps", [])
        what = f"average of steps {', '.join(map(str, steps))}"
    else:
        manifest = load_checkpoint(path, model, fingerprint=fingerprint_of(cfg, src_tok, tgt_tok))
        what = f"step {manifest['step']} ({Path(manifest['path']).name})"
    model.eval()
    return model, src_tok, tgt_tok, config, what


def _selected(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "report.json").read_text()).get("selected", {}).get("checkpoint")
    except (OSError, ValueError):
        return None
