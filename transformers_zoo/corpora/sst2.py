"""SST-2 (GLUE's Stanford Sentiment Treebank, binary): labelled phrases of movie-review sentences, with a
validation split of whole held-out sentences (see :func:`load_sst2`)."""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from .downloads import ARCHIVES, _check_download, _fetch_archive, _write_temp, fetch
from .errors import DataError, PathLike
from .readers import read_labelled_tsv

__all__ = ["SST2_LABELS", "load_sst2"]

SST2_ZIP = "SST-2.zip"
SST2_MEMBERS = {"train.tsv": "SST-2/train.tsv", "dev.tsv": "SST-2/dev.tsv"}
#: SST-2 label ids: 0 = negative, 1 = positive.
SST2_LABELS = ("negative", "positive")

#: Held-out SST-2 sentences have at least this many words (dev.tsv's shortest has 2, its median 19).
SST2_VAL_MIN_WORDS = 8
#: Sub-phrases of a held-out sentence this short stay in training when another training phrase holds them too.
SST2_SHARED_MAX_WORDS = 2


def load_sst2(
    data_dir: PathLike | None = None, val_size: int = 872, seed: int = 0
) -> dict[str, list[tuple[str, int]]]:
    """SST-2 ``(sentence, label)`` examples, label 0 = negative, 1 = positive (:data:`SST2_LABELS`).

    ``test`` is dev.tsv (872 sentences; GLUE's test labels are not public). ``val`` holds out ``val_size``
    whole *sentences* of train.tsv and ``train`` is the rest of it less every phrase cut from them, so that
    validation asks what the test asks: a full sentence whose parts were never labelled in training.

    train.tsv is not a list of sentences: it holds every labelled phrase of SST's ~6.9k training sentences
    (67,349 rows, median 7 words; dev's median is 19). Holding out random rows (the usual slice) gives
    short phrases whose parent sentence, and so the phrase itself in context, is in training: on the
    recipes' classifiers that validation read 88% where dev read 80-81%, and it picked checkpoints for
    phrases. Here the held-out texts are *maximal* phrases (contained in no other phrase: a sentence, or its
    largest labelled clause when the sentence itself was neutral) of at least :data:`SST2_VAL_MIN_WORDS`
    words, taken in an order fixed by ``seed`` and their text (a keyed hash), and the training rows whose
    text is a word span of one of them are dropped, except spans of at most
    :data:`SST2_SHARED_MAX_WORDS` words ("good", "the film") that also occur in a remaining training
    phrase: those are labelled in training anyway, as dev's words are. That removes ~13% of the rows.

    Splits come in keyed-hash order, not the file's row order, so the shared copy and GLUE's zip (rows
    ordered differently) give identical splits. ``val_size=0`` gives no ``val`` key and all of train.tsv.
    """
    folder = fetch("sst2", data_dir)
    rows, _ = read_labelled_tsv(folder / "train.tsv", labels=["0", "1"])
    test, _ = read_labelled_tsv(folder / "dev.tsv", labels=["0", "1"])
    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    ordered = sorted(rows, key=lambda row: (_row_key(seed, row), row))
    if val_size == 0:
        return {"train": ordered, "test": test}
    held = _sst2_heldout_sentences(ordered, val_size)
    texts = [" ".join(text.split()) for text, _ in ordered]  # whitespace-normalised, as in ``held``
    spans = {" ".join(w[i:j]) for w in map(str.split, held) for i in range(len(w)) for j in range(i + 1, len(w) + 1)}
    cut = [text in spans for text in texts]  # the held-out sentences and every phrase cut from them
    shared = {" ".join(w[i:i + n]) for w in (t.split() for t, c in zip(texts, cut, strict=True) if not c)
              for n in range(1, SST2_SHARED_MAX_WORDS + 1) for i in range(len(w) - n + 1)}
    train = [row for row, text, c in zip(ordered, texts, cut, strict=True)
             if not c or (len(text.split()) <= SST2_SHARED_MAX_WORDS and text in shared and text not in held)]
    val = [row for row, text in zip(ordered, texts, strict=True) if text in held]
    return {"train": train, "val": val, "test": test}


def _sst2_heldout_sentences(ordered: list[tuple[str, int]], val_size: int) -> set[str]:
    """The first ``val_size`` texts of ``ordered`` that are maximal phrases of SST2_VAL_MIN_WORDS+ words."""
    by_length = sorted({" ".join(t.split()) for t, _ in ordered}, key=len, reverse=True)
    # all phrases in one string, longest first: a phrase is maximal when no phrase before its own entry holds
    # it (a phrase of the same length can hold it only by being it)
    joined = "\n".join(f" {t} " for t in by_length)
    start, offset = {}, 0
    for text in by_length:
        start[text] = offset
        offset += len(text) + 3
    held: dict[str, None] = {}  # insertion-ordered
    for text, _ in ordered:
        text = " ".join(text.split())
        if text not in held and len(text.split()) >= SST2_VAL_MIN_WORDS \
                and joined.find(f" {text} ", 0, start[text]) == -1:
            held[text] = None
            if len(held) == val_size:
                return set(held)
    raise ValueError(f"val_size {val_size}: train.tsv has only {len(held)} sentences of {SST2_VAL_MIN_WORDS}+ words")


def _row_key(seed: int, row: tuple[str, int]) -> bytes:
    return hashlib.sha256(f"{seed}\t{row[0]}\t{row[1]}".encode()).digest()


def _download_sst2(folder: Path, names: list[str], temps: dict[str, Path]) -> None:
    """Fetch GLUE's SST-2.zip into ``folder`` (atomically) and extract ``names`` into verified temp files.

    GLUE publishes no checksum for the zip, so the extracted files are what gets verified; the zip is
    deleted afterwards (kept only while extraction is pending, and removed when it proves bad).
    """
    zip_path, url = _fetch_archive(folder, "sst2", SST2_ZIP)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for name in names:
                member = SST2_MEMBERS[name]
                try:
                    info = archive.getinfo(member)
                except KeyError:
                    raise DataError(f"{url} has no member {member}", zip_path) from None
                temps[name] = _write_temp(folder / name, lambda out, i=info: _copy_member(archive, i, out))
                _check_download(temps[name], "sst2", name, f"{url}:{member}", folder / name)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        zip_path.unlink(missing_ok=True)
        raise DataError(f"{url} is not a valid zip archive ({err})", zip_path) from None
    except BaseException:
        zip_path.unlink(missing_ok=True)
        raise
    zip_path.unlink()


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: BinaryIO) -> None:
    with archive.open(info) as src:  # zipfile checks the member's CRC as it reads
        while chunk := src.read(1 << 20):
            out.write(chunk)


ARCHIVES["sst2"] = _download_sst2
