"""The one wiring point: every service is built here, in order, from settings, for the CLI and the
Discord daemon alike. Objects are complete when built: nothing is attached to them afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import structlog

from bot.core.config import Settings
from bot.db import Database, Repository, open_database
from bot.db.library import LibraryRepository
from bot.db.memory_store import MemoryChannelStore
from bot.digest.roundup import RoundupService
from bot.digest.scheduler import DigestScheduler
from bot.digest.service import DigestService
from bot.digest.sources import SourceFetcher, SourceLoader, live_fetcher
from bot.digest.subscriptions import SubscriptionService
from bot.digest.summaries import CardSummaries, SummaryService
from bot.fulltext.fetch import ArxivFullTextFetcher
from bot.fulltext.service import FullTextService
from bot.fulltext.store import FullTextStore
from bot.ingest.pipeline import Ingestor
from bot.library.digests import PersonalDigestService
from bot.library.service import FollowService, LibraryService
from bot.limits.budget import MemoryUsageStore, TokenBudget
from bot.llm import LLMClient, LocalLLMUnavailable, llm_session
from bot.llm.models import resolve_llm_settings
from bot.memory import MemoryService
from bot.rag.iter_retgen import AnswerService
from bot.retrieval.embedding import Embedder, open_embedder
from bot.retrieval.index import PaperIndex, open_index
from bot.retrieval.index.memory import MemoryIndex, open_memory_index
from bot.retrieval.search import SearchService, build_search_service
from bot.retrieval.tokens import ensure_tiktoken_cache

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DigestServices:
    """What needs the state database: digests, their subscriptions, the summary cache."""

    database: Database
    repo: Repository
    digests: DigestService
    scheduler: DigestScheduler
    subscriptions: SubscriptionService
    summaries: SummaryService
    library: LibraryService  # each user's saved papers (/library, Save, `cite`)
    follows: FollowService
    personal: PersonalDigestService  # DM digests of what users follow
    roundups: RoundupService  # weekly roundups' poll end: the paper-of-the-week discussion thread


@dataclass(frozen=True)
class Services:
    """`llm` None: no LLM could be reached, answers are extractive. `state` None: no state database
    (the CLI's ingest/search/ask), so no digests and no summary cache. Both are decided when built."""

    settings: Settings
    index: PaperIndex
    embedder: Embedder
    ingestor: Ingestor
    search: SearchService
    answers: AnswerService
    llm: LLMClient | None
    budget: TokenBudget
    cards: CardSummaries
    state: DigestServices | None
    # Channel memory (/memory, /ask scope:channel): needs the state database and the memory index.
    memory: MemoryService | None = None
    # Papers' full texts (ingest from files; fetched from arXiv on demand, FULLTEXT_MODE).
    fulltext: FullTextService | None = None


def build_services(
    settings: Settings,
    *,
    index: PaperIndex,
    embedder: Embedder,
    llm: LLMClient | None,
    database: Database | None = None,
    fetch: SourceFetcher | None = None,
    memory_index: MemoryIndex | None = None,
) -> Services:
    """Every service over clients that are already open. `fetch` reads digest sources (default: the
    live Hugging Face / arXiv APIs)."""
    search = build_search_service(settings, index, embedder)
    ingestor = Ingestor(index, embedder, settings.tokenizer)
    state = None
    if database is not None:
        state = build_digest_services(
            settings, database, search=search, ingestor=ingestor, llm=llm, fetch=fetch
        )
    budget = TokenBudget(
        settings.discord.guild_daily_token_budget, state.repo if state is not None else MemoryUsageStore()
    )
    memory = None
    if database is not None and memory_index is not None:
        channel_answers = AnswerService(
            search, llm, settings.rag, settings.llm,
            encoding=settings.tokenizer.encoding, prompt="answer_channel",
        )  # fmt: skip
        memory = MemoryService(
            memory_index, MemoryChannelStore(database), embedder, search, channel_answers, settings.memory
        )
    return Services(
        settings=settings,
        index=index,
        embedder=embedder,
        ingestor=ingestor,
        search=search,
        answers=AnswerService(search, llm, settings.rag, settings.llm, encoding=settings.tokenizer.encoding),
        llm=llm,
        budget=budget,
        cards=CardSummaries(state.summaries if state is not None else None, budget),
        state=state,
        memory=memory,
        fulltext=build_fulltext_service(settings, index, embedder, search, ingestor),
    )


def build_fulltext_service(
    settings: Settings, index: PaperIndex, embedder: Embedder, search: SearchService, ingestor: Ingestor
) -> FullTextService:
    fetcher = None
    if settings.fulltext.mode != "off":
        fetcher = ArxivFullTextFetcher(
            settings.fulltext, settings.core.cache_dir / "fulltext", user_agent=settings.sources.user_agent
        )
    store = FullTextStore(settings.core.data_dir / "fulltext")
    return FullTextService(
        index, embedder, search, ingestor, settings.fulltext, settings.tokenizer, store, fetcher
    )


def build_digest_services(
    settings: Settings,
    database: Database,
    *,
    search: SearchService,
    ingestor: Ingestor,
    llm: LLMClient | None,
    fetch: SourceFetcher | None = None,
) -> DigestServices:
    repo = Repository(database)
    library = LibraryRepository(database)
    digests = build_digest_service(
        settings, repo=repo, search=search, ingestor=ingestor, llm=llm, fetch=fetch
    )
    shards = settings.discord
    # The jobs of the shards this process runs (all of them without sharding); started with its
    # poster by whoever posts (the Discord bot's setup_hook).
    scheduler = DigestScheduler(
        digests,
        repo,
        database,
        settings.digest,
        shard_count=shards.shard_count or 1,
        shard_ids=shards.shard_ids if shards.shard_count else None,
    )
    return DigestServices(
        database=database,
        repo=repo,
        digests=digests,
        scheduler=scheduler,
        subscriptions=SubscriptionService(repo, settings.digest, digests=digests, scheduler=scheduler),
        summaries=digests.summaries,
        library=LibraryService(library, search.index, search, settings.library),
        follows=FollowService(library, settings.library),
        personal=PersonalDigestService(
            library=library,
            repo=repo,
            digests=digests,
            settings=settings.library,
            digest_settings=settings.digest,
        ),
        roundups=RoundupService(repo, search, llm),
    )


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    with_llm: bool = False,
    with_database: bool = False,
    fetch: SourceFetcher | None = None,
) -> AsyncIterator[Services]:
    """Open the clients (embedder, index, LLM, database), build every service over them, close
    them on exit. `with_llm` starts (or connects to) the LLM; without one, answers are extractive.
    `with_database` opens the state database, for digests and cached summaries; `fetch` reads
    digest sources (default: the live APIs)."""
    ensure_tiktoken_cache(settings.tokenizer.encoding, settings.core.cache_dir / "tiktoken")
    async with AsyncExitStack() as stack:
        embedder = open_embedder(settings.embedding, settings.core.cache_dir / "onnx")
        stack.push_async_callback(embedder.aclose)
        index = open_index(settings)
        stack.push_async_callback(index.close)
        await index.ensure_collection(embedder.dimensions)
        llm: LLMClient | None = None
        if with_llm:
            # The embedded model's recommended prompt and answer limits, unless set (LOCAL_LLM_*).
            settings = settings.model_copy(update={"llm": resolve_llm_settings(settings.llm)})
            try:
                llm = await stack.enter_async_context(llm_session(settings.llm, settings.core.models_dir))
            except LocalLLMUnavailable as exc:
                log.warning("llm.unavailable_using_extractive_answers", error=str(exc))
        database = await stack.enter_async_context(open_database(settings)) if with_database else None
        memory_index = None
        if database is not None:  # channel memory keeps its opt-ins in the state database
            memory_index = open_memory_index(settings)
            stack.push_async_callback(memory_index.close)
            await memory_index.ensure_collection(embedder.dimensions)
        yield build_services(
            settings, index=index, embedder=embedder, llm=llm, database=database, fetch=fetch,
            memory_index=memory_index,
        )  # fmt: skip


def build_digest_service(
    settings: Settings,
    *,
    repo: Repository,
    search: SearchService,
    ingestor: Ingestor,
    llm: LLMClient | None,
    fetch: SourceFetcher | None = None,
) -> DigestService:
    """The digest service (`fetch` defaults to the live Hugging Face / arXiv APIs; `llm` None →
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
    return DigestService(repo=repo, search=search, sources=loader, summaries=summaries, settings=digest)
