"""Retrieval metrics of ranked lists, and reciprocal-rank fusion of several rankings.

A ranking is, per query, the document indices best first (an ``(Q, K)`` array, or lists). ``relevant[q]`` is
the set of documents relevant to query ``q``. R@k is the fraction of queries with a relevant document in
their first k (the "recall@k" of caption retrieval); MRR is the mean of 1 / rank of the first relevant
document (0 when none is ranked).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["RRF_K", "ranking_metrics", "reciprocal_rank_fusion"]

#: the constant of Cormack et al. (2009): score(d) = sum over rankings of 1 / (RRF_K + rank of d)
RRF_K = 60


def ranking_metrics(ranked: Sequence[Sequence[int]], relevant: Sequence[Iterable[int]],
                    ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """``{"r@1": ..., "r@5": ..., "r@10": ..., "mrr": ...}`` in percent (as the literature reports them)."""
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings for {len(relevant)} queries")
    if not len(ranked):
        raise ValueError("no queries to score")
    first = np.full(len(ranked), np.inf)  # 1-based rank of the first relevant document
    for q, (row, rel) in enumerate(zip(ranked, relevant, strict=True)):
        rel = set(rel)
        for rank, doc in enumerate(row, start=1):
            if int(doc) in rel:
                first[q] = rank
                break
    metrics = {f"r@{k}": float(100 * np.mean(first <= k)) for k in ks}
    metrics["mrr"] = float(100 * np.mean(np.where(np.isinf(first), 0.0, 1.0 / first)))
    return metrics


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Sequence[int]]], k: int, rrf_k: int = RRF_K
                           ) -> list[list[int]]:
    """One ranking per query of the ``k`` documents with the largest summed ``1 / (rrf_k + rank)`` over
    ``rankings`` (each ``(Q, K_i)``); ties go to the document first seen (the first ranking's order)."""
    fused = []
    for rows in zip(*rankings, strict=True):
        scores: dict[int, float] = {}
        for row in rows:
            for rank, doc in enumerate(row, start=1):
                scores[int(doc)] = scores.get(int(doc), 0.0) + 1.0 / (rrf_k + rank)
        fused.append(sorted(scores, key=lambda d: -scores[d])[:k])  # sorted is stable: first seen wins ties
    return fused
