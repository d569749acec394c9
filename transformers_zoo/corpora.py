"""Data sets for the recipes: download + checksum + local cache, splits, and readers for users' own files.

Cache layout (``data_dir`` = the argument, else ``$TZOO_DATA_DIR``, else ``<repo>/data``)::

    data_dir/multi30k/{split}.{lang}.gz     Multi30k task 1, one sentence a line, aligned across languages
    data_dir/tinyshakespeare/input.txt      Tiny Shakespeare, 1,115,394 characters
    data_dir/sst2/{train,dev}.tsv           SST-2 in GLUE's layout, header ``sentence<TAB>label``
    data_dir/imdb/{train,test,unsup}.jsonl.gz  IMDB reviews (Maas et al. 2011), one JSON object a line

These are the files, byte for byte, that the canonical sources serve (see ``data/README.md``), so the
shared read-only copy and a fresh download are interchangeable. IMDB is the exception: its source is one
tarball of 100k small files, which a download repacks into the three JSON-lines files (the same records the
shared copy holds, checked by the sha256 of their uncompressed content). Every file is checked against the
sha256 constants below: once per process for files already present, and before it enters the cache for
downloads (temp file in the same folder, fsync, ``os.replace``; a bad download leaves nothing behind).

Every problem with input data raises :class:`DataError` whose message is one line naming the file and,
where it applies, the 1-based line: ``data/x.tsv:17: expected 2 tab-separated columns, got 1``.
Readers that take ``skip_bad=True`` skip bad rows instead and report how many with a
:class:`DataWarning` (``warnings.warn``), never silently.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import re
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

__all__ = [
    "BASE_URLS",
    "DataError",
    "DataWarning",
    "MULTI30K_SPLITS",
    "SHA256",
    "SST2_LABELS",
    "check_lengths",
    "fetch",
    "IMDB_SPLITS",
    "Review",
    "clean_review",
    "load_imdb",
    "load_multi30k",
    "load_sst2",
    "load_tinyshakespeare",
    "read_jsonl",
    "read_labelled_tsv",
    "read_lines",
    "read_parallel",
    "read_text",
    "resolve_data_dir",
    "split_text",
]

PathLike = str | os.PathLike


class DataError(ValueError):
    """Bad or missing input data. The message is one line: ``path:line: what is wrong``.

    ``path`` and ``line`` (1-based, or None) are kept as attributes for programs that want them.
    """

    def __init__(self, message: str, path: PathLike | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = "" if path is None else f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__((where + message).replace("\r", " ").replace("\n", " "))


class DataWarning(UserWarning):
    """Bad rows were skipped (``skip_bad=True``); the message says where and how many."""


# ---------------------------------------------------------------------------------------------------------
# Sources and checksums
# ---------------------------------------------------------------------------------------------------------

#: Canonical base URLs. A file ``name`` of data set ``ds`` is fetched from ``f"{base}/{name}"``, except
#: SST-2, which is extracted from ``{base}/SST-2.zip``. Override per data set with the environment variable
#: ``TZOO_DATA_URL_<DATASET>`` (e.g. ``TZOO_DATA_URL_SST2``) or by editing this dict (tests use a loopback
#: server this way).
BASE_URLS: dict[str, str] = {
    "multi30k": "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
    "tinyshakespeare": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare",
    "sst2": "https://dl.fbaipublicfiles.com/glue/data",
    "imdb": "https://ai.stanford.edu/~amaas/data/sentiment",
    "gpt2": "https://raw.githubusercontent.com/openai/whisper/main/whisper/assets",
}

#: Multi30k task 1 splits the canonical source serves (languages are discovered from the files).
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")

#: sha256 of every file the loaders know, per data set (from ``SHA256SUMS`` of the shared copy).
SHA256: dict[str, dict[str, str]] = {
    "multi30k": {
        "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
        "test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
        "test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
        "test_2017_flickr.fr.gz": "3ba671ceb2299f3304ffafefea7a833d08632fbaf0ba18546f8a2ec2391af496",
        "test_2017_mscoco.de.gz": "799e4854c25d601cb6cb6be29eabe5667734c61ace2f495e03e429031a0bc338",
        "test_2017_mscoco.en.gz": "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58",
        "test_2017_mscoco.fr.gz": "754f3072ba9f124569ba5258b32730fc1d214bbf8e0c6dfb2b74401676220db0",
        "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
        "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    },
    "tinyshakespeare": {
        "input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    },
    "sst2": {
        "train.tsv": "8621df47b79e9b3fa010405ef4dd506cbf483319cf851f20f2b6773f61d387b5",
        "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
    },
    "imdb": {
        "train.jsonl.gz": "77a1edb4aa708fe411453d048bda4c1e390a3b23ed10bc48cfc8a144d01f0c9c",
        "test.jsonl.gz": "6264a4a6febffb742dbd4c98e542752ef0cc2fe04d37028a373cdccacb6882fa",
        "unsup.jsonl.gz": "526dd615c8da5b888f7437be40e63b59ccbec9a58b4d0d5fc81d07a04f66d4e1",
    },
    # GPT-2's byte-level BPE ranks in tiktoken's format (tokenizers.GPT2Tokenizer)
    "gpt2": {
        "gpt2.tiktoken": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    },
}

# GLUE's SST-2.zip lists train.tsv's rows in another order than the shared copy (data/README.md says so,
# and the MD5 torchtext records for GLUE's train.tsv differs from the shared file's). A file is also accepted
# when its lines, as a multiset, match: sha256 of the file's b"\n"-separated lines, sorted, joined by b"\n".
ROWS_SHA256: dict[tuple[str, str], str] = {
    ("sst2", "train.tsv"): "c848b87065e7872000b4c5203dbaf0ba278023883bef20520d13053a7d793a2b",
}

# A gzip file is also accepted when its uncompressed content has this sha256: the IMDB files a download builds
# from the tarball hold the shared copy's records exactly, but gzip's own header and settings may differ.
CONTENT_SHA256: dict[tuple[str, str], str] = {
    ("imdb", "train.jsonl.gz"): "5941bbdb96caf6137ac476c522b32f125fc4b4449ab4e081eab6bc1803ad0038",
    ("imdb", "test.jsonl.gz"): "e1c14b73ed3d1a13bfa178ca52d16c8bd0e5c967b878ae9f7a20de5f7e2eb913",
    ("imdb", "unsup.jsonl.gz"): "58ad1a677ef7b3e016c3a0522dee7572027230f10090728af2fef3d57c18aab0",
}

SST2_ZIP = "SST-2.zip"
SST2_MEMBERS = {"train.tsv": "SST-2/train.tsv", "dev.tsv": "SST-2/dev.tsv"}
#: SST-2 label ids: 0 = negative, 1 = positive.
SST2_LABELS = ("negative", "positive")

#: The IMDB release: one tarball (size and MD5 as published by the data set's long-standing loaders).
IMDB_TARBALL = "aclImdb_v1.tar.gz"
IMDB_TARBALL_BYTES = 84_125_825
IMDB_TARBALL_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"
#: IMDB splits: 25k labelled train, 25k labelled test, 50k unlabelled reviews.
IMDB_SPLITS = ("train", "test", "unsup")
#: IMDB label names as they appear in the records (ids 0 and 1 in classification).
IMDB_LABELS = ("neg", "pos")

# Files whose checksum this process already verified: (resolved path, size, mtime_ns, expected sha256).
_VERIFIED: set[tuple[str, int, int, str]] = set()


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """The data cache folder: ``data_dir`` if given, else ``$TZOO_DATA_DIR``, else ``<repo root>/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("TZOO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data"


def base_url(dataset: str) -> str:
    """Where ``dataset`` is downloaded from: ``$TZOO_DATA_URL_<DATASET>``, else :data:`BASE_URLS`."""
    env = os.environ.get(f"TZOO_DATA_URL_{dataset.upper()}")
    return (env or BASE_URLS[dataset]).rstrip("/")


def fetch(dataset: str, data_dir: PathLike | None = None, files: Iterable[str] | None = None) -> Path:
    """Make sure ``dataset``'s files are in the cache and intact; return its folder (``data_dir/dataset``).

    ``files`` limits the work to some of the data set's files (default: all of :data:`SHA256` ``[dataset]``).
    Present files are sha256-verified once per process; missing ones are downloaded. A checksum mismatch
    is a DataError naming the file.
    """
    if dataset not in SHA256:
        raise DataError(f"unknown data set {dataset!r}; known: {', '.join(sorted(SHA256))}")
    folder = resolve_data_dir(data_dir) / dataset
    names = list(SHA256[dataset]) if files is None else list(files)
    unknown = [n for n in names if n not in SHA256[dataset]]
    if unknown:
        raise DataError(f"{dataset} has no file {unknown[0]!r}; known: {', '.join(SHA256[dataset])}")
    missing = [n for n in names if not (folder / n).is_file()]
    for name in names:
        if name not in missing:
            _verify(folder / name, dataset, name)
    if missing:
        _download(dataset, folder, missing)
    return folder


def _digests(path: Path) -> tuple[str, bytes]:
    """sha256 of the file's bytes, and the bytes (kept for the order-independent check)."""
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), data


