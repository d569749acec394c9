"""A large pre-training corpus for masked language modelling: documents -> sentences -> packed blocks.

RoBERTa's FULL-SENTENCES packing (Liu et al. 2019): every block is ``[CLS] sentences... [SEP]``, whole
sentences taken in order from one document and on into the next, with a ``[SEP]`` between documents, up to
``block_len`` tokens. A sentence longer than a block is cut into block-sized pieces. Packing wastes almost
nothing on padding (short sentences of a review fill the same block), and every block has the length the
model is trained at, so the token budget per step is fixed.

The corpus is held as one ``(N, block_len)`` int32 tensor (4 bytes a token, padding included), never as
Python lists of lists: IMDB's 100k reviews are ~30M tokens, 0.12 GB here, where lists of ints would take
over 1 GB. Documents are encoded a chunk at a time. Which documents are held out for evaluation depends on
their text alone (a sha256), so every run of the same corpus scores the same text.

Also here: the deterministic sentence sample the tokenizer is trained on, and the n-gram overlap check
between a pre-training corpus and an evaluation set (contamination).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..batching import EpochBatches, derive_seed, mask_tokens
from ..corpora import DataError
from ..tokenizers import Tokenizer

__all__ = [
    "PackedBlocks",
    "PackedMLMCollator",
    "ngram_overlap",
    "pack_documents",
    "packed_mlm_stream",
    "sample_sentences",
    "split_documents",
    "split_sentences",
]

# A sentence ends at . ! ? (optionally followed by closing quotes or brackets) before whitespace, or at a
# newline (IMDB's paragraph breaks); good enough to keep blocks from cutting sentences in the middle.
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+|\s*\n\s*")
#: Documents encoded per call of the tokenizer (bounds the Python lists alive at once).
ENCODE_CHUNK = 2000


def split_sentences(doc: str) -> list[str]:
    """The non-blank sentences of a document, in order, surrounding whitespace stripped."""
    return [s.strip() for s in _SENTENCE_END.split(doc) if s and not s.isspace()]


def _hash(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def split_documents(docs: Sequence[str], heldout_fraction: float) -> tuple[list[str], list[str]]:
    """``(train, heldout)``: the documents whose sha256 falls in the lowest ``heldout_fraction`` of the hash
    range are held out (at least one), with every copy of them, so no held-out text is trained on."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    distinct = len(set(docs))
    if distinct < 2:
        raise DataError(f"need at least 2 distinct documents to hold some out for evaluation, got {distinct}")
    cut = int(heldout_fraction * 2**64)
    held = {d for d in docs if int.from_bytes(_hash(d)[:8], "big") < cut}
    if not held:  # a small corpus: hold out the document with the smallest hash
        held = {min(docs, key=_hash)}
    return [d for d in docs if d not in held], [d for d in docs if d in held]


def sample_sentences(docs: Iterable[str], max_sentences: int) -> list[str]:
    """At most ``max_sentences`` distinct sentences of ``docs``: those with the smallest sha256, in corpus
    order. Depends on the text alone (no seed), so a tokenizer trained on the sample is reproducible, and it
    is spread over the whole corpus rather than its first documents."""
    sentences = dict.fromkeys(s for d in docs for s in split_sentences(d))
    if len(sentences) <= max_sentences:
        return list(sentences)
    keep = set(sorted(sentences, key=_hash)[:max_sentences])
    return [s for s in sentences if s in keep]


@dataclass
class PackedBlocks:
    """``blocks (N, block_len)`` int32 token ids, each row ``[CLS] ... [SEP]`` then padding; ``lengths (N,)``
    the real tokens of each row; ``n_documents`` and ``n_sentences`` packed into them."""

    blocks: Tensor
    lengths: Tensor
    n_documents: int
    n_sentences: int

    def __len__(self) -> int:
        return self.blocks.shape[0]

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def fill(self) -> float:
        """Share of the block positions that hold real tokens (1 - padding)."""
        return self.n_tokens / max(1, self.blocks.numel())

    def rows(self, limit: int | None = None) -> list[list[int]]:
        """The first ``limit`` blocks as lists without padding (evaluation wants them so)."""
        n = len(self) if limit is None else min(limit, len(self))
        return [self.blocks[i, : int(self.lengths[i])].tolist() for i in range(n)]


