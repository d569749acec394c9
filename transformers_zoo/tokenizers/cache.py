"""The tokenizer cache: a trained tokenizer saved under a key of its inputs, atomically, and loaded back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .base import CONFIG_FILE, Tokenizer, load_tokenizer

__all__ = ["cache_key", "cached"]


def cache_key(texts: Iterable[str], header: dict[str, Any]) -> str:
    """sha256 (hex) of ``header`` (the settings, the library version) and the training texts."""
    digest = hashlib.sha256()
    digest.update(json.dumps(header, sort_keys=True).encode())
    for text in texts:
        data = text.encode()
        digest.update(len(data).to_bytes(8, "little") + data)  # length prefix: no two lists hash alike
    return digest.hexdigest()


def cached(path: Path, train: Callable[[], Tokenizer]) -> Tokenizer:
    """The tokenizer saved at ``path`` (its ``from_cache`` True), else ``train()``'s, saved there first."""
    if (path / CONFIG_FILE).is_file():
        tokenizer = load_tokenizer(path)
        tokenizer.from_cache = True
        return tokenizer
    tokenizer = train()
    _save_atomically(tokenizer, path)
    return tokenizer


def _save_atomically(tokenizer: Tokenizer, path: Path) -> None:
    """Save into a temp folder beside ``path`` and rename it, so a reader never sees half a tokenizer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        tokenizer.save(tmp)
        os.replace(tmp, path)
    except OSError:
        if not (path / CONFIG_FILE).is_file():  # another process may have won the race; that is fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
