"""Builds every service from settings, in one place, for the CLI and the Discord daemon alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from bot.config import Settings
from bot.embedding import Embedder, open_embedder
from bot.index import PaperIndex, open_index
from bot.ingest.pipeline import Ingestor
from bot.search import SearchService
from bot.tokens import ensure_tiktoken_cache


@dataclass
class Services:
    settings: Settings
    index: PaperIndex
    embedder: Embedder
    ingestor: Ingestor
    search: SearchService


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    ensure_tiktoken_cache(settings.tokenizer.encoding, settings.core.cache_dir / "tiktoken")
    async with AsyncExitStack() as stack:
        embedder = open_embedder(settings.embedding)
        stack.push_async_callback(embedder.aclose)
        index = open_index(settings)
        stack.push_async_callback(index.close)
        await index.ensure_collection(embedder.dimensions)
        yield Services(
            settings=settings,
            index=index,
            embedder=embedder,
            ingestor=Ingestor(index, embedder, settings.tokenizer),
            search=SearchService(index, embedder, encoding=settings.tokenizer.encoding),
        )
