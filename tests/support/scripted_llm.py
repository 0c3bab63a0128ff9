"""A scripted OpenAI-compatible HTTP server for tests (aiohttp on 127.0.0.1, random port).

The real `openai` client (and anything else speaking the protocol) talks to it over HTTP. Each
POST to a completion endpoint takes the next scripted action from a queue; once the queue is empty a
default responder answers. Every request is recorded with its path, JSON body and headers.

    server.script(ScriptedError(429, headers={"Retry-After": "0"}), ScriptedReply("hello"))

Usage numbers are real cl100k_base token counts (`count_tokens`) of the prompt and reply text, so
tests can check accounting against `server.count_tokens(...)`.

Register as a plugin (`pytest_plugins = ["tests.support.scripted_llm"]`) to get the
`scripted_llm` fixture.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import random
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web

from bot.retrieval.tokens import count_tokens as _cl100k_count

# --------------------------------------------------------------------------- scripted actions


@dataclass
class ScriptedReply:
    """A successful completion. Streams `text` in `chunk_chars`-sized deltas, `chunk_delay_s` apart."""

    text: str
    finish_reason: str = "stop"
    chunk_chars: int = 4
    chunk_delay_s: float = 0.0
    prompt_tokens: int | None = None  # override the computed usage
    completion_tokens: int | None = None


@dataclass
class ScriptedError:
    """An HTTP error in OpenAI's error format (or `body` verbatim if given)."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    message: str = "scripted error"
    body: str | None = None


@dataclass
class ScriptedDelay:
    """Wait `seconds` before answering (with `then`, or the default responder) — to trigger timeouts."""

    seconds: float
    then: ScriptedAction | None = None


@dataclass
class ScriptedTruncatedStream:
    """Stream `text` without a finish_reason or `[DONE]`, then close the connection.

    For a non-streaming request, the JSON body is cut in half instead.
    """

    text: str = "this answer stops mid"
    chunk_chars: int = 4


@dataclass
class ScriptedMalformed:
    """HTTP 200 with a body that is not a usable completion (invalid JSON by default).

    Pass e.g. `body='{"id": "x", "object": "chat.completion"}'` for valid JSON without choices.
    For streaming requests the body is sent as one SSE `data:` event.
    """

    body: str = '{"id": "cmpl-broken", "choices": [{"text": '


