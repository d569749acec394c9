"""Corpora to index: ``(ids, texts)`` from a user's file or a built-in data set.

- ``name.jsonl`` (or ``.jsonl.gz``): one ``{"id": ..., "text": ...}`` a line ("id" optional: the line number);
- ``name.tsv`` with ``column``: that column of a tab-separated file whose first row names the columns (ids from
  ``id_column`` when given, else the row number);
- any other file: one text a line (ids: line numbers, from 1);
- ``imdb``: all 100k IMDB reviews (ids ``train/pos/123``, ``unsup/456``); ``multi30k``: Multi30k task 2
  captions (``lang``, ``split``; ids ``test_2016/17/3``: image 17's third caption).

A bad line is a DataError naming the file and the line; an empty corpus is one too.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ..corpora import DataError, PathLike, load_imdb, load_multi30k_captions, read_lines
from ..corpora.readers import _jsonl_rows, _read_bytes

__all__ = ["BUILTIN_CORPORA", "read_corpus"]

BUILTIN_CORPORA = ("imdb", "multi30k")


def read_corpus(source: PathLike, column: str | None = None, id_column: str | None = None,
                data_dir: PathLike | None = None, lang: str = "en", split: str = "test_2016"
                ) -> tuple[list[str], list[str]]:
    """``(ids, texts)`` of ``source``: a built-in corpus name or a file (see the module's docstring)."""
    name = str(source)
    if name == "imdb":
        reviews = [(s, r) for s in ("train", "test", "unsup") for r in load_imdb(s, data_dir)]
        ids = [f"{s}/{r.label}/{r.id}" if r.label else f"{s}/{r.id}" for s, r in reviews]
        return ids, [r.text for _, r in reviews]
    if name == "multi30k":
        images = load_multi30k_captions(data_dir, lang, (split,))[split]
        return ([f"{split}/{i}/{k}" for i, caps in enumerate(images) for k in range(1, len(caps) + 1)],
                [c for caps in images for c in caps])
    path = Path(source)
    if not path.is_file():
        raise DataError(f"no such file (nor a built-in corpus: {', '.join(BUILTIN_CORPORA)})", path)
    suffixes = "".join(path.suffixes[-2:])
    if suffixes.endswith((".jsonl", ".jsonl.gz")):
        ids, texts = _jsonl(path)
    elif column is not None:
        ids, texts = _tsv(path, column, id_column)
    else:
        texts = read_lines(path)
        ids = [str(i) for i in range(1, len(texts) + 1)]
    if not texts:
        raise DataError("empty corpus: no text to index", path)
    return ids, texts


def _jsonl(path: Path) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for lineno, row in _jsonl_rows(path, ("text",)):
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise DataError("\"text\" must be a non-empty string", path, lineno)
        ids.append(str(row.get("id", lineno)))
        texts.append(row["text"])
    return ids, texts


def _tsv(path: Path, column: str, id_column: str | None) -> tuple[list[str], list[str]]:
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"not valid UTF-8 (at byte {err.start})", path) from None
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError("empty corpus: no header row", path)
    header = rows[0]
    for name in (column, id_column):
        if name is not None and name not in header:
            raise DataError(f"no column {name!r}; the header has {', '.join(header)}", path, 1)
    at, id_at = header.index(column), None if id_column is None else header.index(id_column)
    ids, texts = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"expected {len(header)} tab-separated columns, got {len(row)}", path, lineno)
        if not row[at].strip():
            raise DataError(f"empty {column!r}", path, lineno)
        ids.append(row[id_at] if id_at is not None else str(lineno - 1))
        texts.append(row[at].strip())
    return ids, texts
