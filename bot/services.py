"""Builds every service from settings, in one place, for the CLI and the Discord daemon alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bot.config import Settings
from bot.embedding import Embedder, open_embedder
from bot.index import PaperIndex, open_index
from bot.ingest.pipeline import Ingestor
from bot.llm import LLMClient, LocalLLMUnavailable, llm_session
from bot.rag.iter_retgen import AnswerService
from bot.search import SearchService
from bot.tokens import ensure_tiktoken_cache

if TYPE_CHECKING:
    from bot.digest.summaries import SummaryService

log = structlog.get_logger(__name__)


@dataclass
class Services:
    settings: Settings
    index: PaperIndex
    embedder: Embedder
    ingestor: Ingestor
    search: SearchService
    answers: AnswerService
    llm: LLMClient | None
    summaries: SummaryService | None = None


@asynccontextmanager
async def open_services(settings: Settings, *, with_llm: bool = False) -> AsyncIterator[Services]:
    """`with_llm` starts (or connects to) the LLM; without one, answers are extractive."""
    ensure_tiktoken_cache(settings.tokenizer.encoding, settings.core.cache_dir / "tiktoken")
    async with AsyncExitStack() as stack:
        embedder = open_embedder(settings.embedding)
        stack.push_async_callback(embedder.aclose)
        index = open_index(settings)
        stack.push_async_callback(index.close)
        await index.ensure_collection(embedder.dimensions)
        llm: LLMClient | None = None
        if with_llm:
            try:
                llm = await stack.enter_async_context(llm_session(settings.llm, settings.core.models_dir))
            except LocalLLMUnavailable as exc:
                log.warning("llm.unavailable_using_extractive_answers", error=str(exc))
        search = SearchService(index, embedder, encoding=settings.tokenizer.encoding)
        yield Services(
            settings=settings,
            index=index,
            embedder=embedder,
            ingestor=Ingestor(index, embedder, settings.tokenizer),
            search=search,
            answers=AnswerService(
                search, llm, settings.rag, settings.llm, encoding=settings.tokenizer.encoding
            ),
            llm=llm,
        )
