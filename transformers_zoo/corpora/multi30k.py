"""Multi30k task 1 (Elliott et al. 2016): image captions in English, German and French, aligned by line."""

from __future__ import annotations

import re
from pathlib import Path

from .downloads import SHA256, fetch, resolve_data_dir
from .errors import DataError, PathLike
from .readers import read_parallel

__all__ = ["MULTI30K_SPLITS", "load_multi30k"]

#: Multi30k task 1 splits the canonical source serves (languages are discovered from the files).
MULTI30K_SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")

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