ScriptedAction = ScriptedReply | ScriptedError | ScriptedDelay | ScriptedTruncatedStream | ScriptedMalformed
Responder = Callable[[dict[str, Any]], "str | ScriptedAction"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    json: Any
    headers: dict[str, str]


# --------------------------------------------------------------------------- helpers


def prompt_text(body: dict[str, Any]) -> str:
    """The text a request asks about: the prompt, or the messages' contents joined by newlines."""
    if "messages" in body:
        parts = []
        for message in body.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(str(content or ""))
        return "\n".join(parts)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else "\n".join(map(str, prompt))


def last_user_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        return str(users[-1].get("content", "")) if users else ""
    return prompt_text(body)


def echo_responder(body: dict[str, Any]) -> str:
    return f"echo: {last_user_text(body)}"


def fake_embedding(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from a hash of `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _chunks(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


# --------------------------------------------------------------------------- the server


class ScriptedLLMServer:
    def __init__(
        self,
        *,
        responder: Responder = echo_responder,
        embedding_dimensions: int = 384,
        model: str = "scripted-model",
        token_counter: Callable[[str], int] | None = None,
    ) -> None:
        self.responder = responder
        self.embedding_dimensions = embedding_dimensions
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._completion_queue: deque[ScriptedAction] = deque()
        self._embedding_queue: deque[ScriptedAction] = deque()
        self._count = token_counter or (lambda text: _cl100k_count(text, "cl100k_base"))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ---- scripting

    def script(self, *actions: ScriptedAction) -> None:
        """Queue actions for the next requests to /v1/chat/completions and /v1/completions."""
        self._completion_queue.extend(actions)

    def script_embeddings(self, *actions: ScriptedAction) -> None:
        """Queue actions (errors, delays, malformed bodies) for the next /v1/embeddings requests."""
        self._embedding_queue.extend(actions)

    @property
    def pending(self) -> int:
        return len(self._completion_queue) + len(self._embedding_queue)

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        # Cancel handlers whose client went away (timed-out requests) so shutdown is immediate.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- handlers

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(RecordedRequest(request.method, request.path, body, dict(request.headers)))
        return body

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "tests"}],
            }
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if not isinstance(body, dict):
            return _error_response(400, "request body must be a JSON object")
        action: ScriptedAction | str | None = (
            self._completion_queue.popleft() if self._completion_queue else None
        )
        while isinstance(action, ScriptedDelay):
            await asyncio.sleep(action.seconds)
            action = action.then
        if action is None:
            action = self.responder(body)
        if isinstance(action, str):
            action = ScriptedReply(action)
        return await self._perform(request, body, action)

    async def _perform(
        self, request: web.Request, body: dict[str, Any], action: ScriptedAction
    ) -> web.StreamResponse:
        chat = request.path.endswith("/chat/completions")
        stream = bool(body.get("stream"))
        if isinstance(action, ScriptedError):
            return _error_response(action.status, action.message, action.headers, action.body)
        if isinstance(action, ScriptedMalformed):
            if stream:
                response = await _start_sse(request)
                await response.write(f"data: {action.body}\n\n".encode())
                await response.write(b"data: [DONE]\n\n")
                await response.write_eof()
                return response
            return web.Response(status=200, text=action.body, content_type="application/json")
        if isinstance(action, ScriptedTruncatedStream):
            if not stream:
                full = json.dumps(self._full_body(body, chat, ScriptedReply(action.text)))
                return web.Response(status=200, text=full[: len(full) // 2], content_type="application/json")
            response = await _start_sse(request)
            for piece in _chunks(action.text, action.chunk_chars):
                await response.write(_sse(self._chunk(chat, piece, None)))
            # Drop the connection mid-stream: no finish_reason, no [DONE], no chunked terminator.
            if request.transport is not None:
                request.transport.close()
            return response
        assert isinstance(action, ScriptedReply)
        if not stream:
            return web.json_response(self._full_body(body, chat, action))
        response = await _start_sse(request)
        pieces = _chunks(action.text, action.chunk_chars) or [""]
        for index, piece in enumerate(pieces):
            if index and action.chunk_delay_s:
                await asyncio.sleep(action.chunk_delay_s)
            await response.write(_sse(self._chunk(chat, piece, None, first=index == 0)))
        await response.write(_sse(self._chunk(chat, "", action.finish_reason)))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_chunk = self._chunk(chat, "", None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage(body, action)
            await response.write(_sse(usage_chunk))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _usage(self, body: dict[str, Any], reply: ScriptedReply) -> dict[str, int]:
        prompt = reply.prompt_tokens if reply.prompt_tokens is not None else self._count(prompt_text(body))
        completion = (
            reply.completion_tokens if reply.completion_tokens is not None else self._count(reply.text)
        )
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _full_body(self, body: dict[str, Any], chat: bool, reply: ScriptedReply) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": reply.finish_reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": reply.text}
        else:
            choice["text"] = reply.text
        return {
            "id": "cmpl-scripted",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [choice],
            "usage": self._usage(body, reply),
        }

    def _chunk(
        self, chat: bool, text: str, finish_reason: str | None, *, first: bool = False
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
        if chat:
            delta: dict[str, Any] = {"content": text} if text else {}
            if first:
                delta["role"] = "assistant"
            choice["delta"] = delta
        else:
            choice["text"] = text
        return {
            "id": "cmpl-scripted",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [choice],
        }

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if not isinstance(body, dict) or "input" not in body:
            return _error_response(400, "'input' is required")
        action = self._embedding_queue.popleft() if self._embedding_queue else None
        while isinstance(action, ScriptedDelay):
            await asyncio.sleep(action.seconds)
            action = action.then
        if isinstance(action, ScriptedError):
            return _error_response(action.status, action.message, action.headers, action.body)
        if isinstance(action, ScriptedMalformed):
            return web.Response(status=200, text=action.body, content_type="application/json")
        raw_inputs = body["input"]
        if isinstance(raw_inputs, str) or (raw_inputs and isinstance(raw_inputs[0], int)):
            raw_inputs = [raw_inputs]
        texts = [item if isinstance(item, str) else json.dumps(item) for item in raw_inputs]
        dimensions = int(body.get("dimensions") or self.embedding_dimensions)
        base64_format = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text, dimensions)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode("ascii")
                if base64_format
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(self._count(text) for text in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or self.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _error_response(
    status: int, message: str, headers: dict[str, str] | None = None, body: str | None = None
) -> web.Response:
    text = (
        body
        if body is not None
        else json.dumps(
            {"error": {"message": message, "type": "scripted_error", "param": None, "code": str(status)}}
        )
    )
    return web.Response(status=status, text=text, content_type="application/json", headers=headers or {})


async def _start_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


@pytest_asyncio.fixture
async def scripted_llm() -> AsyncIterator[ScriptedLLMServer]:
    async with ScriptedLLMServer() as server:
        yield server
