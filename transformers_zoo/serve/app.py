"""The HTTP app: OpenAI-compatible endpoints, the zoo's own, and the playground page, for several models.

    app = create_app([load_served("gpt", "runs/gpt")], api_key="secret")
    uvicorn.run(app, host="127.0.0.1", port=8000)

OpenAI's API (`/v1/models`, `/v1/completions`, `/v1/chat/completions` with server-sent events, `/v1/embeddings`)
so that the `openai` package and the tools built on it work unchanged; `/zoo/...` for what that API has no
word for (translate with n-best lists, fill-mask, classify, search, attention). Each model has one `Engine`:
generation is batched continuously, every other use runs between two of its steps. Errors are OpenAI's JSON
(errors.py). FastAPI + uvicorn: the ecosystem's standard ASGI pair (typed bodies, SSE through a streaming
response, a disconnect seen as a cancelled stream).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse

from ..tokenizers.stream import TextStream
from . import tasks
from .engine import Engine, QueueFull
from .errors import APIError, install_handlers
from .generate import Choice, Generation
from .models import ATTENTION, CHAT, CLASSIFY, EMBED, FILL_MASK, GENERATE, SEARCH, TRANSLATE, ServedModel
from .schemas import (
    AttentionRequest,
    ChatRequest,
    ClassifyRequest,
    CompletionRequest,
    EmbeddingRequest,
    FillMaskRequest,
    Sampling,
    SearchRequest,
    TranslateRequest,
)

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default for /v1/completions; chat defaults to the room left


class Guard:
    """ASGI middleware in front of the API paths: the API key (401) and the body size (413, read before the
    app sees it: a Content-Length over the limit is refused without reading, a chunked body once it is)."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int):
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/zoo/")):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key is not None:
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                what = "missing" if not given else "incorrect"
                error = APIError(401, f"{what} API key: send it as the header 'Authorization: Bearer KEY'",
                                 code="invalid_api_key")
                return await error.response()(scope, receive, send)
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await self._too_large(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    async def _too_large(self, scope, receive, send):
        error = APIError(413, f"the request body is larger than {self.max_body_bytes} bytes", code="body_too_large")
        return await error.response()(scope, receive, send)


def create_app(models: list[ServedModel], *, api_key: str | None = None, max_queue: int = 64, max_batch: int = 32,
               max_body_bytes: int = 1_000_000) -> FastAPI:
    """The app serving `models` (by name); `max_queue` waiting requests per model (429 past it), `max_batch`
    rows decoded at once."""
    served = {m.name: m for m in models}
    engines = {m.name: Engine(m.model, max_batch=max_batch, max_queue=max_queue, name=m.name) for m in models}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for engine in engines.values():
            engine.close()

    app = FastAPI(title="transformers_zoo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.models, app.state.engines = served, engines
    install_handlers(app)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)

    def model_for(name: str, capability: str) -> ServedModel:
        if name not in served:
            raise APIError(404, f"the model {name!r} does not exist; served: {', '.join(served)}", param="model",
                           code="model_not_found")
        m = served[name]
        if capability not in m.capabilities:
            extra = " (its tokenizer has no chat template: use /v1/completions)" if capability == CHAT else ""
            raise APIError(400, f"the model {name!r} ({m.family}) does not serve {capability}{extra}; it serves "
                                f"{', '.join(m.capabilities)}", param="model", code="unsupported_model")
        return m

    async def on_engine(m: ServedModel, fn: Callable[[], Any], param: str | None = None) -> Any:
        try:
            return await asyncio.wrap_future(engines[m.name].call(fn))
        except QueueFull as err:
            raise APIError(429, str(err), code="queue_full", type="rate_limit_error") from None
        except ValueError as err:
            raise APIError(400, str(err).splitlines()[0], param=param) from None

    # -- OpenAI-compatible ------------------------------------------------------------------------------------
    @app.get("/v1/models")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(m) for m in served.values()]}

    @app.get("/v1/models/{name}")
    def get_model(name: str) -> dict[str, Any]:
        if name not in served:
            raise APIError(404, f"the model {name!r} does not exist", param="model", code="model_not_found")
        return model_card(served[name])

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        m = model_for(body.model, GENERATE)
        texts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if not texts:
            raise APIError(400, "prompt: give at least one prompt", param="prompt")
        prompts = [m.tokenizer.encode_prompt(t) or start_ids(m) for t in texts]
        stop_ids = frozenset(i for i in (m.tokenizer.eos_id,) if i is not None)
        return await respond(m, body, prompts, stop_ids, "prompt", request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        m = model_for(body.model, CHAT)
        from ..tokenizers import chat

        messages = [msg.model_dump(exclude_none=True) for msg in body.messages]
        if not messages:
            raise APIError(400, "messages: the conversation is empty (give at least one message)", param="messages")
        sources = None
        try:
            messages = chat.check_conversation(messages)
            if body.index is not None:
                messages, sources = await grounded(m, body, messages)
            prompt = chat.encode_chat(m.tokenizer, messages, add_generation_prompt=True)
        except ValueError as err:
            raise APIError(400, f"messages: {str(err).splitlines()[0]}", param="messages") from None
        return await respond(m, body, [prompt], frozenset(chat.stop_ids(m.tokenizer)), "messages", request, chat=True,
                             extra={} if sources is None else {"sources": sources})

    async def grounded(m: ServedModel, body: ChatRequest, messages: list[dict]) -> tuple[list[dict], list[dict]]:
        """RAG (retrieval/rag.py): the last user message answered from the top ``body.k`` passages of the index
        ``body.index``, put into the conversation as numbered sources; returns the messages and the sources."""
        from ..retrieval.rag import grounded_prompt

        idx = model_for(body.index, SEARCH)
        if messages[-1]["role"] != "user":
            raise APIError(400, "messages: with an index the last message is the user's question", param="messages")
        question = messages[-1]["content"]
        hits = await on_engine(idx, lambda: idx.index.search(idx.encoder.encode([question]), body.k)[0], "index")
        room = body.max_completion_tokens or body.max_tokens or min(256, m.context // 4)
        found = grounded_prompt(m.tokenizer, question, hits, context=m.context, reply_room=room)
        earlier = [msg for msg in messages[:-1] if msg["role"] != "system"]
        system = [msg["content"] for msg in messages[:-1] if msg["role"] == "system"]
        head = [{"role": "system", "content": "\n\n".join([*system, found.system])}] if found.system else []
        sources = [{"n": n, "id": h.id, "text": h.text, "score": h.score} for n, h in enumerate(found.sources, 1)]
        return head + earlier + [{"role": "user", "content": found.user}], sources

    async def respond(m: ServedModel, body: Sampling, prompts: list[list[int]], stop_ids: frozenset[int],
                      param: str, request: Request, chat: bool, extra: dict[str, Any] | None = None):
        max_tokens = token_budget(m, body, prompts, param, chat)
        choices = [Choice(i * body.n + j, TextStream(m.tokenizer, body.stops()))
                   for i in range(len(prompts)) for j in range(body.n)]
        sampled = body.temperature > 0
        options = [dict(temperature=body.temperature, top_p=body.top_p, stop_ids=stop_ids,
                        seed=None if body.seed is None or not sampled else body.seed + c.index) for c in choices]
        try:
            generation = Generation(engines[m.name], choices, [p for p in prompts for _ in range(body.n)], max_tokens,
                                    options=options)
        except QueueFull as err:
            raise APIError(429, str(err), code="queue_full", type="rate_limit_error") from None
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        usage = functools.partial(usage_of, prompts, choices)
        header = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                  "created": int(time.time()), "model": m.name, **(extra or {})}
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(stream_events(generation, header, chat, include_usage, usage),
                                     media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        texts = await collect(generation, request)
        if chat:
            out = [{"index": c.index, "message": {"role": "assistant", "content": texts[c.index]},
                    "finish_reason": c.finish_reason, "logprobs": None} for c in choices]
        else:
            out = [{"index": c.index, "text": texts[c.index], "finish_reason": c.finish_reason, "logprobs": None}
                   for c in choices]
        return {**header, "object": "chat.completion" if chat else "text_completion", "choices": out,
                "usage": usage()}

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest):
        m = model_for(body.model, EMBED)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or any(not t for t in texts):
            raise APIError(400, "input: give one or more non-empty texts", param="input")
        vectors, n_tokens = await on_engine(m, lambda: tasks.embed(m, texts), "input")
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()
                 if body.encoding_format == "base64" else [float(x) for x in v]} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": m.name,
                "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}}

    # -- the zoo's own ------------------------------------------------------------------------------------------
    async def answer(body, capability: str, key: str, fn: Callable[[ServedModel], Any], param: str) -> dict:
        """`{"model": name, key: fn(model)}`, `fn` run on the model's engine."""
        m = model_for(body.model, capability)
        return {"model": m.name, key: await on_engine(m, lambda: fn(m), param)}

    @app.post("/zoo/translate")
    async def translate(body: TranslateRequest):
        if body.n_best > body.beam_size:
            raise APIError(400, f"n_best={body.n_best} cannot exceed beam_size={body.beam_size}", param="n_best")
        return await answer(body, TRANSLATE, "translations", lambda m: tasks.translate(
            m, body.text, body.beam_size, body.n_best, body.max_tokens), "text")

    @app.post("/zoo/fill-mask")
    async def fill_mask(body: FillMaskRequest):
        return await answer(body, FILL_MASK, "masks", lambda m: tasks.fill_mask(m, body.text, body.top_k), "text")

    @app.post("/zoo/classify")
    async def classify(body: ClassifyRequest):
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts:
            raise APIError(400, "input: give one or more texts", param="input")
        return await answer(body, CLASSIFY, "results", lambda m: tasks.classify(m, texts), "input")

    @app.post("/zoo/search")
    async def search(body: SearchRequest):
        return await answer(body, SEARCH, "hits", lambda m: tasks.search(m, body.query, body.k), "query")

    @app.post("/zoo/attention")
    async def attention(body: AttentionRequest):
        if not body.text.strip():
            raise APIError(400, "text: give some text to look at", param="text")
        out = await answer(body, ATTENTION, "maps", lambda m: tasks.attention(m, body.text), "text")
        return {"model": out["model"], **out["maps"]}

    # -- the page -----------------------------------------------------------------------------------------------
    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/static/{path:path}")
    def static(path: str) -> FileResponse:
        target = (STATIC / path).resolve()
        if not target.is_relative_to(STATIC) or not target.is_file():
            raise APIError(404, "not found", code="not_found")
        return FileResponse(target)

    return app


