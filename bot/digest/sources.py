"""The day's papers of a subscription: fetched from its sources, ingested, then narrowed to the day.

A source (`hf:2026-08-18`, `arxiv:cs.CL`) is fetched and ingested once and reused by every channel
that asks for it within `ttl_s`, so fifty channels on the same sources cost one fetch each.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from bot.core.config import SourceSettings
from bot.core.papers import Paper
from bot.digest.records import SubscriptionSettings
from bot.ingest.fetch import DEFAULT_RETRY, RetryPolicy, fetch_source, parse_live_source
from bot.ingest.merge import dedupe
from bot.ingest.pipeline import Ingestor
from bot.ingest.sources import ParseResult, parse_bytes

log = structlog.get_logger(__name__)

SourceFetcher = Callable[[str], Awaitable[ParseResult]]
Clock = Callable[[], float]


def live_fetcher(
    settings: SourceSettings, *, arxiv_max_results: int = 300, retry: RetryPolicy = DEFAULT_RETRY
) -> SourceFetcher:
    """Fetch `hf:DATE` / `arxiv:CATEGORY` over HTTP (see bot.ingest.fetch)."""

    async def fetch(spec: str) -> ParseResult:
        return await fetch_source(spec, settings, max_results=arxiv_max_results, retry=retry)

    return fetch


def directory_fetcher(directory: Path) -> SourceFetcher:
    """Saved responses instead of the network (CLI demos, tests): `hf_daily_YYYY-MM-DD.json` for
    `hf:YYYY-MM-DD` and `arxiv_CATEGORY.xml` (an Atom API response) for `arxiv:CATEGORY`."""

    async def fetch(spec: str) -> ParseResult:
        source = parse_live_source(spec)
        name = f"hf_daily_{source.argument}.json" if source.scheme == "hf" else f"arxiv_{source.argument}.xml"
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"no saved file {name} in {directory} for {spec}")
        fmt = "hf_json" if source.scheme == "hf" else "arxiv_atom"
        return parse_bytes(await asyncio.to_thread(path.read_bytes), source_name=spec, fmt=fmt)

    return fetch


def source_specs(subscription: SubscriptionSettings, digest_date: dt.date) -> list[str]:
    specs = [f"hf:{digest_date.isoformat()}"] if subscription.hf_daily else []
    return specs + [f"arxiv:{category}" for category in subscription.arxiv_categories]


@dataclass
class SourceBatch:
    spec: str
    papers: list[Paper] = field(default_factory=list)
    rejected: int = 0
    error: str | None = None
    ingested_new: int = 0


@dataclass
class DayPapers:
    """The day's distinct papers over all sources, with what it took to get them."""

    papers: list[Paper]
    fetched: int  # records kept for the day, before merging papers listed by several sources
    repeated: int  # records that were a paper already listed by another source
    per_source: dict[str, int]
    errors: list[str]

    @property
    def all_sources_failed(self) -> bool:
        return bool(self.errors) and len(self.errors) == len(self.per_source)


class SourceLoader:
    def __init__(
        self,
        fetch: SourceFetcher,
        ingestor: Ingestor,
        *,
        ttl_s: float = 600.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ingestor = ingestor
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, SourceBatch]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self, spec: str) -> SourceBatch:
        """Fetch and ingest `spec` (or reuse a recent load); failures come back in `error`, not cached."""
        self._forget_expired()
        async with self._locks.setdefault(spec, asyncio.Lock()):
            cached = self._cache.get(spec)
            if cached is not None and self._clock() - cached[0] < self._ttl_s:
                return cached[1]
            batch = await self._load_now(spec)
            if batch.error is None:
                self._cache[spec] = (self._clock(), batch)
            return batch

    def _forget_expired(self) -> None:
        """Drop stale batches and idle locks, so a long-running bot does not keep every day's papers."""
        now = self._clock()
        for spec, (loaded_at, _) in list(self._cache.items()):
            if now - loaded_at >= self._ttl_s:
                del self._cache[spec]
        for spec, lock in list(self._locks.items()):
            if not lock.locked() and spec not in self._cache:
                del self._locks[spec]

    async def _load_now(self, spec: str) -> SourceBatch:
        try:
            result = await self._fetch(spec)
        except Exception as exc:  # FetchError, bad spec, anything the network does
            log.warning("digest.source_failed", source=spec, error=str(exc)[:300])
            return SourceBatch(spec, error=f"{spec}: {exc}"[:300])
        try:
            report = await self._ingestor.ingest(result.papers)
        except Exception as exc:
            log.exception("digest.ingest_failed", source=spec)
            return SourceBatch(spec, error=f"{spec}: could not index papers: {exc}"[:300])
        return SourceBatch(spec, papers=result.papers, rejected=len(result.rejected), ingested_new=report.new)

    async def day_papers(
        self, subscription: SubscriptionSettings, digest_date: dt.date, *, arxiv_lookback_days: int
    ) -> DayPapers:
        batches = [await self.load(spec) for spec in source_specs(subscription, digest_date)]
        return select_day(batches, digest_date, arxiv_lookback_days=arxiv_lookback_days)

    async def week_papers(
        self, subscription: SubscriptionSettings, end_date: dt.date, *, days: int = 7
    ) -> DayPapers:
        """A weekly roundup's papers: the Hugging Face lists of the `days` days up to `end_date` and
        the arXiv papers first submitted in them."""
        specs = [f"hf:{end_date - dt.timedelta(days=back)}" for back in range(days - 1, -1, -1)]
        specs = specs if subscription.hf_daily else []
        specs += [f"arxiv:{category}" for category in subscription.arxiv_categories]
        batches = [await self.load(spec) for spec in specs]
        return select_day(batches, end_date, arxiv_lookback_days=days - 1)


def select_day(
    batches: Sequence[SourceBatch], digest_date: dt.date, *, arxiv_lookback_days: int
) -> DayPapers:
    """HF daily lists are already the day's; arXiv papers count if first submitted within the lookback."""
    earliest = digest_date - dt.timedelta(days=arxiv_lookback_days)
    kept: list[Paper] = []
    per_source: dict[str, int] = {}
    errors: list[str] = []
    for batch in batches:
        if batch.error is not None:
            errors.append(batch.error)
            per_source[batch.spec] = 0
            continue
        if batch.spec.startswith("arxiv:"):
            papers = [
                p for p in batch.papers if p.published is not None and earliest <= p.published <= digest_date
            ]
        else:
            papers = list(batch.papers)
        per_source[batch.spec] = len(papers)
        kept.extend(papers)
    distinct, repeated = dedupe(kept)
    return DayPapers(
        papers=distinct, fetched=len(kept), repeated=repeated, per_source=per_source, errors=errors
    )
