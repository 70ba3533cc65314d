"""The HTTP server: OpenAI-style chat and text completions with a per-request preference, the model list, health,
Prometheus metrics and the playground, on FastAPI; :func:`run_server` runs it under uvicorn and drains in-flight
requests on SIGTERM/SIGINT (new requests get 503 meanwhile)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from moalign.errors import MoalignError
from moalign.preference import PreferenceError
from moalign.serve.batcher import Batcher, Job, QueueFull, async_emitter
from moalign.serve.metrics import ServerMetrics
from moalign.serve.model import ServedModel
from moalign.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_id,
    completion_response,
    error_param,
    usage,
)

logger = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """How the server runs and what it accepts.

    Parameters:
        host, port: where it listens (loopback by default).
        api_key_env: name of an environment variable holding the API key; when set, every ``/v1`` request needs
            ``Authorization: Bearer KEY``.
        max_batch_size: most requests decoded together in one batch.
        batch_window_ms: how long the first request of a batch waits for others to join it.
        max_queue: most requests waiting; beyond it requests get 429 with ``Retry-After``.
        request_timeout_s: a request still unanswered after this long gets 504.
        max_prompt_tokens: longest prompt accepted, in tokens.
        max_tokens_limit: largest ``max_tokens`` a request may ask for.
        default_max_tokens: ``max_tokens`` of a request that names none.
        shutdown_timeout_s: how long a shutdown waits for in-flight requests.
        max_body_bytes: largest request body read.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str | None = None
    max_batch_size: int = 16
    batch_window_ms: float = 10.0
    max_queue: int = 256
    request_timeout_s: float = 120.0
    max_prompt_tokens: int = 2048
    max_tokens_limit: int = 1024
    default_max_tokens: int = 256
    shutdown_timeout_s: float = 30.0
    max_body_bytes: int = 4 * 2**20

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise MoalignError(f"--api-key-env {self.api_key_env}: that environment variable is not set or empty")
        return key


class ServerState:
    """What the routes share: the model, the batcher, the metrics, and whether the server is draining."""

    def __init__(self, served: ServedModel, config: ServeConfig):
        self.served, self.config = served, config
        self.api_key = config.api_key()
        self.metrics = ServerMetrics()
        self.batcher = Batcher(served, self.metrics, max_batch_size=config.max_batch_size,
                               batch_window_s=config.batch_window_ms / 1000, max_queue=config.max_queue)
        self.draining = False
        # Rendering a chat template and tokenizing a long prompt take milliseconds: a thread of their own keeps
        # them off the event loop (other requests keep streaming) and tokenizes one request at a time.
        self.tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moalign-tokenize")

    async def encode(self, encode: Callable[[Any], list[int]], items: Sequence[Any]) -> list[list[int]]:
        """``[encode(item) for item in items]``, run on the tokenizer thread."""
        return await asyncio.get_running_loop().run_in_executor(self.tokenizer_thread,
                                                                lambda: [encode(item) for item in items])


