"""Index a corpus with a sentence encoder, and search it: what the ``index`` and ``search`` commands run.

    index_corpus(encoder, ids, texts, "idx/", kind="flat", source="runs/embed-cpu")   # or add=True to extend
    search(encoder, "idx/", ["a dog in the snow"], k=5)    # per query: [Hit(id, text, score)], best first
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

from ..corpora import PathLike
from .encode import SentenceEncoder
from .index import Hit, IndexFolderError, VectorIndex
from .passages import split_passages

__all__ = ["index_corpus", "print_hits", "search"]

#: above this many documents a new index is HNSW unless the caller chooses ("auto")
HNSW_FROM = 200_000


def index_corpus(encoder: SentenceEncoder, ids: Sequence[str], texts: Sequence[str], folder: PathLike,
                 kind: str = "auto", add: bool = False, source: str | None = None,
                 log=lambda message: None, passages: tuple[int, int] = (0, 0)) -> VectorIndex:
    """Embed ``texts`` into the index at ``folder``: a new one (refused if one is there), or with ``add`` the
    existing one extended (refused when another encoder wrote it). ``passages = (size, overlap)``: texts longer
    than ``size`` tokens are split (``passages.split_passages``; 0: not). Written atomically; returns the index."""
    folder = Path(folder)
    if not texts:
        raise IndexFolderError("empty corpus: nothing to index", folder)
    if passages[0]:
        n_texts = len(texts)
        ids, texts = split_passages(ids, texts, encoder.tokenizer, *passages)
        log(f"{n_texts:,} texts -> {len(texts):,} passages of at most {passages[0]} tokens ({passages[1]} shared)")
    if add:
        index = VectorIndex.load(folder, fingerprint=encoder.fingerprint)
    else:
        if (folder / "index.json").exists():
            raise IndexFolderError("an index exists here; pass --add to extend it, or choose another folder", folder)
        kind = kind if kind != "auto" else ("hnsw" if len(texts) >= HNSW_FROM else "flat")
        index = VectorIndex.create(encoder.dim, encoder.fingerprint, kind)
        index.meta["encoder"] = source
    start = time.perf_counter()
    vectors = encoder.encode(texts)
    log(f"embedded {len(texts):,} texts in {time.perf_counter() - start:.1f}s")
    index.add(ids, texts, vectors)
    index.save(folder)
    log(f"{folder}: {len(index):,} documents ({index.meta['kind']}, dimension {index.dim})")
    return index


def search(encoder: SentenceEncoder, index: VectorIndex | PathLike, queries: str | Sequence[str], k: int = 10
           ) -> list[list[Hit]]:
    """Top ``k`` hits of each query, embedded by ``encoder`` (refused when the index has another encoder's
    vectors)."""
    if not isinstance(index, VectorIndex):
        index = VectorIndex.load(index, fingerprint=encoder.fingerprint)
    else:
        index.check_fingerprint(encoder.fingerprint)
    queries = [queries] if isinstance(queries, str) else list(queries)
    if not queries:
        raise IndexFolderError("no queries")
    return index.search(encoder.encode(queries), k)


def print_hits(queries: Sequence[str], results: Sequence[Sequence[Hit]], as_json: bool = False) -> None:
    """Each query and its hits on stdout: ``rank score id text``, or one JSON object a query."""
    for query, hits in zip(queries, results, strict=True):
        if as_json:
            print(json.dumps({"query": query, "hits": [h.__dict__ for h in hits]}, ensure_ascii=False))
            continue
        print(f"# {query}")
        for rank, hit in enumerate(hits, start=1):
            print(f"{rank:3d}  {hit.score:.4f}  {hit.id}  {hit.text[:200]}")
