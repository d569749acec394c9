"""The only place that knows flags: recipes' command lines become typed settings, and the library's errors
become one line naming the flag.

    recipe_main(recipe)        # a recipe's command line: train, --resume, --eval-only, or a subcommand
    main_guard(main)           # a bad input exits with one clear line (code 2), a signal with 128 + signum

`flags.py` holds the shared flags and argument types (re-exported here: `cli.absolute`, `cli.fractions`, ...);
`knn.py`, `chat.py` and `serve.py` are the command lines of the `knn` and `chat` subcommands and of
`python -m transformers_zoo.serve`. A preset is a dict `{"model": {...}, "train": {...}, "data": {...}}`;
flags typed win over the preset.
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
from collections.abc import Callable
from typing import Any

import torch

from ..training.trainer import resolve_device  # noqa: F401  (recipes import it from here; one definition)
from .flags import (  # noqa: F401  (the flags recipes build theirs with, as cli.NAME)
    CHOICES,
    DERIVED_FIELDS,
    IGNORED_FIELDS,
    MODEL_HELP,
    TRAIN_FLAGS,
    StoreGiven,
    absolute,
    add_common_args,
    add_field_flags,
    add_labelled_data_args,
    add_vocab_args,
    fractions,
    init_model_overrides,
    model_fields,
    numbers,
    overrides,
    str2bool,
)
from .knn import knn_main  # noqa: F401  (recipes' `knn` subcommand)


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
    from ..corpora import DataError
    from ..training import Interrupted, TrainingError

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
    from ..settings import SettingsError

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
    from ..settings import resumable_paths

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
    from .. import pipeline
    from ..runs import Run, new_run_dir, open_run_dir
    from ..settings import SettingsError, resumable_paths

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