def create_app(served: ServedModel, config: ServeConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``served``."""
    config = config or ServeConfig()
    state = ServerState(served, config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state.batcher.start()
        yield
        state.batcher.close()
        state.tokenizer_thread.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="moalign", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.moalign = state

    routes = {"/", "/health", "/metrics", "/v1/models", "/v1/front", "/v1/chat/completions", "/v1/completions"}

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        state.metrics.record_response(request.url.path if request.url.path in routes else "other", error.status)
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(404)
    async def not_found(request: Request, _: Exception):
        return await api_error(request, APIError(404, f"no route {request.method} {request.url.path}",
                                                 code="not_found"))

    @app.exception_handler(405)
    async def wrong_method(request: Request, _: Exception):
        return await api_error(request, APIError(405, f"{request.method} is not allowed on {request.url.path}"))

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path.startswith("/v1/"):
            if state.draining:
                return await api_error(request, APIError(503, "the server is shutting down", code="shutting_down"))
            if state.api_key is not None:
                given = request.headers.get("authorization", "")
                scheme, _, token = given.partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.api_key.encode()):
                    return await api_error(request, APIError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                                             code="invalid_api_key"))
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return resources.files("moalign.serve").joinpath("playground.html").read_text(encoding="utf-8")

    @app.get("/health")
    async def health():
        return {"status": "draining" if state.draining else "ok", "model": served.name,
                "queue_depth": state.batcher.depth}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics():
        state.metrics.queue_depth = state.batcher.depth
        return state.metrics.render()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served.name, "object": "model", "created": 0,
                                            "owned_by": "moalign", **served.describe()}]}

    @app.get("/v1/front")
    async def front():
        if served.front is None:
            raise APIError(404, "this model was started without an eval report (moalign serve --front REPORT)",
                           code="not_found")
        return served.front

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _parse(request, ChatCompletionRequest)
        return await _complete(request, body, await state.encode(served.encode_chat, [body.conversation()]), chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _parse(request, CompletionRequest)
        return await _complete(request, body, await state.encode(served.encode_text, body.prompts()), chat=False)

    async def _parse(request: Request, model_type):
        from pydantic import ValidationError

        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_body_bytes:
            raise APIError(413, f"the body has {declared} bytes; this server takes at most {config.max_body_bytes}")
        raw = await request.body()
        if len(raw) > config.max_body_bytes:
            raise APIError(413, f"the body has {len(raw)} bytes; this server takes at most {config.max_body_bytes}")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise APIError(400, f"the body is not valid JSON ({error})") from None
        if not isinstance(data, dict):
            raise APIError(400, "the body must be a JSON object")
        try:
            body = model_type.model_validate(data)
        except ValidationError as error:
            # of a union's failed branches, the one that got furthest into the value says what is wrong
            first = max(error.errors(include_url=False), key=lambda e: len(e["loc"]))
            param = error_param(tuple(first["loc"]))
            raise APIError(400, f"{param or 'body'}: {first['msg']}", param=param) from None
        if body.model != served.name:
            raise APIError(404, f"model {body.model!r} is not served here; this server serves {served.name!r}",
                           param="model", code="model_not_found")
        return body

    async def _complete(request: Request, body, prompts: list[list[int]], *, chat: bool):
        endpoint = request.url.path
        try:
            preference = served.preference(body.preference)
        except PreferenceError as error:
            raise APIError(400, str(error), param="preference") from None
        if len(prompts) > config.max_batch_size:
            raise APIError(400, f"{len(prompts)} prompts in one request; this server takes at most "
                           f"{config.max_batch_size}", param="prompt")
        for index, ids in enumerate(prompts):
            if len(ids) > config.max_prompt_tokens:
                param = "messages" if chat else ("prompt" if len(prompts) == 1 else f"prompt[{index}]")
                raise APIError(400, f"the prompt has {len(ids)} tokens; this server takes at most "
                               f"{config.max_prompt_tokens}", param=param, code="context_length_exceeded")
        max_tokens = body.requested_max_tokens() or config.default_max_tokens
        tokens_param = "max_completion_tokens" if chat and body.max_completion_tokens else "max_tokens"
        if max_tokens > config.max_tokens_limit:
            raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {config.max_tokens_limit}",
                           param=tokens_param)
        context = served.context_length
        if context is not None and max(len(ids) for ids in prompts) + max_tokens > context:
            raise APIError(400, f"the prompt ({max(len(ids) for ids in prompts)} tokens) and max_tokens ({max_tokens}) "
                           f"exceed the model's {context} positions", param=tokens_param,
                           code="context_length_exceeded")
        seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        deadline = time.monotonic() + config.request_timeout_s
        jobs = [Job(prompt_ids=ids, preference=preference, max_tokens=max_tokens, temperature=float(body.temperature),
                    top_p=float(body.top_p), seed=seed + index, stop=body.stop or [], strip=chat, stream=body.stream,
                    deadline=deadline, emit=async_emitter(loop, events, index)) for index, ids in enumerate(prompts)]
        try:
            for job in jobs:
                state.batcher.submit(job)
        except QueueFull:
            for job in jobs:
                job.cancelled.set()
            raise APIError(429, f"the server is busy ({config.max_queue} requests queued); retry shortly",
                           kind="rate_limit_error", code="queue_full", headers={"Retry-After": "1"}) from None
        rid = completion_id("chatcmpl" if chat else "cmpl")
        shown_preference = preference.tolist() if preference is not None else None
        prompt_tokens = sum(len(p) for p in prompts)
        if body.stream:  # counted in flight from its first byte (a client gone before then never starts it)
            stream = _stream(jobs, events, deadline, rid, chat, body.include_usage, prompt_tokens, endpoint)
            return StreamingResponse(stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        state.metrics.in_flight += 1
        try:
            answers = await _collect(jobs, events, deadline)
        finally:
            state.metrics.in_flight -= 1
        state.metrics.record_response(endpoint, 200, prompt_tokens)
        build = chat_response if chat else completion_response
        return build(rid, served.name, answers, prompt_tokens, shown_preference)

    async def _next_event(jobs: list[Job], events: asyncio.Queue, deadline: float) -> tuple[int, tuple]:
        try:
            return await asyncio.wait_for(events.get(), timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        except asyncio.TimeoutError:
            for job in jobs:
                job.cancelled.set()
            return -1, ("error", 504, "the request timed out")

    async def _collect(jobs: list[Job], events: asyncio.Queue, deadline: float) -> list[tuple[str, str, int]]:
        answers: dict[int, tuple[str, str, int]] = {}
        while len(answers) < len(jobs):
            index, event = await _next_event(jobs, events, deadline)
            if event[0] == "error":
                for job in jobs:
                    job.cancelled.set()
                raise APIError(event[1], event[2], code="timeout" if event[1] == 504 else None)
            if event[0] == "done":
                answers[index] = (event[1], event[2], event[3])
        return [answers[i] for i in range(len(jobs))]

    async def _stream(jobs: list[Job], events: asyncio.Queue, deadline: float, rid: str, chat: bool,
                      include_usage: bool, prompt_tokens: int, endpoint: str) -> AsyncIterator[str]:
        created, status, completion_tokens = int(time.time()), 200, 0
        state.metrics.in_flight += 1
        try:
            if chat:
                for index in range(len(jobs)):
                    yield _sse(chat_chunk(rid, served.name, created, {"role": "assistant", "content": ""}, None, index))
            pending = set(range(len(jobs)))
            while pending:
                index, event = await _next_event(jobs, events, deadline)
                if event[0] == "error":
                    status = event[1]
                    yield _sse(APIError(event[1], event[2]).body())
                    return
                if event[0] == "delta":
                    chunk = (chat_chunk(rid, served.name, created, {"content": event[1]}, None, index) if chat
                             else completion_chunk(rid, served.name, created, event[1], None, index))
                else:
                    pending.discard(index)
                    completion_tokens += event[3]
                    chunk = (chat_chunk(rid, served.name, created, {}, event[2], index) if chat
                             else completion_chunk(rid, served.name, created, "", event[2], index))
                yield _sse(chunk)
            if include_usage:
                yield _sse({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": created, "model": served.name, "choices": [],
                            "usage": usage(prompt_tokens, completion_tokens)})
            yield "data: [DONE]\n\n"
        finally:
            for job in jobs:
                job.cancelled.set()  # a no-op for finished jobs; stops the rows of a client that went away
            state.metrics.in_flight -= 1
            state.metrics.record_response(endpoint, status, prompt_tokens)

    return app


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def run_server(served: ServedModel, config: ServeConfig) -> None:
    """Serve ``served`` with uvicorn until SIGINT/SIGTERM, then answer 503 to new requests, let in-flight ones
    finish (up to ``shutdown_timeout_s``) and exit; a second signal exits at once."""
    import uvicorn

    app = create_app(served, config)
    state: ServerState = app.state.moalign

    class DrainingServer(uvicorn.Server):
        drain_deadline = math.inf

        def handle_exit(self, sig: int, frame: Any) -> None:
            if state.draining:
                self.should_exit = self.force_exit = True
                return
            logger.info("shutting down: finishing %d in-flight request(s), refusing new ones", state.metrics.in_flight)
            state.draining = True
            self.drain_deadline = time.monotonic() + config.shutdown_timeout_s

        async def on_tick(self, counter: int) -> bool:
            if state.draining and (state.metrics.in_flight <= 0 or time.monotonic() > self.drain_deadline):
                self.should_exit = True
            return await super().on_tick(counter)

    server = DrainingServer(uvicorn.Config(app, host=config.host, port=config.port, log_level="info",
                                           timeout_graceful_shutdown=config.shutdown_timeout_s))
    server.run()
