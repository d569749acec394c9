"""Token ids in, text pieces out, as a model generates them: for streaming a reply to a terminal or a client.

    stream = TextStream(tokenizer, stops=["\\nUser:"])
    for token in tokens:
        print(stream.push(token), end="")      # "" while a character or a possible stop string is incomplete
        if stream.stopped:                     # a stop string appeared: the text before it was given, not it
            break
    print(stream.flush())                      # what was held back, once generation is over

Each new piece is decoded with the ids of the piece before as context (so the space a sentencepiece piece starts
with, or a byte-level BPE's multi-byte character, comes out right), so the work per token is that of the last two
pieces, not of the whole reply. A piece that would end inside a UTF-8 character (byte-level tokenizers decode half
a character to U+FFFD) is held back until the character is complete, and so is text that may turn out to be the
start of a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TextStream"]


class TextStream:
    """The text of the tokens pushed so far, handed out in pieces (see the module's docstring)."""

    def __init__(self, tokenizer, stops: Sequence[str] = ()) -> None:
        self.tokenizer, self.stops = tokenizer, [s for s in stops if s]
        self.ids: list[int] = []
        self.text = ""  # the decoded text of ids[:_given]
        self._start = self._given = 0  # ids[_start:_given]: the last decoded piece, context for the next
        self.sent = 0  # characters of self.text handed out
        self.stopped = False

    def _new_text(self) -> str | None:
        done = self.tokenizer.decode(self.ids[self._start:self._given])
        text = self.tokenizer.decode(self.ids[self._start:])
        return text[len(done):] if text.startswith(done) else None

    def _decode(self, final: bool) -> None:
        piece = self._new_text()
        if piece and (final or not piece.endswith("\ufffd")):  # an incomplete character waits for its bytes
            self._start, self._given = self._given, len(self.ids)
            self.text += piece

    def push(self, token: int) -> str:
        """The new text that ``token`` makes safe to show; sets ``stopped`` when a stop string appeared (the text
        up to it is returned, the stop string and what follows are not)."""
        self.ids.append(int(token))
        self._decode(final=False)
        return self._release(final=False)

    def flush(self) -> str:
        """What is left to show once generation ended (a character that never completed included)."""
        self._decode(final=True)
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        if self.stopped:
            return ""
        look_from = max(0, self.sent - max((len(s) for s in self.stops), default=0))
        hits = [i for i in (self.text.find(s, look_from) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            return self._take(min(hits))
        held = 0 if final else max((k for s in self.stops for k in range(1, len(s)) if self.text.endswith(s[:k])),
                                   default=0)
        return self._take(len(self.text) - held)

    def _take(self, end: int) -> str:
        piece = self.text[self.sent:end] if end > self.sent else ""
        self.sent = max(self.sent, end)
        return piece
