"""The typed settings of a translation run: its data, its search and checkpoint selection, its loss.

    TranslationSettings(model=ModelConfig(...), train=TrainConfig(...), data=TranslationDataSettings(vocab=8000),
                        eval=SearchSettings(beam=5), label_smoothing=0.1)

Frozen and validated like `ModelConfig`; errors are `SettingsError`s naming the field's dotted path. A run
directory's config.json from before these settings were typed (`data.corpus` / `data.files` / `data.joint`,
`train.label_smoothing`) is read as the same settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...config import ModelConfig
from ...settings import Settings, SettingsError
from ...training import TrainConfig

FILES = ("train_src", "train_tgt", "valid_src", "valid_tgt")


@dataclass(frozen=True)
class TranslationDataSettings(Settings):
    """Sentence pairs and how they become batches. Multi30k ``src`` -> ``tgt`` (default en -> de), or your own
    aligned files (all four of ``train_src``, ``train_tgt``, ``valid_src``, ``valid_tgt``; ``src`` / ``tgt`` are
    then labels, by default the files' extensions); ``tests`` adds test sets (name -> [source file, target
    file]). A sentencepiece ``tokenizer`` (bpe, unigram) of ``vocab`` pieces trained on the training pairs, one
    for both languages unless ``separate_vocab``; or ``init`` ("hf:DIR"), a checkpoint whose own tokenizers
    (and weights) the run starts from. ``max_tokens`` padded tokens per training batch and side;
    ``eval_limit`` pairs of each held-out split (None: all), scored ``eval_max_tokens`` tokens at a time."""

    src: str | None = None
    tgt: str | None = None
    train_src: str | None = None
    train_tgt: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    tests: dict[str, Any] = field(default_factory=dict)
    tokenizer: str = "bpe"
    vocab: int = 8000
    separate_vocab: bool = False
    max_tokens: int = 4000
    eval_limit: int | None = None
    eval_max_tokens: int = 6000
    init: str | None = None

    #: what an --eval-only run may change: how many pairs it scores, and which test sets
    EVALUABLE: ClassVar[tuple[str, ...]] = ("eval_limit", "tests")

    def __post_init__(self) -> None:
        given = [name for name in FILES if getattr(self, name)]
        if given and len(given) < len(FILES):
            missing = next(name for name in FILES if not getattr(self, name))
            raise SettingsError(missing, f"missing: training on your own files needs {', '.join(FILES)}")
        if self.src is None:
            object.__setattr__(self, "src", language_label(self.train_src, "src") if self.own_files else "en")
        if self.tgt is None:
            object.__setattr__(self, "tgt", language_label(self.train_tgt, "tgt") if self.own_files else "de")
        object.__setattr__(self, "tests", _tests(self.tests))
        if self.init is None:
            self.check_choice("tokenizer", ("bpe", "unigram"))
        self.check_positive("vocab", "max_tokens", "eval_limit", "eval_max_tokens")

    @property
    def own_files(self) -> bool:
        """Whether the pairs come from the user's files rather than Multi30k."""
        return self.train_src is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TranslationDataSettings:
        d = dict(d)
        files = d.pop("files", None) or {}  # config.json before typed settings: corpus, files, joint
        d.pop("corpus", None)
        for split, prefix in (("train", "train"), ("val", "valid")):
            if split in files:
                d[f"{prefix}_src"], d[f"{prefix}_tgt"] = files[split]
        if "joint" in d:
            d["separate_vocab"] = not d.pop("joint")
        return super().from_dict(d)


def _tests(tests: Any) -> dict[str, list[str]]:
    """``{name: [source file, target file]}`` (absolute paths) from a dict or from "NAME=SRC_FILE,TGT_FILE"
    strings; names are checked."""
    out: dict[str, list[str]] = {}
    for item in tests.items() if isinstance(tests, Mapping) else tests:
        name, sep, paths = item.partition("=") if isinstance(item, str) else (item[0], "=", ",".join(item[1]))
        files = paths.split(",")
        if not sep or len(files) != 2 or not all(files):
            raise SettingsError("tests", f"expected NAME=SRC_FILE,TGT_FILE, got {item!r}")
        if name in ("train", "val") or not name or not name.replace("_", "").replace("-", "").isalnum():
            raise SettingsError("tests", f"{name!r}: a test set's name is letters, digits, - or _ and not train or val")
        out[name] = [str(Path(f).expanduser().resolve()) for f in files]
    return out


