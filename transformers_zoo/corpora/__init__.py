"""Data for the recipes: downloads (checksummed, atomic, cached), readers of users' own files, and the data sets.

- :mod:`.errors`: :class:`DataError` (one line: ``path:line: what is wrong``) and :class:`DataWarning`;
- :mod:`.downloads`: sources, sha256 checksums, the cache folder and :func:`fetch`;
- :mod:`.readers`: text, lines, parallel sentences, labelled TSV, JSON lines, JSON;
- :mod:`.lengths`, :mod:`.splits`: a model's ``max_len`` on tokenized examples; a text's train/val/test split;
- the data sets, one module each: :mod:`.multi30k`, :mod:`.multi30k_task2`, :mod:`.tinyshakespeare`, :mod:`.sst2`,
  :mod:`.imdb` (GPT-2's BPE ranks are one checksummed file, fetched by ``tokenizers.GPT2Tokenizer``).
"""

from __future__ import annotations

from .downloads import BASE_URLS, CONTENT_SHA256, OWN_FILES, ROWS_SHA256, SHA256, base_url, fetch, resolve_data_dir
from .errors import DataError, DataWarning, PathLike
from .imdb import IMDB_LABELS, IMDB_SPLITS, IMDB_TARBALL, Review, clean_review, load_imdb
from .lengths import check_lengths
from .multi30k import MULTI30K_SPLITS, load_multi30k
from .multi30k_task2 import MULTI30K_TASK2_LANGS, MULTI30K_TASK2_SPLITS, load_multi30k_captions
from .readers import read_json, read_jsonl, read_labelled_tsv, read_lines, read_parallel, read_text
from .splits import split_text
from .sst2 import SST2_LABELS, SST2_SHARED_MAX_WORDS, SST2_VAL_MIN_WORDS, load_sst2
from .tinyshakespeare import load_tinyshakespeare

__all__ = [
    "BASE_URLS",
    "CONTENT_SHA256",
    "DataError",
    "DataWarning",
    "IMDB_LABELS",
    "IMDB_SPLITS",
    "IMDB_TARBALL",
    "MULTI30K_SPLITS",
    "MULTI30K_TASK2_LANGS",
    "MULTI30K_TASK2_SPLITS",
    "OWN_FILES",
    "PathLike",
    "ROWS_SHA256",
    "SHA256",
    "SST2_LABELS",
    "SST2_SHARED_MAX_WORDS",
    "SST2_VAL_MIN_WORDS",
    "Review",
    "base_url",
    "check_lengths",
    "clean_review",
    "fetch",
    "load_imdb",
    "load_multi30k",
    "load_multi30k_captions",
    "load_sst2",
    "load_tinyshakespeare",
    "read_json",
    "read_jsonl",
    "read_labelled_tsv",
    "read_lines",
    "read_parallel",
    "read_text",
    "resolve_data_dir",
    "split_text",
]
