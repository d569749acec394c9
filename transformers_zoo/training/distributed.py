"""Data-parallel helpers for `torchrun`: process-group setup, rank queries and batch sharding.

The same recipe script runs alone or under `torchrun --nproc_per_node N`. Every rank builds the same
data stream (same seed) and so sees the same sequence of *global* batches; `shard_batch` gives each rank
a disjoint contiguous slice of every one. The data position in a checkpoint therefore counts global
batches and does not depend on the world size: a run saved with N ranks resumes with M.
Without an initialised process group every function answers as for a single process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .errors import TrainingError


def init_distributed(device: str = "auto", timeout_minutes: float = 30.0) -> bool:
    """Join the process group described by torchrun's env vars (RANK, WORLD_SIZE, MASTER_ADDR, ...).

    Uses nccl when training on CUDA (each rank on GPU LOCAL_RANK) and gloo on CPU. Returns True if a
    group was initialised, False when not launched by torchrun (a plain single-process run).
    `timeout_minutes` bounds every collective, including the wait of ranks 1.. while rank 0 evaluates:
    raise it for evaluations longer than that.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if dist.is_initialized():
        return True
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=timeout_minutes))
    return True


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """Rank on this machine, which picks the GPU (0 when not launched by torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on the rank that writes files and prints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (a no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def destroy() -> None:
    """Leave the process group, if any (call at the end of a recipe)."""
    if is_distributed():
        dist.destroy_process_group()


def shard_batch(batch: Any, rank: int, world: int) -> Any:
    """This rank's share of a global batch: every tensor split along dim 0 into `world` contiguous,
    disjoint, equal-ish parts (the first `B % world` ranks get one extra row).

    Dicts, lists and tuples are walked; other values (ints, strings) are shared unchanged. A batch
    with fewer rows than ranks leaves some ranks an empty shard, which the loss must handle (it scores
    0 tokens, and the trainer's normalisation by the global token count stays exact).
    """
    if world == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.ndim == 0:
            return batch
        return torch.tensor_split(batch, world, dim=0)[rank]
    if isinstance(batch, dict):
        return {k: shard_batch(v, rank, world) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(shard_batch(v, rank, world) for v in batch)
    return batch


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce ("sum" or "max") across ranks; returns the tensor (unchanged when alone)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s value of a picklable object, on every rank (e.g. rank 0's evaluation decision)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's value of a picklable object, in rank order (e.g. the RNG states for a checkpoint)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], Any], main: bool) -> Any:
    """Run `fn` where `main` (rank 0) only and hand its result to every rank. If it raises, every rank raises
    (rank 0 the original exception, the others a TrainingError quoting it) rather than leaving the other
    ranks waiting forever in their next collective."""
    result, error = None, None
    if main:
        try:
            result = fn()
        except Exception as e:
            error = e
    shared = broadcast_object(
        {"result": result, "error": None if error is None else f"rank 0 failed: {type(error).__name__}: {error}"}
    )
    if error is not None:
        raise error
    if shared["error"] is not None:
        raise TrainingError(shared["error"])
    return shared["result"]
