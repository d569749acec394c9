"""One thread per served model: continuous batching of generation requests, and every other use of the model.

A decoder-only model decodes all its running requests together, one token per step, with one KV cache:

    engine = Engine(model, max_batch=32, max_queue=64)
    request = engine.generate(prompt_ids, max_tokens=20, on_event=print)   # from any thread
    request.cancel()                                                        # e.g. the client went away

A new request is prefilled alone (its own batch-1 cache) and joins the running batch at the next step
(`KVCache.stack` left-pads the shorter caches); a finished or cancelled one leaves it at once
(`cache.reorder`, then `trim`). Every row keeps its own positions and sees only its own tokens, so a
greedy answer is the one the request gets alone. Any other work on the model (embeddings, attention
maps, translation) goes through `engine.call(fn)` and runs on the same thread between two steps: one
model is never used by two threads, and the queue bound covers all of it (`QueueFull` past
`max_queue` waiting jobs).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from ..generation import sampler
from ..modules import KVCache


class QueueFull(RuntimeError):
    """More jobs are waiting for this model than the server accepts."""


@dataclass
class GenerationRequest:
    """One sequence to continue. `temperature` 0 is greedy; `on_event(token_id, finish_reason)` is called on
    the engine's thread for each new token (finish_reason None), then once with (None, "stop" | "length")."""

    prompt: list[int]
    max_tokens: int
    on_event: Callable[[int | None, str | None], None]
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_ids: frozenset[int] = frozenset()
    generated: list[int] = field(default_factory=list)
    _cancelled: bool = False
    _generator: torch.Generator | None = None

    def cancel(self) -> None:
        """Leave the batch at the next step (thread-safe: a flag the engine reads)."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class Engine:
    """The thread that owns one model (see the module's docstring). `max_batch` rows decode at once."""

    def __init__(self, model: torch.nn.Module, *, max_batch: int = 32, max_queue: int = 64, name: str = "model"):
        self.model = model
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._waiting: collections.deque[GenerationRequest | tuple[Callable[[], Any], Future]] = collections.deque()
        self._active: list[GenerationRequest] = []
        self._cache: KVCache | None = None
        self._last: torch.Tensor | None = None  # (B,): the token each active row feeds next
        self._wake = threading.Condition()
        self._closed = False
        self.steps = 0  # batched decoding steps so far (for tests and stats)
        self.max_rows_seen = 0
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._thread.start()

    # -- from any thread --------------------------------------------------------------------------------------
    def generate(self, prompt: list[int], max_tokens: int, on_event: Callable[[int | None, str | None], None],
                 **options: Any) -> GenerationRequest:
        """Queue a generation (options: temperature, top_p, seed, stop_ids); raises QueueFull."""
        if not prompt:
            raise ValueError("the prompt has no tokens")
        request = GenerationRequest(list(prompt), max_tokens, on_event, **options)
        self._put(request)
        return request

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn()` on the model's thread between two decoding steps; its result or exception in a Future."""
        future: Future = Future()
        self._put((fn, future))
        return future

    @property
    def running(self) -> int:
        """Requests decoding now."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _put(self, job: GenerationRequest | tuple[Callable[[], Any], Future]) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are waiting for this model already; retry later")
            self._waiting.append(job)
            self._wake.notify()

    # -- the engine's thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and not self._waiting and not self._active:
                    self._wake.wait()
                if self._closed:
                    break
                jobs = self._take_jobs()
            try:
                with torch.inference_mode():
                    self._admit(jobs)
                    if self._active:
                        self._step()
            except Exception as err:  # a failing model must not kill the thread: fail what was running
                for request in self._active:
                    _notify(request, None, f"error: {type(err).__name__}: {err}")
                self._active, self._cache, self._last = [], None, None
        for request in self._active:
            _notify(request, None, "cancelled")

    def _take_jobs(self) -> list:
        """Calls always; generation requests while the batch has room (the rest wait for a later step)."""
        jobs, room = [], self.max_batch - len(self._active)
        kept: collections.deque = collections.deque()
        while self._waiting:
            job = self._waiting.popleft()
            if isinstance(job, GenerationRequest):
                if job.cancelled:
                    continue
                if room <= 0:
                    kept.append(job)
                    continue
                room -= 1
            jobs.append(job)
        self._waiting.extendleft(reversed(kept))
        return jobs

    def _admit(self, jobs: list) -> None:
        caches, firsts = [], []
        for job in jobs:
            if not isinstance(job, GenerationRequest):
                fn, future = job
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as err:  # noqa: B036 - handed to the caller
                        future.set_exception(err)
                continue
            try:
                cache, token = self._prefill(job)
            except Exception as err:  # this request fails; the batch goes on
                _notify(job, None, f"error: {type(err).__name__}: {err}")
                continue
            if self._emit(job, token):
                caches.append(cache)
                firsts.append(token)
                self._active.append(job)
        if caches:
            if self._cache is not None:
                caches.insert(0, self._cache)
            self._cache = KVCache.stack(caches)
            first = torch.tensor(firsts, dtype=torch.long, device=self._cache.device)
            self._last = first if self._last is None else torch.cat((self._last, first))
            self.max_rows_seen = max(self.max_rows_seen, len(self._active))

    def _prefill(self, request: GenerationRequest) -> tuple[KVCache, int]:
        """The request's prompt through the model alone (its own batch-1 cache) and its first token."""
        device = next(self.model.parameters()).device
        if request.seed is not None:
            request._generator = torch.Generator(device=device).manual_seed(request.seed)
        cache = self.model.init_cache(1)
        logits = self.model.decode_step(torch.tensor([request.prompt], device=device), cache)
        return cache, int(self._choose(logits, [request])[0])

    def _step(self) -> None:
        self._drop([i for i, r in enumerate(self._active) if r.cancelled])
        if not self._active:
            return
        logits = self.model.decode_step(self._last[:, None], self._cache)
        tokens = self._choose(logits, self._active)
        self.steps += 1
        done = [i for i, (request, token) in enumerate(zip(self._active, tokens.tolist(), strict=True))
                if not self._emit(request, token)]
        self._last = tokens
        self._drop(done)

    def _choose(self, logits: torch.Tensor, requests: list[GenerationRequest]) -> torch.Tensor:
        """The next token of each row: argmax for greedy rows, a draw from the filtered distribution else.
        Padding is never generated, unless it is one of the row's stop ids (a checkpoint that pads with its end
        of turn must still end a turn: `generation.iter_tokens` keeps it the same way)."""
        logits = logits.float()
        pad = self.model.config.pad_id
        rows = [i for i, request in enumerate(requests) if pad not in request.stop_ids]
        logits[rows, pad] = float("-inf")
        tokens = logits.argmax(dim=-1)
        for i, request in enumerate(requests):
            if request.temperature > 0:
                top_p = request.top_p if request.top_p < 1.0 else None
                tokens[i] = sampler(request.temperature, None, top_p, request._generator)(logits[i : i + 1])[0]
        return tokens

    def _emit(self, request: GenerationRequest, token: int) -> bool:
        """Hand `token` to the request; False when the request is finished with it."""
        if token in request.stop_ids:
            _notify(request, None, "stop")
            return False
        request.generated.append(token)
        _notify(request, token, None)
        if len(request.generated) >= request.max_tokens:
            _notify(request, None, "length")
            return False
        return not request.cancelled

    def _drop(self, rows: list[int]) -> None:
        if not rows:
            return
        leaving = set(rows)
        keep = [i for i in range(len(self._active)) if i not in leaving]
        self._active = [self._active[i] for i in keep]
        if not keep:
            self._cache, self._last = None, None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self._cache.device)
        self._cache.reorder(index)
        self._cache.trim()
        self._last = self._last.index_select(0, index)


def _notify(request: GenerationRequest, token: int | None, finish: str | None) -> None:
    try:
        request.on_event(token, finish)
    except Exception:  # the listener's failure (a closed loop) must not stop the batch
        request.cancel()
