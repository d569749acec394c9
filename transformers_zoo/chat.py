"""A conversation with a decoder-only chat model: the history rendered by the tokenizer's chat template, the
reply streamed as text while it is generated, the history kept within the model's context.

    session = ChatSession(model, tokenizer, system="Be brief.", sampling=Sampling(temperature=0))
    for piece in session.reply("What is a transformer?"):
        print(piece, end="", flush=True)      # text pieces as tokens come; a Notice says what was done

A reply ends at one of the template's stop ids (end of turn, EOS) or after ``max_new_tokens``. When the
rendered conversation no longer leaves room for a reply, the oldest turns are dropped (never the system
prompt) and a :class:`Notice` says so. The KV cache of the previous turn is kept: the next prompt only feeds
the tokens after the prefix it shares with what the cache holds (the whole history, usually), so a turn costs
its own tokens, not the conversation's. :func:`interact` is the terminal loop of the ``chat`` command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .generation import iter_tokens, sampler
from .tokenizers.chat import ConversationError, encode_chat, stop_ids, template_of
from .tokenizers.stream import TextStream

__all__ = ["ChatSession", "Notice", "Sampling", "TextStream", "interact", "reply_room"]


@dataclass(frozen=True)
class Sampling:
    """How a reply is chosen: ``temperature`` 0 is greedy; ``top_k`` / ``top_p`` filter the distribution
    (None: off); at most ``max_new_tokens``; ``seed`` makes sampling reproducible."""

    temperature: float = 0.7
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0: greedy)")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")

    def chooser(self, generator: torch.Generator) -> Callable[[torch.Tensor], torch.Tensor]:
        if self.temperature == 0:
            return lambda logits: logits.argmax(dim=-1)
        return sampler(self.temperature, self.top_k, self.top_p, generator)


def reply_room(sampling: Sampling, context: int) -> int:
    """Tokens a prompt leaves free for the reply: max_new_tokens, at most half the context."""
    return min(sampling.max_new_tokens, max(context // 2, 1))


@dataclass(frozen=True)
class Notice:
    """Something the session did that the user should know (turns dropped, a reply cut at its budget)."""

    text: str


class ChatSession:
    """A multi-turn conversation with ``model`` (a decoder with ``init_cache``/``decode_step``) through the
    chat template of ``tokenizer``; ``context`` defaults to the model's ``max_len``."""

    def __init__(self, model, tokenizer, system: str | None = None, sampling: Sampling = Sampling(),
                 context: int | None = None) -> None:
        template_of(tokenizer)  # a tokenizer without a template: one line that says how to get one
        self.model, self.tokenizer, self.sampling = model, tokenizer, sampling
        self.system = system
        self.context = context or model.config.max_len
        self.stops = stop_ids(tokenizer)
        self.messages: list[dict[str, str]] = []  # user and assistant turns, oldest first
        self.device = next(model.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(sampling.seed)
        self._cache = None
        self._cached: list[int] = []  # the ids whose keys/values the cache holds

    def reset(self) -> None:
        """Forget the turns (the system prompt stays; so does the cache of its tokens)."""
        self.messages = []

    def set_system(self, text: str | None) -> None:
        self.system = text or None

    def conversation(self) -> list[dict[str, str]]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.messages

    @property
    def reply_room(self) -> int:
        return reply_room(self.sampling, self.context)

    def prompt_ids(self) -> tuple[list[int], int]:
        """The conversation's prompt ids, dropping the oldest turns (from a user message up to the next one)
        until the reply has room, and how many messages were dropped. A last user message that does not fit
        even alone is a :class:`ConversationError`."""
        messages = list(self.messages)
        while True:
            head = [{"role": "system", "content": self.system}] if self.system else []
            ids = encode_chat(self.tokenizer, head + messages)
            if len(ids) + self.reply_room <= self.context:
                dropped, self.messages = len(self.messages) - len(messages), messages
                return ids, dropped
            users = [i for i, m in enumerate(messages) if m["role"] == "user"]
            if len(users) < 2:
                raise ConversationError(
                    f"the message is {len(ids)} tokens with the template and system prompt; the context holds "
                    f"{self.context}, {self.reply_room} of them kept for the reply")
            del messages[: users[1]]

    def _feed(self, ids: list[int]):
        """The cache holding all of ``ids`` but what must still be fed, and those ids: the prefix shared with
        the cache is kept (one token at least is fed, its logits start the reply)."""
        shared = 0
        if self._cache is not None:
            for a, b in zip(self._cached, ids, strict=False):
                if a != b:
                    break
                shared += 1
        shared = min(shared, len(ids) - 1)
        if self._cache is None or shared == 0:
            self._cache, shared = self.model.init_cache(1), 0
        else:
            self._cache.truncate(shared)
        return self._cache, ids[shared:]

    def reply(self, user_text: str) -> Iterator[str | Notice]:
        """Add the user's message and generate the assistant's, yielding text pieces as tokens come (and
        :class:`Notice`\\ s). The reply joins the history when it ends, stopped early included (a closed
        generator: Ctrl-C)."""
        self.messages.append({"role": "user", "content": user_text})
        try:
            ids, dropped = self.prompt_ids()
        except ConversationError:
            self.messages.pop()
            raise
        budget = min(self.sampling.max_new_tokens, self.context - len(ids))
        stream = TextStream(self.tokenizer)
        stepping, ended, fed = True, False, 0  # fed: reply tokens the cache holds
        try:
            if dropped:
                yield Notice(f"dropped the {dropped} oldest messages to fit the context of {self.context} tokens")
            cache, new = self._feed(ids)
            prompt = torch.tensor([new], device=self.device)
            tokens = iter_tokens(self.model, cache, prompt, self.sampling.chooser(self.generator), budget,
                                 stop_ids=self.stops)
            while True:
                stepping = True  # a model step may stop half way (Ctrl-C): the cache is then not to be trusted
                token = next(tokens, None)
                stepping = False
                if token is None:
                    break
                fed = len(stream.ids)  # the cache holds the prompt and the reply up to this token (not it)
                if int(token[0]) in self.stops:
                    ended = True
                    break
                piece = stream.push(int(token[0]))
                if piece:
                    yield piece
            rest = stream.flush()
            if rest:
                yield rest
            if not ended:
                yield Notice(f"the reply reached its budget of {budget} tokens")
        finally:
            if stepping:
                self._cache, self._cached = None, []
            else:
                self._cached = ids + stream.ids[:fed]
            self.messages.append({"role": "assistant", "content": self.tokenizer.decode(stream.ids)})


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def interact(session: ChatSession, read: Callable[[str], str] = input, out: Callable[[str], object] = _write,
             note: Callable[[str], object] = _note) -> int:
    """The terminal loop: a prompt, the reply streamed through ``out``, notices through ``note``; ``/reset``,
    ``/system TEXT``, ``/help``; end of input (Ctrl-D) returns 0; Ctrl-C during a reply stops that reply and
    keeps the session (at the prompt it only clears the line)."""
    note("chat: /reset forgets the conversation, /system TEXT sets the system prompt, /help, Ctrl-D quits")
    while True:
        try:
            line = read(">>> ")
        except EOFError:
            out("\n")
            return 0
        except KeyboardInterrupt:
            out("\n")
            continue
        text = line.strip()
        if not text:
            continue
        if text == "/reset":
            session.reset()
            note("[conversation reset]")
        elif text == "/help":
            note("/reset: forget the turns; /system TEXT: a new system prompt (empty: none); Ctrl-C stops a "
                 "reply; Ctrl-D quits")
        elif text.split()[0] == "/system":
            session.set_system(text[len("/system"):].strip())
            session.reset()
            note(f"[system prompt: {session.system or 'none'}; conversation reset]")
        else:
            say(session, text, out, note)


def say(session: ChatSession, text: str, out: Callable[[str], object] = _write, note: Callable[[str], object] = _note,
        raise_errors: bool = False) -> None:
    """One turn: the reply streamed through ``out``, notices through ``note``; Ctrl-C stops the reply. A message
    that does not fit the context is noted (or raised, ``raise_errors``) and the session goes on."""
    pieces, later, written = session.reply(text), [], False
    try:
        for piece in pieces:
            if isinstance(piece, Notice) and written:  # after text: it waits for the end of the line
                later.append(piece.text)
            elif isinstance(piece, Notice):
                note(f"[{piece.text}]")
            else:
                out(piece)
                written = True
        out("\n")
        for notice in later:
            note(f"[{notice}]")
    except KeyboardInterrupt:
        pieces.close()
        out("\n")
        note("[reply stopped]")
    except ConversationError as err:
        if raise_errors:
            raise
        note(f"error: {err}")
