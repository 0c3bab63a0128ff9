"""An OpenAI-compatible LLM client with our own retries, usage accounting and streaming.

The `openai` client's built-in retries are disabled so that every retry is logged and counted, and
so that callers see exactly two failure types: `LLMRequestError` (our request is wrong, do not
retry) and `LLMUnavailableError` (the server could not answer, fall back).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import openai
import structlog

from bot.llm.errors import LLMError, LLMRequestError, LLMStreamInterrupted, LLMUnavailableError
from bot.llm.queue import GenerationQueue
from bot.retrieval.tokens import count_tokens

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from bot.core.config import LLMSettings
    from bot.llm.models import EmbeddedModel

log = structlog.get_logger(__name__)

ApiMode = Literal["chat", "completions"]
Sleep = Callable[[float], Awaitable[None]]
# Earlier turns of the conversation sent before `user`, e.g. a worked example: (role, text) pairs,
# role "user" or "assistant".
Turns = Sequence[tuple[str, str]]

# openai refuses to build a client without a key; local servers ignore it.
_PLACEHOLDER_KEY = "no-key"
_RETRYABLE_4XX = {408, 429}


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    seconds: float
    finish_reason: str | None
    # True when the server reported no usage and the counts come from tiktoken (cl100k_base).
    usage_estimated: bool = False


@dataclass(slots=True)
class UsageTotals:
    """Running totals since the client was created: `calls` succeeded, `errors` raised to the caller,
    `retries` are extra attempts (a call that succeeded on its 3rd try adds 1 call and 2 retries)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    retries: int = 0
    estimated_calls: int = 0

    def snapshot(self) -> UsageTotals:
        return replace(self)


class MalformedResponseError(Exception):
    """The server answered 2xx but the body is not a usable completion."""


def resolve_api_mode(setting: str, *, base_model: bool) -> ApiMode:
    """`auto` means raw completions for a base model without a chat template (the embedded
    gemma-3-270m) and chat for everything else: instruction-tuned embedded models, any configured server."""
    if setting == "chat":
        return "chat"
    if setting == "completions":
        return "completions"
    if setting == "auto":
        return "completions" if base_model else "chat"
    raise ValueError(f"unknown LLM_API_MODE {setting!r}; use auto, chat or completions")


def redact_url(url: str) -> str:
    """Drop any user:password@ from a URL before it reaches a log line."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def completion_prompt(system: str, user: str, turns: Turns = (), reply_prefix: str = "") -> str:
    """The messages as one text for a completions endpoint: a blank line before each user turn,
    a line break before each assistant turn, and the reply's start (e.g. "Answer:") at the end."""
    text = system
    for role, content in [*turns, ("user", user)]:
        separator = "\n" if role == "assistant" else "\n\n"
        text = f"{text}{separator}{content}" if text else content
    return f"{text}\n{reply_prefix}" if reply_prefix else text


def _estimate_tokens(text: str) -> int:
    return count_tokens(text, "cl100k_base")


