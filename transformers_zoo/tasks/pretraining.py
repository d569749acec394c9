"""Masked-language-model pre-training on a real corpus, as a :class:`~transformers_zoo.tasks.base.Task`.

The corpus (IMDB's train + unsup reviews, SST-2's training phrases, or a file of documents) is split into
training and held-out documents by text hash, a sentencepiece vocabulary is trained on a sample of the
training sentences, and both sides are packed into fixed-length blocks (``tasks.mlm_corpus``). Training
batches mask a fresh share of the real tokens every step; the held-out blocks are scored with a fixed mask
(``tasks.mlm.evaluate_mlm``). The report shows the held-out scores, the model filling in one word of
held-out sentences, and how many SST-2 evaluation sentences share a word n-gram with the training text.

    task = prepare_pretrain_task(data, data_dir, max_len=128, contamination=True)
    summary = fit(task, EncoderOnly(config), train_cfg, run_dir, fingerprint)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..corpora import load_imdb, load_sst2, read_jsonl
from ..tokenizers import Tokenizer
from .base import CountingStream, device_of
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

__all__ = ["PretrainTask", "contamination_line", "prepare_pretrain_task", "pretrain_documents", "sample_fills"]


@dataclass
class PretrainTask:
    """The packed training blocks and held-out blocks (without their [CLS]/[SEP] ends: the evaluation adds
    them) of a corpus, with the data settings (``batch_blocks``, ``mlm_probability``, ``eval_batch_tokens``)
    and ``contamination``, the n-gram overlap with SST-2's validation and test sentences (None: not measured).
    """

    data: dict[str, Any]
    tokenizer: Tokenizer
    train: PackedBlocks
    heldout: list[list[int]]
    heldout_texts: list[str]
    source: str
    contamination: dict[str, Any] | None = None
    eval_splits: tuple[str, ...] = ("val",)
    unit: str = "masked tok"

    def train_stream(self, seed: int) -> CountingStream:
        tok = self.tokenizer
        return CountingStream(packed_mlm_stream(self.train, self.data["batch_blocks"], seed, tok, tok.vocab_size,
                                                self.data["mlm_probability"]), tok.pad_id)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return mlm_loss(model, batch)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        if split != "val":
            raise ValueError(f"a pre-training run has one held-out split, 'val', not {split!r}")
        return evaluate_mlm(model, self.heldout, self.data["eval_batch_tokens"], device_of(model),
                            model.config.vocab_size, self.data["mlm_probability"])

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


def pretrain_documents(data: dict[str, Any], data_dir: str | None) -> tuple[list[str], list[str], str]:
    """``(train documents, held-out documents, where they came from)`` of ``data["corpus"]``: "imdb", "sst2"
    or "file" (``data["text"]``, a .jsonl(.gz) of ``{"text": ...}`` or a text file, one document a line)."""
    corpus = data["corpus"]
    if corpus == "file":
        path = data["text"]
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
    else:
        raise ValueError(f"corpus {corpus!r} is not valid; choose imdb, sst2 or a file (--text)")
    if data.get("max_documents"):  # the smoke test: an evenly spread sample
        docs = docs[:: max(1, len(docs) // data["max_documents"])][: data["max_documents"]]
    train, held = split_documents(docs, data["heldout_fraction"])
    return train, held, f"{what}; {len(held):,} documents held out ({data['heldout_fraction']:.1%}, by text hash)"


def prepare_pretrain_task(data: dict[str, Any], data_dir: str | None, max_len: int,
                          tokenizer: Tokenizer | None = None, contamination: bool = False) -> PretrainTask:
    """Read the corpus, hold out the evaluation documents, train the tokenizer (unless given: a resume) on a
    sample of the training sentences, pack both sides into blocks of ``data["block_len"]`` (at most the
    model's ``max_len``); with ``contamination`` measure the overlap with SST-2's evaluation sentences."""
    if data["block_len"] > max_len:
        raise ValueError(f"--block-len {data['block_len']} is longer than the model's max_len {max_len}")
    docs, held_docs, source = pretrain_documents(data, data_dir)
    if tokenizer is None:
        tokenizer = train_sentencepiece(sample_sentences(docs, data["tokenizer_sentences"]), data["tokenizer"],
                                        data["vocab"], data.get("pretokenize"))
    train = pack_documents(tokenizer, docs, data["block_len"])
    held = pack_documents(tokenizer, held_docs, data["block_len"]).rows(data.get("max_eval_blocks"))
    source += (f"; packed into {len(train):,} blocks of up to {data['block_len']} tokens ({train.n_tokens:,} "
               f"tokens, {train.fill():.0%} of the positions real), {len(held):,} held-out blocks")
    overlap = None
    if contamination:
        sst2 = load_sst2(data_dir)
        overlap = {split: ngram_overlap(docs, [t for t, _ in sst2[key]], data["contamination_n"])
                   for split, key in (("sst2_dev", "test"), ("sst2_val", "val"))}
    held_texts = [s for d in held_docs for s in split_sentences(d)]
    return PretrainTask(data, tokenizer, train, [r[1:-1] for r in held], held_texts, source, overlap)


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
