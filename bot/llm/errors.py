"""Exceptions of the LLM layer. Callers catch `LLMUnavailableError` to fall back gracefully."""

from __future__ import annotations

from bot.core.errors import DependencyUnavailableError


class LLMError(DependencyUnavailableError):
    """Base class for every failure of the LLM layer: whatever the cause, no answer from the model."""

    what = "The language model"


class LLMUnavailableError(LLMError):
    """The server could not give an answer after all retries (overload, outage, timeouts, garbage)."""

    def __init__(self, message: str, *, attempts: int, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.cause = cause


class LLMStreamInterrupted(LLMUnavailableError):
    """A stream failed after text was already handed to the caller, so it could not be retried."""

    def __init__(self, message: str, *, partial_text: str, cause: BaseException | None = None) -> None:
        super().__init__(message, attempts=1, cause=cause)
        self.partial_text = partial_text


class LLMRequestError(LLMError):
    """The server rejected the request itself (4xx other than 429): retrying would not help."""

    def __init__(self, message: str, *, status: int | None, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.cause = cause


class LocalLLMUnavailable(LLMError):
    """The embedded llama.cpp server cannot be started (not installed, crashed, or too slow to start)."""


class LLMBusyError(LLMError):
    """No generation slot (bot/llm/queue.py): the line was full, or the wait reached its bound. The
    request never reached the server; callers fall back as for any unavailable model."""

    def __init__(self, message: str, *, waited_s: float, ahead: int) -> None:
        super().__init__(message)
        self.waited_s = waited_s
        self.ahead = ahead
