"""Checkpoints on disk: atomic, verifiable, safe to load, and pruned to a few.

Layout of a run directory's `checkpoints/`:

    checkpoints/
      step_00000120/
        model.safetensors   weights (tied/shared tensors stored once; safetensors, never pickle)
        state.pt            optimizer, scheduler, step, data position, RNG states, best metric,
                            early-stopping counter, elapsed seconds, world size (plain tensors and
                            containers only: loaded with torch.load(weights_only=True))
        manifest.json       written LAST: sha256 and size of every file, step, fingerprint, metrics
      step_00000240/ ...
      best.json             pointer {"dir": "step_00000120", "step", "metric", "value"}

A directory without a readable manifest, or whose files do not match it, is incomplete or corrupt and is
skipped with a warning naming the file; the previous complete checkpoint is used instead. The best
checkpoint is a JSON pointer rather than a symlink (portable to Windows and to object stores) or a copy
(no duplicate gigabytes); pruning never deletes the directory it points to.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import pickle
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from .atomic import TMP_PREFIX, atomic_write, atomic_write_text, file_sha256, fsync_dir
from .errors import CheckpointError, TrainingError

CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
MANIFEST = "manifest.json"
BEST_POINTER = "best.json"
FORMAT = 1
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
_TRASH_PREFIX = ".trash-"


def checkpoints_root(run_dir: str | os.PathLike) -> Path:
    """`run_dir/checkpoints`."""
    return Path(run_dir) / CHECKPOINTS


def step_dir(run_dir: str | os.PathLike, step: int) -> Path:
    """`run_dir/checkpoints/step_{step:08d}`."""
    return checkpoints_root(run_dir) / f"step_{step:08d}"


def list_step_dirs(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Every `step_*` directory, complete or not, as (step, path) in increasing step order."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), p))
    return sorted(found)


# ---------------------------------------------------------------------------------------------- writing


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: nn.Module,
    state: dict[str, Any],
    info: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of `step` and return its directory.

    `model` is the plain module (not DDP- or compile-wrapped, so parameter names stay clean). `state` must
    hold only tensors, numbers, strings and containers (it is checked by loading rules on resume).
    `info` (JSON-able: fingerprint, metrics, config) goes into the manifest. Each file is written
    atomically; the manifest comes last, so a crash at any point leaves either the previous checkpoints
    alone or this one complete. Re-saving an existing step first removes its manifest, so the directory
    reads as incomplete while its files are being replaced.
    """
    root = checkpoints_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    d = step_dir(run_dir, step)
    if d.exists():
        (d / MANIFEST).unlink(missing_ok=True)
        fsync_dir(d)
    else:
        d.mkdir()
        fsync_dir(root)
    # force_contiguous: a transposed view would otherwise make safetensors refuse to save.
    atomic_write(d / MODEL_FILE, lambda tmp: save_model(model, str(tmp), force_contiguous=True))
    atomic_write(d / STATE_FILE, lambda tmp: torch.save(state, tmp))
    files = {
        name: {"sha256": file_sha256(d / name), "size": (d / name).stat().st_size}
        for name in (MODEL_FILE, STATE_FILE)
    }
    manifest = {
        "format": FORMAT,
        "step": step,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
        **(info or {}),
    }
    atomic_write_text(d / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")
    return d


def set_best(run_dir: str | os.PathLike, ckpt_dir: Path, metric: str, value: float) -> None:
    """Point `checkpoints/best.json` at `ckpt_dir` (atomically)."""
    step = int(_STEP_DIR.match(ckpt_dir.name).group(1))  # type: ignore[union-attr]
    pointer = {"dir": ckpt_dir.name, "step": step, "metric": metric, "value": value}
    atomic_write_text(checkpoints_root(run_dir) / BEST_POINTER, json.dumps(pointer, indent=2) + "\n")


def clear_best(run_dir: str | os.PathLike) -> None:
    """Remove the best pointer (used when a resume rewinds past the checkpoint it named)."""
    p = checkpoints_root(run_dir) / BEST_POINTER
    if p.exists():
        p.unlink()
        fsync_dir(p.parent)


def remove_checkpoint(ckpt_dir: Path) -> None:
    """Delete a checkpoint directory: renamed out of the `step_*` namespace first (one atomic step), so
    a crash halfway through the deletion cannot leave a half-deleted directory that looks like a step."""
    trash = ckpt_dir.with_name(_TRASH_PREFIX + ckpt_dir.name)
    if trash.exists():
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(ckpt_dir, trash)
    fsync_dir(ckpt_dir.parent)
    shutil.rmtree(trash, ignore_errors=True)


def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints and the best one; also clear leftovers
    of interrupted saves and deletions (incomplete step directories, temporary files). Returns what went.

    Only the single writer (rank 0) calls this, right after a successful save, so any incomplete
    directory at that moment is debris from a crash rather than a save in progress.
    """
    root = checkpoints_root(run_dir)
    dirs = list_step_dirs(run_dir)
    complete = [p for _, p in dirs if (p / MANIFEST).exists()]
    keep = set(complete[-keep_last:])
    best = _best_pointer(run_dir)
    if best is not None:
        keep.add(root / str(best.get("dir")))
    removed = []
    for _, p in dirs:
        if p not in keep:
            remove_checkpoint(p)
            removed.append(p)
    for p in root.iterdir():
        if p.name.startswith(_TRASH_PREFIX):
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.startswith(TMP_PREFIX) and p.is_file():
            p.unlink(missing_ok=True)
    return removed


def set_aside(ckpt_dir: Path, reason: str) -> Path:
    """Rename a rejected checkpoint to `step_XXXXXXXX.rejected` (kept for inspection, ignored by loaders)."""
    target = ckpt_dir.with_name(ckpt_dir.name + ".rejected")
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    os.replace(ckpt_dir, target)
    fsync_dir(ckpt_dir.parent)
    warnings.warn(f"moved {ckpt_dir} aside to {target.name}: {reason}", RuntimeWarning, stacklevel=2)
    return target


# ---------------------------------------------------------------------------------------------- reading


def verify_checkpoint(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete, intact checkpoint; CheckpointError (naming the file) otherwise."""
    d = Path(ckpt_dir)
    mpath = d / MANIFEST
    if not d.is_dir():
        raise CheckpointError(f"{d}: no such checkpoint directory")
    if not mpath.exists():
        raise CheckpointError(f"{d}: incomplete checkpoint (no {MANIFEST}; the save was interrupted)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{mpath}: unreadable manifest ({e})") from None
    for required in (MODEL_FILE, STATE_FILE):
        if required not in files:
            raise CheckpointError(f"{mpath}: manifest does not list {required}")
    for name, meta in files.items():
        p = d / name
        if not p.is_file():
            raise CheckpointError(f"{p}: missing file listed in the manifest")
        size = p.stat().st_size
        if size != meta["size"]:
            raise CheckpointError(f"{p}: size {size} bytes, manifest says {meta['size']} (truncated or overwritten)")
        if file_sha256(p) != meta["sha256"]:
            raise CheckpointError(f"{p}: sha256 does not match the manifest (file corrupt)")
    return manifest


def iter_checkpoints(run_dir: str | os.PathLike, warn: bool = True) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Complete, intact checkpoints, newest first, as (directory, manifest); warns about each one skipped."""
    for _, d in reversed(list_step_dirs(run_dir)):
        try:
            yield d, verify_checkpoint(d)
        except CheckpointError as e:
            if warn:
                warnings.warn(f"skipping checkpoint: {e}", RuntimeWarning, stacklevel=2)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete, intact checkpoint directory of a run (None if there is none)."""
    return next((d for d, _ in iter_checkpoints(run_dir)), None)


def _best_pointer(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    p = checkpoints_root(run_dir) / BEST_POINTER
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        warnings.warn(f"{p}: unreadable best-checkpoint pointer, ignoring it", RuntimeWarning, stacklevel=2)
        return None


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint `best.json` points to, if it exists and is intact (None otherwise, with a warning
    when the pointer names a broken checkpoint)."""
    pointer = _best_pointer(run_dir)
    if pointer is None:
        return None
    d = checkpoints_root(run_dir) / str(pointer.get("dir"))
    try:
        verify_checkpoint(d)
    except CheckpointError as e:
        warnings.warn(f"best checkpoint unusable: {e}", RuntimeWarning, stacklevel=2)
        return None
    return d


def load_state(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """`state.pt` loaded with `weights_only=True`: a file that would need to unpickle code (a class, a
    function, a `__reduce__` payload) is refused before anything in it runs."""
    p = Path(ckpt_dir) / STATE_FILE
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p}: refused to load (weights_only=True allows only tensors and plain "
                              f"containers): {first}") from None


def load_weights(ckpt_dir: str | os.PathLike, model: nn.Module) -> None:
    """Load `model.safetensors` into `model` in place (strict; tied tensors are restored as tied)."""
    p = Path(ckpt_dir) / MODEL_FILE
    try:
        missing, unexpected = load_model(model, str(p), strict=False)
    except safetensors.SafetensorError as e:
        raise CheckpointError(f"{p}: unreadable safetensors file ({e})") from None
    if missing or unexpected:
        raise TrainingError(f"{p} does not fit this model: missing {sorted(missing)[:5]}, "
                            f"unexpected {sorted(unexpected)[:5]}")


def resolve_checkpoint(path: str | os.PathLike, which: str = "best") -> Path:
    """The checkpoint directory meant by `path`: a `step_*` directory itself, or a run directory (or its
    `checkpoints/`), in which case `which="best"` picks the best checkpoint and falls back to the latest."""
    path = Path(path)
    if (path / MANIFEST).exists() or _STEP_DIR.match(path.name):
        return path
    run_dir = path.parent if path.name == CHECKPOINTS else path
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
    ckpt = best_checkpoint(run_dir) if which == "best" else None
    if ckpt is None:
        ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint found under {CHECKPOINTS}/")
    return ckpt


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    which: str = "best",
    fingerprint: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify a checkpoint and load its weights into `model` (for evaluation-only runs and recipes).

    `path`: a run directory (then `which` = "best" or "latest"), its `checkpoints/`, or one `step_*`
    directory. With `fingerprint`, refuses (TrainingError) a checkpoint made for something else. Returns
    the manifest (step, files, fingerprint, metrics, train_config, ...) plus "path": the directory used.
    """
    ckpt = resolve_checkpoint(path, which)
    manifest = verify_checkpoint(ckpt)
    if fingerprint is not None:
        check_fingerprint(manifest.get("fingerprint"), fingerprint, ckpt)
    load_weights(ckpt, model)
    return {**manifest, "path": str(ckpt)}


# ------------------------------------------------------------------------------------------ fingerprints


def _added_default(key: Any, value: Any) -> bool:
    """True for a ModelConfig field at its default: a field added after the checkpoint was written (its run
    could not set it), so its absence from the saved fingerprint is no difference."""
    from ..config import ModelConfig  # (config depends on nothing; imported here to keep training's imports light)

    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    field = fields.get(key)
    return field is not None and field.default is not dataclasses.MISSING and value == field.default


def _first_difference(saved: Any, current: Any, where: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in saved:
                if _added_default(key, current[key]):
                    continue
                return path, "<missing>", current[key]
            if key not in current:
                return path, saved[key], "<missing>"
            diff = _first_difference(saved[key], current[key], path)
            if diff:
                return diff
        return None
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            diff = _first_difference(a, b, f"{where}[{i}]")
            if diff:
                return diff
        return None
    return None if saved == current else (where or "<root>", saved, current)


def check_fingerprint(saved: Any, current: dict[str, Any], ckpt_dir: str | os.PathLike) -> None:
    """Raise a one-line TrainingError naming the first key where the checkpoint's fingerprint differs."""
    # Compare as JSON sees them: tuples and lists, int keys and str keys are the same thing on disk.
    current_json = json.loads(json.dumps(current, default=str))
    diff = _first_difference(saved, current_json)
    if diff is not None:
        key, a, b = diff
        raise TrainingError(f"checkpoint {ckpt_dir} was made for a different setup: fingerprint key "
                            f"'{key}' is {a!r} in the checkpoint but {b!r} in this run")


def average_checkpoints(run_dir: str | os.PathLike, last: int, model: nn.Module) -> list[Path]:
    """Load into ``model`` the element-wise mean of the weights of the newest ``last`` complete checkpoints of
    ``run_dir`` (fairseq's ``scripts/average_checkpoints.py``); returns the directories used, oldest first.
    Means are taken in float64 and cast back; integer buffers come from the newest; tied weights stay tied."""
    if last < 1:
        raise ValueError(f"average of the last {last} checkpoints: need at least 1")
    dirs = [d for d, _ in iter_checkpoints(run_dir)][:last]
    if not dirs:
        raise FileNotFoundError(f"{run_dir}: no complete checkpoint to average")
    sums: dict[str, torch.Tensor] = {}
    for d in dirs:  # newest first: integer buffers keep the newest values
        load_weights(d, model)
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                sums.setdefault(name, tensor.clone())
            else:
                sums[name] = sums[name] + tensor.double() if name in sums else tensor.double().clone()
    state = model.state_dict()
    model.load_state_dict({name: (total / len(dirs)).to(state[name].dtype) if state[name].is_floating_point()
                           else total for name, total in sums.items()})
    return dirs[::-1]
