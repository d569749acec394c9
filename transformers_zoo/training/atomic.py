"""Crash-safe file writes: a reader sees the old file or the complete new one, never a torn one.

Recipe: write to a temporary file in the same directory (so the rename stays on one file system),
flush and fsync it, `os.replace` it over the target (atomic on POSIX and Windows), then fsync the
directory so the rename itself survives a power cut.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str | os.PathLike) -> None:
    """Persist a directory's entries (renames, creations, deletions); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open directories; its renames are durable enough for us.
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def tmp_path_for(path: Path) -> Path:
    """The temporary sibling used while `path` is being written (hidden, and unique per process)."""
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Create `path` atomically: `write(tmp)` fills a temporary file, which is fsynced and renamed."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """`atomic_write` for an in-memory payload."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """`atomic_write` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large weights do not sit in memory twice."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
