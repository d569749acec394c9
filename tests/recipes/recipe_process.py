"""Run a recipe as a user does: a subprocess on one thread, its output captured, a failure shown whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def run_recipe(name: str, *args: object, check: bool = True, stdin: str | None = None,
               **env_vars: str) -> subprocess.CompletedProcess:
    """``python recipes/{name}.py ARGS`` (``env_vars`` added to the environment); raises on a non-zero exit when
    ``check``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **env_vars)
    proc = subprocess.run([sys.executable, str(RECIPES / f"{name}.py"), *map(str, args)], capture_output=True,
                          text=True, env=env, input=stdin, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def tiny_run(name: str, data_dir: Path, tmp_path_factory, *args: object) -> Path:
    """A run directory of ``recipes/{name}.py --preset tiny`` (plus ``args``) on ``data_dir``, one thread."""
    out = tmp_path_factory.mktemp(name) / "run"
    run_recipe(name, "--preset", "tiny", "--data-dir", data_dir, "--out", out, "--threads", "1", *args)
    return out
