"""Masked-language-model pre-training on a real corpus, as a :class:`~transformers_zoo.tasks.base.Task`.

The corpus (IMDB's train + unsup reviews, SST-2's training phrases, or a file of documents) is split into
training and held-out documents by text hash, a sentencepiece vocabulary is trained on a sample of the
training sentences, and both sides are packed into fixed-length blocks (``tasks.mlm_corpus``). Training
batches mask a fresh share of the real tokens every step; the held-out blocks are scored with a fixed mask
(``tasks.mlm.evaluate_mlm``). The report shows the held-out scores, the model filling in one word of
held-out sentences, and how many SST-2 evaluation sentences share a word n-gram with the training text.

    settings = PretrainSettings.from_dict({"model": {...}, "train": {...}, "data": {"corpus": "imdb"}})
    task, model = prepare_pretrain(settings, Context(run_dir, data_dir=...))   # then pipeline.train does the rest
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..corpora import load_imdb, load_multi30k_captions, load_sst2, read_jsonl
from ..models.encoder_only import EncoderOnly
from ..settings import Settings, SettingsError
from ..tokenizers import Tokenizer, load_tokenizer
from ..training import TrainConfig
from ..training.device import RELEASE
from .base import CountingStream, TaskBase, device_of, fit
from .classification_settings import PRESETS as CLASSIFIER_PRESETS
from .mlm import MASK_TEXT, evaluate_mlm, fill_mask, mlm_loss, read_sentences, train_sentencepiece
from .mlm_corpus import (
    PackedBlocks,
    ngram_overlap,
    pack_documents,
    packed_mlm_stream,
    sample_sentences,
    split_documents,
    split_sentences,
)

__all__ = ["PRESETS", "PretrainDataSettings", "PretrainSettings", "PretrainTask", "contamination_line",
           "prepare_pretrain", "prepare_pretrain_task", "pretrain_documents", "pretrain_model", "sample_fills"]


NAMED_CORPORA = ("imdb", "sst2", "captions", "captions-de")  # --corpus; "file" is what --text makes it
CORPORA = (*NAMED_CORPORA, "file")


@dataclass(frozen=True)
class PretrainDataSettings(Settings):
    """The pre-training text and how it is cut: ``corpus`` imdb (its train + unsup reviews, never its test reviews),
    sst2 (its training phrases), captions / captions-de (Multi30k task 2's English / German training captions:
    the text recipes/embed.py trains on) or file (``text``: a .jsonl(.gz) of ``{"text": ...}`` or a text file,
    one document a line); ``heldout_fraction`` of the documents held out (by text hash; ``max_documents`` keeps
    an evenly spread sample); a sentencepiece ``tokenizer`` of ``vocab`` pieces trained on
    ``tokenizer_sentences`` sentences, writing text in ``pretokenize``'s form; blocks of ``block_len`` tokens,
    ``batch_blocks`` a step, ``mlm_probability`` of the real tokens masked; at most ``max_eval_blocks`` held-out
    blocks scored, ``eval_batch_tokens`` at a time; the overlap with SST-2's evaluation sentences in word
    ``contamination_n``-grams."""

    corpus: str = "imdb"
    text: str | None = None
    tokenizer: str = "unigram"
    pretokenize: str = "ptb"
    vocab: int = 8000
    tokenizer_sentences: int = 200_000
    block_len: int = 128
    batch_blocks: int = 32
    eval_batch_tokens: int = 8192
    mlm_probability: float = 0.3
    heldout_fraction: float = 0.005
    max_documents: int | None = None
    max_eval_blocks: int | None = 400
    contamination_n: int = 8

    def __post_init__(self) -> None:
        if self.text is not None and self.corpus != "file":  # a file given is the corpus
            object.__setattr__(self, "corpus", "file")
        self.check_choice("corpus", CORPORA)
        if self.corpus == "file" and not self.text:
            raise SettingsError("data.text", "corpus 'file' needs a text file")
        self.check_choice("tokenizer", ("unigram", "bpe"))
        self.check_choice("pretokenize", ("none", "ptb"))
        self.check_positive("vocab", "tokenizer_sentences", "block_len", "batch_blocks", "eval_batch_tokens",
                            "max_documents", "max_eval_blocks", "contamination_n")
        if not 0.0 < self.mlm_probability < 1.0:
            raise SettingsError("mlm_probability", f"must be in (0, 1), got {self.mlm_probability}")
        self.check_range("heldout_fraction", 0.0, 1.0, high_open=True)


@dataclass(frozen=True, kw_only=True)
class PretrainSettings(Settings):
    """A pre-training run: the encoder (no classes), training and data settings, and the preset they came from."""

    model: ModelConfig
    train: TrainConfig
    data: PretrainDataSettings = field(default_factory=PretrainDataSettings)
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.data.block_len > self.model.max_len:
            raise SettingsError("data.block_len", f"{self.data.block_len} is longer than the model's max_len "
                                                  f"{self.model.max_len}")


# ---------------------------------------------------------------------------------------------------- presets
# Pre-training without dropout: a short budget under-fits a large corpus rather than over-fitting it (Geiping &
# Goldstein 2023); the fine-tuning runs put it back. The model is the classifier's, so fine-tuning fits it.
TRAIN = dict(lr=1e-3, schedule="cosine", warmup_steps=160, min_lr_ratio=0.1, max_steps=3200, max_minutes=34.0,
             weight_decay=0.01, betas=[0.9, 0.98], eps=1e-6, grad_clip=1.0, eval_every=200, save_every=200,
             log_every=20, best_metric="val_loss", best_mode="min", keep_last=1)
DATA = PretrainDataSettings().to_dict()
#: recipes/mlm.py's presets; besides a run's settings, the one command's ``finetune_seeds`` and ``amp`` (every stage's)
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"model": dict(CLASSIFIER_PRESETS["tiny"]["model"], dropout=0.0),  # seconds: a few hundred reviews
             "train": dict(TRAIN, max_steps=12, warmup_steps=2, eval_every=6, save_every=6, log_every=3,
                           max_minutes=None),
             "data": dict(DATA, tokenizer="bpe", vocab=400, block_len=64, batch_blocks=8, max_documents=300,
                          heldout_fraction=0.05, max_eval_blocks=40)},
    # 2 cores with AMX (bf16): 2,200 steps of 64 blocks (~18M block positions, ~40 minutes; the cosine decay
    # completes), then 2 seeds x (fine-tune + from scratch), ~3.5 minutes each; every stage in bf16 ("amp").
    # The budget is steps, so the figures do not depend on the machine's speed; the wall-clock cap is a safety
    # net that the report flags when it fires.
    "cpu": {"model": dict(CLASSIFIER_PRESETS["cpu"]["model"], dropout=0.0),
            "train": dict(TRAIN, max_steps=2200, max_minutes=120.0, amp="bf16"), "data": dict(DATA, batch_blocks=64),
            "finetune_seeds": 2, "amp": "bf16"},
    # one large GPU: 8 layers x 512, 16k vocabulary (~30M parameters), 256 blocks a step, 12k steps (~390M tokens)
    "gpu": {"model": dict(CLASSIFIER_PRESETS["gpu"]["model"], dropout=0.0),
            "train": dict(TRAIN, max_steps=12000, warmup_steps=600, max_minutes=60.0, lr=7e-4, eval_every=1000,
                          save_every=1000, log_every=100),
            "data": dict(DATA, vocab=16000, batch_blocks=256, eval_batch_tokens=32768, max_eval_blocks=2000)},
}


@dataclass
class PretrainTask(TaskBase):
    """The packed training blocks and held-out blocks (without their [CLS]/[SEP] ends: the evaluation adds
    them) of a corpus, with the data settings (``batch_blocks``, ``mlm_probability``, ``eval_batch_tokens``)
    and ``contamination``, the n-gram overlap with SST-2's validation and test sentences (None: not measured).
    """

    # masked logits of a different size every step: glibc's heap fragments; releasing its free pages after each
    # step keeps memory flat at the unpinned heap's speed. Measured 2026-12-07 on 2 cores (IMDB, cpu preset):
    # 2,430-2,680 masked tok/s and 2.6-2.7 GB after 3 and 8 minutes, against 2,040 and 2.1 GB pinned at 128 KiB
    # (4 MiB: no faster) and 2,890 and 5.2 GB, growing, unmanaged
    heap = RELEASE
    data: PretrainDataSettings
    tokenizer: Tokenizer
    train: PackedBlocks
    heldout: list[list[int]]
    heldout_texts: list[str]
    source: str
    contamination: dict[str, Any] | None = None
    eval_splits: tuple[str, ...] = ("val",)
    unit: str = "masked tok"
    stream: CountingStream | None = None
    final: nn.Module | None = None

    def train_stream(self, seed: int) -> CountingStream:
        tok = self.tokenizer
        return CountingStream(packed_mlm_stream(self.train, self.data.batch_blocks, seed, tok, tok.vocab_size,
                                                self.data.mlm_probability), tok.pad_id)

    # -- the pipeline's hooks (tasks.base.TaskBase) ----------------------------------------------------------
    def describe(self) -> str:
        line = f"pretrain: {self.source}; {self.tokenizer.settings.get('model_type')} vocabulary " \
               f"{self.tokenizer.vocab_size:,}"
        return line + (f"\ncontamination: {contamination_line(self.contamination)}" if self.contamination else "")

    def config_extra(self) -> dict[str, Any]:
        return {"stage": "pretrain", "tokenizer_fingerprint": self.tokenizer.fingerprint, "data_source": self.source}

    def fit(self, model: nn.Module, train_cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
        self.stream = self.train_stream(train_cfg.seed)  # counts the input tokens for the report
        return fit(self, model, train_cfg, run_dir, self.fingerprint(model), stream=self.stream)

    def final_model(self, run_dir: Path, new_model: Any) -> tuple[nn.Module, dict[str, Any]]:
        from ..training import load_checkpoint

        self.final = new_model()
        return self.final, {"checkpoint": load_checkpoint(run_dir, self.final)["path"]}  # the best

    def report_extra(self, summary: dict[str, Any]) -> dict[str, Any]:
        rate = summary["train_tokens_per_s"]  # masked tokens/s: what the loss counts
        return {"stage": "pretrain", "train_tokens_per_s": rate * self.stream.tokens_per_unit(),
                "train_masked_tokens_per_s": rate,
                "fills": sample_fills(self.final, self.tokenizer, self.heldout_texts),
                "contamination": self.contamination}

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        return f"val masked accuracy {evals['val']['masked_accuracy']:.4f}  ppl {evals['val']['ppl']:.2f}"

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return mlm_loss(model, batch)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        if split != "val":
            raise ValueError(f"a pre-training run has one held-out split, 'val', not {split!r}")
        return evaluate_mlm(model, self.heldout, self.data.eval_batch_tokens, device_of(model),
                            model.config.vocab_size, self.data.mlm_probability)

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        val = self.evaluate(model, "val")
        fills = sample_fills(model, self.tokenizer, self.heldout_texts)
        rows = "\n".join(f"| {f['text']} | {f['original']} | " + ", ".join(f"{t} {p:.2f}" for t, p in f["top"])
                         + " |" for f in fills)
        sections = [("Data", self.source)]
        if self.contamination:
            examples = "\n".join(f"- {e['text']!r} (shares {e['ngram']!r})"
                                 for e in self.contamination["sst2_dev"]["examples"])
            shown = f"\n\nFirst SST-2 dev sentences with a shared n-gram:\n{examples}" if examples else ""
            sections.append(("Contamination: the pre-training text against the evaluation sentences",
                             contamination_line(self.contamination) + shown))
        sections += [("Held-out evaluation (best checkpoint, fixed mask)",
                      f"masked-token accuracy {val['masked_accuracy']:.4f}, perplexity {val['ppl']:.2f} over "
                      f"{val['masked_tokens']:,} masked tokens"),
                     ("Filling in one word of held-out sentences",
                      "| text | original | top 5 |\n| --- | --- | --- |\n" + rows)]
        return sections


def pretrain_documents(data: PretrainDataSettings, data_dir: str | None) -> tuple[list[str], list[str], str]:
    """``(train documents, held-out documents, where they came from)`` of ``data.corpus``: "imdb", "sst2"
    or "file" (``data.text``, a .jsonl(.gz) of ``{"text": ...}`` or a text file, one document a line)."""
    corpus = data.corpus
    if corpus == "file":
        path = data.text
        is_jsonl = any(path.endswith(ext) for ext in (".jsonl", ".jsonl.gz"))
        docs = [row["text"] for row in read_jsonl(path)] if is_jsonl else read_sentences(path)
        what = f"{path}: {len(docs):,} documents"
    elif corpus == "imdb":
        # a review that also stands in the test split (the release repeats a few verbatim) is left out too
        test = {r.text for r in load_imdb("test", data_dir)}
        docs = [r.text for split in ("train", "unsup") for r in load_imdb(split, data_dir)]
        n_all = len(docs)
        docs = [d for d in docs if d not in test]
        what = (f"IMDB train + unsup reviews, labels unused ({n_all - len(docs)} that repeat a test review verbatim "
                "left out; the test reviews never used)")
    elif corpus == "sst2":
        sst2 = load_sst2(data_dir)
        train, held = [t for t, _ in sst2["train"]], [t for t, _ in sst2["val"]]
        return train, held, "SST-2 training phrases without labels; held out: the SST-2 validation sentences"
    elif corpus.startswith("captions"):  # one caption a document; test_2016 (embed.py's report) never read
        lang = "de" if corpus == "captions-de" else "en"
        images = load_multi30k_captions(data_dir, lang, ("train", "val"))
        train, held = ([c for group in images[split] for c in group] for split in ("train", "val"))
        return train, held, f"Multi30k task 2 training captions ({lang}); held out: its val captions"
    if data.max_documents:  # the smoke test: an evenly spread sample
        docs = docs[:: max(1, len(docs) // data.max_documents)][: data.max_documents]
    train, held = split_documents(docs, data.heldout_fraction)
    return train, held, f"{what}; {len(held):,} documents held out ({data.heldout_fraction:.1%}, by text hash)"


def prepare_pretrain_task(data: PretrainDataSettings, data_dir: str | None, tokenizer: Tokenizer | None = None,
                          contamination: bool = False) -> PretrainTask:
    """Read the corpus, hold out the evaluation documents, train the tokenizer (unless given: a resume) on a
    sample of the training sentences, pack both sides into blocks of ``data.block_len``; with
    ``contamination`` measure the overlap with SST-2's evaluation sentences."""
    docs, held_docs, source = pretrain_documents(data, data_dir)
    if tokenizer is None:
        tokenizer = train_sentencepiece(sample_sentences(docs, data.tokenizer_sentences), data.tokenizer, data.vocab,
                                        data.pretokenize)
    train = pack_documents(tokenizer, docs, data.block_len)
    held = pack_documents(tokenizer, held_docs, data.block_len).rows(data.max_eval_blocks)
    source += (f"; packed into {len(train):,} blocks of up to {data.block_len} tokens ({train.n_tokens:,} "
               f"tokens, {train.fill():.0%} of the positions real), {len(held):,} held-out blocks")
    overlap = None
    if contamination:
        sst2 = load_sst2(data_dir)
        overlap = {split: ngram_overlap(docs, [t for t, _ in sst2[key]], data.contamination_n)
                   for split, key in (("sst2_dev", "test"), ("sst2_val", "val"))}
    held_texts = [s for d in held_docs for s in split_sentences(d)]
    return PretrainTask(data, tokenizer, train, [r[1:-1] for r in held], held_texts, source, overlap)


