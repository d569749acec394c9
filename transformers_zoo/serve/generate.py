"""From the engine's tokens to text deltas on the event loop: detokenizing as tokens arrive, stop strings, usage.

`tokenizers.stream.TextStream` turns the tokens into text pieces that never split a character and never show
text that may turn out to be the start of a stop string. `Generation` runs one engine request per choice and yields
`(choice, text, finish_reason)` on the event loop; leaving it early (the client went away) cancels every
request at once, so their rows leave the batch at the next step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..tokenizers.stream import TextStream
from .engine import Engine, GenerationRequest, QueueFull


@dataclass
class Choice:
    """One answer being generated: its engine request, its text, how many tokens and why it ended."""

    index: int
    stream: TextStream
    request: GenerationRequest | None = None
    finish_reason: str | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.stream.ids)


class Generation:
    """The choices of one API request, queued together on `engine` (all or none: `QueueFull` before any is
    queued when the queue cannot take them all); `choices` are numbered 0, 1, ... in order, `options` are each
    choice's sampling options. Create it on the
    event loop; `events()` yields `(choice, text piece, finish_reason or None)` as tokens arrive and ends when
    every choice has finished; `cancel()` (called when `events()` is left early: the client went away) frees
    their rows at the next step."""

    def __init__(self, engine: Engine, choices: list[Choice], prompts: list[list[int]], max_tokens: int,
                 options: list[dict]):
        if engine.waiting + len(choices) > engine.max_queue:
            raise QueueFull(f"{engine.waiting} requests are waiting for this model already; retry later")
        self.choices = choices
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue = asyncio.Queue()
        try:
            for choice, prompt, given in zip(choices, prompts, options, strict=True):
                choice.request = engine.generate(prompt, max_tokens, self._listener(choice), **given)
        except BaseException:
            self.cancel()
            raise

    def _listener(self, choice: Choice):
        return lambda token, finish: self._loop.call_soon_threadsafe(self._events.put_nowait, (choice, token, finish))

    def cancel(self) -> None:
        for choice in self.choices:
            if choice.request is not None:
                choice.request.cancel()

    async def events(self) -> AsyncIterator[tuple[Choice, str, str | None]]:
        running = len(self.choices)
        try:
            while running:
                # everything that arrived meanwhile goes out together: under load (the loop slower than the
                # engine) a choice's tokens share one piece instead of costing an event each
                arrived = [await self._events.get()]
                while not self._events.empty():
                    arrived.append(self._events.get_nowait())
                pieces: dict[int, str] = {}
                for choice, token, finish in arrived:
                    if choice.finish_reason is not None:
                        continue  # tokens after a stop string, still in flight
                    if token is not None:
                        pieces[choice.index] = pieces.get(choice.index, "") + choice.stream.push(token)
                        if choice.stream.stopped:
                            choice.request.cancel()
                            choice.finish_reason, running = "stop", running - 1
                        continue
                    if finish not in ("stop", "length"):
                        raise RuntimeError(f"generation failed ({finish})")
                    choice.finish_reason, running = finish, running - 1
                    pieces[choice.index] = pieces.get(choice.index, "") + choice.stream.flush()
                for index, piece in pieces.items():
                    choice = self.choices[index]
                    if piece or choice.finish_reason is not None:
                        yield choice, piece, choice.finish_reason
        finally:
            self.cancel()
