"""A classifier run (recipes/classify.py, and the fine-tuning stages of recipes/mlm.py): where it starts, a
pre-training run of recipes/mlm.py (its tokenizer, architecture and best checkpoint), a Hugging Face BERT
checkpoint (``hf:PATH``: its architecture, WordPiece tokenizer and pooler) or nothing (from scratch); its
``prepare`` for the recipe pipeline; and its task's pipeline hooks (labels, the stage, the accuracy plot).

Fine-tuning may change only what changes no weight's shape or meaning (:data:`FINETUNE_MODEL_FIELDS`); a
pre-trained encoder only understands its own tokenizer's ids, so the tokenizer always comes with it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig
from ..interop import hf_classifier_config, load_hf_classifier
from ..interop import resolve_checkpoint as resolve_hf
from ..models.encoder_only import EncoderOnly
from ..runs import read_run_config, run_dir_of, write_json
from ..settings import SettingsError
from ..tokenizers import Tokenizer, WordPieceTokenizer, load_tokenizer
from ..training import TrainConfig
from ..training.checkpoint import load_checkpoint, resolve_checkpoint, verify_checkpoint
from .base import CountingStream, RunKind, TaskBase, device_of, fit
from .classification import (
    ClassificationTask,
    LabelledData,
    classifier_from_pretrained,
    encode_examples,
    load_task_data,
    predict_proba,
    prepare_classification_task,
)
from .classification_settings import ClassificationDataSettings, ClassifySettings
from .mlm import fill_mask, train_sentencepiece
from .pretraining import PretrainSettings, prepare_pretrain

__all__ = ["CLASSIFIER_RUN", "FINETUNE_MODEL_FIELDS", "PRETRAIN_RUN", "ClassifierTask", "checked_checkpoint",
           "encoder_run", "fill", "initial_classifier", "is_hf", "load_encoder_run", "predict", "prepare_classifier",
           "pretrain_run_dir", "start_settings", "start_tokenizer", "tokenizer_dir"]

#: Fields a fine-tuning run may change on a pre-trained encoder: they change no weight's shape or meaning
#: (max_len too, unless positions are a learned table: rope and the others are defined at any position).
FINETUNE_MODEL_FIELDS = ("pooling", "dropout", "attention_dropout", "max_len")


def is_hf(init: str | Path | None) -> bool:
    return init is not None and str(init).startswith("hf:")


def tokenizer_dir(path: str | Path) -> Path:
    """The tokenizer folder of a run directory (or of the all-in-one run's pre-training), or ``path`` itself."""
    p = Path(path)
    for candidate in (p, p / "tokenizer", p / "pretrain" / "tokenizer"):
        if (candidate / "tokenizer.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no tokenizer here (expected a run directory or a folder with tokenizer.json)")


def tokenizer_data(tokenizer: Tokenizer) -> dict[str, Any]:
    """The data settings naming a tokenizer a run did not train (a pre-training run's or a Hugging Face one):
    its kind, vocabulary size and pretokenizer, so the run's config.json says what it reads."""
    settings = getattr(tokenizer, "settings", {})
    return {"tokenizer": settings.get("model_type", tokenizer.kind), "vocab": tokenizer.vocab_size,
            "pretokenize": settings.get("pretokenize", "none")}


def pretrain_run_dir(path: str | Path) -> Path:
    """The pre-training run meant by ``path``: a pretrain run (or one of its checkpoints) or an all-in-one run."""
    run_dir = run_dir_of(path)
    stage = read_run_config(run_dir).get("stage")
    if stage == "all":
        run_dir = run_dir / "pretrain"
        stage = read_run_config(run_dir).get("stage")
    if stage != "pretrain":
        raise SettingsError("init", f"not a pre-training run (its stage is {stage!r}); pass a run of "
                                    "'recipes/mlm.py pretrain'", value=path)
    return run_dir


def checked_checkpoint(path: str | Path, run_dir: Path, tokenizer: Tokenizer) -> Path:
    """The best checkpoint of ``path`` (or the checkpoint folder it names), refused when it was trained with
    another tokenizer than ``run_dir/tokenizer``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such run directory or checkpoint")
    ckpt = resolve_checkpoint(p if (p / "manifest.json").exists() or p.name.startswith("step_") else run_dir)
    saved = (verify_checkpoint(ckpt).get("fingerprint") or {}).get("tokenizer")
    if saved is not None and saved != tokenizer.fingerprint:
        raise ValueError(f"checkpoint {ckpt} was trained with another tokenizer ({saved[:12]}) than "
                         f"{run_dir / 'tokenizer'} ({tokenizer.fingerprint[:12]}); they must belong together")
    return ckpt


def start_settings(settings: ClassifySettings, typed: Mapping[str, Any]) -> ClassifySettings:
    """``settings`` with the model of the encoder it starts from: a pre-training run's architecture with the
    settings' FINETUNE_MODEL_FIELDS, or a Hugging Face BERT's (BERT's pooler and dropout unless ``typed``). Fails,
    before any data is read, on a start that cannot be: no such run or checkpoint, or settings ``typed`` on the
    command line (dotted paths -> values) that the encoder decides itself (its architecture, its tokenizer)."""
    init = settings.init
    if init is None:
        return settings
    for path in ("data.vocab", "data.tokenizer", "data.pretokenize"):
        if path in typed:
            raise SettingsError(path, "with `init` the tokenizer is the pre-training run's (`data.vocab`, "
                                      "`data.tokenizer` and `data.pretokenize` come with it)", value=typed[path])
    given = {p.removeprefix("model."): v for p, v in typed.items() if p.startswith("model.")}
    if is_hf(init):
        if settings.tokenizer_from is not None:
            raise SettingsError("tokenizer_from", "with `init` hf:PATH the tokenizer is the checkpoint's",
                                value=settings.tokenizer_from)
        directory = resolve_hf(init)
        init = f"hf:{directory.resolve()}"
        _refuse_arch_changes(given, init, {}, ("pooling", "dropout", "attention_dropout"))
        cfg = hf_classifier_config(directory, settings.model.n_classes or 2, **given)
        tokenizer = WordPieceTokenizer.from_hf(directory)
        if tokenizer.vocab_size > cfg.vocab_size or tokenizer.pad_id != cfg.pad_id:
            raise ValueError(f"{init}: vocab.txt ({tokenizer.vocab_size} pieces, [PAD] {tokenizer.pad_id}) does "
                             f"not fit config.json (vocab_size {cfg.vocab_size}, pad_token_id {cfg.pad_id})")
        return settings.merged({"model": cfg.to_dict(), "init": init})
    arch = dict(read_run_config(pretrain_run_dir(init))["model"])
    _refuse_arch_changes(given, init, arch, FINETUNE_MODEL_FIELDS)
    model = dict(arch, **{k: getattr(settings.model, k) for k in FINETUNE_MODEL_FIELDS})
    if arch.get("positional") == "learned" and model["max_len"] != arch["max_len"]:
        raise SettingsError("model.max_len", f"the pre-trained encoder has a learned position table of "
                                             f"{arch['max_len']}; fine-tune it at {arch['max_len']}",
                            value=model["max_len"])
    return settings.merged({"model": model})


def _refuse_arch_changes(given: dict[str, Any], init: str, arch: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key, value in given.items():
        if key not in allowed and (not arch or arch.get(key) != value):
            was = f" ({key}={arch.get(key)})" if arch else ""
            raise SettingsError(f"model.{key}", f"the architecture comes from `init` {init}{was}; fine-tuning may "
                                f"change only {', '.join(f'`model.{k}`' for k in allowed)}", value=value)


@functools.lru_cache(maxsize=4)
def task_data(d: ClassificationDataSettings, data_dir: str | None, labels: tuple[str, ...] | None) -> LabelledData:
    """`load_task_data`, read once a process for the runs that share it (mlm.py's stages and seeds)."""
    return load_task_data(d, data_dir, labels)


@functools.lru_cache(maxsize=4)
def scratch_tokenizer(d: ClassificationDataSettings, data_dir: str | None) -> Tokenizer:
    """A sentencepiece tokenizer trained on the train texts of ``d`` (once a process: one for every seed)."""
    texts = [t for t, _ in task_data(d, data_dir, None).splits["train"]]
    return train_sentencepiece(texts, d.tokenizer, d.vocab, d.pretokenize)


def start_tokenizer(settings: ClassifySettings, data_dir: str | None) -> tuple[Tokenizer, Path | str | None]:
    """The tokenizer of a new classifier run and the checkpoint its encoder starts from: the pre-training run's
    (refused when ``tokenizer_from`` names another) and its best checkpoint (or the checkpoint folder ``init``
    names); a Hugging Face BERT's WordPiece and ``"hf:DIR"``; or, from scratch, ``tokenizer_from``'s or one
    trained on the train texts, and None."""
    init, d = settings.init, settings.data
    if init is None:
        if settings.tokenizer_from is not None:
            return load_tokenizer(tokenizer_dir(settings.tokenizer_from)), None
        return scratch_tokenizer(d, data_dir), None
    if is_hf(init):
        return WordPieceTokenizer.from_hf(resolve_hf(init)), init
    init_run = pretrain_run_dir(init)
    tokenizer = load_tokenizer(init_run / "tokenizer")
    if settings.tokenizer_from is not None:
        other = load_tokenizer(tokenizer_dir(settings.tokenizer_from))
        if other.fingerprint != tokenizer.fingerprint:
            raise SettingsError("tokenizer_from", f"its tokenizer ({other.fingerprint[:12]}) is not the one `init` "
                                f"{init} was pre-trained with ({tokenizer.fingerprint[:12]}); a pre-trained encoder "
                                "only understands its own token ids (leave it out)", value=settings.tokenizer_from)
    return tokenizer, checked_checkpoint(init, init_run, tokenizer)


def initial_classifier(cfg: ModelConfig, init: Path | str | None) -> tuple[EncoderOnly, str]:
    """The classifier a run starts from, and a line saying what it is: the encoder of ``init`` (a pre-training
    checkpoint, or ``hf:DIR`` with its pooler) under a fresh head, or a fresh model (None)."""
    if is_hf(init):
        model, new = load_hf_classifier(str(init), cfg.n_classes, dropout=cfg.dropout,
                                        attention_dropout=cfg.attention_dropout, pooling=cfg.pooling)
        return model, f"initialised from {init}" + "".join(f"; {n}" for n in new)
    if init is not None:
        return classifier_from_pretrained(cfg, init), f"encoder initialised from {init}; classifier head new"
    return EncoderOnly(cfg), "initialised from scratch"


def load_encoder_run(path: str, want: str, recipe: str = "mlm") -> tuple[Path, dict[str, Any], Tokenizer,
                                                                           EncoderOnly]:
    """The model of a run (best checkpoint, or the checkpoint folder given) with its tokenizer, checked to
    belong together, in eval mode. An all-in-one run gives its ``want`` sub-run ("finetune" or "pretrain")."""
    run_dir = run_dir_of(path)
    config = read_run_config(run_dir)
    if config.get("stage") == "all":
        run_dir, path = run_dir / want, str(run_dir / want)
        config = read_run_config(run_dir)
    if config.get("recipe") != recipe:
        raise ValueError(f"{run_dir}: not a run of recipes/{recipe}.py (recipe {config.get('recipe')!r})")
    tokenizer = load_tokenizer(run_dir / "tokenizer")
    model = EncoderOnly(ModelConfig.from_dict(config["model"]))
    load_checkpoint(checked_checkpoint(path, run_dir, tokenizer), model)
    model.eval()
    return run_dir, config, tokenizer, model


@dataclass
class ClassifierTask(ClassificationTask, TaskBase):
    """A classification task as the recipe pipeline runs it: its ``stage`` ("finetune" or "scratch") and the
    checkpoint its encoder started from, labels saved with the run, examples/s and tokens/s in the report."""

    stage: str = "scratch"
    init_checkpoint: str | None = None
    how: str = ""
    stream: CountingStream | None = None

    def describe(self) -> str:
        names = self.data.label_names
        lines = [f"{self.stage}: {len(names)} classes {names[:10]}; examples: "
                 + ", ".join(f"{s} {len(e):,}" for s, e in self.encoded.items()), *(f"note: {n}" for n in self.notes)]
        return "\n".join([*lines, self.how] if self.how else lines)

    def save(self, run_dir: Path) -> None:
        self.tokenizer.save(run_dir / "tokenizer")
        write_json(run_dir / "labels.json", self.data.label_names)

    def settings_changes(self) -> dict[str, Any]:  # the tokenizer read, when the run did not train it
        changes = tokenizer_data(self.tokenizer) if self.init_checkpoint is not None else {}
        return {f"data.{k}": v for k, v in changes.items()}

    def config_extra(self) -> dict[str, Any]:
        return {"stage": self.stage, "tokenizer_fingerprint": self.tokenizer.fingerprint,
                "labels": self.data.label_names, "data_sources": self.data.sources,
                "init_checkpoint": self.init_checkpoint}

    def fingerprint(self, model: nn.Module) -> dict[str, Any]:
        return {**super().fingerprint(model), "labels": list(self.data.label_names)}

    def fit(self, model: nn.Module, train_cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
        self.stream = self.train_stream(train_cfg.seed)  # counts the input tokens for the report
        return fit(self, model, train_cfg, run_dir, self.fingerprint(model), stream=self.stream)

    def final_model(self, run_dir: Path, new_model: Callable[[], nn.Module]) -> tuple[nn.Module, dict[str, Any]]:
        model = new_model()
        return model, {"checkpoint": load_checkpoint(run_dir, model)["path"]}  # the best

    def report_extra(self, summary: dict[str, Any]) -> dict[str, Any]:
        return {"stage": self.stage, "train_examples_per_s": summary["train_tokens_per_s"],
                "train_tokens_per_s": summary["train_tokens_per_s"] * self.stream.tokens_per_unit(),
                "labels": self.data.label_names, "init_checkpoint": self.init_checkpoint}

    def report_sections(self, model: nn.Module, run_dir: Path) -> list[tuple[str, str]]:
        from ..viz import plot_val_curves

        self.images = ("accuracy.png",) if plot_val_curves({self.stage: run_dir}, run_dir / "accuracy.png") else ()
        return super().report_sections(model, run_dir)

    def summary_line(self, evals: dict[str, dict[str, Any]]) -> str:
        return "  ".join(f"{s} accuracy {m['accuracy']:.4f}" + (f" macro-F1 {m['macro_f1']:.4f}" if "macro_f1" in m
                                                               else "") for s, m in evals.items())


def prepare_classifier(settings: ClassifySettings, ctx: Any) -> tuple[ClassifierTask, EncoderOnly]:
    """The recipe contract's ``prepare`` of a classifier run: the labelled data (a run that continues, or is
    evaluated, reads its saved label names), the tokenizer (the encoder's, one trained on the train texts, or
    the run's own) and the classifier: the pre-trained encoder under a fresh head, or a fresh model, from the seed
    (a run with a checkpoint of its own gets its weights from it)."""
    labels = tuple(json.loads((ctx.run_dir / "labels.json").read_text())) if ctx.resumed else None
    data = task_data(settings.data, ctx.data_dir, labels)
    if ctx.resumed:
        tokenizer, init = load_tokenizer(ctx.run_dir / "tokenizer"), settings.init
        cfg = settings.model
        if init is not None and not is_hf(init) and not ctx.has_checkpoint and not ctx.for_eval:
            init_run = pretrain_run_dir(init)  # killed before its first checkpoint: it starts again
            init = checked_checkpoint(init, init_run, load_tokenizer(init_run / "tokenizer"))
    else:
        tokenizer, init = start_tokenizer(settings, ctx.data_dir)
        sizes = {} if init is not None else dict(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)
        cfg = settings.model.replace(n_classes=data.n_classes, **sizes)
    base = prepare_classification_task(data, tokenizer, settings.data, cfg.max_len)
    fresh = not (ctx.has_checkpoint or ctx.for_eval)  # else the weights are the run's own
    torch.manual_seed(settings.train.seed)
    model, how = initial_classifier(cfg, init if fresh else None)
    task = ClassifierTask(base.data, tokenizer, base.settings, base.encoded, base.notes, stage=settings.stage,
                          init_checkpoint=None if init is None else str(init), how=how if fresh else "")
    return task, model


def predict(checkpoint: str | Path, texts: list[str], device: torch.device) -> list[tuple[str, float]]:
    """The label and its probability of each text, by a classifier run (or an all-in-one run's ``finetune``)."""
    _, config, tokenizer, model = load_encoder_run(str(checkpoint), "finetune")
    if config["stage"] == "pretrain":
        raise ValueError(f"{checkpoint}: a pre-training run has no classifier; use 'fill', or fine-tune it first")
    model.to(device)
    encoded, _ = encode_examples(tokenizer, [(t, 0) for t in texts], model.config.max_len - 2)
    probs = predict_proba(model, encoded, 8192, device_of(model), tokenizer)
    return [(config["labels"][int(p.argmax())], float(p.max())) for p in probs]


def fill(checkpoint: str | Path, texts: list[str], top_k: int, device: torch.device) -> list[str]:
    """What `mlm.py fill` prints: each text, then the ``top_k`` candidates of each of its masks with their
    probabilities, by a pre-training run (or an all-in-one run's ``pretrain``)."""
    _, _, tokenizer, model = load_encoder_run(str(checkpoint), "pretrain")
    fills = [fill_mask(model.to(device), tokenizer, text, top_k) for text in texts]  # every text checked first
    return [line for text, masks in zip(texts, fills, strict=True) for line in [text, *(
        f"  mask {i}  {rank}. {piece}\t{prob:.4f}" for i, candidates in enumerate(masks, start=1)
        for rank, (piece, prob) in enumerate(candidates, start=1))]]


PRETRAIN_RUN = RunKind("mlm", "encoder_only", PretrainSettings, prepare_pretrain)
CLASSIFIER_RUN = RunKind("mlm", "encoder_only", ClassifySettings, prepare_classifier)


def encoder_run(saved: Mapping[str, Any] | None, default: RunKind = CLASSIFIER_RUN) -> RunKind:
    """The kind of an encoder run from its config.json (its "stage"); ``default`` for a new run (None)."""
    if saved is None:
        return default
    return PRETRAIN_RUN if saved.get("stage") == "pretrain" else CLASSIFIER_RUN
