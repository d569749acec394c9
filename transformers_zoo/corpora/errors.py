"""The one error (and warning) every problem with input data raises: one line naming the file and the line.

``data/x.tsv:17: expected 2 tab-separated columns, got 1``. Readers that take ``skip_bad=True`` skip bad rows
instead and report how many with a :class:`DataWarning` (``warnings.warn``), never silently.
"""

from __future__ import annotations

import os

__all__ = ["DataError", "DataWarning", "PathLike"]

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
