"""Recipe plumbing: the flags of the recipe contract, presets, devices, run directories and error exits.

Every recipe (`recipes/*.py`) takes the same flags (see DESIGN.md, "Recipe contract"):
`--data-dir --preset --out --device --seed --max-steps --max-minutes --resume --eval-only --checkpoint`,
training overrides (`--lr --warmup-steps ...`) and an override for every `ModelConfig` field the recipe's
model family reads (`--positional rope --norm rmsnorm ...`; `IGNORED_FIELDS` names those a family's model
never reads), generated from the dataclass so the two never drift apart.
A preset is a dict `{"model": {...}, "train": {...}, "data": {...}}`; flags typed win over the preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

import torch

from . import config as model_config
from .config import DERIVED_FIELDS, IGNORED_FIELDS, ModelConfig, model_fields  # noqa: F401  (a family's fields)
from .training.config import AMPS
from .training.trainer import resolve_device  # noqa: F401  (recipes import it from here; one definition)

# the variant registries themselves (modules/), so a variant registered there is a choice here
CHOICES = {"positional": model_config.POSITIONAL_BUILDERS, "norm": model_config.NORM_BUILDERS,
           "ffn": model_config.FFN_MODULES, "pooling": model_config.POOLINGS,
           "sinusoidal_layout": model_config.SINUSOIDAL_LAYOUTS}
MODEL_HELP = {
    "d_model": "width of the residual stream", "n_heads": "attention heads",
    "n_kv_heads": "key/value heads (1 = MQA, < n_heads = GQA; default: n_heads)",
    "n_layers": "layers per stack", "n_encoder_layers": "encoder layers (encoder-decoder)",
    "n_decoder_layers": "decoder layers (encoder-decoder)", "d_ff": "FFN hidden width",
    "max_len": "longest sequence (learned positions need it)", "dropout": "dropout on residual branches",
    "attention_dropout": "dropout on attention weights", "norm_first": "pre-norm (true) or post-norm (false)",
    "bias": "biases in linear layers and norms",
    "qkv_bias": "biases of the query/key/value projections (default: as --bias)",
    "tie_embeddings": "tie output projection to the embedding",
    "scale_embeddings": "multiply embeddings by sqrt(d_model)",
    "share_src_tgt_embeddings": "one embedding for source and target (joint vocabulary)",
    "d_head": "width of one attention head (default: d_model / n_heads)",
    "embedding_norm": "norm the embeddings before the first layer (default: in post-norm stacks only)",
    "attention_scale": "multiply attention scores by this (default: 1/sqrt(head width))",
    "sliding_window": "causal attention sees only the last N keys, itself included (Mistral; default: all)",
    "output_bias": "a bias on the output logits", "scale_output": "scale final states by d_model**-0.5 (T5)",
    "positional_offset": "learned positions: table rows before position 0 (BART: 2)",
    "sinusoidal_layout": "sinusoidal: interleaved sin/cos pairs or split halves (Marian)",
}

def _amp(value: str) -> str:
    if value not in AMPS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(AMPS)}")
    return value


# TrainConfig fields a recipe exposes as flags (name -> type, help).
TRAIN_FLAGS: dict[str, tuple[Callable[[str], Any], str]] = {
    "lr": (float, "peak learning rate"), "warmup_steps": (int, "linear warm-up steps"),
    "schedule": (str, "inverse_sqrt | cosine | constant"), "min_lr_ratio": (float, "cosine floor as a fraction of lr"),
    "weight_decay": (float, "AdamW decoupled weight decay (not on biases, norms, embeddings)"),
    "accum_steps": (int, "micro-batches per optimizer step"), "grad_clip": (float, "clip the gradient norm (0 = off)"),
    "eval_every": (int, "evaluate every N steps"), "save_every": (int, "checkpoint every N steps"),
    "log_every": (int, "log every N steps"), "keep_last": (int, "checkpoints kept besides the best"),
    "patience": (int, "stop after N evaluations without improvement"), "max_epochs": (int, "stop after N epochs"),
    "amp": (_amp, "bf16 autocast: auto (on CUDA only) | bf16 (on a CPU too; with AMX/AVX512-BF16 "
                  "an encoder trains 1.6-2.2x faster, benchmarks/amp_cpu.py) | off"),
}


class StoreGiven(argparse.Action):
    """Store the value and note the flag in `namespace._given`: a resume must know whether `--seed 0` or
    `--device cpu` was typed or is only the default (see resumed_settings)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace._given = {*getattr(namespace, "_given", ()), self.dest}


