"""A vector index on disk: FAISS vectors, the ids and texts beside them, and the fingerprint of their encoder.

    index = VectorIndex.create(dim=256, fingerprint=encoder.fingerprint, kind="flat")   # or "hnsw"
    index.add(ids, texts, vectors)             # (N, D) float32, as the encoder made them
    index.save("my_index/")                    # written into a temp folder, then renamed: all or nothing
    index = VectorIndex.load("my_index/", fingerprint=encoder.fingerprint)   # another encoder: refused
    hits = index.search(encoder.encode(["a dog"]), k=10)   # per query: [Hit(id, text, score)], best first

A folder holds ``vectors.faiss`` (``faiss.write_index``), ``docs.jsonl`` (``{"id", "text"}`` a line, in the
index's order) and ``index.json`` (kind, dimension, count, encoder fingerprint, HNSW settings). Scores are
inner products: cosine similarities when the encoder normalises. ``flat`` (IndexFlatIP) is exact; ``hnsw``
(IndexHNSWFlat, Malkov & Yashunin 2018) answers in about log N distance computations at a small loss of recall
(``ef_search`` trades speed for it), for corpora of millions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..corpora import DataError, PathLike

__all__ = ["INDEX_KINDS", "Hit", "IndexFolderError", "VectorIndex"]

INDEX_KINDS = ("flat", "hnsw")
META, VECTORS, DOCS = "index.json", "vectors.faiss", "docs.jsonl"
FORMAT = 1


class IndexFolderError(DataError):
    """A missing, corrupted or mismatched index folder, or vectors that do not fit it: one line."""


@dataclass(frozen=True)
class Hit:
    id: str
    text: str
    score: float


def _faiss():
    import faiss

    return faiss


class VectorIndex:
    """Vectors (FAISS, inner product) with an id and a text each, and the fingerprint of the encoder that made
    them. Build with :meth:`create`, grow with :meth:`add`, keep with :meth:`save`, reopen with :meth:`load`."""

    def __init__(self, faiss_index, meta: dict, ids: list[str], texts: list[str]):
        self.faiss_index, self.meta, self.ids, self.texts = faiss_index, meta, ids, texts

    @classmethod
    def create(cls, dim: int, fingerprint: str, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200,
               ef_search: int = 128) -> VectorIndex:
        faiss = _faiss()
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind {kind!r} is not one of {', '.join(INDEX_KINDS)}")
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction, index.hnsw.efSearch = ef_construction, ef_search
        meta = {"format": FORMAT, "kind": kind, "dim": dim, "count": 0, "fingerprint": fingerprint,
                "hnsw_m": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        return cls(index, meta, [], [])

    @property
    def dim(self) -> int:
        return self.meta["dim"]

    def __len__(self) -> int:
        return len(self.ids)

    def check_fingerprint(self, fingerprint: str | None, where: PathLike | None = None) -> None:
        if fingerprint is not None and fingerprint != self.meta["fingerprint"]:
            raise IndexFolderError(f"written by another encoder (fingerprint {self.meta['fingerprint'][:12]}, the "
                                   f"query encoder's is {fingerprint[:12]}); embed queries with the index's encoder or "
                                   "index the corpus again", where)

    def _vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexFolderError(f"dimension mismatch: {what} have shape {tuple(vectors.shape)}, the index holds "
                                   f"vectors of dimension {self.dim}")
        return vectors

    def add(self, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray) -> None:
        """Append documents; an id already in the index (or twice in ``ids``) is refused, nothing added."""
        vectors = self._vectors(vectors, "the new vectors")
        if not (len(ids) == len(texts) == len(vectors)):
            raise ValueError(f"{len(ids)} ids, {len(texts)} texts and {len(vectors)} vectors: they must match")
        if not len(ids):
            raise IndexFolderError("nothing to add: the corpus is empty")
        seen = set(self.ids)
        for doc_id in ids:
            if str(doc_id) in seen:
                raise IndexFolderError(f"duplicate id {str(doc_id)!r}: ids must be unique in an index")
            seen.add(str(doc_id))
        self.faiss_index.add(vectors)
        self.ids += [str(i) for i in ids]
        self.texts += list(texts)
        self.meta["count"] = len(self.ids)

    def search_indices(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(positions (Q, k), scores (Q, k))`` best first; position -1 where fewer than k documents exist."""
        queries = self._vectors(queries, "the queries")
        if not len(self):
            raise IndexFolderError("the index is empty")
        scores, positions = self.faiss_index.search(queries, min(k, len(self)))
        return positions, scores

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top ``k`` hits of each query vector (``(Q, D)``, or one ``(D,)``)."""
        positions, scores = self.search_indices(queries, k)
        return [[Hit(self.ids[p], self.texts[p], float(s)) for p, s in zip(row, srow, strict=True) if p >= 0]
                for row, srow in zip(positions, scores, strict=True)]

    # -- on disk -------------------------------------------------------------------------------------------
    def save(self, folder: PathLike) -> Path:
        """Write into a temp folder beside ``folder``, then swap it in with renames: a reader sees the old index
        or the new one, never half of one; a failure leaves the old one as it was."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".part"))
        try:
            _faiss().write_index(self.faiss_index, str(tmp / VECTORS))
            with open(tmp / DOCS, "w", encoding="utf-8") as f:
                for doc_id, text in zip(self.ids, self.texts, strict=True):
                    f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
            (tmp / META).write_text(json.dumps(self.meta, indent=2) + "\n")
            for name in (VECTORS, DOCS, META):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            old = None
            if folder.exists():
                if not (folder / META).is_file():
                    raise IndexFolderError("exists and is not an index folder; refusing to replace it", folder)
                old = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(folder, old)
            os.replace(tmp, folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: PathLike, fingerprint: str | None = None) -> VectorIndex:
        """The index in ``folder``; refused (one line) when missing, corrupted, or (``fingerprint`` given)
        written by another encoder."""
        folder = Path(folder)
        if not (folder / META).is_file():
            raise IndexFolderError("no index here (index.json missing); build one with the `index` command", folder)
        try:
            meta = json.loads((folder / META).read_text())
            if meta.get("format") != FORMAT or meta.get("kind") not in INDEX_KINDS:
                raise ValueError(f"unknown format {meta.get('format')!r} or kind {meta.get('kind')!r}")
        except (ValueError, UnicodeDecodeError) as err:
            raise IndexFolderError(f"corrupted index.json ({str(err).splitlines()[0]})", folder) from None
        try:
            index = _faiss().read_index(str(folder / VECTORS))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
            raise IndexFolderError(f"corrupted {VECTORS} ({first[:160]})", folder) from None
        ids, texts = [], []
        try:
            with open(folder / DOCS, encoding="utf-8") as f:
                for lineno, line in enumerate(f, start=1):
                    try:
                        row = json.loads(line)
                        ids.append(row["id"]), texts.append(row["text"])
                    except (ValueError, KeyError, TypeError):
                        raise IndexFolderError("corrupted line", folder / DOCS, lineno) from None
        except (FileNotFoundError, UnicodeDecodeError) as err:
            raise IndexFolderError(f"corrupted index: {DOCS} unreadable ({type(err).__name__})", folder) from None
        if not (index.ntotal == len(ids) == meta.get("count")) or index.d != meta.get("dim"):
            raise IndexFolderError(f"corrupted index: {index.ntotal} vectors of dimension {index.d}, {len(ids)} "
                                   f"documents, index.json says {meta.get('count')} of {meta.get('dim')}", folder)
        if meta["kind"] == "hnsw":
            index.hnsw.efSearch = meta["ef_search"]
        out = cls(index, meta, ids, texts)
        out.check_fingerprint(fingerprint, folder)
        return out
