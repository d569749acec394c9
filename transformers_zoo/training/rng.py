"""Capture, restore and seed every random number generator training touches.

Dropout draws from torch's CPU or CUDA generator, data augmentation or sampling code may use Python's
`random` or numpy. A resumed run is only bitwise identical to an uninterrupted one if all of them
continue where they stopped. States are kept as tensors, ints and lists so that the checkpoint loads
with `torch.load(weights_only=True)` (numpy arrays would not).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def _numpy():
    # Only touch numpy if someone imported it: its generator cannot matter otherwise.
    return sys.modules.get("numpy")


def capture() -> dict[str, Any]:
    """The current state of Python `random`, torch CPU, torch CUDA (current device) and numpy."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        # As a tensor: 625 Python ints would cost a pickling round trip each in every checkpoint.
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": None,
    }
    np = _numpy()
    if np is not None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    return state


def restore(state: dict[str, Any]) -> None:
    """Put back a state from `capture` (generators it does not mention are left alone)."""
    py = state.get("python")
    if py is not None:
        random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss"]))
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    np = _numpy()
    if state.get("numpy") is not None and np is not None:
        n = state["numpy"]
        np.random.set_state(
            (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )


def seed_all(seed: int) -> None:
    """Seed Python `random`, torch (CPU and every CUDA device) and numpy if it is imported."""
    random.seed(seed)
    torch.manual_seed(seed)
    np = _numpy()
    if np is not None:
        np.random.seed(seed % 2**32)


@contextmanager
def preserved() -> Iterator[None]:
    """Restore every generator on exit, so code run inside (an evaluation that samples, say) cannot
    shift the random stream training sees: the eval cadence never changes the training run."""
    state = capture()
    try:
        yield
    finally:
        restore(state)
