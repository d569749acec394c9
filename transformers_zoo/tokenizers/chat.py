"""Conversations as token ids: chat templates (Jinja, rendered as ``transformers`` renders them) and the chat
tokens our own tokenizers gain for them.

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ids = encode_chat(tokenizer, messages)                 # the prompt, ending where the assistant's turn starts
    ids, trained = encode_training(tokenizer, messages)    # a whole conversation; trained[i]: an assistant token
    stop = stop_ids(tokenizer)                             # generation ends at any of these (end of turn, EOS)

A tokenizer has a ``chat_template`` (a :class:`ChatTemplate`, or None). An imported checkpoint brings its own
(``chat_template`` in ``tokenizer_config.json``, or ``chat_template.jinja``), rendered by a sandboxed ``jinja2``
environment set up as ``transformers`` sets it up (trim_blocks, lstrip_blocks, loop controls, its ``tojson``,
``raise_exception``, ``strftime_now``, the special tokens as variables), so the ids equal
``AutoTokenizer.apply_chat_template(messages, add_generation_prompt=True)`` on the same files. A tokenizer
trained here gets ours from :func:`with_chat_tokens`: ChatML (``<|im_start|>role\\n...<|im_end|>\\n``, as Qwen2
and SmolLM2 use), its two markers added as single ids after the vocabulary (:class:`ChatTokenizer`). The
template is saved with the tokenizer (``chat_template.jinja`` + ``chat_template.json``) and read back by
``load_tokenizer``; it is not part of the tokenizer's fingerprint, so runs saved before templates load.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..corpora import DataError, PathLike
from .base import Tokenizer, ids_list, load_tokenizer, register

__all__ = ["CHATML", "ROLES", "ChatTemplate", "ChatTokenizer", "ConversationError", "check_conversation",
           "encode_chat", "encode_training", "end_of_turn", "stop_ids", "with_chat_tokens"]

ROLES = ("system", "user", "assistant")
TEMPLATE_FILE, TOKENS_FILE = "chat_template.jinja", "chat_template.json"

#: Our template: ChatML. Every turn is ``<|im_start|>{role}\n{content}<|im_end|>\n``; the generation prompt
#: opens the assistant's turn. No default system prompt (a conversation may bring one).
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
CHAT_PIECES = ("<|im_start|>", "<|im_end|>")


class ConversationError(ValueError):
    """A conversation that cannot be rendered (a bad role, no content, no assistant turn to train on): one line."""


def check_conversation(messages: Any, where: str = "conversation") -> list[dict[str, str]]:
    """``messages`` as a list of ``{"role", "content"}`` dicts with known roles and string content, or a
    :class:`ConversationError` naming ``where`` (a file and line, a request) and the message at fault."""
    if not isinstance(messages, list) or not messages:
        raise ConversationError(f"{where}: expected a non-empty list of messages, got {_short(messages)}")
    checked = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ConversationError(f"{where}: message {i} is {_short(message)}, expected an object with role and "
                                    "content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ConversationError(f"{where}: message {i} has role {role!r}; known roles: {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise ConversationError(f"{where}: message {i} ({role}) has content {_short(content)}, expected a string")
        checked.append({"role": role, "content": content})
    return checked


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list, str)) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@lru_cache(maxsize=32)
def _compile(source: str):
    """The template compiled in a sandbox set up as ``transformers`` sets up its own (templates from a hub are
    untrusted code): the same whitespace control, extensions, filters and globals, so the text is the same."""
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise DataError("chat templates need jinja2 (pip install jinja2)") from None

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as err:
        raise DataError(f"chat template does not compile: {err.message} (line {err.lineno})") from None


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template and the special-token strings it may use (``bos_token``, ``eos_token``, ...)."""

    source: str
    tokens: dict[str, str] = field(default_factory=dict)

    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = False, **variables) -> str:
        """The conversation as text. ``variables`` reach the template as ``transformers``' keyword arguments do
        (e.g. ``tools``, ``enable_thinking``)."""
        try:
            return _compile(self.source).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                                **{**self.tokens, **variables})
        except Exception as err:  # raise_exception() in the template, or a template bug: one line either way
            if isinstance(err, DataError):
                raise
            raise ConversationError(f"chat template refused the conversation: {err}") from None

    @classmethod
    def from_hf(cls, directory: PathLike) -> ChatTemplate | None:
        """A checkpoint's template: ``chat_template.jinja``, else ``chat_template`` in ``tokenizer_config.json``
        (a string, or a list of named templates: the one named ``default``); None when it has none."""
        directory = Path(directory)
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        special_map = directory / "special_tokens_map.json"
        tokens = {}
        for name, value in {**(json.loads(special_map.read_text()) if special_map.is_file() else {}),
                            **config}.items():  # bos_token, eos_token, ...: a string or an AddedToken dict
            if name.endswith("_token") and isinstance(value, (str, dict)):
                content = value.get("content") if isinstance(value, dict) else value
                if isinstance(content, str):
                    tokens[name] = content
        source = None
        if (directory / TEMPLATE_FILE).is_file():
            source = (directory / TEMPLATE_FILE).read_text()
        elif isinstance(config.get("chat_template"), str):
            source = config["chat_template"]
        elif isinstance(config.get("chat_template"), list):
            named = {t.get("name"): t.get("template") for t in config["chat_template"] if isinstance(t, dict)}
            source = named.get("default")
            if source is None:
                raise DataError(f"chat_template lists {sorted(named)} but no 'default'", config_path)
        return None if source is None else cls(source, tokens)

    def save(self, directory: PathLike) -> None:
        directory = Path(directory)
        (directory / TEMPLATE_FILE).write_text(self.source)
        (directory / TOKENS_FILE).write_text(json.dumps(self.tokens, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, directory: PathLike) -> ChatTemplate | None:
        """What :meth:`save` wrote into ``directory``, or None when it holds no template."""
        directory = Path(directory)
        if not (directory / TEMPLATE_FILE).is_file():
            return None
        tokens_path = directory / TOKENS_FILE
        tokens = json.loads(tokens_path.read_text()) if tokens_path.is_file() else {}
        return cls((directory / TEMPLATE_FILE).read_text(), tokens)


def template_of(tokenizer: Tokenizer) -> ChatTemplate:
    """The tokenizer's chat template, or a one-line error that says how to get one."""
    template = getattr(tokenizer, "chat_template", None)
    if template is None:
        raise ConversationError(
            f"the {tokenizer.kind} tokenizer has no chat template (a base checkpoint, or a run trained without chat "
            "tokens): instruction-tune it with recipes/sft.py, which adds ours (ChatML), or give a template file")
    return template


def encode_chat(tokenizer: Tokenizer, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True,
                **variables) -> list[int]:
    """The ids of the rendered conversation (no specials added beyond what the template writes): the prompt a
    chat model continues, as ``apply_chat_template(messages, add_generation_prompt=True)`` gives it."""
    text = template_of(tokenizer).render(check_conversation(list(messages)), add_generation_prompt, **variables)
    return tokenizer.encode(text)


def encode_training(tokenizer: Tokenizer, messages: Sequence[dict[str, str]], where: str = "conversation"
                    ) -> tuple[list[int], list[bool]]:
    """A whole conversation as ids and, for each, whether it is trained (an assistant token: the reply and
    the end of its turn). Each assistant reply is the text the template adds after the generation prompt, and
    the prompt before it is encoded as :func:`encode_chat` encodes it, so training sees the same ids as
    generation. A template that rewrites earlier turns when a later one comes (the text of a prefix is not a
    prefix of the whole) is refused."""
    messages = check_conversation(list(messages), where)
    if not any(m["role"] == "assistant" for m in messages):
        raise ConversationError(f"{where}: no assistant message, so nothing to train on")
    template = template_of(tokenizer)
    ids: list[int] = []
    trained: list[bool] = []
    done = ""  # the text encoded so far
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = template.render(messages[:i], add_generation_prompt=True)
        turn = template.render(messages[: i + 1])
        if not prompt.startswith(done) or not turn.startswith(prompt):
            raise ConversationError(f"{where}: the chat template renders earlier turns differently once message {i} "
                                    "is added, so the assistant's tokens cannot be told apart")
        for text, is_reply in ((prompt[len(done):], False), (turn[len(prompt):], True)):
            piece = tokenizer.encode(text) if text else []
            ids += piece
            trained += [is_reply] * len(piece)
        done = turn
    whole = template.render(messages)
    if not whole.startswith(done):
        raise ConversationError(f"{where}: the chat template renders the conversation's end differently")
    rest = tokenizer.encode(whole[len(done):]) if len(whole) > len(done) else []
    return ids + rest, trained + [False] * len(rest)


def end_of_turn(tokenizer: Tokenizer) -> int | None:
    """The special id that closes an assistant turn under the tokenizer's template (``<|im_end|>``,
    ``<|eot_id|>``, ...): the first special id the template writes after a reply. None if it writes none."""
    sentinel = "zq0sentinel"
    template = template_of(tokenizer)
    user = {"role": "user", "content": "hi"}
    text = template.render([user, {"role": "assistant", "content": sentinel}])
    tail = text[text.rfind(sentinel) + len(sentinel):] if sentinel in text else ""
    return next((i for i in tokenizer.encode(tail) if i in tokenizer.special_ids), None)


def stop_ids(tokenizer: Tokenizer) -> set[int]:
    """Ids that end a reply: the end-of-turn id and the tokenizer's EOS."""
    stops = {end_of_turn(tokenizer), tokenizer.eos_id}
    stops.discard(None)
    return stops


@register
class ChatTokenizer(Tokenizer):
    """One of our tokenizers plus the chat markers as single ids after its vocabulary, with our template.

    ``encode`` splits the text at the markers and encodes the rest with the base tokenizer, so a marker is
    always one id and never text. The base's special ids (PAD, BOS, EOS, ...) stay what they are, so a model
    trained with the base reads the same ids and gains two embedding rows.
    """

    kind = "chat"
    model_file = "chat_tokens.json"

    def __init__(self, base: Tokenizer, pieces: Sequence[str] = CHAT_PIECES, template: ChatTemplate | None = None):
        if isinstance(base, ChatTokenizer):
            raise DataError("this tokenizer already has chat tokens")
        self.base, self.pieces = base, tuple(pieces)
        self.piece_ids = {p: base.vocab_size + i for i, p in enumerate(self.pieces)}
        self._split = re.compile("(" + "|".join(re.escape(p) for p in self.pieces) + ")")
        for name in ("pad_id", "unk_id", "bos_id", "eos_id", "mask_id", "cls_id", "sep_id"):
            setattr(self, name, getattr(base, name))
        self.special_ids = frozenset(base.special_ids) | frozenset(self.piece_ids.values())
        self.chat_template = template or ChatTemplate(CHATML, self._template_tokens())

    def _template_tokens(self) -> dict[str, str]:
        names = {"bos_token": self.bos_id, "eos_token": self.eos_id, "pad_token": self.pad_id}
        return {name: self.base.id_to_piece(i) for name, i in names.items() if i is not None}

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(self.pieces)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in self._split.split(text):
            if part in self.piece_ids:
                ids.append(self.piece_ids[part])
            elif part:
                ids += self.base.encode(part)
        return ids

    def encode_prompt(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, ids: Iterable[int]) -> str:
        return self.base.decode([i for i in ids_list(ids) if i < self.base.vocab_size])

    def id_to_piece(self, i: int) -> str:
        i = int(i)
        return self.pieces[i - self.base.vocab_size] if i >= self.base.vocab_size else self.base.id_to_piece(i)

    def normalize(self, text: str) -> str:
        return self.base.normalize(text)

    def special_tokens(self) -> dict[str, int]:
        return {**self.base.special_tokens(), **self.piece_ids}

    def _model_bytes(self) -> bytes:
        return json.dumps({"pieces": list(self.pieces), "base_fingerprint": self.base.fingerprint}).encode()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.kind.encode() + b"\0" + self._model_bytes()).hexdigest()

    def save(self, directory: PathLike) -> Path:
        directory = super().save(directory)
        self.base.save(directory / "base")
        return directory

    @classmethod
    def _from_model_bytes(cls, data: bytes, settings: dict[str, Any]) -> ChatTokenizer:
        raise NotImplementedError  # read by load() below: the base tokenizer is a folder of its own

    @classmethod
    def load_from(cls, directory: Path, data: bytes) -> ChatTokenizer:
        spec = json.loads(data)
        base = load_tokenizer(directory / "base")
        if base.fingerprint != spec.get("base_fingerprint"):
            raise DataError("the base tokenizer does not match chat_tokens.json", directory / "base")
        return cls(base, spec["pieces"], ChatTemplate.load(directory))


def with_chat_tokens(tokenizer: Tokenizer) -> Tokenizer:
    """A tokenizer that can render conversations: itself when it has a template (an instruct checkpoint's), else
    ours (:class:`ChatTokenizer`: ChatML markers added, the model gains ``len(CHAT_PIECES)`` embedding rows)."""
    if getattr(tokenizer, "chat_template", None) is not None:
        return tokenizer
    return ChatTokenizer(tokenizer)