def pack_documents(tokenizer: Tokenizer, docs: Sequence[str], block_len: int) -> PackedBlocks:
    """Encode ``docs`` and pack their sentences into blocks of at most ``block_len`` tokens (FULL-SENTENCES).

    A block never ends inside a sentence unless the sentence alone is longer than a block (then it is cut
    into pieces); a ``[SEP]`` follows the last sentence of every document, so the model sees where one
    review ends and the next begins. An empty corpus is a DataError.
    """
    if block_len < 8:
        raise ValueError(f"block_len must be >= 8, got {block_len}")
    room = block_len - 1  # [CLS] is the first token of every block
    cls, sep, pad = tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id
    rows: list[Tensor] = []
    lengths: list[int] = []
    current: list[int] = []
    n_sentences = 0

    def flush() -> None:
        nonlocal current
        if current:
            row = [cls, *current][:block_len]
            if row[-1] != sep:  # every block ends with [SEP] (a document's end may already have put one there)
                row = [*row[: block_len - 1], sep]
            lengths.append(len(row))
            rows.append(torch.tensor(row + [pad] * (block_len - len(row)), dtype=torch.int32))
            current = []

    for start in range(0, len(docs), ENCODE_CHUNK):
        for doc in docs[start : start + ENCODE_CHUNK]:
            sentences = split_sentences(doc)
            n_sentences += len(sentences)
            encoded = tokenizer.encode_batch(sentences)
            encoded[-1:] = [[*encoded[-1], sep]] if encoded else []  # the document's end
            for ids in encoded:
                while len(ids) > room - 1:  # a sentence longer than a block: cut it into full blocks
                    flush()
                    current, ids = ids[: room - 1], ids[room - 1 :]
                    flush()
                if len(current) + len(ids) > room - 1:
                    flush()
                current = current + ids
        flush()  # each chunk ends its last block: packing never depends on where chunks fall
    if not rows:
        raise DataError("the pre-training corpus has no text")
    return PackedBlocks(torch.stack(rows), torch.tensor(lengths, dtype=torch.int32), len(docs), n_sentences)


@dataclass(frozen=True)
class PackedMLMCollator:
    """Rows of a packed-blocks tensor -> ``{"input_ids": (B, T), "labels": (B, T)}`` with fresh BERT masking
    (:func:`~transformers_zoo.batching.mask_tokens`) seeded from ``(seed, epoch, batch index)``: a new mask
    every epoch (dynamic masking), the same one after a resume. ``T`` is the longest row of the batch."""

    blocks: PackedBlocks
    vocab_size: int
    seed: int
    mlm_probability: float
    mask_id: int
    pad_id: int
    special_ids: frozenset[int]
    needs_position: ClassVar[bool] = True

    def __call__(self, indices: Sequence[int], *, epoch: int = 0, index: int = 0) -> dict[str, Tensor]:
        rows = torch.as_tensor(list(indices))
        width = int(self.blocks.lengths[rows].max())
        ids = self.blocks.blocks[rows, :width].long()
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, index, "mlm"))
        inputs, labels = mask_tokens(ids, vocab_size=self.vocab_size, mask_id=self.mask_id,
                                     special_ids=self.special_ids, pad_id=self.pad_id,
                                     mlm_probability=self.mlm_probability, generator=generator)
        return {"input_ids": inputs, "labels": labels}


class _Indices(Sequence[int]):
    """``range(n)`` as the stream's examples: the collator gets block indices and slices the tensor itself."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        return i


def packed_mlm_stream(blocks: PackedBlocks, batch_size: int, seed: int, tokenizer: Tokenizer, vocab_size: int,
                      mlm_probability: float) -> EpochBatches:
    """Endless, resumable batches of ``batch_size`` blocks, in a fresh order every epoch (seeded), masked by
    :class:`PackedMLMCollator`. The last, partial batch of an epoch is dropped: every step sees as many
    blocks."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(blocks)
    if n < batch_size:
        raise DataError(f"the corpus packs into {n} blocks, fewer than one batch of {batch_size}")

    def make_batches(epoch: int) -> list[list[int]]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, "order")))
        return [order[i : i + batch_size].tolist() for i in range(0, n - batch_size + 1, batch_size)]

    collate = PackedMLMCollator(blocks, vocab_size, seed, mlm_probability, tokenizer.mask_id, tokenizer.pad_id,
                                frozenset(tokenizer.special_ids))
    return EpochBatches(_Indices(n), make_batches, collate)


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    # lower-cased runs of letters and digits: SST-2's tokenized "it 's" and raw "it's" give the same words
    return _WORD.findall(text.lower())


def ngram_overlap(corpus: Iterable[str], texts: Sequence[str], n: int = 8, show: int = 5) -> dict:
    """How much of ``texts`` (an evaluation set) occurs in ``corpus`` (pre-training documents), by word n-grams.

    Words are lower-cased letter/digit runs, so punctuation and tokenization do not hide a match. Returns
    ``n``, ``texts`` (how many had at least n words), ``contaminated`` (texts sharing at least one n-gram
    with the corpus), ``contaminated_fraction``, ``ngram_fraction`` (share of the texts' distinct n-grams
    found) and ``examples`` (the first ``show`` contaminated texts with one shared n-gram).
    """
    grams_of = [{tuple(w[i : i + n]) for i in range(len(w) - n + 1)} for w in map(_words, texts)]
    wanted = set().union(*grams_of) if grams_of else set()
    found: set[tuple[str, ...]] = set()
    for doc in corpus:
        w = _words(doc)
        for i in range(len(w) - n + 1):
            gram = tuple(w[i : i + n])
            if gram in wanted:
                found.add(gram)
    hits = [(text, sorted(g & found)[0]) for text, g in zip(texts, grams_of, strict=True) if g & found]
    eligible = sum(1 for g in grams_of if g)
    return {"n": n, "texts": eligible, "contaminated": len(hits),
            "contaminated_fraction": len(hits) / eligible if eligible else 0.0,
            "ngram_fraction": len(found) / len(wanted) if wanted else 0.0,
            "examples": [{"text": t, "ngram": " ".join(g)} for t, g in hits[:show]]}
