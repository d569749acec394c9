"""Where a classifier starts: a pre-training run of ``recipes/mlm.py`` (its tokenizer, architecture and best
checkpoint), a Hugging Face BERT checkpoint (``hf:PATH``: its architecture, WordPiece tokenizer and pooler),
or nothing (from scratch). And, once both have run, what the pre-training was worth.

Fine-tuning may change only what changes no weight's shape or meaning (:data:`FINETUNE_MODEL_FIELDS`); a
pre-trained encoder only understands its own tokenizer's ids, so the tokenizer always comes with it.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..interop import hf_classifier_config, load_hf_classifier
from ..interop import resolve_checkpoint as resolve_hf
from ..models.encoder_only import EncoderOnly
from ..runs import read_run_config, run_dir_of
from ..tokenizers import Tokenizer, WordPieceTokenizer, load_tokenizer
from ..training.checkpoint import load_checkpoint, resolve_checkpoint, verify_checkpoint
from .classification import classifier_from_pretrained

__all__ = ["FINETUNE_MODEL_FIELDS", "Start", "check_init", "checked_checkpoint", "evaluate_run", "gain", "gain_report",
           "initial_classifier", "is_hf", "load_encoder_run", "pretrain_run_dir", "start_from", "tokenizer_dir"]

#: Fields a fine-tuning run may change on a pre-trained encoder: they change no weight's shape or meaning
#: (max_len too, unless positions are a learned table: rope and the others are defined at any position).
FINETUNE_MODEL_FIELDS = ("pooling", "dropout", "attention_dropout", "max_len")


@dataclass
class Start:
    """A classifier's tokenizer and model settings, and the checkpoint its encoder starts from: a checkpoint
    folder of a pre-training run, ``"hf:DIR"``, or None (from scratch)."""

    tokenizer: Tokenizer
    model: dict[str, Any]
    init: Path | str | None = None


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
    try:
        run_dir = run_dir_of(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"--init {err}") from None
    stage = read_run_config(run_dir).get("stage")
    if stage == "all":
        run_dir = run_dir / "pretrain"
        stage = read_run_config(run_dir).get("stage")
    if stage != "pretrain":
        raise ValueError(f"--init {path}: not a pre-training run (its stage is {stage!r}); pass a run of "
                         "'recipes/mlm.py pretrain'")
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


def check_init(init: str | Path) -> None:
    """Fail on a wrong ``--init`` (no such pre-training run, or no such Hugging Face checkpoint) before any
    data is read."""
    if is_hf(init):
        resolve_hf(str(init))
    else:
        pretrain_run_dir(init)


def start_from(init: str | Path, model: dict[str, Any], cli_model: dict[str, Any], n_classes: int,
               tokenizer_from: str | None = None) -> Start:
    """The start of a fine-tuning run from ``init`` (a pre-training run or ``hf:PATH``): the encoder's
    tokenizer and architecture with ``model``'s FINETUNE_MODEL_FIELDS; any other model flag typed
    (``cli_model``) that differs from the architecture is refused, and so is another ``tokenizer_from``."""
    if is_hf(init):
        return _start_from_hf(str(init), cli_model, n_classes, tokenizer_from)
    init_run = pretrain_run_dir(init)
    tokenizer = load_tokenizer(init_run / "tokenizer")
    if tokenizer_from is not None:
        other = load_tokenizer(tokenizer_dir(tokenizer_from))
        if other.fingerprint != tokenizer.fingerprint:
            raise ValueError(f"--tokenizer-from {tokenizer_from}: its tokenizer ({other.fingerprint[:12]}) is not "
                             f"the one --init {init} was pre-trained with ({tokenizer.fingerprint[:12]}); a "
                             "pre-trained encoder only understands its own token ids (leave --tokenizer-from out)")
    ckpt = checked_checkpoint(init, init_run, tokenizer)
    arch = dict(read_run_config(init_run)["model"])
    for key, value in cli_model.items():
        if key not in FINETUNE_MODEL_FIELDS and arch.get(key) != value:
            raise ValueError(f"--{key.replace('_', '-')} {value}: the architecture comes from --init ({key}="
                             f"{arch.get(key)}); fine-tuning may change only "
                             f"{', '.join('--' + f.replace('_', '-') for f in FINETUNE_MODEL_FIELDS)}")
    merged = dict(arch, **{k: model[k] for k in FINETUNE_MODEL_FIELDS if k in model})
    if arch.get("positional") == "learned" and merged["max_len"] != arch["max_len"]:
        raise ValueError(f"max_len {merged['max_len']}: the pre-trained encoder has a learned position table of "
                         f"{arch['max_len']}; fine-tune it at --max-len {arch['max_len']}")
    merged.update(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, n_classes=n_classes)
    return Start(tokenizer, merged, ckpt)


def _start_from_hf(init: str, cli_model: dict[str, Any], n_classes: int, tokenizer_from: str | None) -> Start:
    """A Hugging Face BERT checkpoint: its architecture and dropout (the command line may change only
    pooling and dropout), its WordPiece tokenizer, BERT's pooler unless --pooling says otherwise."""
    directory = resolve_hf(init)
    init = f"hf:{directory.resolve()}"
    if tokenizer_from is not None:
        raise ValueError(f"--tokenizer-from {tokenizer_from}: with --init hf:PATH the tokenizer is the checkpoint's")
    for key, value in cli_model.items():
        if key not in FINETUNE_MODEL_FIELDS or key == "max_len":
            raise ValueError(f"--{key.replace('_', '-')} {value}: the architecture comes from --init {init}; "
                             "fine-tuning may change only --pooling, --dropout, --attention-dropout")
    cfg = hf_classifier_config(directory, n_classes, **cli_model)
    tokenizer = WordPieceTokenizer.from_hf(directory)
    if tokenizer.vocab_size > cfg.vocab_size or tokenizer.pad_id != cfg.pad_id:
        raise ValueError(f"--init {init}: vocab.txt ({tokenizer.vocab_size} pieces, [PAD] {tokenizer.pad_id}) does "
                         f"not fit config.json (vocab_size {cfg.vocab_size}, pad_token_id {cfg.pad_id})")
    return Start(tokenizer, cfg.to_dict(), init)


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


