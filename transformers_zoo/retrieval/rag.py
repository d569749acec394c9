"""Answers grounded in documents: the passages retrieved for a question go into the chat template as numbered
sources, the model answers citing them as ``[n]``.

    hits = search(encoder, "idx/", question, k=4)[0]
    prompt = grounded_prompt(tokenizer, question, hits, context=model.config.max_len, reply_room=256)
    for piece in answer(model, tokenizer, prompt, Sampling(temperature=0)):
        print(piece, end="")                     # text pieces (and chat.Notice's)
    print(format_sources(prompt.sources, cited=citations(text, len(prompt.sources))))

The sources go into the system message (after the instructions), the question is the user message; a template
that refuses a system message gets both in the user message. When the question and the sources leave no room
for a reply in the context, the lowest-ranked sources are dropped (``prompt.dropped`` says how many); a
question that does not fit with even one source is a one-line :class:`ConversationError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ..chat import ChatSession, Notice, Sampling
from ..tokenizers import Tokenizer
from ..tokenizers.chat import ConversationError, encode_chat
from .index import Hit

__all__ = ["INSTRUCTIONS", "GroundedPrompt", "answer", "citations", "format_sources", "grounded_prompt"]

INSTRUCTIONS = ("Answer the question using only the numbered sources below. Cite the sources you use as [1], [2], "
                "... after the sentences they support. If the sources do not answer the question, say so.")
CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class GroundedPrompt:
    """The messages to render (``system`` None: all in ``user``), the sources they hold (numbered from 1, best
    first) and how many retrieved passages were dropped to fit the context."""

    system: str | None
    user: str
    sources: list[Hit] = field(default_factory=list)
    dropped: int = 0

    @property
    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return head + [{"role": "user", "content": self.user}]

    @property
    def notice(self) -> str | None:
        if not self.dropped:
            return None
        total = len(self.sources) + self.dropped
        return (f"dropped the {self.dropped} lowest-ranked of {total} passages to fit the context "
                f"(kept {len(self.sources)})")


def numbered(hits: Sequence[Hit]) -> str:
    return "\n\n".join(f"[{n}] {' '.join(hit.text.split())}" for n, hit in enumerate(hits, start=1))


def _prompt(question: str, hits: Sequence[Hit], in_system: bool, dropped: int) -> GroundedPrompt:
    sources = f"{INSTRUCTIONS}\n\nSources:\n{numbered(hits)}"
    if in_system:
        return GroundedPrompt(sources, question, list(hits), dropped)
    return GroundedPrompt(None, f"{sources}\n\nQuestion: {question}", list(hits), dropped)


def _accepts_system(tokenizer: Tokenizer) -> bool:
    try:
        encode_chat(tokenizer, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
        return True
    except ConversationError:  # the template's raise_exception: no system role (Gemma, Mistral v0.1)
        return False


def grounded_prompt(tokenizer: Tokenizer, question: str, hits: Sequence[Hit], context: int, reply_room: int
                    ) -> GroundedPrompt:
    """The question with as many of ``hits`` (best first) as fit in ``context`` tokens with ``reply_room`` left
    for the answer."""
    if not question.strip():
        raise ConversationError("empty question")
    in_system = _accepts_system(tokenizer)
    room = context - reply_room
    alone = len(encode_chat(tokenizer, [{"role": "user", "content": question}]))
    if alone > room:
        raise ConversationError(f"the question is {alone} tokens with the template; the context holds {context}, "
                                f"{reply_room} of them kept for the answer")
    for m in range(len(hits), 0, -1):  # the lowest-ranked sources go first
        prompt = _prompt(question, hits[:m], in_system, len(hits) - m)
        if len(encode_chat(tokenizer, prompt.messages)) <= room:
            return prompt
    if not hits:
        raise ConversationError("no passages to answer from (an empty index?)")
    raise ConversationError(f"the question with its best passage does not fit the context of {context} tokens "
                            f"({reply_room} kept for the answer): index shorter passages (--passage-tokens)")


def answer(model, tokenizer: Tokenizer, prompt: GroundedPrompt, sampling: Sampling | None = None,
           context: int | None = None) -> Iterator[str | Notice]:
    """The model's answer to ``prompt``, streamed as :meth:`ChatSession.reply` streams it, after a notice of the
    passages dropped (if any)."""
    if prompt.notice:
        yield Notice(prompt.notice)
    session = ChatSession(model, tokenizer, system=prompt.system, sampling=sampling or Sampling(), context=context)
    yield from session.reply(prompt.user)


def citations(text: str, n_sources: int) -> list[int]:
    """The source numbers ``text`` cites (``[n]``, 1 <= n <= n_sources), in order of first citation."""
    seen: list[int] = []
    for match in CITATION.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= n_sources and n not in seen:
            seen.append(n)
    return seen


def format_sources(sources: Sequence[Hit], cited: Sequence[int] = (), width: int = 300) -> str:
    """The sources as printed after an answer: ``[n] id (score s): text``; a ``*`` marks those the answer
    cites."""
    lines = ["Sources:"]
    for n, hit in enumerate(sources, start=1):
        text = " ".join(hit.text.split())
        text = text if len(text) <= width else text[: width - 3] + "..."
        lines.append(f"[{n}]{'*' if n in cited else ''} {hit.id} (score {hit.score:.3f}): {text}")
    return "\n".join(lines)
