"""Device and precision policy of a training run: where it runs, whether it autocasts to bf16, and how a
CPU run keeps its memory flat.

Memory: glibc's heap fragments under tensors whose sizes change every step. Masked-LM steps compute logits
only where tokens are masked, so their largest buffers (``(N, V)`` logits and gradients) change size every
step; glibc serves them from its heap and raises its mmap threshold as they are freed (the "dynamic"
threshold), so later buffers land in the heap too, which fragments and never shrinks: a 5M-parameter BERT
pre-training here grew from 3.5 to 5 GB in ten minutes. Pinning the threshold (what
``MALLOC_MMAP_THRESHOLD_=131072`` does from the environment) serves every buffer of 128 KiB or more by
``mmap`` and returns it when freed: memory stays flat (a toy run of 400 steps: +11 MB instead of +540 MB).
That has a price: every such buffer is mapped and faulted in afresh, ~19k page faults a step at nanoGPT's
CPU configuration (1.2k unpinned) and several ms of system time. Runs whose steps all have the same shapes
(LM blocks) do not fragment, so `HeapPolicy` pins the heap only once a step's shapes or token count differ
from the first step's. Nothing happens where libc is not glibc. A run may pin a higher threshold
(`HeapPolicy(device, threshold)`): the sentence-encoder recipe's many buffers of 0.1-4 MiB then come from the heap
(its steps 1.3-1.4x faster here, 2026-12-06: 350k page faults a step pinned at 128 KiB; memory +15%).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from .errors import TrainingError

#: Buffers at least this large bypass the heap (glibc's own default before it starts adapting).
MMAP_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h


def resolve_device(device: str) -> torch.device:
    """"auto" -> the current CUDA device if there is one, else CPU; "cuda" fails clearly without CUDA."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("device='cuda' was requested but CUDA is not available; use --device cpu")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(device)


@functools.cache  # a property of the chip: probed once, not on every masked-LM step that asks
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (Intel AMX or AVX512-BF16, as in Sapphire Rapids
    and AMD Zen 4): there bf16 autocast trains an encoder 1.6-2.2x faster than float32 (benchmarks/amp_cpu.py)."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, and absent before torch 2.3
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def use_bf16(amp: str, device: torch.device) -> bool:
    """bf16 autocast (weights, optimizer state and the loss stay float32): on CUDA by default (`amp="auto"`);
    on a CPU only when asked, since its speed depends on the chip (see `cpu_has_native_bf16`)."""
    on = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if on and device.type == "cpu" and not cpu_has_native_bf16():
        warnings.warn("amp='bf16' on a CPU without AMX or AVX512-BF16: autocast is emulated and slower than "
                      "float32 (--amp off trains in float32)", stacklevel=3)
    return on


def autocast(enabled: bool, device: torch.device) -> AbstractContextManager[Any]:
    """The forward pass's precision context: bf16 autocast, or nothing."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if enabled else nullcontext()


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@functools.cache
def steady_heap(threshold: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap and trim thresholds for this process (once per value) at ``threshold`` bytes; True when
    it took effect."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold))


def _shapes(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return tuple(batch.shape)
    if isinstance(batch, dict):
        return tuple((k, _shapes(v)) for k, v in batch.items())
    if isinstance(batch, (list, tuple)):
        return tuple(_shapes(v) for v in batch)
    return None


class HeapPolicy:
    """Pins the heap (`steady_heap`) of a CPU run the first time a step's batch shapes or scored-token count
    differ from the first step's; a run of same-shaped steps keeps glibc's faster default. ``threshold``: the
    bytes from which buffers are mapped (None: ``MMAP_THRESHOLD``)."""

    def __init__(self, device: torch.device, threshold: int | None = None) -> None:
        self.done = device.type != "cpu"
        self.threshold = threshold or MMAP_THRESHOLD
        self._first: Any = None

    def observe(self, batch: Any, tokens: float) -> None:
        if self.done:
            return
        key = (_shapes(batch), tokens)
        if self._first is None:
            self._first = key
        elif key != self._first:
            self.done = True
            steady_heap(self.threshold)
