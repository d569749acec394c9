"""IMDB movie reviews (Maas et al. 2011): 25k labelled train, 25k labelled test, 50k unlabelled reviews,
repacked from the release's tarball into one JSON-lines file a split."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
import zlib
from pathlib import Path
from typing import NamedTuple

from .downloads import ARCHIVES, SHA256, _check_download, _fetch_archive, _write_temp, fetch
from .errors import DataError, PathLike
from .readers import _jsonl_rows

__all__ = ["IMDB_SPLITS", "Review", "clean_review", "load_imdb"]

#: The IMDB release: one tarball (size and MD5 as published by the data set's long-standing loaders).
IMDB_TARBALL = "aclImdb_v1.tar.gz"
IMDB_TARBALL_BYTES = 84_125_825
IMDB_TARBALL_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
#: IMDB splits: 25k labelled train, 25k labelled test, 50k unlabelled reviews.
IMDB_SPLITS = ("train", "test", "unsup")
#: IMDB label names as they appear in the records (ids 0 and 1 in classification).
IMDB_LABELS = ("neg", "pos")


class Review(NamedTuple):
    """One IMDB review: ``id`` and ``rating`` (1-10; 0 in unsup) from its file name, ``label`` "neg", "pos" or
    None (unsup), and ``text`` as :func:`clean_review` leaves it."""

    id: int
    rating: int
    label: str | None
    text: str


_BR = re.compile(r"\s*<br\s*/?>\s*", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n{2,}")


def clean_review(text: str) -> str:
    """The one place IMDB's markup is removed: each ``<br />`` (the release's only tag; ``<br /><br />`` is its
    paragraph break) becomes a newline, runs of them one newline, and surrounding whitespace goes."""
    return _BLANK_LINES.sub("\n", _BR.sub("\n", text)).strip()


def load_imdb(split: str, data_dir: PathLike | None = None) -> list[Review]:
    """The IMDB reviews of ``split`` ("train" 25k labelled, "test" 25k labelled, "unsup" 50k unlabelled), text
    cleaned by :func:`clean_review`, in the release's order (neg then pos, by numeric id).

    Never pre-train on ``test``: it is the classification test set. A labelled split whose label is not
    "neg"/"pos", or unsup with a label, is a DataError naming the line.
    """
    if split not in IMDB_SPLITS:
        raise DataError(f"IMDB has no split {split!r}; choose one of: {', '.join(IMDB_SPLITS)}")
    path = fetch("imdb", data_dir, [f"{split}.jsonl.gz"]) / f"{split}.jsonl.gz"
    reviews = []
    for lineno, row in _jsonl_rows(path, ("id", "rating", "label", "text")):
        expected = (None,) if split == "unsup" else IMDB_LABELS
        if row["label"] not in expected or not isinstance(row["text"], str):
            raise DataError(f"label {row['label']!r} is not one of {expected}", path, lineno)
        reviews.append(Review(int(row["id"]), int(row["rating"]), row["label"], clean_review(row["text"])))
    return reviews


def _download_imdb(folder: Path, names: list[str], temps: dict[str, Path]) -> None:
    """Fetch the IMDB tarball (size and MD5 checked), repack the reviews of ``names`` into verified temp files.

    The tarball holds ``aclImdb/{train,test}/{neg,pos}/ID_RATING.txt`` and ``aclImdb/train/unsup/ID_0.txt``;
    every missing split is built from it (not only those asked for), one JSON object a line
    (:func:`_imdb_record_line`), neg before pos, by numeric id, as the shared copy is. The tarball is deleted
    afterwards (or at once when it proves bad).
    """
    # one tarball holds every split: repack all that are missing, not only those asked for
    names = [n for n in SHA256["imdb"] if n in names or not (folder / n).is_file()]
    tar_path, url = _fetch_archive(folder, "imdb", IMDB_TARBALL)
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        with tar_path.open("rb") as f:
            while chunk := f.read(1 << 20):
                md5.update(chunk)
        size = tar_path.stat().st_size
        if (size, md5.hexdigest()) != (IMDB_TARBALL_BYTES, IMDB_TARBALL_MD5):
            raise DataError(f"download from {url} rejected, nothing saved: expected {IMDB_TARBALL_BYTES:,} bytes "
                            f"with MD5 {IMDB_TARBALL_MD5}, got {size:,} bytes with MD5 {md5.hexdigest()}", tar_path)
        wanted = {name.split(".")[0] for name in names}
        records: dict[str, list[tuple[int, int, int, str]]] = {split: [] for split in wanted}
        member = re.compile(r"(?:\./)?aclImdb/(train|test)/(neg|pos|unsup)/(\d+)_(\d+)\.txt")
        with tarfile.open(tar_path, mode="r:gz") as archive:
            for info in archive:
                m = member.fullmatch(info.name)
                if m is None or not info.isfile():
                    continue
                split = "unsup" if m[2] == "unsup" else m[1]
                if split not in wanted:
                    continue
                raw = archive.extractfile(info).read()  # type: ignore[union-attr]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"not valid UTF-8 (byte 0x{raw[err.start]:02x})", f"{url}:{info.name}") from None
                order = 2 if m[2] == "unsup" else IMDB_LABELS.index(m[2])
                records[split].append((order, int(m[3]), int(m[4]), text))
        for name in names:
            rows = sorted(records[name.split(".")[0]])
            if not rows:
                raise DataError(f"{url} has no reviews for {name}", tar_path)
            body = "".join(_imdb_record_line(*row) for row in rows).encode("utf-8")
            temps[name] = _write_temp(folder / name, lambda out, b=body: out.write(gzip.compress(b, mtime=0)))
            _check_download(temps[name], "imdb", name, url, folder / name)
    except (tarfile.TarError, zlib.error, EOFError) as err:
        raise DataError(f"{url} is not a valid gzip tar archive ({err})", tar_path) from None
    finally:
        tar_path.unlink(missing_ok=True)


def _imdb_record_line(order: int, review_id: int, rating: int, text: str) -> str:
    label = None if order == 2 else IMDB_LABELS[order]
    return json.dumps({"id": review_id, "rating": rating, "label": label, "text": text}, ensure_ascii=False) + "\n"


ARCHIVES["imdb"] = _download_imdb