def _parse_retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (delta-seconds or HTTP date); None if absent."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class LLMClient:
    """One OpenAI-compatible endpoint, one model. Safe to share between tasks."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        api_mode: ApiMode,
        timeout_s: float,
        max_retries: int,
        temperature: float = 0.2,
        server_exit: Callable[[], str | None] | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        max_retry_after_s: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        queue: GenerationQueue | None = None,
    ) -> None:
        if api_mode not in ("chat", "completions"):
            raise ValueError(f"api_mode must be 'chat' or 'completions', not {api_mode!r}")
        self.model = model
        self.api_mode: ApiMode = api_mode
        self.base_url = base_url
        self.temperature = temperature
        self.max_retries = max_retries
        self.usage = UsageTotals()
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        # Our own embedded server: says why it is gone once it has died (None while it runs).
        self._server_exit = server_exit
        self._stream_usage_supported = True
        # Every generation waits here for a slot (bot/llm/queue.py); a client built without one
        # allows what a configured server gets by default.
        self.queue = queue or GenerationQueue(4)
        self._openai = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or _PLACEHOLDER_KEY,
            timeout=timeout_s,
            max_retries=0,
        )

    @classmethod
    def from_settings(
        cls,
        settings: LLMSettings,
        *,
        base_url: str,
        embedded: EmbeddedModel | None = None,
        server_exit: Callable[[], str | None] | None = None,
    ) -> LLMClient:
        """A client of a configured server, or (`embedded`) of our own server running that model."""
        return cls(
            base_url=base_url,
            server_exit=server_exit,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            model=settings.model,
            api_mode=resolve_api_mode(
                settings.api_mode, base_model=embedded is not None and not embedded.instruct
            ),
            # The embedded server answers one request at a time and keeps working on a request the
            # client gave up on, so a retry queues behind it: wait at least the model's own call
            # timeout (room for two generations on 2 cores) and retry at most once.
            timeout_s=max(settings.timeout_s, embedded.call_timeout_s) if embedded else settings.timeout_s,
            max_retries=min(settings.max_retries, 1) if embedded else settings.max_retries,
            temperature=settings.temperature,
            queue=GenerationQueue.from_settings(settings),
        )

    async def aclose(self) -> None:
        await self._openai.close()

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ public API

    async def generate(
        self,
        *,
        system: str,
        user: str,
        max_tokens: int,
        stop: list[str] | None = None,
        turns: Turns = (),
        reply_prefix: str = "",
    ) -> Completion:
        """`turns` go between the system message and `user`; `reply_prefix` ends a completions
        prompt (chat mode leaves it out: the chat template starts the reply)."""
        async with self.queue.generation():  # the wait for a slot is not generation time
            started = time.monotonic()
            attempt = 0
            while True:
                try:
                    response = await self._create(
                        system=system,
                        user=user,
                        max_tokens=max_tokens,
                        stop=stop,
                        stream=False,
                        turns=turns,
                        reply_prefix=reply_prefix,
                    )
                    text, finish_reason, model, usage = self._parse_response(response)
                    break
                except Exception as exc:
                    delay = self._retry_delay_or_raise(exc, attempt, operation="generate")
                    attempt += 1
                    await self._sleep(delay)
        completion = self._finish(
            text=text,
            finish_reason=finish_reason,
            model=model,
            usage=usage,
            prompt=self._prompt_text(system, user, turns, reply_prefix),
            started=started,
            attempts=attempt + 1,
        )
        return completion

    def stream(
        self,
        *,
        system: str,
        user: str,
        max_tokens: int,
        stop: list[str] | None = None,
        turns: Turns = (),
        reply_prefix: str = "",
    ) -> CompletionStream:
        """Text deltas as they arrive: `async for delta in client.stream(...)`.

        Failures before the first delta are retried like `generate`; after it, an
        `LLMStreamInterrupted` carries the partial text. `.completion` is set once the stream ends.
        """
        return CompletionStream(
            self,
            system=system,
            user=user,
            max_tokens=max_tokens,
            stop=stop,
            turns=turns,
            reply_prefix=reply_prefix,
        )

    # ------------------------------------------------------------------ internals

    def _prompt_text(self, system: str, user: str, turns: Turns = (), reply_prefix: str = "") -> str:
        if self.api_mode == "completions":
            return completion_prompt(system, user, turns, reply_prefix)
        return "\n".join([system, *(content for _, content in turns), user])

    async def _create(
        self,
        *,
        system: str,
        user: str,
        max_tokens: int,
        stop: list[str] | None,
        stream: bool,
        turns: Turns = (),
        reply_prefix: str = "",
    ) -> Any:
        options: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": self.temperature,
        }
        if stop:
            options["stop"] = stop
        if stream:
            options["stream"] = True
            if self._stream_usage_supported:
                options["stream_options"] = {"include_usage": True}
        if self.api_mode == "chat":
            messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": system}]
            for role, content in turns:
                if role == "assistant":
                    messages.append({"role": "assistant", "content": content})
                else:
                    messages.append({"role": "user", "content": content})
            messages.append({"role": "user", "content": user})
            return await self._openai.chat.completions.create(messages=messages, **options)
        prompt = completion_prompt(system, user, turns, reply_prefix)
        return await self._openai.completions.create(prompt=prompt, **options)

    def _parse_response(self, response: Any) -> tuple[str, str | None, str, Any]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise MalformedResponseError("response has no choices")
        choice = choices[0]
        if self.api_mode == "chat":
            message = getattr(choice, "message", None)
            text = getattr(message, "content", None) if message is not None else None
            if message is None or not isinstance(text, str | None):
                raise MalformedResponseError("chat choice has no message content")
        else:
            text = getattr(choice, "text", None)
            if not isinstance(text, str):
                raise MalformedResponseError("completion choice has no text")
        model = getattr(response, "model", None) or self.model
        return text or "", getattr(choice, "finish_reason", None), model, getattr(response, "usage", None)

    def _finish(
        self,
        *,
        text: str,
        finish_reason: str | None,
        model: str,
        usage: Any,
        prompt: str,
        started: float,
        attempts: int,
    ) -> Completion:
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        estimated = not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int)
        if estimated:
            prompt_tokens = _estimate_tokens(prompt)
            completion_tokens = _estimate_tokens(text)
        assert isinstance(prompt_tokens, int) and isinstance(completion_tokens, int)
        completion = Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=model,
            seconds=time.monotonic() - started,
            finish_reason=finish_reason,
            usage_estimated=estimated,
        )
        self.usage.calls += 1
        self.usage.prompt_tokens += prompt_tokens
        self.usage.completion_tokens += completion_tokens
        self.usage.estimated_calls += int(estimated)
        log.info(
            "llm.completion",
            mode=self.api_mode,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            usage_estimated=estimated,
            finish_reason=finish_reason,
            seconds=round(completion.seconds, 3),
            attempts=attempts,
        )
        return completion

    def _retry_delay_or_raise(self, exc: Exception, attempt: int, *, operation: str) -> float:
        """Seconds to wait before the next attempt, or raise the error the caller should see."""
        gone = self._server_exit() if self._server_exit is not None else None
        if gone is not None and isinstance(exc, openai.APIConnectionError):
            self.usage.errors += 1  # retrying cannot help: nothing listens any more
            log.warning("llm.unavailable", operation=operation, attempts=attempt + 1, reason=gone)
            raise LLMUnavailableError(
                f"{gone}; no answer from the model", attempts=attempt + 1, cause=exc
            ) from exc
        status = getattr(exc, "status_code", None) if isinstance(exc, openai.APIStatusError) else None
        reason = type(exc).__name__
        retry_after: float | None = None
        if isinstance(exc, openai.APIStatusError):
            if exc.status_code not in _RETRYABLE_4XX and exc.status_code < 500:
                self.usage.errors += 1
                log.warning("llm.request_rejected", operation=operation, status=status, error=_brief(exc))
                raise LLMRequestError(
                    f"LLM server rejected the request ({exc.status_code}): {_brief(exc)}",
                    status=exc.status_code,
                    cause=exc,
                ) from exc
            retry_after = _parse_retry_after(exc.response.headers)
        elif not isinstance(
            exc,
            openai.APIConnectionError  # includes APITimeoutError
            | openai.APIResponseValidationError
            | MalformedResponseError
            | json.JSONDecodeError,
        ):
            self.usage.errors += 1
            raise exc  # a bug of ours, not a server condition: let it surface unchanged

        if attempt >= self.max_retries or (retry_after is not None and retry_after > self._max_retry_after_s):
            self.usage.errors += 1
            log.warning(
                "llm.unavailable",
                operation=operation,
                attempts=attempt + 1,
                status=status,
                reason=reason,
                retry_after=retry_after,
                error=_brief(exc),
            )
            raise LLMUnavailableError(
                f"LLM server unavailable after {attempt + 1} attempt(s): {reason}: {_brief(exc)}",
                attempts=attempt + 1,
                cause=exc,
            ) from exc

        if retry_after is not None:
            delay = retry_after
        else:
            ceiling = min(self._backoff_max_s, self._backoff_base_s * (2**attempt))
            delay = random.uniform(ceiling / 2, ceiling)
        self.usage.retries += 1
        log.warning(
            "llm.retry",
            operation=operation,
            attempt=attempt + 1,
            status=status,
            reason=reason,
            delay_s=round(delay, 3),
            error=_brief(exc),
        )
        return delay


def _brief(exc: BaseException, limit: int = 300) -> str:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return message if len(message) <= limit else message[:limit] + "…"


@dataclass(slots=True)
class _StreamState:
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    model: str | None = None
    usage: Any = None


class CompletionStream:
    """Async iterator of text deltas; `completion` holds the totals after the last delta."""

    def __init__(
        self,
        client: LLMClient,
        *,
        system: str,
        user: str,
        max_tokens: int,
        stop: list[str] | None,
        turns: Turns = (),
        reply_prefix: str = "",
    ) -> None:
        self._client = client
        self._system = system
        self._user = user
        self._turns = turns
        self._reply_prefix = reply_prefix
        self._max_tokens = max_tokens
        self._stop = stop
        self.completion: Completion | None = None
        self._iterator: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        if self._iterator is None:
            self._iterator = self._run()
        return self._iterator

    async def aclose(self) -> None:
        """Stop early (e.g. the user cancelled); closes the HTTP response."""
        if self._iterator is not None and hasattr(self._iterator, "aclose"):
            await self._iterator.aclose()

    async def __aenter__(self) -> CompletionStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def collect(self) -> Completion:
        """Consume the whole stream and return its `Completion`."""
        async for _ in self:
            pass
        assert self.completion is not None
        return self.completion

    async def _run(self) -> AsyncIterator[str]:
        client = self._client
        async with client.queue.generation():  # held until the stream ends or is closed
            started = time.monotonic()
            attempt = 0
            state = _StreamState()
            while True:
                state = _StreamState()
                try:
                    async for delta in self._attempt(state):
                        yield delta
                    break
                except Exception as exc:
                    if state.parts and not isinstance(exc, LLMError):
                        client.usage.errors += 1
                        partial = "".join(state.parts)
                        log.warning(
                            "llm.stream_interrupted",
                            reason=type(exc).__name__,
                            partial_chars=len(partial),
                            error=_brief(exc),
                        )
                        raise LLMStreamInterrupted(
                            f"LLM stream broke after {len(partial)} characters: {_brief(exc)}",
                            partial_text=partial,
                            cause=exc,
                        ) from exc
                    if (
                        isinstance(exc, openai.BadRequestError)
                        and client._stream_usage_supported
                        and "stream_options" in str(exc)
                    ):
                        # Older servers reject stream_options: stop asking and count tokens ourselves.
                        client._stream_usage_supported = False
                        log.info("llm.stream_usage_unsupported")
                        continue
                    delay = client._retry_delay_or_raise(exc, attempt, operation="stream")
                    attempt += 1
                    await client._sleep(delay)
        self.completion = client._finish(
            text="".join(state.parts),
            finish_reason=state.finish_reason,
            model=state.model or client.model,
            usage=state.usage,
            prompt=client._prompt_text(self._system, self._user, self._turns, self._reply_prefix),
            started=started,
            attempts=attempt + 1,
        )

    async def _attempt(self, state: _StreamState) -> AsyncIterator[str]:
        client = self._client
        response = await client._create(
            system=self._system,
            user=self._user,
            max_tokens=self._max_tokens,
            stop=self._stop,
            stream=True,
            turns=self._turns,
            reply_prefix=self._reply_prefix,
        )
        async with response:
            async for chunk in response:
                state.model = getattr(chunk, "model", None) or state.model
                usage = getattr(chunk, "usage", None)
                if usage is not None:
                    state.usage = usage
                for choice in getattr(chunk, "choices", None) or []:
                    if getattr(choice, "index", 0) != 0:
                        continue
                    if client.api_mode == "chat":
                        delta = getattr(choice, "delta", None)
                        text = getattr(delta, "content", None) if delta is not None else None
                    else:
                        text = getattr(choice, "text", None)
                    if getattr(choice, "finish_reason", None):
                        state.finish_reason = choice.finish_reason
                    if isinstance(text, str) and text:
                        state.parts.append(text)
                        yield text
        if state.finish_reason is None:
            raise MalformedResponseError("stream ended without a finish_reason (truncated)")
