"""Request bodies: OpenAI's (the fields this server honours; others a client sends are ignored) and the zoo's.

Types are strict enough that a wrong type is a 400 naming the field (`max_tokens: "ten"`), not a crash.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: StrictStr


class StreamOptions(BaseModel):
    include_usage: StrictBool = False


class Sampling(Body):
    """What every generation request shares."""

    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: StrictInt = Field(1, ge=1, le=8)
    stop: StrictStr | list[StrictStr] | None = None
    seed: StrictInt | None = None
    stream: StrictBool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s]


class CompletionRequest(Sampling):
    prompt: StrictStr | list[StrictStr]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: Any = None


class ChatRequest(Sampling):
    messages: list[ChatMessage]
    index: StrictStr | None = None  # the zoo's: answer from the top `k` passages of this served index (RAG)
    k: StrictInt = Field(4, ge=1, le=20)


class EmbeddingRequest(Body):
    input: StrictStr | list[StrictStr]
    encoding_format: Literal["float", "base64"] = "float"


class TranslateRequest(Body):
    text: StrictStr
    beam_size: StrictInt = Field(5, ge=1, le=16)
    n_best: StrictInt = Field(1, ge=1, le=16)
    max_tokens: StrictInt | None = Field(None, ge=1)


class FillMaskRequest(Body):
    text: StrictStr
    top_k: StrictInt = Field(5, ge=1, le=50)


class ClassifyRequest(Body):
    input: StrictStr | list[StrictStr]


class SearchRequest(Body):
    query: StrictStr
    k: StrictInt = Field(5, ge=1, le=100)


class AttentionRequest(Body):
    text: StrictStr
