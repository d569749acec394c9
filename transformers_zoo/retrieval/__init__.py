"""Retrieval: sentence vectors of many texts, a vector index on disk (FAISS), BM25, metrics and fusion.

- :mod:`.encode`: :class:`SentenceEncoder` (model + tokenizer + normalisation: texts -> vectors, fingerprinted);
- :mod:`.index`: :class:`VectorIndex` (exact, HNSW or IVF; inner product or L2; ids and texts, or integer values,
  beside it; written atomically);
- :mod:`.datastore`, :mod:`.knn`: kNN-LM / kNN-MT: a model's states keyed to the next token, and
  :class:`~.knn.KNNModel`, the model mixed with them behind the generation interface;
- :mod:`.documents`: corpora to index (lines, TSV column, JSONL ``{"id", "text"}``, built-in data sets);
- :mod:`.bm25`: :class:`BM25` (bm25s); :mod:`.metrics`: R@k, MRR, reciprocal-rank fusion;
- :mod:`.captions`: caption-to-caption retrieval on Multi30k task 2 (dense, BM25 and hybrid rows).
"""

from __future__ import annotations

from .bm25 import BM25
from .encode import SentenceEncoder, encode_texts, frame_ids
from .metrics import RRF_K, ranking_metrics, reciprocal_rank_fusion

__all__ = ["BM25", "RRF_K", "SentenceEncoder", "encode_texts", "frame_ids", "ranking_metrics",
           "reciprocal_rank_fusion"]
