"""Interrupt a recipe deterministically and resume it: SIGTERM or SIGKILL at chosen steps (a Trainer
callback that signal_at_step.py adds to the recipe's process), then `--resume` until it finishes; and the
bitwise comparison with a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def expected_exit(spec: str) -> int:
    """Exit status of a run sent `spec` ("K:TERM", "K:KILL", or "" for none) that reaches step K."""
    if not spec:
        return 0
    signum = signal.Signals["SIG" + spec.split(":")[1]]
    return -signum if signum == signal.SIGKILL else 128 + signum  # SIGTERM: a checkpoint, then exit 143


def run_interrupted(recipe: str, start: list[object], run_dir: Path, signals: list[str],
                    resume: list[object] = ()) -> None:
    """Run `recipes/<recipe>.py *start --out run_dir` with `signals[0]`, then `--resume run_dir *resume` with
    each further one, each expected to end as `expected_exit` says; the last run must finish (exit 0): its signal,
    if any, is a guard at a step the run must not reach. A `--data-dir` in `start` is given to the resumes too (a
    run directory does not record where the data sets lie on this machine)."""
    start = list(start)
    if "--data-dir" in start:
        resume = [*resume, "--data-dir", start[start.index("--data-dir") + 1]]
    for i, spec in enumerate(signals):
        args = [*start, "--out", run_dir] if i == 0 else ["--resume", run_dir, *resume]
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
        env.pop("TZOO_DEBUG", None)
        command = [sys.executable, str(REPO / "tests" / "recipes" / "signal_at_step.py"), spec,
                   str(REPO / "recipes" / f"{recipe}.py"), *map(str, args)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
        expected = 0 if i == len(signals) - 1 else expected_exit(spec)
        assert proc.returncode == expected, \
            f"run {i} ({spec or 'no signal'}): exit {proc.returncode}\n{proc.stderr[-3000:]}"


def assert_same_run(a: Path, b: Path, step: int) -> None:
    """The weights of checkpoint `step` are bitwise equal, and so are the final reports' metrics."""
    name = f"checkpoints/step_{step:08d}/model.safetensors"
    wa, wb = load_file(a / name), load_file(b / name)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ at step {step}, e.g. {differ[0]}: max |diff| " \
        f"{float((wa[differ[0]] - wb[differ[0]]).abs().max()):.3g}"
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (a, b))
    assert ra["eval"] == rb["eval"] and ra["steps"] == rb["steps"] == step
