"""structlog, configured once at the entry point: JSON in production, console in development."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from bot.core.config import CoreSettings

REDACTED = "***"


class SecretScrubber:
    """Replaces configured secret values wherever they appear in a log event.

    Strings are searched directly; containers recursively; any other object (an exception, a URL, a
    settings model) is checked through its `str()` and `repr()`, since that is how the renderers print
    it, and is replaced by its scrubbed text when a secret shows up there.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub_text(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub_text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return type(value)(self._scrub(v) for v in value)
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("utf-8", "replace")
            return self.scrub_text(text) if self.scrub_text(text) != text else value
        try:
            shown = str(value), repr(value)
        except Exception:
            return value
        if any(self.scrub_text(text) != text for text in shown):
            return self.scrub_text(shown[0])
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self._secrets:
            return event
        return {k: self._scrub(v) for k, v in event.items()}


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the time of writing, not at configuration time (a test
    harness or a daemonizer may swap it; a stream captured once could be closed by then)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(core: CoreSettings, secrets: Iterable[str] = (), *, stream: Any = None) -> None:
    stream = stream or _CurrentStderr()
    use_json = core.log_format == "json" or (core.log_format == "auto" and core.env == "production")
    level = logging.getLevelName(core.log_level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    # Exceptions are rendered to plain text (no local variables) before scrubbing, in both formats, so
    # secrets in exception messages and tracebacks are removed too. The console renderer prints the
    # rendered text as is; left to itself it would format the traceback after the scrubber, with rich
    # showing local variables such as a token.
    scrubber = SecretScrubber(secrets)
    processors = [*shared, structlog.processors.format_exc_info, scrubber, renderer]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            level if isinstance(level, int) else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries using stdlib logging (discord.py, httpx, apscheduler) go through the same output.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrubber,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if level == logging.DEBUG else max(logging.WARNING, level))
    for noisy in ("httpx", "sentence_transformers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def flush_logging() -> None:
    """Push out buffered log lines (call last on shutdown: a container's last words matter)."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(OSError, ValueError):  # stream already closed
            handler.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