def language_label(path: str | None, default: str) -> str:
    """`train.de` -> "de", `train.de.gz` -> "de"; `default` when the name has no such extension."""
    suffixes = [s.lstrip(".") for s in Path(path or "").suffixes if s != ".gz"]
    label = suffixes[-1] if suffixes else ""
    return label if label.isalpha() and len(label) <= 8 else default


@dataclass(frozen=True)
class SearchSettings(Settings):
    """Beam search of the test evaluation (``beam`` 1 = greedy; scores are log-prob / length **
    ``length_penalty``; at most ``max_len_a`` * source length + ``max_len_b`` tokens), and the choice of weights:
    the best checkpoint on validation ``select`` (loss, or greedy BLEU at every evaluation), against the average
    of the last ``average_last`` checkpoints (1 = no averaging)."""

    beam: int = 5
    length_penalty: float = 1.0
    max_len_a: float = 1.2
    max_len_b: int = 10
    select: str = "loss"
    average_last: int = 5

    RESUMABLE: ClassVar[tuple[str, ...]] = ("beam", "length_penalty", "max_len_a", "max_len_b")
    EVALUABLE: ClassVar[tuple[str, ...]] = ("beam", "length_penalty", "max_len_a", "max_len_b")

    def generation(self, beam_size: int | None = None) -> dict[str, Any]:
        """Keyword arguments of `generation.generate_many` (``beam_size``: another beam than ``beam``)."""
        return {"beam_size": beam_size or self.beam, "length_penalty": self.length_penalty,
                "max_len_a": self.max_len_a, "max_len_b": self.max_len_b}

    def __post_init__(self) -> None:
        self.check_positive("beam", "average_last")
        self.check_choice("select", ("loss", "bleu"))
        if self.max_len_a < 0 or self.max_len_b < 0:
            raise SettingsError("max_len_a" if self.max_len_a < 0 else "max_len_b", "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class TranslationSettings(Settings):
    """A translation run: the model, training, data and search settings, the preset they came from, the
    ``label_smoothing`` of the training loss (evaluation losses are never smoothed), and the model ``family``:
    an ``encoder_decoder``, or a ``decoder_only`` model that reads the source as a prefix of one causal stream
    and is trained on the target tokens only (recipes/compare.py's families grid sets them side by side).
    Checkpoint selection follows ``eval.select``: the trainer keeps the best ``val_loss`` (or ``val_bleu``),
    and at least ``eval.average_last`` checkpoints to average."""

    model: ModelConfig
    train: TrainConfig
    data: TranslationDataSettings = field(default_factory=TranslationDataSettings)
    eval: SearchSettings = field(default_factory=SearchSettings)
    label_smoothing: float = 0.1
    family: str = "encoder_decoder"
    preset: str | None = None

    def __post_init__(self) -> None:
        self.check_range("label_smoothing", 0.0, 1.0, high_open=True)
        self.check_choice("family", ("encoder_decoder", "decoder_only"))
        if self.family == "decoder_only" and self.data.init:
            raise SettingsError("family", "decoder_only cannot start from a Marian or T5 checkpoint (data.init)")
        bleu = self.eval.select == "bleu"
        train = dataclasses.replace(self.train, best_metric="val_bleu" if bleu else "val_loss",
                                    best_mode="max" if bleu else "min",
                                    keep_last=max(self.train.keep_last, self.eval.average_last))
        object.__setattr__(self, "train", train)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TranslationSettings:
        d = dict(d)
        if isinstance(d.get("train"), Mapping) and "label_smoothing" in d["train"]:  # a TrainConfig field once
            train = dict(d["train"])
            d.setdefault("label_smoothing", train.pop("label_smoothing"))
            d["train"] = train
        return super().from_dict(d)
