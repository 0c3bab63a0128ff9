"""The LLM layer: an OpenAI-compatible client, and the embedded server used when none is configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from bot.core.config import LLMSettings
from bot.llm.client import Completion, CompletionStream, LLMClient, UsageTotals, resolve_api_mode
from bot.llm.errors import (
    LLMBusyError,
    LLMError,
    LLMRequestError,
    LLMStreamInterrupted,
    LLMUnavailableError,
    LocalLLMUnavailable,
)
from bot.llm.local_server import LocalLLMServer
from bot.llm.queue import GenerationQueue, Priority, QueueFullError, llm_priority

log = structlog.get_logger(__name__)

__all__ = [
    "Completion",
    "CompletionStream",
    "GenerationQueue",
    "LLMBusyError",
    "LLMClient",
    "LLMError",
    "LLMRequestError",
    "LLMStreamInterrupted",
    "LLMUnavailableError",
    "LocalLLMServer",
    "LocalLLMUnavailable",
    "Priority",
    "QueueFullError",
    "UsageTotals",
    "llm_priority",
    "llm_session",
    "open_llm",
    "resolve_api_mode",
]


async def open_llm(settings: LLMSettings, models_dir: Path) -> tuple[LLMClient, LocalLLMServer | None]:
    """The configured server if `OPENAI_BASE_URL` is set, else a freshly started embedded one
    serving `LOCAL_LLM_MODEL`.

    The caller owns both: `await client.aclose()`, then `await server.stop()` if it is not None.
    """
    if settings.base_url:
        return LLMClient.from_settings(settings, base_url=settings.base_url), None
    server = LocalLLMServer(settings, models_dir)
    await server.start()
    client = server.client()
    if client.api_mode == "chat" and not server.model.instruct:
        # llama.cpp's gemma chat format silently drops system messages, i.e. our whole context.
        log.warning(
            "llm.embedded_chat_mode",
            model=server.model.name,
            hint="LLM_API_MODE=chat loses the system prompt on this base model",
        )
    return client, server


@asynccontextmanager
async def llm_session(settings: LLMSettings, models_dir: Path) -> AsyncIterator[LLMClient]:
    client, server = await open_llm(settings, models_dir)
    try:
        yield client
    finally:
        await client.aclose()
        if server is not None:
            await server.stop()
