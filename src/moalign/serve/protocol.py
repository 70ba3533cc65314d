"""The OpenAI-compatible request and response bodies, with moalign's extra ``preference`` field.

Requests are validated field by field (unknown fields are refused, so a misspelt ``preferance`` is an error, not
a silently ignored wish); every failure becomes an OpenAI-style error body naming the field.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

Number = StrictFloat | StrictInt
Preference = list[Number] | dict[StrictStr, Number]


class APIError(Exception):
    """An error answered with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers or {}
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: StrictStr
    preference: Preference | None = Field(None, description="weights in objective order, or by objective name")
    max_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    temperature: Annotated[Number, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[Number, Field(gt=0, le=1)] = 1.0
    seed: StrictInt | None = None
    stop: StrictStr | Annotated[list[Annotated[StrictStr, Field(min_length=1)]], Field(max_length=4)] | None = None
    stream: StrictBool = False
    stream_options: dict[Literal["include_usage"], StrictBool] | None = None
    n: Literal[1] = 1
    user: StrictStr | None = None
    # accepted at their no-op values, as OpenAI clients may send them
    frequency_penalty: Literal[0, 0.0] = 0
    presence_penalty: Literal[0, 0.0] = 0
    logprobs: Literal[False] | None = None

    @field_validator("stop")
    @classmethod
    def _non_empty_stop(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        values = [value] if isinstance(value, str) else value
        if any(not v for v in values):
            raise ValueError("stop strings must not be empty")
        return values

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: StrictStr


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"]
    content: StrictStr | list[TextPart]
    name: StrictStr | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(_Request):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[StrictInt, Field(ge=1)] | None = None

    def conversation(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Request):
    prompt: StrictStr | Annotated[list[StrictStr], Field(min_length=1)]
    echo: Literal[False] = False

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


def error_param(location: tuple[Any, ...]) -> str | None:
    """``("body", "messages", 0, "role")`` → ``"messages[0].role"``."""
    parts = [p for p in location if p != "body"]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not text:
            text = str(part)
        elif str(part) in {"str", "int", "float", "bool"} or "[" in str(part) or str(part).startswith(
                ("function-", "constrained-", "json-")):
            continue  # pydantic's union-member labels, not fields
        else:
            text += f".{part}"
    return text or None


# --------------------------------------------------------------------------- responses
def completion_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_response(rid: str, model: str, answers: list[tuple[str, str, int]], prompt_tokens: int,
                  preference: list[float] | None) -> dict[str, Any]:
    """A ``chat.completion`` body from ``(text, finish_reason, tokens)`` per choice."""
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": reason,
                         "logprobs": None} for i, (text, reason, _) in enumerate(answers)],
            "usage": usage(prompt_tokens, sum(n for _, _, n in answers)), "preference": preference}


def completion_response(rid: str, model: str, answers: list[tuple[str, str, int]], prompt_tokens: int,
                        preference: list[float] | None) -> dict[str, Any]:
    """A ``text_completion`` body from ``(text, finish_reason, tokens)`` per prompt."""
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "text": text, "finish_reason": reason, "logprobs": None}
                        for i, (text, reason, _) in enumerate(answers)],
            "usage": usage(prompt_tokens, sum(n for _, _, n in answers)), "preference": preference}


def chat_chunk(rid: str, model: str, created: int, delta: dict[str, str], finish_reason: str | None,
               index: int = 0) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}


def completion_chunk(rid: str, model: str, created: int, text: str, finish_reason: str | None,
                     index: int = 0) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}]}