def usage_of(prompts: list[list[int]], choices: list[Choice]) -> dict[str, int]:
    """OpenAI's usage counts: each prompt once (however many choices it has), every generated token."""
    prompt, completion = sum(len(p) for p in prompts), sum(c.completion_tokens for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def model_card(m: ServedModel) -> dict[str, Any]:
    return {"id": m.name, "object": "model", "created": 0, "owned_by": "transformers_zoo", "family": m.family,
            "capabilities": m.capabilities, "context_length": m.context, "source": m.source}


def start_ids(m: ServedModel) -> list[int]:
    """What an empty prompt starts from: BOS, else EOS (a document boundary)."""
    tok = m.tokenizer
    first = tok.bos_id if tok.bos_id is not None else tok.eos_id
    if first is None:
        raise APIError(400, "prompt: empty, and the tokenizer has no BOS or EOS to start from", param="prompt")
    return [first]


def token_budget(m: ServedModel, body: Sampling, prompts: list[list[int]], param: str, chat: bool) -> int:
    """The tokens each choice may generate: what was asked for, refused when prompt + it exceed the context."""
    longest = max(len(p) for p in prompts)
    room = m.context - longest
    if room < 1:
        raise APIError(400, f"{param}: {longest} tokens, but the model's context is {m.context} tokens (and at "
                            "least one is needed to answer)", param=param, code="context_length_exceeded")
    asked = body.max_completion_tokens or body.max_tokens
    if asked is None:
        return room if chat else min(room, DEFAULT_COMPLETION_TOKENS)
    if asked > room:
        raise APIError(400, f"max_tokens: {asked} new tokens after a {longest}-token prompt exceed the model's "
                            f"context of {m.context} tokens (at most {room})", param="max_tokens",
                       code="context_length_exceeded")
    return asked


async def collect(generation: Generation, request: Request) -> dict[int, str]:
    """Every choice's text; cancels the generation when the client disconnects while waiting."""
    texts: dict[int, str] = {c.index: "" for c in generation.choices}

    async def drain() -> None:
        async for choice, piece, _ in generation.events():
            texts[choice.index] += piece

    task = asyncio.ensure_future(drain())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                task.result()
                return texts
            if await request.is_disconnected():
                raise APIError(400, "the client disconnected", code="client_disconnected")
    finally:
        if not task.done():
            task.cancel()
        generation.cancel()


async def stream_events(generation: Generation, header: dict[str, Any], chat: bool, include_usage: bool,
                        usage: Callable[[], dict[str, int]]) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's shape; closing the stream (a disconnect) cancels the generation."""

    def event(choices: list[dict], **extra) -> str:
        return f"data: {json.dumps({**header, 'choices': choices, **extra})}\n\n"

    try:
        if chat:
            yield event([{"index": c.index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                         for c in generation.choices])
        async for choice, piece, finish in generation.events():
            if chat:
                delta = {"content": piece} if piece else {}
                yield event([{"index": choice.index, "delta": delta, "finish_reason": finish, "logprobs": None}])
            else:
                yield event([{"index": choice.index, "text": piece, "finish_reason": finish, "logprobs": None}])
        if include_usage:
            yield event([], usage=usage())
        yield "data: [DONE]\n\n"
    except Exception as err:  # the status line is sent already: the error goes into the stream, as OpenAI does
        yield f"data: {json.dumps(APIError(500, str(err).splitlines()[0], type='server_error').body())}\n\n"
    finally:
        generation.cancel()