def str2bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _field_type(annotation: Any) -> Callable[[str], Any]:
    hints = typing.get_type_hints(ModelConfig)
    tp = hints.get(annotation, annotation)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return str2bool if tp is bool else tp


def add_common_args(parser: argparse.ArgumentParser, presets: dict[str, dict], default_preset: str,
                    family: str) -> None:
    """The recipe contract's flags, training overrides and one flag per ModelConfig field `family` reads."""
    run = parser.add_argument_group("run")
    run.add_argument("--data-dir", default=None,
                     help="data sets folder (default: env TZOO_DATA_DIR, else data/ in the repo, downloading "
                          "there when missing); not saved with a run, so give it again with --resume")
    run.add_argument("--preset", default=default_preset, choices=sorted(presets), action=StoreGiven,
                     help=f"model/training size (default: {default_preset}); 'tiny' is a seconds-long smoke test")
    run.add_argument("--out", default=None, help="run directory (default: runs/<recipe>-<preset>-<time>)")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], action=StoreGiven,
                     help="auto = cuda when available")
    run.add_argument("--seed", type=int, default=0, action=StoreGiven,
                     help="seed of everything random (default 0; a resumed run keeps its own)")
    run.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    run.add_argument("--max-minutes", type=float, default=None, help="stop after N minutes of training")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue the run in RUN_DIR from its newest complete checkpoint, with its saved settings "
                          "and budgets (--max-steps/--max-minutes/--max-epochs given here replace the budgets; any "
                          "other setting is refused)")
    run.add_argument("--eval-only", action="store_true", help="only evaluate --checkpoint, no training")
    run.add_argument("--checkpoint", metavar="RUN_DIR", default=None,
                     help="run directory (or checkpoint folder) to evaluate or use")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    train = parser.add_argument_group("training (override the preset)")
    for name, (tp, help_) in TRAIN_FLAGS.items():
        train.add_argument("--" + name.replace("_", "-"), dest="train__" + name, metavar=name.upper(), type=tp,
                           default=None, help=help_)
    model = parser.add_argument_group(f"model (override the preset; every ModelConfig field {family} reads)")
    for name in model_fields(family):
        kwargs: dict[str, Any] = {"dest": "model__" + name, "default": None, "type": _field_type(name)}
        if name in CHOICES:
            kwargs["choices"] = CHOICES[name]
        else:
            kwargs["metavar"] = name.upper()
        kwargs["help"] = MODEL_HELP.get(name, name.replace("_", " "))
        model.add_argument("--" + name.replace("_", "-"), **kwargs)


