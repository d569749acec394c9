"""BM25 (bm25s): the lexical baseline every dense retriever is reported against, and one half of hybrid search.

bm25s scores with sparse matrices (a 100k-document corpus indexes in seconds) and implements the Lucene
variant with the usual k1 = 1.5, b = 0.75; its tokenizer lower-cases, keeps words of two or more letters and
drops the language's stop words.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BM25", "STOPWORDS"]

#: our language codes -> bm25s' stop-word lists
STOPWORDS = {"en": "en", "de": "de", None: None}


class BM25:
    """A BM25 index of ``texts``: ``search(queries, k)`` -> ``(indices (Q, k), scores (Q, k))``, best first."""

    def __init__(self, texts: Sequence[str], lang: str | None = "en", k1: float = 1.5, b: float = 0.75):
        import bm25s

        if not texts:
            raise ValueError("BM25 needs at least one document")
        if lang not in STOPWORDS:
            raise ValueError(f"no BM25 stop words for language {lang!r}; choose from en, de or None")
        self.n, self.stopwords = len(texts), STOPWORDS[lang]
        self.retriever = bm25s.BM25(k1=k1, b=b)
        self.retriever.index(self._tokens(texts), show_progress=False)

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        return bm25s.tokenize(list(texts), stopwords=self.stopwords, return_ids=False, show_progress=False)

    def search(self, queries: Sequence[str], k: int, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` documents of each query (``k`` at most the corpus size). ``exclude_self``: query ``q`` is
        document ``q`` (a corpus searched against itself), which is left out of its own ranking."""
        want = min(k + int(exclude_self), self.n)
        docs, scores = self.retriever.retrieve(self._tokens(queries), k=want, show_progress=False, n_threads=1)
        docs, scores = np.asarray(docs), np.asarray(scores, dtype=np.float32)
        if exclude_self:
            rows = [[j for j in range(want) if docs[q, j] != q][:want - 1] for q in range(len(queries))]
            docs = np.stack([docs[q, r] for q, r in enumerate(rows)])
            scores = np.stack([scores[q, r] for q, r in enumerate(rows)])
        return docs[:, :k], scores[:, :k]
