"""Readers of any file, users' own or the canonical ones: text, lines, parallel sentences, labelled TSV, JSON
lines and JSON. ``.gz`` files are read transparently; every problem is a one-line :class:`DataError` naming
the file and, where it applies, the 1-based line; ``skip_bad=True`` skips bad rows with a :class:`DataWarning`.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import DataError, DataWarning, PathLike

__all__ = ["read_json", "read_jsonl", "read_labelled_tsv", "read_lines", "read_parallel", "read_text"]


def _read_bytes(path: PathLike) -> bytes:
    """The file's bytes, gunzipped when it ends in ``.gz``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as err:
        raise DataError(f"cannot read file: {err.strerror}", path) from None
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"not a valid gzip file ({err})", path) from None
    return data


def _decode(path: PathLike, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"not valid UTF-8 (byte 0x{data[err.start]:02x}); re-encode the file as UTF-8",
                        path, line) from None
    return text.removeprefix("\ufeff")  # a BOM would otherwise become part of the first word or column


def _raw_lines(path: PathLike, skip_bad: bool = False) -> list[str | None]:
    """Lines without their line ending; with ``skip_bad`` an undecodable line is None instead of an error."""
    data = _read_bytes(path)
    if skip_bad:
        lines: list[str | None] = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(None)
        if lines and lines[0] is not None:
            lines[0] = lines[0].removeprefix("\ufeff")
    else:
        lines = list(_decode(path, data).split("\n"))
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    if not lines:
        raise DataError("empty file", path)
    return [line.removesuffix("\r") if line is not None else None for line in lines]


def _warn_skipped(path: PathLike, bad: list[tuple[int, str]]) -> None:
    if bad:
        line, reason = bad[0]
        warnings.warn(f"{path}: skipped {len(bad)} bad row(s); first at line {line}: {reason}",
                      DataWarning, stacklevel=3)


def read_text(path: PathLike) -> str:
    """The whole file as one string (language modelling); ``.gz`` is read transparently."""
    text = _decode(path, _read_bytes(path))
    if not text.strip():
        raise DataError("empty file", path)
    return text


def read_lines(path: PathLike, *, skip_bad: bool = False) -> list[str]:
    """One text per line, surrounding whitespace stripped (e.g. hypotheses or references for BLEU).

    An empty line or a line that is not UTF-8 is a DataError, or skipped with a DataWarning when
    ``skip_bad``.
    """
    texts, bad = [], []
    for i, line in enumerate(_raw_lines(path, skip_bad), start=1):
        text = _check_text(line, path, i, skip_bad, bad)
        if text is not None:
            texts.append(text)
    _warn_skipped(path, bad)
    if not texts:
        raise DataError("no usable lines", path)
    return texts


def _check_text(line: str | None, path: PathLike, lineno: int, skip_bad: bool,
                bad: list[tuple[int, str]]) -> str | None:
    """The stripped text, or None (recorded in ``bad``) for a bad line when ``skip_bad``."""
    reason = "not valid UTF-8" if line is None else "empty text" if not line.strip() else None
    if reason is None:
        return line.strip()
    if not skip_bad:
        raise DataError(reason, path, lineno)
    bad.append((lineno, reason))
    return None


def read_parallel(
    src_path: PathLike, tgt_path: PathLike, *, skip_bad: bool = False
) -> list[tuple[str, str]]:
    """Aligned sentence pairs from two files with one sentence a line (translation).

    Surrounding whitespace is stripped. Different line counts are a DataError naming both files and
    counts; an empty line on either side is a DataError (or, with ``skip_bad``, the pair is skipped and a
    DataWarning says how many).
    """
    src, tgt = _raw_lines(src_path, skip_bad), _raw_lines(tgt_path, skip_bad)
    if len(src) != len(tgt):
        raise DataError(f"parallel files differ in length: {src_path} has {len(src)} lines, "
                        f"{tgt_path} has {len(tgt)} lines")
    pairs: list[tuple[str, str]] = []
    bad_src: list[tuple[int, str]] = []
    bad_tgt: list[tuple[int, str]] = []
    for i, (s_line, t_line) in enumerate(zip(src, tgt, strict=True), start=1):
        s = _check_text(s_line, src_path, i, skip_bad, bad_src)
        t = _check_text(t_line, tgt_path, i, skip_bad, bad_tgt)
        if s is not None and t is not None:
            pairs.append((s, t))
    _warn_skipped(src_path, bad_src)
    _warn_skipped(tgt_path, bad_tgt)
    if not pairs:
        raise DataError(f"no usable sentence pairs (with {tgt_path})", src_path)
    return pairs


