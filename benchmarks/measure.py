"""How things are measured: interleaved timing, peak training memory, FLOP counts and the matmul peak.

Timing: every contender runs `warmup` times, then `rounds` rounds of one call each, alternating the order
(A B, B A, ...) so neither always runs first; each call is timed alone (CUDA synchronised before and after).
A contender's figure is the median over rounds, and a ratio is the median of the per-round ratios: the two
calls of a round run back to back under the same machine load, so slow drifts in load cancel out.

Peak training memory counts tensor bytes, as `torch.cuda.max_memory_allocated` does: the bytes that stay
resident (weights, buffers, optimizer state) plus the highest point reached by the allocations of one
training step (gradients, activations, temporaries), read on CPU from the allocator events that
`torch.profiler` records with `profile_memory=True` and on CUDA from the allocator's peak statistic.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timings:
    """Seconds per call of every contender, one entry per round (same order of rounds for all); `cpu`: the
    same calls' CPU seconds of this process (`time.process_time`), steadier than wall time on a shared machine."""

    seconds: dict[str, list[float]]
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def cpu_timings(self) -> Timings:
        return Timings(self.cpu)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def rate(self, name: str, work: float) -> float:
        """Work per second at the median time (`work` done by one call)."""
        return work / self.median(name)

    def ratio(self, ours: str, peer: str, our_work: float = 1.0, peer_work: float = 1.0) -> float:
        """Median over rounds of (our work per second) / (peer's work per second): > 1 means ours is faster."""
        pairs = zip(self.seconds[ours], self.seconds[peer], strict=True)
        return statistics.median((our_work / o) / (peer_work / p) for o, p in pairs)


def interleave(calls: dict[str, Callable[[], object]], device: torch.device, warmup: int, rounds: int) -> Timings:
    """Time each of `calls` `rounds` times, interleaved, after `warmup` untimed calls of each."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    synchronize(device)
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            calls[name]()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return Timings(seconds, cpu)


# -- training ------------------------------------------------------------------------------------------------
class Trainer:
    """One training step of `model`: forward + loss (`loss_fn(model)`), backward, AdamW step.

    Both sides of a comparison get the same optimizer (`torch.optim.AdamW`, torch's default implementation
    for the device), gradients set to None between steps, and the same bf16 autocast: on CUDA only unless
    `autocast` says otherwise (benchmarks/amp_cpu.py compares a CPU step with and without it).
    """

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], device: torch.device,
                 autocast: bool | None = None):
        self.model = model.train()
        self.loss_fn = loss_fn
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.autocast = device.type == "cuda" if autocast is None else autocast
        self.device_type = device.type

    def step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.loss_fn(self.model)
        loss.backward()
        self.optimizer.step()


def _storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def resident_bytes(trainer: Trainer) -> int:
    """Bytes kept between steps: parameters, buffers and optimizer state (tied tensors counted once)."""
    state = [v for s in trainer.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return _storage_bytes([*trainer.model.parameters(), *trainer.model.buffers(), *state])


def peak_training_bytes(trainer: Trainer, device: torch.device) -> int:
    """Peak tensor bytes of one training step (run after warm-up, so the optimizer state exists)."""
    trainer.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    resident = resident_bytes(trainer)
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        trainer.step()
        synchronize(device)
        return resident + torch.cuda.max_memory_allocated(device) - before
    return resident + _profiled_peak(trainer.step)


def _profiled_peak(fn: Callable[[], object]) -> int:
    """Highest sum of bytes allocated (and not yet freed) by `fn` on the CPU, from the profiler's events.
    Frees of tensors allocated before profiling are not reported, so the count starts at 0 with `fn`."""
    from torch.profiler import ProfilerActivity, profile

    with quiet_native_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch._C._autograd.DeviceType.CPU
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu]
    running = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        running += event.nbytes()
        peak = max(peak, running)
    return peak


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code writes to stderr (the profiler's start/stop lines and its warning about
    tensors allocated before it started) while it runs; Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# -- FLOPs ---------------------------------------------------------------------------------------------------
def training_flops_per_token(matmul_params: int, n_layers: int, d_model: int, seq: int) -> float:
    """PaLM's count (Chowdhery et al. 2022, appendix B): 6 N + 12 L d T per token, forward and backward.

    N = parameters that multiply activations (every weight matrix, the output projection included; the
    position table, biases and norm gains add no matmul FLOPs but are few); 12 L d T = the attention
    scores and weighted sums of L layers over T keys, counted in full (no saving for the causal half)."""
    return 6.0 * matmul_params + 12.0 * n_layers * d_model * seq


def matmul_call(device: torch.device, size: int, dtype: torch.dtype) -> tuple[Callable[[], object], float]:
    """A `size x size` matmul to time (into a preallocated output) and its FLOPs (2 n^3)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    return (lambda: torch.matmul(a, b, out=out)), 2.0 * size**3
