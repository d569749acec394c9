"""Device and precision policy of a training run: where it runs, whether it autocasts to bf16, and how a
CPU run keeps its memory flat.

Memory: glibc's heap fragments under tensors whose sizes change every step. Masked-LM steps compute logits
only where tokens are masked, so their largest buffers (``(N, V)`` logits and gradients) change size every
step; glibc serves them from its heap and raises its mmap threshold as they are freed (the "dynamic"
threshold), so later buffers land in the heap too, which fragments and never shrinks: a 5M-parameter BERT
pre-training here grew to 5.2 GB in three minutes. Runs whose steps all have the same shapes (LM blocks) do not
fragment, so `HeapPolicy` acts only once a step's shapes or token count differ from the first step's, in one
of two ways, chosen per task (``TaskBase.heap``):

- pin (the default, at 128 KiB; a task may choose its ``heap`` threshold): every buffer of that many bytes or
  more is mapped by ``mmap`` and unmapped when freed (what ``MALLOC_MMAP_THRESHOLD_`` does from the
  environment), so the heap holds only smaller ones; each mapped buffer is faulted in afresh, the price. Tasks
  whose many buffers are 0.1-4 MiB pin at 4 MiB (cpu presets, 2 cores, 2026-12-07): translation (3,450 tokens/s
  against 3,080 at 128 KiB), classification (443 examples/s against 380) and the sentence encoder (1.3-1.4x),
  for 10-30% more memory.
- release (``RELEASE``): after every step ``malloc_trim(0)`` hands the heap's free pages back to the system.
  glibc keeps its fast default; the fragments stay in the address space, not in memory. Masked-LM pre-training
  on IMDB (cpu preset): 2,430-2,680 masked tokens/s at 2.6-2.7 GB after 3 and 8 minutes, against 2,040 tokens/s
  and 2.1 GB pinned at 128 KiB (86M page faults in three minutes; 4 MiB was no faster) and 2,890 tokens/s and
  5.2 GB, growing, unmanaged. Where pinning at 4 MiB suffices it is faster than releasing (releasing: translation
  2,960 tokens/s, classification 386 examples/s, the sentence encoder 141 / 69 against 158 / 82): every release
  is undone by page faults on the next step.

Nothing happens where libc is not glibc.
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


@functools.cache  # looked up once, when a run first needs it
def _libc() -> Any:
    """glibc through ctypes, or None (not Linux, or another libc: musl has neither mallopt nor malloc_trim)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def steady_heap(threshold: int = MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap and trim thresholds for this process (once per value) at ``threshold`` bytes; True when
    it took effect."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold))


def release_heap() -> bool:
    """Give the free pages of glibc's heap back to the system (``malloc_trim(0)``); True when some were."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))


def _shapes(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return tuple(batch.shape)
    if isinstance(batch, dict):
        return tuple((k, _shapes(v)) for k, v in batch.items())
    if isinstance(batch, (list, tuple)):
        return tuple(_shapes(v) for v in batch)
    return None


#: `HeapPolicy`'s other policy: release the heap's free pages after every step instead of pinning it
RELEASE = "release"


class HeapPolicy:
    """Manages a CPU run's heap once a step's batch shapes or scored-token count differ from the first step's (a
    run of same-shaped steps keeps glibc's default). ``heap``: a threshold in bytes pins the heap at it
    (`steady_heap`; None: ``MMAP_THRESHOLD``); ``RELEASE`` releases its free pages after every step
    (`release_heap`). Which is faster depends on the run's buffers: see this module's doc."""

    def __init__(self, device: torch.device, heap: int | str | None = None) -> None:
        if heap is not None and heap != RELEASE and not (isinstance(heap, int) and heap > 0):
            raise ValueError(f"heap policy must be a threshold in bytes or {RELEASE!r}, got {heap!r}")
        self.off = device.type != "cpu"
        self.heap = MMAP_THRESHOLD if heap is None else heap
        self.varied = False
        self._first: Any = None

    def observe(self, batch: Any, tokens: float) -> None:
        """Called after every optimizer step with its batch and scored-token count."""
        if self.off:
            return
        if not self.varied:
            key = (_shapes(batch), tokens)
            if self._first is None:
                self._first = key
                return
            if key == self._first:
                return
            self.varied = True
            if self.heap != RELEASE:
                self.off = True  # pinned once, for the rest of the process
                steady_heap(self.heap)
                return
        release_heap()
