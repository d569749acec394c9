"""The translate recipe's settings from its command line: the data settings (Multi30k or your files, test
sets, vocabulary, batches), the search and selection settings, and the model config (the preset's sized for
the tokenizers, or a Hugging Face checkpoint's with --init). Bad input fails here with a one-line error that
names the flag, before a run directory exists.

    data = data_settings(preset, args)          # config.json's "data"
    ev = eval_settings(preset, args)            # config.json's "eval"
    train = train_settings(preset["train"], ev)  # config.json's "train": selection on loss or BLEU
    cfg = model_config(preset["model"], task.data)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..cli import init_model_overrides
from ..config import ModelConfig
from ..interop import load_hf_translator, resolve_checkpoint
from ..models import EncoderDecoder
from .translation import TranslationData

# Flags a resumed run cannot change (its data and checkpoint selection are fixed once started).
DATA_FLAGS = ("src", "tgt", "file_train_src", "file_train_tgt", "file_valid_src", "file_valid_tgt", "test",
              "tokenizer", "vocab", "separate_vocab", "max_tokens", "eval_limit", "select", "average_last", "init")


def data_settings(preset: dict, args: argparse.Namespace) -> dict[str, Any]:
    """The preset's data settings with the command line applied; file paths made absolute."""
    data = dict(preset["data"])
    flags = {"--train-src": args.file_train_src, "--train-tgt": args.file_train_tgt,
             "--valid-src": args.file_valid_src, "--valid-tgt": args.file_valid_tgt}
    files = {"train": (args.file_train_src, args.file_train_tgt), "val": (args.file_valid_src, args.file_valid_tgt)}
    given = [flag for flag, value in flags.items() if value]
    if given:
        missing = [flag for flag, value in flags.items() if not value]
        if missing:
            raise ValueError(f"{', '.join(given)} given without {', '.join(missing)}: training on your own files "
                             "needs all four")
        data["corpus"] = "files"
        data["files"] = {split: [str(Path(s).resolve()), str(Path(t).resolve())] for split, (s, t) in files.items()}
        data["src"] = args.src or language_label(args.file_train_src, "src")
        data["tgt"] = args.tgt or language_label(args.file_train_tgt, "tgt")
    else:
        data["corpus"] = "multi30k"
        data["files"] = {}
        data["src"], data["tgt"] = args.src or "en", args.tgt or "de"
    data["tests"] = parse_tests(args.test)
    for key, value in (("tokenizer", args.tokenizer), ("vocab", args.vocab), ("max_tokens", args.max_tokens),
                       ("eval_limit", args.eval_limit)):
        if value is not None:
            data[key] = value
    if args.separate_vocab:
        data["joint"] = False
    for key in ("vocab", "max_tokens", "eval_limit"):
        if data.get(key) is not None and data[key] < 1:
            raise ValueError(f"--{key.replace('_', '-')} {data[key]} must be a positive number")
    return data


def eval_settings(preset: dict, args: argparse.Namespace, saved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search and selection settings: the run's saved ones (eval-only) or the preset's, then the flags."""
    ev = dict(saved if saved is not None else preset["eval"])
    for key in ("beam", "length_penalty", "max_len_a", "max_len_b", "select", "average_last"):
        value = getattr(args, key, None)
        if value is not None:
            ev[key] = value
    if ev["beam"] < 1:
        raise ValueError(f"--beam {ev['beam']} must be >= 1")
    if ev["average_last"] < 1:
        raise ValueError(f"--average-last {ev['average_last']} must be >= 1 (1 = no averaging)")
    return ev


def train_settings(train: dict[str, Any], ev: dict[str, Any]) -> dict[str, Any]:
    """The preset's training settings with the checkpoint selection of `ev`: the best checkpoint on validation
    loss, or on greedy BLEU with --select bleu; at least --average-last checkpoints kept for averaging."""
    bleu = ev["select"] == "bleu"
    return dict(train, best_metric="val_bleu" if bleu else "val_loss", best_mode="max" if bleu else "min",
                keep_last=max(train.get("keep_last", 3), ev["average_last"]))


def saved_settings(config: dict[str, Any], args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The data and search settings of a trained run's `config` (`--eval-only`) with this command line's search
    flags, `--eval-limit` and extra `--test` sets applied."""
    data, ev = dict(config["data"]), eval_settings({}, args, saved=config["eval"])
    if args.eval_limit is not None:
        data["eval_limit"] = args.eval_limit
    if args.test:
        data["tests"] = {**data.get("tests", {}), **parse_tests(args.test)}
    return data, ev


def language_label(path: str, default: str) -> str:
    """`train.de` -> "de", `train.de.gz` -> "de"; `default` when the name has no such extension."""
    suffixes = [s.lstrip(".") for s in Path(path).suffixes if s != ".gz"]
    label = suffixes[-1] if suffixes else ""
    return label if label.isalpha() and len(label) <= 8 else default


def parse_tests(specs: list[str]) -> dict[str, list[str]]:
    """`["news=a.en,a.de"]` -> `{"news": [abs a.en, abs a.de]}`."""
    tests: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, paths = spec.partition("=")
        parts = paths.split(",")
        if not sep or not name or len(parts) != 2 or not all(parts):
            raise ValueError(f"--test {spec!r}: expected NAME=SRC_FILE,TGT_FILE")
        if name in ("train", "val") or not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"--test {spec!r}: NAME must be letters, digits, - or _ and not train or val")
        tests[name] = [str(Path(p).resolve()) for p in parts]
    return tests



def hf_init(args: argparse.Namespace, data: dict[str, Any]) -> tuple[EncoderDecoder, ModelConfig, tuple]:
    """``(model, its config, (source, target) tokenizers)`` for --init; records the checkpoint in ``data``. The
    architecture and tokenizers are the checkpoint's: only dropout may change, vocabulary flags are refused."""
    changes = init_model_overrides(args)
    for flag, value in (("--vocab", args.vocab), ("--tokenizer", args.tokenizer),
                        ("--separate-vocab", args.separate_vocab or None)):
        if value is not None:
            raise ValueError(f"{flag}: the tokenizers come from --init {args.init}")
    model, src_tok, tgt_tok = load_hf_translator(args.init)
    data.update(init=f"hf:{resolve_checkpoint(args.init).resolve()}", joint=src_tok is tgt_tok,
                tokenizer=tgt_tok.kind, vocab=tgt_tok.vocab_size)
    return model, model.config.replace(**changes), (src_tok, tgt_tok)


def model_config(model: dict[str, Any], td: TranslationData) -> ModelConfig:
    """The ModelConfig of the preset (with overrides) sized for the tokenizers; separate vocabularies get
    separate source and target embeddings whatever --share-src-tgt-embeddings says."""
    model = dict(model, vocab_size=td.tgt_tokenizer.vocab_size, pad_id=td.tgt_tokenizer.pad_id)
    if not td.joint:
        model.update(share_src_tgt_embeddings=False, src_vocab_size=td.src_tokenizer.vocab_size)
    return ModelConfig.from_dict(model)