def evaluate_run(path: str, data_dir: str | None, device: Any, recipe: str = "mlm") -> dict[str, dict[str, dict]]:
    """The held-out metrics of a run's best checkpoint (or of the checkpoint folder given) by split, computed
    again from its config.json: a classifier's val and test, a pre-training run's held-out blocks; an
    all-in-one run gives each of its runs (keyed by directory name; a single run by its stage)."""
    from .classification import load_task_data, prepare_classification_task
    from .pretraining import prepare_pretrain_task

    top = run_dir_of(path)
    in_all = read_run_config(top).get("stage") == "all"
    targets = sorted(str(d) for d in top.iterdir() if (d / "config.json").is_file()) if in_all else [path]
    results = {}
    for target in targets:
        run_dir, config, tokenizer, model = load_encoder_run(target, "finetune", recipe)
        model.to(device)
        if config["stage"] == "pretrain":
            task = prepare_pretrain_task(config["data"], data_dir, model.config.max_len, tokenizer)
        else:
            data = load_task_data(config["data"], data_dir, config["labels"])
            task = prepare_classification_task(data, tokenizer, config["data"], model.config.max_len)
        results[run_dir.name if in_all else config["stage"]] = {s: task.evaluate(model, s) for s in task.eval_splits}
    return results


def gain(reports: dict[str, dict[str, Any]], runs: list[tuple[str, str, int | None]]) -> dict[str, Any]:
    """What pre-training is worth: the mean (and std) test score (val when there is no test split; macro-F1
    when reported, else accuracy) of the ``finetune`` runs against the ``scratch`` runs, one of each a seed
    (``runs``: ``(name, stage, seed)``; ``reports``: report.json of each by name)."""
    first = reports[next(name for name, stage, _ in runs if stage == "finetune")]
    split = "test" if "test" in first["eval"] else "val"
    metric = "macro_f1" if "macro_f1" in first["eval"][split] else "accuracy"
    scores = {stage: [reports[name]["eval"][split][metric] for name, st, _ in runs if st == stage]
              for stage in ("finetune", "scratch")}
    mean = {stage: statistics.fmean(v) for stage, v in scores.items()}
    std = {stage: statistics.stdev(v) if len(v) > 1 else 0.0 for stage, v in scores.items()}
    return {"split": split, "metric": metric, "pretrained": mean["finetune"], "scratch": mean["scratch"],
            "gain": mean["finetune"] - mean["scratch"], "seeds": len(scores["finetune"]),
            "pretrained_std": std["finetune"], "scratch_std": std["scratch"],
            "per_seed": {name: reports[name]["eval"][split][metric] for name, _, _ in runs}}


