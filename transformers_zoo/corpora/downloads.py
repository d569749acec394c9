"""The data sets the recipes download: sources, checksums and the local cache.

Cache layout (``data_dir`` = the argument, else ``$TZOO_DATA_DIR``, else ``<repo>/data``)::

    data_dir/multi30k/{split}.{lang}.gz     Multi30k task 1, one sentence a line, aligned across languages
    data_dir/multi30k-task2/{split}.{k}.{lang}.gz  Multi30k task 2, the k-th of 5 captions of each image
    data_dir/tinyshakespeare/input.txt      Tiny Shakespeare, 1,115,394 characters
    data_dir/sst2/{train,dev}.tsv           SST-2 in GLUE's layout, header ``sentence<TAB>label``
    data_dir/imdb/{train,test,unsup}.jsonl.gz  IMDB reviews (Maas et al. 2011), one JSON object a line
    data_dir/gpt2/gpt2.tiktoken             GPT-2's byte-level BPE ranks (tokenizers.GPT2Tokenizer)

These are the files, byte for byte, that the canonical sources serve (see ``data/README.md``), so the
shared read-only copy and a fresh download are interchangeable. IMDB is the exception: its source is one
tarball of 100k small files, which a download repacks into the three JSON-lines files (the same records the
shared copy holds, checked by the sha256 of their uncompressed content). Every file is checked against the
sha256 constants below: once per process for files already present, and before it enters the cache for
downloads (temp file in the same folder, fsync, ``os.replace``; a bad download leaves nothing behind).
Data sets served as one archive (SST-2, IMDB) register how to extract their files in :data:`ARCHIVES`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import DataError, PathLike

__all__ = ["BASE_URLS", "SHA256", "fetch", "resolve_data_dir"]

#: Canonical base URLs. A file ``name`` of data set ``ds`` is fetched from ``f"{base}/{name}"``, except
#: SST-2, which is extracted from ``{base}/SST-2.zip``. Override per data set with the environment variable
#: ``TZOO_DATA_URL_<DATASET>`` (e.g. ``TZOO_DATA_URL_SST2``) or by editing this dict (tests use a loopback
#: server this way).
BASE_URLS: dict[str, str] = {
    "multi30k": "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw",
    "multi30k-task2": "https://raw.githubusercontent.com/multi30k/dataset/master/data/task2/raw",
    "tinyshakespeare": "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare",
    "sst2": "https://dl.fbaipublicfiles.com/glue/data",
    "imdb": "https://ai.stanford.edu/~amaas/data/sentiment",
    "gpt2": "https://raw.githubusercontent.com/openai/whisper/main/whisper/assets",
}

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
    "multi30k-task2": {
        "test_2016.1.de.gz": "cf83315ea2e76c517fb41553ff25c7128d071397928a6b66a5d81479aeea950b",
        "test_2016.1.en.gz": "bf64274c8e1f73ba57d47409f707a640b3874a06e7e83adfb5a6d4c055bc6b29",
        "test_2016.2.de.gz": "327af090d22ddf624fe638f34e815b249bdfa033e3e48f55474e21d6b28efaa8",
        "test_2016.2.en.gz": "36c12dac199e336e74ebe91c5240a1c6cefce7af2a3f3a2054d184947932bc3c",
        "test_2016.3.de.gz": "b3236b4834c944cd42e6942da9041fee210cb2875574deefd41f130e5651a61b",
        "test_2016.3.en.gz": "2188662d22b01c5ecf7ae6a7c003b45fc83c510d34999c2340078e75088b0f1f",
        "test_2016.4.de.gz": "3843a960dc2c026d5d371c720cce830b6709d03c2f29e17b2923af11497da2c0",
        "test_2016.4.en.gz": "dcb6a0ad2ae40f54a1f9e9f20d3146c7f0a662feece2e78d2d511667bf229f08",
        "test_2016.5.de.gz": "c861f68362c443b07c8f919a9bd8c8ecd7f5fccf2b13bf4d4bd8e7fe8783880e",
        "test_2016.5.en.gz": "60e31317f0d960aed273d8ec527411935fb1ff3dee2c9cc9572259739ff193c0",
        "train.1.de.gz": "0002241b52aba5160c08d644ea0d64a9bf46a2dfffcf619c9e3cdaa55b357004",
        "train.1.en.gz": "a0e057f07a9733199c0d755d77f6d583dc6f40a3180734b1130a216e2fdf3a3b",
        "train.2.de.gz": "ac7c29258b90aec0b64d677c5bfc831fc402e6296d0aa9cc7a3433ddbff85c37",
        "train.2.en.gz": "d79dd70a9eafb2d1fe40151621278c4ae69b3c148c5052a53d7c7a41bf3ba023",
        "train.3.de.gz": "ec5e6508813814aa31311b34e26e24f903dd7701f8d0668313259b7f975d7aa0",
        "train.3.en.gz": "86e16fdcc699bcb6bca0f87c3cf1051f7de5ee3674dd588cedc5200194282749",
        "train.4.de.gz": "bcee8ac6eb47d8a7dc8cff47d9a0fbd80b4363cfda22021bacd297f9604221a4",
        "train.4.en.gz": "3771b84e010ad6197806d2a1188cb07c12149e3e0d178dd5966dee5763733686",
        "train.5.de.gz": "dccb0ca6ff25e0b1f0d385f59fb809184e0db89622d88371725e3ec46d43bfc0",
        "train.5.en.gz": "73988689307fe836994eae59735dc840c15da9775455fa76e6ed22606a042a91",
        "val.1.de.gz": "a6b9ad98bdab8882d2ac40d1bc05db89341947162c07d2d0d27e80f01897ba05",
        "val.1.en.gz": "4ce8f8ffbef4a1c066e3f35a5ffc764666c26c318a733d9bdc6349577f1c6f9c",
        "val.2.de.gz": "dbbf0f8fa54fdb4a3c64d22a1c0773ade3f775c39e4513ab5ca6d683025086dc",
        "val.2.en.gz": "4103944d652127e5af33ba2761d71cb6c0e1509c1a67d4387dc67ad768cfb752",
        "val.3.de.gz": "5eac83b577fe9bc781e60b609545123804e9dd29de4c2bd1b9e178ad8b29a1da",
        "val.3.en.gz": "6ecd848713d98faa9c6db2e9e457a778335358e6e3a4743cf4e929a0516e399a",
        "val.4.de.gz": "1c3054cfd1e47f17d8a20fcec6615cfd26d7dc2c8c4ef4625cd9db9f4e4590ea",
        "val.4.en.gz": "bfab4f0cbdac6233f206bbbfbd324dc02b258e291c3f410a69f9884171008788",
        "val.5.de.gz": "185d6cb907313e6a6eef76f09c657e5748e08ee3c7a5b26200186e171e2c8344",
        "val.5.en.gz": "4b6a6541b7b58d545eff7feead4187aeb0439a7178a7bed6951121e0ecbaee66",
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

#: Data sets whose files come out of one archive: dataset -> ``extract(folder, names, temps)``, which
#: downloads the archive into ``folder`` and writes each of ``names`` into a verified temp file, recorded in
#: ``temps`` (the data set's module registers it: sst2, imdb).
ARCHIVES: dict[str, Callable[[Path, list[str], dict[str, Path]], None]] = {}

# Files whose checksum this process already verified: (resolved path, size, mtime_ns, expected sha256).
_VERIFIED: set[tuple[str, int, int, str]] = set()


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """The data cache folder: ``data_dir`` if given, else ``$TZOO_DATA_DIR``, else ``<repo root>/data``."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get("TZOO_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


def base_url(dataset: str) -> str:
    """Where ``dataset`` is downloaded from: ``$TZOO_DATA_URL_<DATASET>``, else :data:`BASE_URLS`."""
    env = os.environ.get(f"TZOO_DATA_URL_{dataset.upper().replace('-', '_')}")
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
    "multi30k-task2": "recipes/embed.py --text FILE (SimCSE), or index/search your own files",
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
        if dataset in ARCHIVES:
            ARCHIVES[dataset](folder, names, temps)
        else:
            base = base_url(dataset)
            for name in names:
                url = f"{base}/{name}"
                temps[name] = _download_temp(folder / name, url)
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
        os.replace(_download_temp(path, url), path)
    return path, url


def _download_temp(dest: Path, url: str) -> Path:
    """``url`` downloaded into a hidden temp file beside ``dest`` (see :func:`_write_temp`)."""
    return _write_temp(dest, lambda out: _copy_url(url, out))


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

