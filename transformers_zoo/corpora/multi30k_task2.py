"""Multi30k task 2 (Elliott et al. 2016): five independent captions per image, in English and in German.

Captions of one image are paraphrases, so the data set is a ready-made sentence-similarity and retrieval set:
train on pairs of captions of one image, evaluate caption-to-caption retrieval on ``test_2016`` (for each of
its 5,000 captions rank the other 4,999; relevant: the 4 other captions of its image).
"""

from __future__ import annotations

from .downloads import fetch
from .errors import DataError, PathLike
from .readers import read_lines

__all__ = ["MULTI30K_TASK2_LANGS", "MULTI30K_TASK2_SPLITS", "load_multi30k_captions"]

#: splits (images: train 29,000, val 1,014, test_2016 1,000) and languages the canonical source serves
MULTI30K_TASK2_SPLITS = ("train", "val", "test_2016")
MULTI30K_TASK2_LANGS = ("en", "de")
CAPTIONS_PER_IMAGE = 5


def load_multi30k_captions(data_dir: PathLike | None = None, lang: str = "en",
                           splits: tuple[str, ...] = MULTI30K_TASK2_SPLITS) -> dict[str, list[list[str]]]:
    """The captions of each image per split: ``{split: [[caption 1, ..., caption 5] per image]}``, in the image
    order of task 1's files; downloaded (checksummed) into ``data_dir/multi30k-task2`` when missing."""
    if lang not in MULTI30K_TASK2_LANGS:
        raise DataError(f"Multi30k task 2 has no language {lang!r}; choose one of {', '.join(MULTI30K_TASK2_LANGS)}")
    unknown = [s for s in splits if s not in MULTI30K_TASK2_SPLITS]
    if unknown:
        raise DataError(f"Multi30k task 2 has no split {unknown[0]!r}; choose from {', '.join(MULTI30K_TASK2_SPLITS)}")
    names = [f"{s}.{k}.{lang}.gz" for s in splits for k in range(1, CAPTIONS_PER_IMAGE + 1)]
    folder = fetch("multi30k-task2", data_dir, names)
    out = {}
    for split in splits:
        columns = [read_lines(folder / f"{split}.{k}.{lang}.gz") for k in range(1, CAPTIONS_PER_IMAGE + 1)]
        if len({len(c) for c in columns}) != 1:
            raise DataError(f"the {split} files have different numbers of lines: {[len(c) for c in columns]}", folder)
        out[split] = [list(row) for row in zip(*columns, strict=True)]
    return out