def gain_report(parent: Path, config: dict[str, Any], reports: dict[str, dict[str, Any]],
                runs: list[tuple[str, str, int | None]], recipe: str = "mlm") -> dict[str, Any]:
    """Write report.json / report.md (and accuracy.png) of a run that pre-trained (``reports["pretrain"]``),
    then fine-tuned and trained from scratch with each seed (``runs``: ``(name, stage, seed)``, each run in
    ``parent/name``): pre-trained against from scratch, the mean over the seeds, one row a run."""
    from ..training import write_report
    from ..viz import plot_val_curves
    from .pretraining import contamination_line

    pre = reports["pretrain"]
    ft, sc = (reports[next(n for n, st, _ in runs if st == stage)] for stage in ("finetune", "scratch"))
    g = gain(reports, runs)
    split, metric, n = g["split"], g["metric"], g["seeds"]
    evals = {**ft["eval"], **{f"scratch_{s}": m for s, m in sc["eval"].items()}, "pretrain_val": pre["eval"]["val"]}
    report = {"recipe": recipe, "stage": "all", "config": config, "params": ft["params"],
              "wall_s": sum(r["wall_s"] for r in reports.values()), "train_tokens_per_s": pre["train_tokens_per_s"],
              "best_step": ft["best_step"], "runs": {name: name for name in reports}, "comparison": g, "eval": evals,
              "contamination": pre.get("contamination")}
    f1 = metric == "macro_f1"
    rows = []
    for name, stage, _ in runs:
        r = reports[name]
        cells = [f"{r['eval'][s].get('accuracy', float('nan')):.4f}" for s in ("val", split)]
        cells += [f"{r['eval'][split]['macro_f1']:.4f}"] if f1 else []
        start = "pre-trained + fine-tuned" if stage == "finetune" else "from scratch"
        rows.append(f"| [{name}]({name}/report.md) | {start} | {r['config']['train']['seed']} | {' | '.join(cells)} "
                    f"| {r['steps']} | {r['best_step']} | {r['wall_s'] / 60:.1f} |")
    table = (f"| run | start | seed | val accuracy | {split} accuracy{f' | {split} macro-F1' if f1 else ''} | steps "
             f"| best step | minutes |\n|{' --- |' * (8 + f1)}\n" + "\n".join(rows))
    pv = pre["eval"]["val"]
    sections = [
        ("Pre-trained against from scratch",
         f"{table}\n\nMean {split} {metric} over {n} seed{'s' if n > 1 else ''}: pre-trained "
         f"**{g['pretrained']:.4f}** (std {g['pretrained_std']:.4f}), from scratch **{g['scratch']:.4f}** (std "
         f"{g['scratch_std']:.4f}). Pre-training adds **{g['gain'] * 100:+.2f} points** (same architecture and "
         "fine-tuning budget)."),
        ("Pre-training", f"{pre['steps']} steps, {pre['wall_s'] / 60:.1f} minutes, {pre['train_tokens_per_s']:,.0f} "
                         f"tokens/s; held-out masked-token accuracy {pv['masked_accuracy']:.4f}, perplexity "
                         f"{pv['ppl']:.2f}. Details: [pretrain/report.md](pretrain/report.md)")]
    if pre.get("contamination"):
        sections.append(("Contamination", contamination_line(pre["contamination"])))
    curves = {f"{'pre-trained' if st == 'finetune' else 'scratch'} seed {reports[name]['config']['train']['seed']}":
              parent / name for name, st, _ in runs}
    write_report(parent, report, sections, ["accuracy.png"] if plot_val_curves(curves, parent / "accuracy.png") else [])
    print(f"done: {parent}  {split} {metric} over {n} seed(s): pre-trained {g['pretrained']:.4f}, scratch "
          f"{g['scratch']:.4f} ({g['gain'] * 100:+.2f} points)", file=sys.stderr, flush=True)
    return report
