"""A vector index on disk: FAISS vectors, the ids and texts beside them, and the fingerprint of their encoder.

    index = VectorIndex.create(dim=256, fingerprint=encoder.fingerprint, kind="flat")   # or "hnsw"
    index.add(ids, texts, vectors)             # (N, D) float32, as the encoder made them
    index.save("my_index/")                    # written into a temp folder, then renamed: all or nothing
    index = VectorIndex.load("my_index/", fingerprint=encoder.fingerprint)   # another encoder: refused
    hits = index.search(encoder.encode(["a dog"]), k=10)   # per query: [Hit(id, text, score)], best first

A folder holds ``vectors.faiss`` (``faiss.write_index``), ``docs.jsonl`` (``{"id", "text"}`` a line, in the
index's order) and ``index.json`` (kind, metric, dimension, count, encoder fingerprint, HNSW settings). Scores are
inner products (``metric="ip"``): cosine similarities when the encoder normalises; or squared L2 distances
(``metric="l2"``, smallest first). An index of integer ``values`` instead of documents (a kNN-LM datastore: a token
id per vector, ``index.add_values(values, vectors)``) keeps them in ``values.npy`` instead of ``docs.jsonl``.
``flat`` (IndexFlatIP) is exact; ``hnsw`` (IndexHNSWFlat, Malkov & Yashunin 2018) answers in about log N distance
computations at a small loss of recall (``ef_search`` trades speed for it), for corpora of millions; ``ivf``
(IndexIVFFlat: ``nlist`` k-means cells, trained on the first vectors added) scans the ``nprobe`` cells nearest a
query, and is cheap to build for millions.
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

INDEX_KINDS = ("flat", "hnsw", "ivf")
METRICS = ("ip", "l2")  # inner product (largest first), squared Euclidean distance (smallest first)
META, VECTORS, DOCS, VALUES = "index.json", "vectors.faiss", "docs.jsonl", "values.npy"
FORMAT = 1
FEW_QUERIES = 64  # searched on one thread


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
    """Vectors (FAISS, inner product or squared L2) with an id and a text each (or an integer value each), and the
    fingerprint of the encoder that made them. Build with :meth:`create`, grow with :meth:`add` (or
    :meth:`add_values`), keep with :meth:`save`, reopen with :meth:`load`."""

    def __init__(self, faiss_index, meta: dict, ids: list[str], texts: list[str], values: np.ndarray | None = None):
        self.faiss_index, self.meta, self.ids, self.texts = faiss_index, meta, ids, texts
        self.values = values if values is not None or not meta.get("values") else np.zeros(0, dtype=np.int64)

    @classmethod
    def create(cls, dim: int, fingerprint: str, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200,
               ef_search: int = 128, metric: str = "ip", values: bool = False, nlist: int = 1024,
               nprobe: int = 16) -> VectorIndex:
        """An empty index of ``dim``-dimensional vectors; ``values=True``: an integer per vector, no documents."""
        faiss = _faiss()
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind {kind!r} is not one of {', '.join(INDEX_KINDS)}")
        if metric not in METRICS:
            raise ValueError(f"index metric {metric!r} is not one of {', '.join(METRICS)}")
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        if kind == "flat":
            index = faiss.IndexFlatIP(dim) if metric == "ip" else faiss.IndexFlatL2(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss_metric)
            index.hnsw.efConstruction, index.hnsw.efSearch = ef_construction, ef_search
        else:
            index = faiss.IndexIVFFlat(faiss.IndexFlat(dim, faiss_metric), dim, nlist, faiss_metric)
            index.nprobe = nprobe
        meta = {"format": FORMAT, "kind": kind, "metric": metric, "values": values, "dim": dim, "count": 0,
                "fingerprint": fingerprint, "hnsw_m": hnsw_m, "ef_construction": ef_construction,
                "ef_search": ef_search, "nlist": nlist, "nprobe": nprobe}
        return cls(index, meta, [], [])

    @property
    def dim(self) -> int:
        return self.meta["dim"]

    def __len__(self) -> int:
        return self.faiss_index.ntotal

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
        if self.values is not None:
            raise IndexFolderError("an index of values takes add_values(values, vectors), not documents")
        seen = set(self.ids)
        for doc_id in ids:
            if str(doc_id) in seen:
                raise IndexFolderError(f"duplicate id {str(doc_id)!r}: ids must be unique in an index")
            seen.add(str(doc_id))
        self._add_to_faiss(vectors)
        self.ids += [str(i) for i in ids]
        self.texts += list(texts)
        self.meta["count"] = len(self.ids)

    def _add_to_faiss(self, vectors: np.ndarray) -> None:
        if not self.faiss_index.is_trained:  # ivf: cells from (a sample of) the first vectors added
            nlist = self.meta["nlist"]
            if len(vectors) < nlist:
                raise IndexFolderError(f"an ivf index of {nlist} cells needs at least as many vectors to train on, got "
                                       f"{len(vectors)}; use a flat index or fewer cells")
            sample = np.random.default_rng(0).permutation(len(vectors))[: 64 * nlist]
            self.faiss_index.train(vectors[np.sort(sample)])
        self.faiss_index.add(vectors)

    def add_values(self, values: np.ndarray, vectors: np.ndarray) -> None:
        """Append vectors with an integer value each (an index created with ``values=True``)."""
        vectors = self._vectors(vectors, "the new vectors")
        values = np.asarray(values, dtype=np.int64).reshape(-1)
        if self.values is None:
            raise IndexFolderError("an index of documents takes add(ids, texts, vectors), not values")
        if len(values) != len(vectors):
            raise ValueError(f"{len(values)} values and {len(vectors)} vectors: they must match")
        self._add_to_faiss(vectors)
        self.values = np.concatenate((self.values, values))
        self.meta["count"] = len(self)

    def search_indices(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(positions (Q, k), scores (Q, k))`` best first (squared distances with ``metric="l2"``); position -1
        where fewer than k vectors exist."""
        queries = self._vectors(queries, "the queries")
        if not len(self):
            raise IndexFolderError("the index is empty")
        faiss = _faiss()
        threads = faiss.omp_get_max_threads()
        # OpenMP's start-up costs more than a few queries (far more on a busy machine). The count set is the calling
        # thread's own (an OpenMP ICV per thread): a server's threads searching at once do not see each other's
        if len(queries) < FEW_QUERIES:
            faiss.omp_set_num_threads(1)
        try:
            scores, positions = self.faiss_index.search(queries, min(k, len(self)))
        finally:
            faiss.omp_set_num_threads(threads)
        return positions, scores

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Top ``k`` hits of each query vector (``(Q, D)``, or one ``(D,)``) of an index of documents."""
        if self.values is not None:
            raise IndexFolderError("an index of values has no documents: use search_indices and .values")
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
            if self.values is not None:
                np.save(tmp / VALUES, self.values)
            else:
                with open(tmp / DOCS, "w", encoding="utf-8") as f:
                    for doc_id, text in zip(self.ids, self.texts, strict=True):
                        f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
            (tmp / META).write_text(json.dumps(self.meta, indent=2) + "\n")
            for name in (VECTORS, VALUES if self.values is not None else DOCS, META):
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
            if meta.get("format") != FORMAT or meta.get("kind") not in INDEX_KINDS or \
                    meta.setdefault("metric", "ip") not in METRICS:
                raise ValueError(f"unknown format {meta.get('format')!r}, kind {meta.get('kind')!r} or metric "
                                 f"{meta.get('metric')!r}")
        except (ValueError, UnicodeDecodeError) as err:
            raise IndexFolderError(f"corrupted index.json ({str(err).splitlines()[0]})", folder) from None
        try:
            index = _faiss().read_index(str(folder / VECTORS))
        except RuntimeError as err:
            first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
            raise IndexFolderError(f"corrupted {VECTORS} ({first[:160]})", folder) from None
        ids, texts, values = ([], [], _read_values(folder)) if meta.get("values") else (*_read_docs(folder), None)
        count = len(ids) if values is None else len(values)
        if not (index.ntotal == count == meta.get("count")) or index.d != meta.get("dim"):
            raise IndexFolderError(f"corrupted index: {index.ntotal} vectors of dimension {index.d}, {count} "
                                   f"{'documents' if values is None else 'values'}, index.json says "
                                   f"{meta.get('count')} of {meta.get('dim')}", folder)
        if meta["kind"] == "hnsw":
            index.hnsw.efSearch = meta["ef_search"]
        elif meta["kind"] == "ivf":
            index.nprobe = meta["nprobe"]
        out = cls(index, meta, ids, texts, values)
        out.check_fingerprint(fingerprint, folder)
        return out


def _read_docs(folder: Path) -> tuple[list[str], list[str]]:
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
    return ids, texts


def _read_values(folder: Path) -> np.ndarray:
    try:
        values = np.load(folder / VALUES)
    except (OSError, ValueError) as err:
        raise IndexFolderError(f"corrupted index: {VALUES} unreadable ({type(err).__name__})", folder) from None
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise IndexFolderError(f"corrupted index: {VALUES} holds {values.dtype} of shape {values.shape}", folder)
    return values.astype(np.int64, copy=False)