def prepare_pretrain(settings: PretrainSettings, ctx: Any) -> tuple[PretrainTask, EncoderOnly]:
    """The recipe contract's ``prepare`` of a pre-training run: the corpus read, split, tokenized (a tokenizer
    trained, or the run's own when it continues) and packed, its overlap with SST-2's evaluation sentences
    measured (a new run), and a fresh encoder from the seed."""
    tokenizer = load_tokenizer(ctx.run_dir / "tokenizer") if ctx.resumed else None
    task = prepare_pretrain_task(settings.data, ctx.data_dir, tokenizer, contamination=not ctx.resumed)
    return task, pretrain_model(settings, task)


def pretrain_model(settings: PretrainSettings, task: PretrainTask) -> EncoderOnly:
    """The encoder of ``settings`` for ``task``'s vocabulary, initialised from the run's seed."""
    tok = task.tokenizer
    torch.manual_seed(settings.train.seed)
    return EncoderOnly(settings.model.replace(vocab_size=tok.vocab_size, pad_id=tok.pad_id, n_classes=0))


def contamination_line(overlap: dict[str, Any]) -> str:
    """One line on how much of SST-2's evaluation sentences the pre-training text holds."""
    return "; ".join(f"{name.replace('_', ' ')}: {o['contaminated']} of {o['texts']} sentences "
                     f"({o['contaminated_fraction']:.1%}) share a word {o['n']}-gram with the pre-training text "
                     f"({o['ngram_fraction']:.2%} of their {o['n']}-grams)" for name, o in overlap.items())


def sample_fills(model: nn.Module, tokenizer: Tokenizer, texts: list[str], n: int = 8) -> list[dict[str, Any]]:
    """Mask the longest single-token word of a few texts, as the tokenizer writes them (``normalize``: SST-2's
    lower-cased form under ``pretokenize="ptb"``), and record the model's top 5 for it."""
    out = []
    for text in texts:
        words = tokenizer.normalize(text).split()
        single = [(len(w), -i, i) for i, w in enumerate(words) if len(tokenizer.encode(w)) == 1 and w.isalpha()]
        if len(words) < 4 or not single or len(tokenizer.encode(text)) > model.config.max_len - 2:
            continue
        i = max(single)[2]
        masked = " ".join(MASK_TEXT if j == i else w for j, w in enumerate(words))
        out.append({"text": masked, "original": words[i], "top": fill_mask(model, tokenizer, masked, 5)[0]})
        if len(out) == n:
            break
    return out