def read_labelled_tsv(
    path: PathLike,
    text_column: str = "sentence",
    label_column: str = "label",
    labels: Sequence[str | int] | None = None,
    skip_bad: bool = False,
) -> tuple[list[tuple[str, int]], list[str]]:
    """Text classification examples from a tab-separated file whose first row names the columns.

    Returns ``(examples, label_names)``: examples are ``(text, label_id)`` with the text's surrounding
    whitespace stripped, and ``label_id`` indexes ``label_names``. Labels may be integers or strings.
    Without ``labels`` the names are the file's distinct labels, sorted (numerically when all look like
    integers, so SST-2's "0"/"1" get ids 0/1); pass the training file's names as ``labels`` when reading
    validation/test files so the ids agree; a label not in it is then a DataError.

    Bad rows (wrong column count, empty text or label, unknown label, not UTF-8) are DataErrors naming
    ``path:line``; with ``skip_bad`` they are skipped and a :class:`DataWarning` reports the count.
    """
    lines = _raw_lines(path, skip_bad)
    header = _tsv_header(lines[0], path)
    text_i, label_i = (_column(header, name, path) for name in (text_column, label_column))
    rows: list[tuple[str, str]] = []
    bad: list[tuple[int, str]] = []
    known = None if labels is None else {str(label): i for i, label in enumerate(labels)}
    for lineno, line in enumerate(lines[1:], start=2):
        reason, row = _tsv_row(line, header, text_i, label_i, known)
        if reason is None:
            rows.append(row)
        elif skip_bad:
            bad.append((lineno, reason))
        else:
            raise DataError(reason, path, lineno)
    _warn_skipped(path, bad)
    if not rows:
        raise DataError("no examples (the file has only a header or only bad rows)", path)
    names = [str(label) for label in labels] if labels is not None else _sorted_labels({r[1] for r in rows})
    ids = {name: i for i, name in enumerate(names)}
    return [(text, ids[label]) for text, label in rows], names


def _tsv_header(line: str | None, path: PathLike) -> list[str]:
    if line is None:
        raise DataError("header is not valid UTF-8", path, 1)
    return [name.strip() for name in line.split("\t")]


def _column(header: list[str], name: str, path: PathLike) -> int:
    if name not in header:
        raise DataError(f"column {name!r} not found; the header has columns {header}", path, 1)
    return header.index(name)


def _tsv_row(line: str | None, header: list[str], text_i: int, label_i: int,
             known: dict[str, int] | None) -> tuple[str | None, tuple[str, str]]:
    """(reason it is bad or None, (text, label))."""
    if line is None:
        return "not valid UTF-8", ("", "")
    cols = line.split("\t")
    if len(cols) != len(header):
        return f"expected {len(header)} tab-separated columns, got {len(cols)}", ("", "")
    text, label = cols[text_i].strip(), cols[label_i].strip()
    if not text:
        return f"empty text in column {header[text_i]!r}", ("", "")
    if not label:
        return f"empty label in column {header[label_i]!r}", ("", "")
    if known is not None and label not in known:
        return f"unknown label {label!r} (known labels: {list(known)})", ("", "")
    return None, (text, label)


def _sorted_labels(labels: set[str]) -> list[str]:
    if all(re.fullmatch(r"[+-]?\d+", label) for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def read_jsonl(path: PathLike, fields: Sequence[str] = ("text",)) -> list[dict]:
    """JSON objects, one a line (``.gz`` too), each holding ``fields``; blank lines are skipped.

    A line that is not UTF-8, not a JSON object, or lacks a field is a DataError naming ``path:line``;
    a file with no object is a DataError too.
    """
    return [row for _, row in _jsonl_rows(path, fields)]


def _jsonl_rows(path: PathLike, fields: Sequence[str]) -> list[tuple[int, dict]]:
    """``(line number, object)`` of each non-blank line: :func:`read_jsonl`'s rows with where they stand."""
    rows = []
    for lineno, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise DataError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x})", path, lineno) from None
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg} at column {err.colno})", path, lineno) from None
        if not isinstance(row, dict):
            raise DataError(f"expected a JSON object, got {type(row).__name__}", path, lineno)
        missing = [f for f in fields if f not in row]
        if missing:
            raise DataError(f"no field {missing[0]!r} (fields: {sorted(row)})", path, lineno)
        rows.append((lineno, row))
    if not rows:
        raise DataError("no JSON objects (empty corpus)", path)
    return rows


def read_json(path: PathLike) -> Any:
    """One JSON document (a tokenizer's or checkpoint's settings): missing, not UTF-8 or not JSON is a
    DataError naming the file."""
    try:
        return json.loads(_decode(path, _read_bytes(path)))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON ({err})", path) from None
