"""Instruction data: the zoo's offline instruction set built from its own corpora, and users' conversations (JSONL).

    sources = load_sources(data_dir)                              # the corpora, read once
    sets = build_instructions(sources, per_task=20000, seed=0)   # {"train": [...], "val": [...], "test": [...]}
    conversations = read_conversations("mine.jsonl")              # {"messages": [...]} a line, checked

Every example is an :class:`Instruction`: its task, the conversation (a user turn, the assistant's answer) and,
held out, the reference the answer is scored against. The tasks, each asked in several phrasings (chosen by a
seeded generator: the same seed gives the same set):

| task | train | val (checkpoint selection, loss) | test (scored) |
| --- | --- | --- | --- |
| translate_{en_de,de_en,en_fr} | Multi30k task 1 train | Multi30k val | en->de: test_2016_flickr (BLEU) |
| sentiment | SST-2 train phrases (3+ words), IMDB train reviews (80 words) | SST-2 val | SST-2 dev (accuracy) |
| paraphrase | Multi30k task 2 train: a caption -> another of the same image | task 2 val | - |
| continuation | Tiny Shakespeare, first 90%: some lines -> the next | the last 10% | - |

Nothing of a test set reaches training: SST-2's val and dev sentences are not in its train phrases (see
``load_sst2``), Multi30k's test_2016_flickr sentences are not in train, task 2 is read from train and val only
(its test_2016 images are task 1's test images), IMDB's test reviews are never read. The pre-training text of a
decoder trained from scratch (:func:`pretraining_text`) is drawn from the same train splits.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .downloads import resolve_data_dir
from .errors import DataError, PathLike
from .imdb import load_imdb
from .multi30k import load_multi30k
from .multi30k_task2 import load_multi30k_captions
from .readers import _read_bytes
from .splits import split_text
from .sst2 import load_sst2
from .tinyshakespeare import load_tinyshakespeare

__all__ = ["LABELS", "PHRASINGS", "TASKS", "Instruction", "Sources", "build_instructions", "load_instructions",
           "load_sources", "pretraining_text", "read_conversations"]

LANGUAGES = {"en": "English", "de": "German", "fr": "French"}
#: the answers of the sentiment task
LABELS = ("negative", "positive")

PHRASINGS: dict[str, tuple[str, ...]] = {
    "translate": ("Translate into {tgt}: {text}", "Translate this {src} sentence to {tgt}.\n{text}",
                  "What is the {tgt} for: {text}", "{src}: {text}\n{tgt}:"),
    "sentiment": ("Is this review positive or negative? {text}",
                  "Sentiment of the following text (answer positive or negative):\n{text}",
                  "{text}\nDid the writer like it? Answer positive or negative.",
                  "Classify the sentiment as positive or negative: {text}"),
    "paraphrase": ("Paraphrase: {text}", "Describe the same picture in other words: {text}",
                   "Rewrite this caption differently:\n{text}"),
    "continuation": ("Continue this text:\n{text}", "What comes next?\n{text}",
                     "Write the next lines of this play:\n{text}"),
}
TRANSLATIONS = (("en", "de"), ("de", "en"), ("en", "fr"))
TASKS = (*(f"translate_{s}_{t}" for s, t in TRANSLATIONS), "sentiment", "paraphrase", "continuation")
IMDB_WORDS = 80  # a review's first words: reviews run to 2,500 words, the contexts here to a few hundred tokens
SST2_MIN_WORDS = 3  # shorter phrases ("good", "the film") say little about a review


@dataclass(frozen=True)
class Instruction:
    """One example: ``task`` (one of :data:`TASKS`), ``messages`` (a user turn then the assistant's answer) and
    ``reference`` (the answer it is scored against: a translation, a label; the answer itself when not scored)."""

    task: str
    messages: tuple[dict[str, str], ...]
    reference: str

    @property
    def prompt(self) -> list[dict[str, str]]:
        """The conversation without its last (assistant) turn: what a model is asked."""
        return list(self.messages[:-1])


def _ask(rng: random.Random, task: str, family: str, text: str, answer: str, **names: str) -> Instruction:
    phrasing = rng.choice(PHRASINGS[family])
    user = phrasing.format(text=text, **names)
    return Instruction(task, ({"role": "user", "content": user}, {"role": "assistant", "content": answer}), answer)


def _take(rng: random.Random, items: list[Any], n: int | None) -> list[Any]:
    """At most ``n`` of ``items``, a seeded sample in their order (all of them when ``n`` is None)."""
    if n is None or n >= len(items):
        return list(items)
    keep = sorted(rng.sample(range(len(items)), n))
    return [items[i] for i in keep]


def _shakespeare_pieces(text: str, n: int, rng: random.Random, prompt_chars: int = 240, answer_chars: int = 120
                        ) -> list[tuple[str, str]]:
    """``n`` (lines, the lines after them) pairs from ``text``, cut at line ends, at seeded places."""
    lines = text.split("\n")
    starts = list(range(len(lines)))
    out = []
    for start in rng.sample(starts, min(n, len(starts))):
        prompt, i = [], start
        while i < len(lines) and sum(map(len, prompt)) < prompt_chars:
            prompt.append(lines[i])
            i += 1
        answer = []
        while i < len(lines) and sum(map(len, answer)) < answer_chars:
            answer.append(lines[i])
            i += 1
        if prompt and answer and "".join(answer).strip():
            out.append(("\n".join(prompt).strip("\n"), "\n".join(answer).strip("\n")))
    return out


@dataclass(frozen=True)
class Sources:
    """The corpora the instruction set and the pre-training text are drawn from, read once (:func:`load_sources`)."""

    pairs: dict[tuple[str, str], dict[str, list[tuple[str, str]]]]
    sst2: dict[str, list[tuple[str, int]]]
    imdb: list[tuple[str, int]]
    captions: dict[str, list[list[str]]]
    shakespeare: dict[str, str]


def load_sources(data_dir: PathLike | None = None, sst2_val: int = 872, imdb_reviews: int | None = None,
                 seed: int = 0) -> Sources:
    """Multi30k task 1 (en-de, de-en, en-fr), SST-2 (``sst2_val`` whole sentences held out, see ``load_sst2``; 0:
    none held out, and validation takes ``val`` rows of train instead: quick, for smoke tests), the first
    ``imdb_reviews`` IMDB train reviews in a seeded order (0: IMDB is not read), task 2's train and val
    captions, Tiny Shakespeare split 90/10."""
    rng = random.Random(seed)
    pairs = {(s, t): load_multi30k(data_dir, s, t) for s, t in TRANSLATIONS}
    sst2 = load_sst2(data_dir, val_size=sst2_val)
    if not sst2_val:  # a quick validation set: training rows held out by row (their sub-phrases stay in train)
        sst2 = {"train": sst2["train"][200:], "val": sst2["train"][:200], "test": sst2["test"]}
    reviews = []
    if imdb_reviews != 0:
        reviews = [(" ".join(r.text.split()), 1 if r.label == "pos" else 0) for r in load_imdb("train", data_dir)]
        reviews = _take(rng, reviews, imdb_reviews)
    captions = load_multi30k_captions(data_dir, "en", ("train", "val"))
    shakespeare = split_text(load_tinyshakespeare(data_dir), (0.9, 0.1))
    return Sources(pairs, sst2, reviews, captions, shakespeare)


def build_instructions(sources: Sources, per_task: int | None = 20000, seed: int = 0, val_per_task: int = 200,
                       test_size: int | None = None) -> dict[str, list[Instruction]]:
    """The instruction set: ``train`` (at most ``per_task`` examples of each task), ``val`` (at most
    ``val_per_task`` of each) and ``test`` (test_2016_flickr en->de and SST-2 dev, at most ``test_size`` of each),
    every list in a seeded order. See the module's table for where each comes from."""
    rng = random.Random(seed)
    sets: dict[str, list[Instruction]] = {"train": [], "val": [], "test": []}
    for src, tgt in TRANSLATIONS:
        task, names = f"translate_{src}_{tgt}", {"src": LANGUAGES[src], "tgt": LANGUAGES[tgt]}
        pairs = sources.pairs[src, tgt]
        for split, source, n in (("train", "train", per_task), ("val", "val", val_per_task)):
            sets[split] += [_ask(rng, task, "translate", s, t, **names) for s, t in _take(rng, pairs[source], n)]
        if (src, tgt) == ("en", "de"):
            sets["test"] += [_ask(rng, task, "translate", s, t, **names)
                             for s, t in _take(rng, pairs["test_2016_flickr"], test_size)]
    phrases = [(t, y) for t, y in sources.sst2["train"] if len(t.split()) >= SST2_MIN_WORDS]
    reviews = [(" ".join(t.split()[:IMDB_WORDS]), y) for t, y in sources.imdb]
    half = None if per_task is None else per_task // 2
    train_rows = _take(rng, phrases, half if reviews else per_task) + _take(rng, reviews, half)
    for split, rows in (("train", train_rows), ("val", _take(rng, sources.sst2["val"], val_per_task)),
                        ("test", _take(rng, sources.sst2["test"], test_size))):
        sets[split] += [_ask(rng, "sentiment", "sentiment", t, LABELS[y]) for t, y in rows]
    for split, n in (("train", per_task), ("val", val_per_task)):
        for group in _take(rng, sources.captions[split], n):
            a, b = rng.sample(range(len(group)), 2)
            sets[split].append(_ask(rng, "paraphrase", "paraphrase", group[a], group[b]))
    for split, n in (("train", per_task or 20000), ("val", val_per_task)):
        pieces = _shakespeare_pieces(sources.shakespeare[split], n, rng)
        sets[split] += [_ask(rng, "continuation", "continuation", p, a) for p, a in pieces]
    for split in ("train", "val"):
        rng.shuffle(sets[split])
    return sets


#: bump when the instruction set built from the same files and settings changes
SET_VERSION = 1
SOURCE_FOLDERS = ("multi30k", "multi30k-task2", "sst2", "imdb", "tinyshakespeare")


def load_instructions(data_dir: PathLike | None, cache_dir: PathLike | None, sst2_val: int = 872,
                      imdb_reviews: int | None = None, seed: int = 0, **sizes: Any) -> dict[str, list[Instruction]]:
    """``build_instructions(load_sources(...), **sizes)``, cached as JSON in ``cache_dir`` (None: not cached) under
    a key of the settings and of the source files' names, sizes and modification times: reading the corpora
    takes a minute (SST-2's held-out sentences, IMDB), the cached set a second."""
    folder = resolve_data_dir(data_dir)
    stamp = [(str(f.relative_to(folder)), f.stat().st_size, f.stat().st_mtime_ns)
             for name in SOURCE_FOLDERS if (folder / name).is_dir() for f in sorted((folder / name).iterdir())
             if f.is_file()]
    key = hashlib.sha256(json.dumps([SET_VERSION, str(folder.resolve()), sst2_val, imdb_reviews, seed,
                                     sorted(sizes.items()), stamp]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "instructions" / f"{key}.json" if cache_dir is not None else None
    if path is not None and path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        return {split: [Instruction(t, tuple(m), r) for t, m, r in rows] for split, rows in saved.items()}
    sets = build_instructions(load_sources(folder, sst2_val, imdb_reviews, seed), seed=seed, **sizes)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        rows = {split: [(i.task, list(i.messages), i.reference) for i in items] for split, items in sets.items()}
        tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    return sets


def pretraining_text(sources: Sources, max_chars: int | None = None, seed: int = 0) -> str:
    """Running text for a decoder trained from scratch, from the train splits the instruction set uses: Multi30k
    task 1 train (en, de, fr) and task 2 train captions, SST-2 train phrases of 8+ words, the IMDB train reviews
    read, Tiny Shakespeare's first 90% in pieces of 8 lines; one document a line, in a seeded order; the first
    ``max_chars`` characters when given."""
    rng = random.Random(seed)
    docs: list[str] = []
    for (src, tgt), pairs in sources.pairs.items():  # each language's sentences once: en, de and fr
        if src == "en":
            docs += [t for _, t in pairs["train"]] + ([s for s, _ in pairs["train"]] if tgt == "de" else [])
    docs += [c for group in sources.captions["train"] for c in group]
    docs += [t for t, _ in sources.sst2["train"] if len(t.split()) >= 8]
    docs += [t for t, _ in sources.imdb]
    lines = sources.shakespeare["train"].split("\n")
    docs += [" ".join(lines[i:i + 8]) for i in range(0, len(lines), 8)]
    rng.shuffle(docs)
    text = "\n".join(docs)
    return text if max_chars is None else text[:max_chars]


def read_conversations(path: PathLike) -> list[list[dict[str, str]]]:
    """The conversations of a JSONL file, ``{"messages": [{"role": ..., "content": ...}, ...]}`` a line (blank
    lines skipped). A line that is not JSON, has no ``messages``, an unknown role, a message without text, or no
    assistant turn to train on is a :class:`DataError` naming the file and line."""
    from ..tokenizers.chat import ConversationError, check_conversation

    out = []
    for lineno, raw in enumerate(_read_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            detail = err.msg if isinstance(err, json.JSONDecodeError) else "not UTF-8"
            raise DataError(f"not a JSON object ({detail})", path, lineno) from None
        if not isinstance(row, dict) or "messages" not in row:
            raise DataError('expected {"messages": [...]} on each line', path, lineno)
        try:
            messages = check_conversation(row["messages"], "conversation")
        except ConversationError as err:
            raise DataError(str(err).removeprefix("conversation: "), path, lineno) from None
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError("no assistant message, so nothing to train on", path, lineno)
        out.append(messages)
    if not out:
        raise DataError("no conversations (empty file)", path)
    return out
