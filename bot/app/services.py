"""Builds every service from settings, in one place, for the CLI and the Discord daemon alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog

from bot.core.config import Settings
from bot.db import Database, Repository, open_database
from bot.digest.delivery import DigestPoster
from bot.digest.service import DigestService
from bot.digest.sources import SourceFetcher, SourceLoader, live_fetcher
from bot.digest.summaries import SummaryService
from bot.ingest.pipeline import Ingestor
from bot.llm import LLMClient, LocalLLMUnavailable, llm_session
from bot.rag.iter_retgen import AnswerService
from bot.retrieval.embedding import Embedder, open_embedder
from bot.retrieval.index import PaperIndex, open_index
from bot.retrieval.search import SearchService
from bot.retrieval.tokens import ensure_tiktoken_cache

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
    database: Database | None = None
    repo: Repository | None = None
    digests: DigestService | None = None


@asynccontextmanager
async def open_services(
    settings: Settings, *, with_llm: bool = False, with_database: bool = False
) -> AsyncIterator[Services]:
    """`with_llm` starts (or connects to) the LLM; without one, answers are extractive.
    `with_database` opens the state database and builds the digest service (its poster is set by
    whoever posts, e.g. the Discord bot) and the cached summaries."""
    ensure_tiktoken_cache(settings.tokenizer.encoding, settings.core.cache_dir / "tiktoken")
    async with AsyncExitStack() as stack:
        embedder = open_embedder(settings.embedding, settings.core.cache_dir / "onnx")
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
        services = Services(
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
        if with_database:
            database = await stack.enter_async_context(open_database(settings))
            attach_digests(services, database)
        yield services


def attach_digests(services: Services, database: Database, **options: Any) -> None:
    """Give `services` the state database, the digest service and its LLM summaries (cached per
    paper, so /paper and the Summarize button reuse what digests paid for). `options` go to
    `build_digest_service` (e.g. `fetch=` saved sources)."""
    repo = Repository(database)
    digests = build_digest_service(
        services.settings,
        repo=repo,
        search=services.search,
        ingestor=services.ingestor,
        llm=services.llm,
        **options,
    )
    services.database = database
    services.repo = repo
    services.digests = digests
    services.summaries = digests.summaries


def build_digest_service(
    settings: Settings,
    *,
    repo: Repository,
    search: SearchService,
    ingestor: Ingestor,
    llm: LLMClient | None,
    poster: DigestPoster | None = None,
    fetch: SourceFetcher | None = None,
) -> DigestService:
    """Wire the digest service (`fetch` defaults to the live Hugging Face / arXiv APIs; `llm` None →
    every summary is the abstract fallback)."""
    digest = settings.digest
    loader = SourceLoader(
        fetch or live_fetcher(settings.sources, arxiv_max_results=digest.arxiv_max_results),
        ingestor,
        ttl_s=digest.source_cache_s,
    )
    summaries = SummaryService(
        repo,
        llm,
        concurrency=digest.summary_concurrency,
        max_tokens=digest.summary_max_tokens,
        encoding=settings.tokenizer.encoding,
    )
    return DigestService(
        repo=repo, search=search, sources=loader, summaries=summaries, settings=digest, poster=poster
    )