def _rows_digest(data: bytes) -> str:
    return hashlib.sha256(b"\n".join(sorted(data.split(b"\n")))).hexdigest()


def _mismatch(path: Path, dataset: str, name: str) -> str | None:
    """None if ``path`` holds ``dataset/name``'s canonical content, else a description of the mismatch."""
    expected = SHA256[dataset][name]
    got, data = _digests(path)
    if got == expected:
        return None
    rows_expected = ROWS_SHA256.get((dataset, name))
    if rows_expected is not None and _rows_digest(data) == rows_expected:
        return None
    content_expected = CONTENT_SHA256.get((dataset, name))
    if content_expected is not None:
        with contextlib.suppress(OSError, EOFError, zlib.error):
            if hashlib.sha256(gzip.decompress(data)).hexdigest() == content_expected:
                return None
    return f"sha256 mismatch for {dataset}/{name}: expected {expected}, got {got}"


#: How to train on one's own files instead of a canonical data set (a modified file in its folder is refused).
OWN_FILES = {
    "multi30k": "recipes/translate.py --train-src/--train-tgt/--valid-src/--valid-tgt FILE (--test NAME=SRC,TGT)",
    "tinyshakespeare": "recipes/gpt.py --text FILE",
    "sst2": "recipes/mlm.py --train-tsv/--valid-tsv/--test-tsv FILE (--text FILE to pre-train)",
    "imdb": "recipes/mlm.py --text FILE.jsonl to pre-train ({\"text\": ...} a line), --train-tsv/--valid-tsv/"
            "--test-tsv FILE to fine-tune",
}