def overrides(args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    """Flags given on the command line for one group (`model__` or `train__`: a double underscore, so a
    recipe's own flags such as `--train-tsv` never collide), without the prefix."""
    return {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and v is not None}


def init_model_overrides(args: argparse.Namespace, allowed: tuple[str, ...] = ("dropout", "attention_dropout"),
                         init: str | None = None) -> dict[str, Any]:
    """The model flags given with ``--init CHECKPOINT`` (``init``, else ``args.init``), whose architecture is the
    checkpoint's: only ``allowed`` fields (dropout by default) may change; any other is refused, naming it."""
    given = overrides(args, "model__")
    for key, value in given.items():
        if key not in allowed:
            flags = " and ".join("--" + k.replace("_", "-") for k in allowed)
            raise ValueError(f"--{key.replace('_', '-')} {value}: the architecture comes from --init "
                             f"{init or args.init}; only {flags} may change")
    return given


class VocabAction(argparse.Action):
    """``--vocab 8000``, ``--vocab bpe`` or ``--vocab bpe:8000``: the size sets ``data.vocab``, the kind
    ``data.tokenizer`` (unless --tokenizer says otherwise)."""

    def __call__(self, parser, namespace, values, option_string=None):
        for part in values.split(":"):
            if part.isdigit():
                namespace.data__vocab = int(part)
            elif part in ("unigram", "bpe"):
                namespace.data__tokenizer = namespace.data__tokenizer or part
            else:
                parser.error(f"--vocab: expected a size, unigram or bpe, or KIND:SIZE (bpe:8000), got {values!r}")


def add_vocab_args(group: argparse._ArgumentGroup) -> None:
    """--vocab, --tokenizer and --pretokenize of the recipes that train a sentencepiece vocabulary of their own."""
    group.add_argument("--vocab", action=VocabAction, dest="data__vocab", default=None, metavar="SIZE|KIND|KIND:SIZE",
                       help="sentencepiece vocabulary trained on the pre-training text (or, from scratch, the train "
                            "texts): size, kind (unigram, bpe) or both, e.g. bpe:8000 (preset: unigram:8000)")
    group.add_argument("--tokenizer", dest="data__tokenizer", choices=["unigram", "bpe"], default=None,
                       help="sentencepiece kind (as --vocab KIND)")
    group.add_argument("--pretokenize", dest="data__pretokenize", choices=["none", "ptb"], default=None,
                       help="what the tokenizer does to every text first: ptb lower-cases it and splits it into Penn "
                            "Treebank tokens (it 's, did n't, `` ''), the form SST-2 is written in, so raw reviews "
                            "pre-train the words SST-2 spells; none keeps text as it is (preset: ptb)")


def add_labelled_data_args(group: argparse._ArgumentGroup, tasks: list[str]) -> None:
    """The labelled-data flags of the encoder recipes (classify.py, mlm.py's one command)."""
    flags = [("--batch-tokens", int, "N", "fine-tuning batch size in tokens, padding included (bucketed by length)"),
             ("--task", None, None, "labelled data: sst2 (test: dev.tsv) or imdb (25k reviews, test: its 25k test "
                                    "reviews, head+tail truncation at 256 tokens) (default: sst2)"),
             ("--train-tsv", absolute, "FILE", "labelled training file (TSV with a header; default: the --task data)"),
             ("--valid-tsv", absolute, "FILE", "validation file for checkpoint selection (default: 10%% of "
                                               "--train-tsv held out)"),
             ("--test-tsv", absolute, "FILE", "test file, scored once"),
             ("--text-column", str, "NAME", "column of the text (default: sentence)"),
             ("--label-column", str, "NAME", "column of the label, integer or string, any number of classes "
                                             "(default: label)"),
             ("--token-mask", float, "P", "regulariser: replace this share of the training tokens by [MASK], "
                                          "afresh every batch (preset: cpu 0.0)")]
    for flag, tp, metavar, help_ in flags:
        kwargs = {"choices": tasks} if tp is None else {"type": tp, "metavar": metavar}
        group.add_argument(flag, dest="data__" + flag[2:].replace("-", "_"), default=None, help=help_, **kwargs)


def absolute(path: str | None) -> str | None:
    """A path as given on the command line, made absolute (saved in config.json, read from any directory)."""
    return None if path is None else str(pathlib.Path(path).expanduser().resolve())


def setup_run(args: argparse.Namespace) -> None:
    """Threads and device, and --out/--resume checked before any data is read: --out may not hold a run
    already (nor a run directory under it: the one command of mlm.py writes one per stage)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    resolve_device(args.device)  # fails clearly now rather than after the data is prepared
    if args.resume and args.out:
        raise ValueError("--resume continues the run in its own directory; leave --out out")
    out = pathlib.Path(args.out) if args.out else None
    if out is not None and out.is_dir() and any((d / "checkpoints").is_dir() and any((d / "checkpoints").iterdir())
                                                for d in (out, *out.iterdir())):
        raise ValueError(f"--out {out}: already holds a run; continue it with --resume {out} or choose another --out")


def main_guard(main: Callable[[], int | None]) -> None:
    """Run a recipe's main: a bad input exits with one clear line (code 2), a signal with 128 + signum.
    Set TZOO_DEBUG=1 to see the traceback instead."""
    from .corpora import DataError
    from .training import Interrupted, TrainingError

    try:
        code = main()
    except Interrupted as stop:
        print(f"interrupted by signal {stop.signum}: checkpoint saved; continue with --resume", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (DataError, TrainingError, ValueError, FileNotFoundError) as err:
        if os.environ.get("TZOO_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


# ------------------------------------------------------------------------------- the recipe contract's main

#: common flags that set a settings field (dest -> dotted path); model/train/data/eval flags are `group__field`
COMMON_FIELDS = {"max_steps": "train.max_steps", "max_minutes": "train.max_minutes", "seed": "train.seed",
                 "device": "train.device", "compile": "train.compile", "preset": "preset"}


def recipe_parser(recipe: types.ModuleType) -> argparse.ArgumentParser:
    """The recipe contract's flags, then the recipe's own (`recipe.add_flags(parser)`; a flag that sets a
    settings field has the field's path as its dest, `data__block_size`, and its default None)."""
    parser = argparse.ArgumentParser(prog=getattr(recipe, "PROG", f"recipes/{recipe.NAME}.py"),
                                     description=recipe.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, recipe.PRESETS, default_preset=recipe.DEFAULT_PRESET, family=recipe.FAMILY)
    recipe.add_flags(parser)
    return parser


def field_path(dest: str) -> str | None:
    """The settings path a flag's dest sets (`data__block_size` -> `data.block_size`), None for the others."""
    return COMMON_FIELDS.get(dest) or (dest.replace("__", ".") if "__" in dest else None)


def given_fields(args: argparse.Namespace, settings_cls: type) -> dict[str, Any]:
    """The settings fields typed on the command line (path -> value), flags that set no field left out."""
    top = {f.name for f in dataclasses.fields(settings_cls)}
    typed = getattr(args, "_given", set())  # flags with a default (StoreGiven) say whether they were typed
    out = {}
    for dest, value in vars(args).items():
        path = field_path(dest) or (dest if dest in top else None)
        # `is not`: a typed 0 or 0.0 (--dropout 0, --label-smoothing 0) equals False but is given
        given = dest in typed if dest in ("seed", "device", "preset") else not (value is None or value is False
                                                                                  or value == [])
        if path is not None and path.split(".")[0] in top and given:
            out[path] = value
    return out


def preset_settings(recipe: types.ModuleType, args: argparse.Namespace, tree: dict[str, Any] | None = None) -> Any:
    """``recipe.SETTINGS`` from its preset (or ``tree``, a preset the recipe adjusted) with every field typed
    on the command line applied; the seed and device always come from the command line (their defaults). A
    warm-up no shorter than the step budget (a short budget typed) is cut to a tenth of it, unless typed too."""
    from .settings import SettingsError

    tree = json.loads(json.dumps(tree if tree is not None else recipe.PRESETS[args.preset]))  # a deep copy
    tree["preset"] = args.preset
    train = tree.setdefault("train", {})
    train.update(seed=args.seed, device=args.device)
    typed = given_fields(args, recipe.SETTINGS)
    for path, value in typed.items():
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    # a cosine decay needs its warm-up inside the step budget: a short budget typed cuts the preset's warm-up
    budget = train.get("max_steps")
    if train.get("schedule") == "cosine" and budget and train.get("warmup_steps", 0) >= budget:
        if "train.warmup_steps" in typed:
            raise SettingsError("train.warmup_steps", f"must be below the step budget {train['max_steps']}",
                                value=train["warmup_steps"])
        train["warmup_steps"] = train["max_steps"] // 10
    return recipe.SETTINGS.from_dict(tree)


def resumed_settings(parser: argparse.ArgumentParser, args: argparse.Namespace, saved: Any) -> Any:
    """The settings of a resumed run: the saved ones, with what a resume may change (the fields the settings
    declare RESUMABLE: budgets, device) from the command line. Any other setting given is refused, naming it."""
    from .settings import resumable_paths

    given = given_fields(args, type(saved))
    seed = given.pop("train.seed", saved.train.seed)
    if seed != saved.train.seed:
        raise ValueError(f"--seed {seed}: a resumed run keeps its seed ({saved.train.seed}); leave --seed out, or "
                         "start a new run")
    allowed = resumable_paths(type(saved))
    refused = [path for path in given if path not in allowed]
    if refused:
        flags = ", ".join(flag_of(parser, path) for path in refused)
        raise ValueError(f"{flags}: a resumed run keeps the settings it was started with (only --max-steps, "
                         "--max-minutes and --max-epochs may change); start a new run to change them")
    return saved.merged({**given, "train.resume": True})


def flag_of(parser: argparse.ArgumentParser, path: str, otherwise: str | None = None) -> str:
    """The flag that sets the settings field ``path`` (``data.block_size`` -> ``--block-size``), else the path."""
    for action in parser._actions:
        if action.option_strings and (field_path(action.dest) == path or action.dest == path):
            return action.option_strings[0]
    return f"setting {path}" if otherwise is None else otherwise


def flag_message(parser: argparse.ArgumentParser, err: Any) -> str:
    """A `SettingsError` as the command line says it: its field, and the fields its reason names in backquotes
    (`` `data.vocab` ``), by their flags."""
    reason = re.sub(r"`([a-z_.]+)`", lambda m: flag_of(parser, m.group(1), m.group(1)), err.reason)
    return f"{flag_of(parser, err.path)}{'' if err.value is None else f' {err.value}'}: {reason}"


def recipe_main(recipe: types.ModuleType, argv: list[str] | None = None) -> int:
    """A recipe's command line: `[train] FLAGS` trains (or `--resume RUN_DIR` continues), `--eval-only
    --checkpoint RUN_DIR` evaluates, `COMMAND ...` runs one of `recipe.COMMANDS` (sample, translate, ...).
    A bad setting is one line naming its flag."""
    from . import pipeline
    from .runs import Run, new_run_dir, open_run_dir
    from .settings import SettingsError, resumable_paths

    argv = sys.argv[1:] if argv is None else argv
    commands = getattr(recipe, "COMMANDS", {})
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    parser = recipe_parser(recipe)
    args = parser.parse_args(argv[1:] if argv and argv[0] == "train" else argv)
    try:
        setup_run(args)
        if args.eval_only:
            if not args.checkpoint:
                raise ValueError("--eval-only needs --checkpoint RUN_DIR")
            out = pathlib.Path(args.out) if args.out else None
            evaluable = resumable_paths(recipe.SETTINGS, declared="EVALUABLE")  # the search, not the model
            changes = {path: v for path, v in given_fields(args, recipe.SETTINGS).items() if path in evaluable}
            pipeline.evaluate_only(recipe, args.checkpoint, args.data_dir, args.device, out, changes)
            return 0
        if hasattr(recipe, "train_runs"):  # a command that is several runs (mlm.py's) trains them itself
            recipe.train_runs(args, parser)
            return 0
        run: Run = open_run_dir(args.resume, args.out, pipeline.kind_of(recipe, None).NAME, args.preset)
        kind = pipeline.kind_of(recipe, run.saved)  # the recipe, or the kind of run it makes or continues
        if run.resumed:
            settings = resumed_settings(parser, args, pipeline.settings_of(kind, run.saved))
        else:
            settings = recipe.settings(args)
            new_run_dir(args.out, recipe.NAME, args.preset, create=False)
        pipeline.train(kind, settings, pipeline.Context(run.dir, run.resumed, args.data_dir))
    except SettingsError as err:
        raise ValueError(flag_message(parser, err)) from None
    return 0


def fractions(value: str) -> list[float]:
    """``0.9,0.1,0`` -> ``[0.9, 0.1, 0.0]``; anything else is kept as typed, for the settings to refuse."""
    try:
        return [float(x) for x in value.split(",")]
    except ValueError:
        return value  # type: ignore[return-value]


def _numbers(kind: type) -> Callable[[str], tuple]:
    def parse(value: str) -> tuple:
        try:
            return tuple(kind(x) for x in value.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None

    return parse


def knn_main(recipe: types.ModuleType, argv: list[str], experiment: Callable[[Any, argparse.Namespace], Any],
             add_flags: Callable[[argparse.ArgumentParser], None] | None = None) -> int:
    """A recipe's `knn` command (kNN-LM / kNN-MT, `tasks.knn.run_knn`) on a trained run: ``experiment(task,
    args)`` wraps the run's task; ``add_flags`` adds the recipe's own."""
    from . import pipeline
    from .runs import run_dir_of
    from .tasks.knn import KNNGrid, run_knn

    defaults = KNNGrid()
    parser = argparse.ArgumentParser(
        prog=f"recipes/{recipe.NAME}.py knn", description="Build a datastore of the run's training states into the run "
        "directory (knn-datastore/), tune lambda, T and k on validation, report test with and without retrieval, the "
        "gain against datastore size and the decoding cost: knn_report.json, knn_report.md, knn_gain.png.")
    parser.add_argument("--checkpoint", metavar="RUN_DIR", required=True, help="the trained run")
    parser.add_argument("--data-dir", default=None, help="where the data sets are (default: $TZOO_DATA_DIR)")
    parser.add_argument("--datastore", metavar="DIR", default=None,
                        help="use this datastore instead of the run's own (refused if built from other weights)")
    parser.add_argument("--fractions", type=_numbers(float), default=defaults.fractions,
                        help="datastore sizes reported, as fractions of the training data (default 0.1,0.3,1.0)")
    parser.add_argument("--lambdas", type=_numbers(float), default=defaults.lambdas, help="lambda values tuned")
    parser.add_argument("--temperatures", type=_numbers(float), default=defaults.temperatures,
                        help="softmax temperatures over negative squared L2 distances tuned")
    parser.add_argument("--ks", type=_numbers(int), default=defaults.ks, help="numbers of neighbours tuned")
    parser.add_argument("--index", choices=["auto", "flat", "ivf", "hnsw"], default="auto",
                        help="datastore index: exact (flat), approximate (ivf, hnsw), or auto: flat up to 100k states")
    parser.add_argument("--nprobe", type=int, default=16, help="ivf cells scanned per query (default 16)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    if add_flags is not None:
        add_flags(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    grid = KNNGrid(args.lambdas, args.temperatures, args.ks, args.fractions)
    _, task, model = pipeline.load_run(recipe, args.checkpoint, args.data_dir, args.device)
    command = " ".join([f"python recipes/{recipe.NAME}.py knn", *argv])
    result = run_knn(experiment(task, args), model, run_dir_of(args.checkpoint), grid, args.datastore, command,
                     log=lambda line: print(line, file=sys.stderr, flush=True), kind=args.index, nprobe=args.nprobe)
    print(json.dumps({split: {k: v for k, v in m.items() if k not in ("with", "without")}
                      for split, m in result["test"].items()}), "slowdown", round(result["slowdown"], 2))
    return 0

