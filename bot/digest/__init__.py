"""Scheduled digests: per-channel picks, LLM summaries, exactly-once posting, catch-up and status.

Build with `build_digest_service`; the Discord layer implements `DigestPoster`.
"""

from __future__ import annotations

from bot.core.config import Settings
from bot.db.repository import Repository
from bot.digest.delivery import (
    DigestHeader,
    DigestPoster,
    PaperPost,
    digest_marker,
    item_marker,
    parse_marker,
)
from bot.digest.service import DigestPreview, DigestService, RunOutcome
from bot.digest.sources import SourceFetcher, SourceLoader, live_fetcher
from bot.digest.summaries import SummaryService
from bot.ingest.pipeline import Ingestor
from bot.llm import LLMClient
from bot.retrieval.search import SearchService

__all__ = [
    "DigestHeader",
    "DigestPoster",
    "DigestPreview",
    "DigestService",
    "PaperPost",
    "RunOutcome",
    "build_digest_service",
    "digest_marker",
    "item_marker",
    "parse_marker",
]


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