def _verify(path: Path, dataset: str, name: str) -> None:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, SHA256[dataset][name])
    if key in _VERIFIED:
        return
    problem = _mismatch(path, dataset, name)
    if problem is not None:
        own = f"; to train on your own files, keep them elsewhere and pass {OWN_FILES[dataset]}" \
            if dataset in OWN_FILES else ""
        raise DataError(f"{problem}; the file is corrupted or not the canonical one (delete it to download "
                        f"it again){own}", path)
    _VERIFIED.add(key)


# ---------------------------------------------------------------------------------------------------------
# Downloads: temp file beside the target, verify, fsync, os.replace; nothing is left behind on failure
# ---------------------------------------------------------------------------------------------------------


def _download(dataset: str, folder: Path, names: list[str]) -> None:
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _unwritable(folder, err) from None
    temps: dict[str, Path] = {}
    try:
        if dataset == "sst2":
            _download_sst2(folder, names, temps)
        elif dataset == "imdb":
            _download_imdb(folder, names, temps)
        else:
            base = base_url(dataset)
            for name in names:
                url = f"{base}/{name}"
                temps[name] = _write_temp(folder / name, lambda out, url=url: _copy_url(url, out))
                _check_download(temps[name], dataset, name, url, folder / name)
        # All files verified: move them in together, so a failure never leaves half a data set.
        for name, tmp in temps.items():
            os.replace(tmp, folder / name)
            _verify(folder / name, dataset, name)
        _fsync_dir(folder)
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):  # only succeeds while the folder is still empty
                folder.rmdir()


