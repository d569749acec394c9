"""Tiny Shakespeare (Karpathy's char-rnn): one text file, the nanoGPT character-level data set."""

from __future__ import annotations

from .downloads import fetch
from .errors import PathLike
from .readers import read_text

__all__ = ["load_tinyshakespeare"]


def load_tinyshakespeare(data_dir: PathLike | None = None) -> str:
    """Tiny Shakespeare as one string (1,115,394 characters); split it with :func:`split_text`."""
    return read_text(fetch("tinyshakespeare", data_dir) / "input.txt")
