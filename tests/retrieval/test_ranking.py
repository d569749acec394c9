"""retrieval: R@k and MRR by hand, reciprocal-rank fusion, BM25 against itself, caption retrieval rows."""

from __future__ import annotations

import numpy as np
import pytest

from transformers_zoo.retrieval import BM25, ranking_metrics, reciprocal_rank_fusion
from transformers_zoo.retrieval.captions import caption_set, dense_rankings, retrieval_rows


def test_ranking_metrics_by_hand():
    ranked = [[5, 1, 2], [7, 8, 9], [3, 4, 0]]
    relevant = [{1}, {0}, {3, 4}]  # first relevant at rank 2, never, rank 1
    m = ranking_metrics(ranked, relevant, ks=(1, 2, 3))
    assert m == pytest.approx({"r@1": 100 / 3, "r@2": 200 / 3, "r@3": 200 / 3, "mrr": 100 * (0.5 + 0 + 1) / 3})
    with pytest.raises(ValueError, match="2 rankings for 3 queries"):
        ranking_metrics(ranked[:2], relevant)


def test_reciprocal_rank_fusion():
    # doc 2 is second in both lists: 2/(60+2) beats 1/(60+1) of the docs first in only one
    assert reciprocal_rank_fusion([[[1, 2, 3]], [[4, 2, 5]]], k=3) == [[2, 1, 4]]
    assert reciprocal_rank_fusion([[[1, 2]]], k=5) == [[1, 2]]


def test_bm25_finds_the_shared_words_and_leaves_itself_out():
    texts = ["a dog runs on the beach", "the cat sleeps on a sofa", "dogs run on a sandy beach",
             "a man reads the paper", "a cat naps on the sofa"]
    bm25 = BM25(texts, "en")
    docs, scores = bm25.search(["cat sofa", "beach dog"], k=2)
    assert set(docs[0]) == {1, 4} and docs[1][0] in (0, 2) and scores[0][0] > 0
    docs, _ = bm25.search(texts, k=2, exclude_self=True)
    assert all(q not in row for q, row in enumerate(docs)) and docs[1][0] == 4 and docs[4][0] == 1


def test_caption_rows_dense_equals_brute_force_and_chance_is_low():
    images = [[f"caption {i} {k}" for k in range(5)] for i in range(20)]
    texts, relevant = caption_set(images)
    assert len(texts) == 100 and relevant[7] == {5, 6, 8, 9}
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((100, 16)).astype(np.float32)
    ranks = dense_rankings(vectors, depth=10, chunk=32)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_array_equal(ranks, np.argsort(-sims, axis=1)[:, :10])
    random_rows = retrieval_rows(texts, relevant, vectors, lang=None)
    assert set(random_rows) == {"dense"} and random_rows["dense"]["r@1"] < 15  # chance: 4/99
    perfect = np.repeat(np.eye(20, dtype=np.float32), 5, axis=0)  # captions of one image share a vector
    rows = retrieval_rows(texts, relevant, perfect, lang="en")
    assert rows["dense"]["r@1"] == 100 and set(rows) == {"dense", "bm25", "hybrid"}