def _fetch_archive(folder: Path, dataset: str, name: str) -> tuple[Path, str]:
    """Download the archive ``name`` of ``dataset`` into ``folder`` (atomically) unless it is there already;
    returns its path and URL. The caller checks it, extracts from it and deletes it."""
    path, url = folder / name, f"{base_url(dataset)}/{name}"
    if not path.is_file():
        os.replace(_write_temp(path, lambda out: _copy_url(url, out)), path)
    return path, url


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


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: BinaryIO) -> None:
    with archive.open(info) as src:  # zipfile checks the member's CRC as it reads
        while chunk := src.read(1 << 20):
            out.write(chunk)


def _check_download(tmp: Path, dataset: str, name: str, url: str, dest: Path) -> None:
    problem = _mismatch(tmp, dataset, name)
    if problem is not None:
        raise DataError(f"download from {url} rejected, nothing saved: {problem}", dest)


def _write_temp(dest: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a hidden temp file beside ``dest`` with ``write(out)``, fsynced; removed again on failure."""
    try:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as err:
        raise _unwritable(dest.parent, err) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _unwritable(folder: Path, err: OSError) -> DataError:
    return DataError(f"cannot download into this folder ({err.strerror}); point --data-dir or TZOO_DATA_DIR "
                     f"at a writable folder", folder)


def _copy_url(url: str, out: BinaryIO) -> None:
    """Stream ``url`` into ``out``, with a progress line on stderr."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done, shown = 0, 0.0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                done += len(chunk)
                if time.monotonic() - shown > 0.5:
                    shown = time.monotonic()
                    _progress(url, done, total)
            _progress(url, done, total, end="\n")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
        raise DataError(f"download failed: {err}", url) from None


def _progress(url: str, done: int, total: int, end: str = "") -> None:
    of = f" / {total / 1e6:.1f} MB" if total else " MB"
    print(f"\rdownloading {url}: {done / 1e6:.1f}{of}", end=end, file=sys.stderr, flush=True)


def _fsync_dir(folder: Path) -> None:
    # The rename itself must survive a crash too; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# Readers for any file (the loaders below use them on the canonical ones)
# ---------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------
# Length checks and splits
# ---------------------------------------------------------------------------------------------------------


def check_lengths(
    seqs: Sequence,
    max_len: int,
    what: str,
    policy: str = "error",
    first_line: int = 1,
) -> tuple[list, int]:
    """Enforce a model's ``max_len`` on tokenized examples; returns ``(kept, n_affected)``.

    An example is a sequence of token ids, or a tuple of them (e.g. ``(src_ids, tgt_ids)``, whose length is
    its longest part). ``policy``: ``"error"`` raises a DataError naming ``what`` (e.g. the file) and the
    line of the first too-long example (``first_line + index``: pass 2 for a TSV with a header) and its
    length; ``"skip"`` drops too-long examples; ``"truncate"`` cuts every part to ``max_len``.
    ``n_affected`` counts the dropped or truncated examples, for the recipe to print.
    """
    if policy not in ("error", "skip", "truncate"):
        raise ValueError(f"policy must be 'error', 'skip' or 'truncate', got {policy!r}")
    kept, affected = [], 0
    for i, example in enumerate(seqs):
        parts = example if _is_multi(example) else (example,)
        length = max(len(part) for part in parts)
        if length <= max_len:
            kept.append(example)
            continue
        affected += 1
        if policy == "error":
            raise DataError(f"example {i} (0-based) has length {length} > max_len {max_len}; shorten it or "
                            f"use policy 'skip' or 'truncate'", what, first_line + i)
        if policy == "truncate":
            cut = tuple(part[:max_len] for part in parts)
            kept.append(cut if _is_multi(example) else cut[0])
    return kept, affected


def _is_multi(example) -> bool:
    return isinstance(example, tuple) and len(example) > 0 and not isinstance(example[0], int)


def split_text(text: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> dict[str, str]:
    """Split a text by characters, in order, into ``train``/``val``/``test`` (language modelling).

    ``fractions`` (up to three, summing to 1) give each split's share; a zero fraction omits that split,
    so nanoGPT's ``(0.9, 0.1, 0.0)`` gives only ``train`` and ``val``. A nonzero share that rounds to no
    characters is a DataError.
    """
    names = ("train", "val", "test")
    if not 1 <= len(fractions) <= 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 1 to 3 non-negative numbers summing to 1, got {fractions}")
    splits, start, total = {}, 0, 0.0
    for name, fraction in zip(names, fractions, strict=False):
        total += fraction
        end = len(text) if abs(total - 1) <= 1e-6 else int(len(text) * total)  # floor, as nanoGPT
        if fraction > 0:
            if end <= start:
                raise DataError(f"split {name!r} ({fraction:g} of {len(text)} characters) would be empty")
            splits[name] = text[start:end]
        start = end
    return splits


# ---------------------------------------------------------------------------------------------------------
# The recipes' data sets
# ---------------------------------------------------------------------------------------------------------


def load_tinyshakespeare(data_dir: PathLike | None = None) -> str:
    """Tiny Shakespeare as one string (1,115,394 characters); split it with :func:`split_text`."""
    return read_text(fetch("tinyshakespeare", data_dir) / "input.txt")


_SPLIT_FILE = re.compile(r"(?P<split>[A-Za-z0-9_-]+)\.(?P<lang>[A-Za-z][A-Za-z_-]*)(?P<gz>\.gz)?")


def load_multi30k(
    data_dir: PathLike | None = None, src: str = "en", tgt: str = "de"
) -> dict[str, list[tuple[str, str]]]:
    """Multi30k task 1 sentence pairs ``(src sentence, tgt sentence)`` per split.

    Splits are those with files for both languages (``{split}.{lang}.gz`` or plain ``{split}.{lang}``) in
    ``data_dir/multi30k``; the canonical ones are train 29,000, val 1,014, test_2016_flickr 1,000,
    test_2017_flickr 1,000, test_2017_mscoco 461 pairs, downloaded when missing for languages the
    checksums know (en, de, fr). Use ``train`` to train, ``val`` to select checkpoints, the tests to report.
    """
    if src == tgt:
        raise DataError(f"source and target language are both {src!r}")
    folder = resolve_data_dir(data_dir) / "multi30k"
    known = SHA256["multi30k"]
    needed = [f"{s}.{lang}.gz" for s in MULTI30K_SPLITS for lang in (src, tgt)]
    if all(name in known for name in needed):
        fetch("multi30k", data_dir, needed)
    files = _multi30k_files(folder)
    langs = sorted({lang for lang, _ in files})
    for lang in (src, tgt):
        if lang not in langs:
            raise DataError(f"no files for language {lang!r}; languages found: {', '.join(langs) or 'none'}",
                            folder)
    splits = [s for s in _ordered_splits({s for _, s in files}) if (src, s) in files and (tgt, s) in files]
    if not splits:
        raise DataError(f"no split has files for both {src!r} and {tgt!r}", folder)
    return {s: read_parallel(files[src, s], files[tgt, s]) for s in splits}


def _multi30k_files(folder: Path) -> dict[tuple[str, str], Path]:
    """(lang, split) -> file, from the names in ``folder`` (hidden and temp files ignored)."""
    if not folder.is_dir():
        raise DataError("folder not found", folder)
    files: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.iterdir()):
        match = _SPLIT_FILE.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        key = (match["lang"], match["split"])
        if key in files:
            raise DataError(f"both {files[key].name} and {path.name} exist; keep one", folder)
        files[key] = path
    return files


def _ordered_splits(splits: set[str]) -> list[str]:
    canonical = [s for s in MULTI30K_SPLITS if s in splits]
    return canonical + sorted(splits - set(canonical))


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
