"""Run directories, the same way for every recipe: start a new one, resume one, load one, and the rule for
what a resumed run keeps.

    run = open_run_dir(resume, out, "gpt", preset)  # new (out, or runs/<recipe>-<preset>-<time>) or resumed
    write_json(run.dir / "config.json", config)  # everything needed to rebuild the run

The resume rule (one for all recipes): a resumed run is rebuilt from its `config.json` alone (model, data,
training settings and seed), so it continues bitwise where it stopped. What may change is declared on the
settings (`Settings.RESUMABLE`: the budgets and where it runs); cli.resumed_settings refuses the rest.

Tokenizers trained by a recipe are cached (keyed by a hash of their training text and settings) in
`$TZOO_CACHE_DIR/tokenizers`, else `$XDG_CACHE_HOME/transformers_zoo/tokenizers`, else
`~/.cache/transformers_zoo/tokenizers`; never in the data folder, which may be read-only or shared.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .training.atomic import atomic_write_text

CACHE_ENV = "TZOO_CACHE_DIR"


@dataclass(frozen=True)
class Run:
    """A run directory and, when resumed, its saved `config.json` (None for a new run)."""

    dir: Path
    saved: dict[str, Any] | None = None

    @property
    def resumed(self) -> bool:
        return self.saved is not None


def open_run_dir(resume: str | None, out: str | None, recipe: str, preset: str, create: bool = False) -> Run:
    """``resume``: that run with its config (checked to be one of ``recipe``'s); else a new run directory ``out``
    (default: runs/<recipe>-<preset>-<time>; created only with ``create``: once the inputs are known to be good)."""
    if resume:
        run_dir = run_dir_of(resume)
        saved = read_run_config(run_dir)
        if saved.get("recipe", recipe) != recipe:
            raise ValueError(f"{resume}: a run of recipes/{saved['recipe']}.py, not of {recipe}")
        return Run(run_dir, saved)
    return Run(new_run_dir(out, recipe, preset, create=create))


def new_run_dir(out: str | None, recipe: str, preset: str, create: bool = True) -> Path:
    """A fresh run directory; an existing one that already holds checkpoints is refused (use --resume).
    With `create=False` only the checks run: create it once the inputs are known to be good."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = os.path.join("runs", f"{recipe}-{preset}-{stamp}")
    path = Path(out)
    if (path / "checkpoints").exists() and any((path / "checkpoints").iterdir()):
        raise ValueError(f"--out {path}: already holds a run; continue it with --resume {path} or choose "
                         "another --out")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir_of(path: str | os.PathLike) -> Path:
    """The run directory containing `path` (a run directory or one of its checkpoint folders)."""
    p = Path(path)
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(f"{path}: not a run directory (no config.json)")


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The `config.json` of a run directory (or of the run holding a checkpoint folder)."""
    try:
        path = run_dir_of(run_dir)
    except FileNotFoundError:
        raise FileNotFoundError(f"{run_dir}: no config.json found (is it a run directory of this recipe?)") from None
    return json.loads((path / "config.json").read_text())


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file in the same folder, fsynced, then renamed)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def fingerprint(model_cfg: Any, tokenizer: Any, **extra: Any) -> dict[str, Any]:
    """What a run's checkpoints belong to: the model config, the tokenizer's hash and anything else that
    must match (a source tokenizer, label names); a resume with another one is refused by the Trainer."""
    return {"model": model_cfg.to_dict(), "tokenizer": tokenizer.fingerprint, **extra}


def cache_dir() -> Path:
    """`$TZOO_CACHE_DIR`, else `$XDG_CACHE_HOME/transformers_zoo`, else `~/.cache/transformers_zoo`."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "transformers_zoo"


def tokenizer_cache_dir() -> Path | None:
    """`cache_dir()/tokenizers` when it can be written, else None (the tokenizer is then trained every time)."""
    path = cache_dir() / "tokenizers"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return path
    except OSError:
        return None
