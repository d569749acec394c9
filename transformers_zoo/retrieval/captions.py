"""Caption-to-caption retrieval (Multi30k task 2): for each caption rank all the others; relevant: the other
captions of its image. Dense (a sentence encoder's cosine), BM25, and hybrid (reciprocal-rank fusion of both).

Rankings are cut at ``DEPTH`` documents: R@1/5/10 are exact, MRR counts a first relevant document below rank
100 as 0 (MRR@100; with 4 relevant documents in 4,999 that changes the third decimal at most).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .bm25 import BM25
from .metrics import ranking_metrics, reciprocal_rank_fusion

__all__ = ["DEPTH", "bm25_rankings", "caption_set", "dense_rankings", "retrieval_rows"]

DEPTH = 100


def caption_set(images: Sequence[Sequence[str]]) -> tuple[list[str], list[set[int]]]:
    """The captions of ``images`` in one list, and for each the indices of the other captions of its image."""
    texts, owner = [], []
    for i, caps in enumerate(images):
        texts += list(caps)
        owner += [i] * len(caps)
    starts = np.cumsum([0] + [len(c) for c in images])
    relevant = [set(range(starts[o], starts[o + 1])) - {q} for q, o in enumerate(owner)]
    return texts, relevant


def dense_rankings(vectors: np.ndarray, depth: int = DEPTH, chunk: int = 1024) -> np.ndarray:
    """``(N, depth)`` indices of each vector's nearest others by inner product, best first, itself excluded."""
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    depth = min(depth, len(x) - 1)
    out = []
    for start in range(0, len(x), chunk):
        scores = x[start:start + chunk] @ x.T
        rows = torch.arange(scores.shape[0])
        scores[rows, rows + start] = float("-inf")
        out.append(scores.topk(depth, dim=1).indices)
    return torch.cat(out).numpy()


def retrieval_rows(texts: Sequence[str], relevant: Sequence[set[int]], vectors: np.ndarray | None,
                   bm25: np.ndarray | None = None, lang: str | None = "en") -> dict[str, dict[str, float]]:
    """``{"dense": metrics, "bm25": metrics, "hybrid": metrics}``: the rows there are inputs for. ``bm25``: its
    rankings when already computed (they depend on the texts alone), else computed here when ``lang`` is given."""
    rows, dense = {}, None
    if vectors is not None:
        dense = dense_rankings(vectors)
        rows["dense"] = ranking_metrics(dense, relevant)
    if bm25 is None and lang is not None:
        bm25 = bm25_rankings(texts, lang)
    if bm25 is not None:
        rows["bm25"] = ranking_metrics(bm25, relevant)
        if dense is not None:
            rows["hybrid"] = ranking_metrics(reciprocal_rank_fusion([dense, bm25], DEPTH), relevant)
    return rows


def bm25_rankings(texts: Sequence[str], lang: str | None) -> np.ndarray:
    """``(N, DEPTH)`` BM25 rankings of each text against all the others (k1 1.5, b 0.75, the language's stop
    words)."""
    return BM25(texts, lang).search(texts, DEPTH, exclude_self=True)[0]
