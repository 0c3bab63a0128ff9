"""One digest run for one channel and day: fetch → ingest → pick → summarize → post → record.

Exactly once, explicitly (a post and a database row cannot share a transaction):
1. plan: every message of the digest is written to the ledger as an intent, with its content;
2. before each post, its attempt is recorded; after it, its message id;
3. a rerun of the same channel and day resumes the plan. An item that was attempted but has no
   message id may have been posted just before a crash: the poster is asked for the channel's recent
   messages carrying the digest marker, and a match is recorded instead of posting again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from bot.core.config import DigestSettings
from bot.core.metrics import observe_digest_run
from bot.core.papers import Paper
from bot.db.repository import Repository
from bot.digest.delivery import (
    HEADER_ITEM,
    NOTICE_ITEM,
    DigestHeader,
    DigestPoll,
    DigestPoster,
    PaperPost,
    digest_marker,
    item_marker,
)
from bot.digest.empty import EmptyReason, empty_reason, explain_empty
from bot.digest.picking import PaperSignals, Pick, PickRules, gather_signals, rank_papers
from bot.digest.records import (
    DigestCounts,
    LedgerEntry,
    PlannedItem,
    RunStatus,
    RunTrigger,
    Subscription,
    SubscriptionSettings,
)
from bot.digest.sources import SourceLoader
from bot.digest.summaries import SUMMARIZER_UNAVAILABLE, Summary, SummaryService
from bot.llm import Priority, llm_priority
from bot.retrieval.search import SearchService

log = structlog.get_logger(__name__)

ROUNDUP_POLL_PAPERS = 5  # the weekly roundup's poll offers its top 5


@dataclass(frozen=True)
class RunOutcome:
    run_id: int | None
    status: RunStatus
    counts: DigestCounts
    errors: list[str] = field(default_factory=list)
    empty_message: str | None = None


class DigestRunner(Protocol):
    """What the scheduler needs from the service."""

    async def run(
        self,
        subscription: Subscription,
        digest_date: dt.date,
        *,
        poster: DigestPoster,
        trigger: RunTrigger = "manual",
    ) -> RunOutcome: ...


@dataclass
class Composition:
    """A digest worked out but not posted: the picks with their summaries, or why there are none."""

    subscription: SubscriptionSettings
    digest_date: dt.date
    sources: tuple[str, ...]
    counts: DigestCounts
    picks: list[Pick]
    summaries: dict[str, Summary]
    dropped: Counter[str]
    errors: list[str]
    empty: EmptyReason | None = None
    empty_message: str | None = None
    poll: DigestPoll | None = None  # a weekly roundup's "paper of the week" poll


@dataclass(frozen=True)
class DigestPreview:
    """What `/digest preview` shows: the digest that would be posted now, and nothing was posted."""

    header: DigestHeader
    posts: list[PaperPost]
    errors: list[str]
    dropped: dict[str, int]


@dataclass
class _Delivery:
    posted: int = 0
    failed: int = 0
    recovered: int = 0
    header_failed: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass
class _LockSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def _subscription_id(subscription: SubscriptionSettings) -> int | None:
    return subscription.id if isinstance(subscription, Subscription) else None


class DigestService:
    def __init__(
        self,
        *,
        repo: Repository,
        search: SearchService,
        sources: SourceLoader,
        summaries: SummaryService,
        settings: DigestSettings,
    ) -> None:
        self.repo = repo
        self.search = search
        self.sources = sources
        self.summaries = summaries
        self.settings = settings
        self._locks: dict[tuple[int, dt.date], _LockSlot] = {}
        # Many channels often share a posting time; bounding whole runs keeps SQLite's single writer
        # from timing out (bench/digest_bench.py saw "database is locked" with 50 runs at once).
        self._run_slots = asyncio.Semaphore(settings.max_concurrent_runs)

    # ------------------------------------------------------------------ public API

    async def run(
        self,
        subscription: Subscription,
        digest_date: dt.date,
        *,
        poster: DigestPoster,
        trigger: RunTrigger = "manual",
    ) -> RunOutcome:
        """Post the channel's digest for `digest_date` through `poster` (or finish posting it); never
        posts an item twice."""
        key = (subscription.channel_id, digest_date)
        slot = self._locks.setdefault(key, _LockSlot())
        slot.users += 1
        try:
            async with slot.lock, self._run_slots:  # one channel+day at a time; few runs at once
                started = time.monotonic()
                outcome = await self._run_locked(subscription, digest_date, trigger, poster)
                observe_digest_run(
                    outcome.status, outcome.counts, trigger=trigger, seconds=time.monotonic() - started
                )
                return outcome
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._locks[key]

    async def preview(self, subscription: SubscriptionSettings, digest_date: dt.date) -> DigestPreview:
        """Pick and summarize as a run would, without posting or recording anything."""
        composition = await self.compose(subscription, digest_date)
        header = self._header(composition)
        posts = [self._paper_post(composition, rank, pick) for rank, pick in enumerate(composition.picks, 1)]
        return DigestPreview(header, posts, composition.errors, dict(composition.dropped))

    async def compose(self, subscription: SubscriptionSettings, digest_date: dt.date) -> Composition:
        """Fetch and ingest the day's sources, then pick and summarize the channel's papers."""
        weekly = subscription.cadence == "weekly"
        if weekly:  # the roundup: the week up to the digest date
            day = await self.sources.week_papers(subscription, digest_date)
        else:
            day = await self.sources.day_papers(
                subscription, digest_date, arxiv_lookback_days=self.settings.arxiv_lookback_days
            )
        already = await self.repo.posted_paper_ids(subscription.channel_id, [p.paper_id for p in day.papers])
        candidates = [p for p in day.papers if p.paper_id not in already]
        counts = DigestCounts(
            fetched=day.fetched,
            new=len(candidates),
            duplicates=day.repeated + len(day.papers) - len(candidates),
        )
        signals = await self._signals(subscription, candidates)
        if weekly:
            signals = await self._with_engagement(subscription, candidates, signals)
        result = rank_papers(candidates, signals, self._rules(subscription))
        counts.filtered = result.filtered
        picked = [pick.paper for pick in result.picks]
        with llm_priority(Priority.BACKGROUND):  # questions go first (bot/llm/queue.py)
            summaries = await self.summaries.summarize(picked) if picked else {}
        composition = Composition(
            subscription=subscription,
            digest_date=digest_date,
            sources=tuple(subscription.source_names),
            counts=counts,
            picks=result.picks,
            summaries=summaries,
            dropped=result.dropped,
            errors=day.errors,
        )
        if weekly and len(result.picks) >= 2:  # a poll needs a choice
            top = [pick.paper for pick in result.picks[:ROUNDUP_POLL_PAPERS]]
            composition.poll = DigestPoll.for_papers(top, self.settings.roundup_poll_hours)
        if not result.picks:
            composition.empty = empty_reason(
                counts,
                sources_failed=day.all_sources_failed,
                arxiv_only=not subscription.hf_daily,
                digest_date=digest_date,
            )
            composition.empty_message = explain_empty(
                composition.empty,
                counts,
                digest_date=digest_date,
                sources=composition.sources,
                dropped=result.dropped,
                errors=day.errors,
                min_upvotes=subscription.min_upvotes,
                has_arxiv=bool(subscription.arxiv_categories),
            )
        return composition

    # ------------------------------------------------------------------ the run

    async def _run_locked(
        self, subscription: Subscription, digest_date: dt.date, trigger: RunTrigger, poster: DigestPoster
    ) -> RunOutcome:
        bound = log.bind(
            subscription_id=subscription.id,
            guild_id=subscription.guild_id,
            channel_id=subscription.channel_id,
            digest_date=digest_date.isoformat(),
            trigger=trigger,
        )
        run_id = await self.repo.start_run(subscription, digest_date, trigger)
        bound = bound.bind(run_id=run_id)
        if subscription.paused and trigger != "manual":
            bound.info("digest.skipped_paused")
            await self.repo.finish_run(run_id, "skipped", DigestCounts(), errors=["subscription is paused"])
            return RunOutcome(run_id, "skipped", DigestCounts(), ["subscription is paused"])
        bound.info("digest.run_started")
        counts = DigestCounts()
        try:
            outcome = await self._run_steps(subscription, digest_date, run_id, counts, bound, poster)
        except Exception as exc:
            bound.exception("digest.run_failed")
            errors = [f"{type(exc).__name__}: {exc}"[:500]]
            await self.repo.finish_run(run_id, "failed", counts, errors=errors)
            return RunOutcome(run_id, "failed", counts, errors)
        bound.info("digest.run_finished", status=outcome.status, **outcome.counts.as_dict())
        return outcome

    async def _run_steps(
        self,
        subscription: Subscription,
        digest_date: dt.date,
        run_id: int,
        counts: DigestCounts,
        bound: Any,
        poster: DigestPoster,
    ) -> RunOutcome:
        entries = await self.repo.digest_entries(subscription.channel_id, digest_date)
        planned = [e for e in entries if e.kind in ("header", "paper")]
        if planned:
            return await self._resume(subscription, planned, run_id, counts, bound, poster)
        composition = await self.compose(subscription, digest_date)
        counts.copy_from(composition.counts)
        details = {"dropped": dict(composition.dropped), "sources": list(composition.sources)}
        if not composition.picks:
            return await self._finish_empty(subscription, composition, run_id, counts, details, bound, poster)
        entries = await self.repo.plan_digest(
            guild_id=subscription.guild_id,
            channel_id=subscription.channel_id,
            digest_date=digest_date,
            run_id=run_id,
            items=self._plan(composition),
        )
        planned = [e for e in entries if e.kind in ("header", "paper")]
        return await self._deliver_and_finish(
            subscription, planned, run_id, counts, composition.errors, bound, poster, details
        )

    async def _resume(
        self,
        subscription: Subscription,
        planned: list[LedgerEntry],
        run_id: int,
        counts: DigestCounts,
        bound: Any,
        poster: DigestPoster,
    ) -> RunOutcome:
        """The day's digest was planned by an earlier run: post what it did not, never re-pick."""
        header = next((e for e in planned if e.kind == "header"), None)
        if header is not None:
            counts.copy_from(DigestCounts.from_dict(header.content.get("counts", {})))
        counts.posted = counts.failed = counts.recovered = 0
        if all(e.posted for e in planned):
            bound.info("digest.already_posted")
            await self.repo.finish_run(run_id, "already_posted", counts)
            return RunOutcome(run_id, "already_posted", counts)
        bound.info("digest.resuming", pending=sum(not e.posted for e in planned))
        return await self._deliver_and_finish(subscription, planned, run_id, counts, [], bound, poster)

    async def _finish_empty(
        self,
        subscription: Subscription,
        composition: Composition,
        run_id: int,
        counts: DigestCounts,
        details: dict[str, Any],
        bound: Any,
        poster: DigestPoster,
    ) -> RunOutcome:
        """Nothing to post: say why in one line if the channel opted in (once a day), record the run."""
        assert composition.empty is not None
        bound.info("digest.empty", reason=composition.empty.value, announce=subscription.announce_empty)
        errors = list(composition.errors)
        if subscription.announce_empty:
            notice = PlannedItem(
                NOTICE_ITEM,
                "notice",
                0,
                item_marker(composition.digest_date, NOTICE_ITEM),
                {"message": composition.empty_message, "counts": counts.as_dict(), **details},
            )
            entries = await self.repo.plan_digest(
                guild_id=subscription.guild_id,
                channel_id=subscription.channel_id,
                digest_date=composition.digest_date,
                run_id=run_id,
                items=[notice],
            )
            pending = [e for e in entries if e.kind == "notice" and not e.posted]
            errors += (await self._deliver(subscription, pending, bound, poster)).errors
        await self.repo.finish_run(
            run_id, "empty", counts, errors=errors, empty_reason=composition.empty.value, details=details
        )
        return RunOutcome(run_id, "empty", counts, errors, composition.empty_message)

    async def _deliver_and_finish(
        self,
        subscription: Subscription,
        planned: list[LedgerEntry],
        run_id: int,
        counts: DigestCounts,
        errors: list[str],
        bound: Any,
        poster: DigestPoster,
        details: dict[str, Any] | None = None,
    ) -> RunOutcome:
        delivery = await self._deliver(subscription, planned, bound, poster)
        counts.posted, counts.failed, counts.recovered = delivery.posted, delivery.failed, delivery.recovered
        errors = [*errors, *delivery.errors]
        status: RunStatus = "failed" if delivery.header_failed else "partial" if delivery.failed else "posted"
        await self.repo.finish_run(run_id, status, counts, errors=errors, details=details)
        return RunOutcome(run_id, status, counts, errors)

    async def _deliver(
        self, subscription: Subscription, entries: list[LedgerEntry], bound: Any, poster: DigestPoster
    ) -> _Delivery:
        """Post the entries not yet posted, in order, recovering the ones a crash left unconfirmed."""
        channel_id = subscription.channel_id
        delivery = _Delivery()
        pending = [e for e in entries if not e.posted]
        if not pending:
            return delivery
        found: dict[str, int] = {}
        if any(e.attempts > 0 for e in pending):
            marker = digest_marker(pending[0].digest_date)
            try:
                messages = await poster.find_recent_digest_messages(channel_id, marker)
            except Exception as exc:
                # Unverifiable: posting could duplicate; stop and let a later run try again.
                bound.warning("digest.recovery_lookup_failed", error=str(exc)[:300])
                delivery.header_failed = True
                delivery.errors.append(f"could not check the channel for earlier digest posts: {exc}"[:500])
                return delivery
            found = {found_marker: message_id for message_id, found_marker in messages}
        parent_id = next((e.message_id for e in entries if e.kind == "header" and e.posted), None)
        for entry in pending:
            if entry.attempts > 0 and entry.marker in found:
                message_id = found[entry.marker]
                await self.repo.mark_posted(entry.id, message_id)
                bound.info("digest.post_recovered", item=entry.item, message_id=message_id)
                delivery.recovered += entry.kind == "paper"
                if entry.kind == "header":
                    parent_id = message_id
                continue
            await self.repo.mark_attempt(entry.id)
            try:
                if entry.kind == "paper":
                    message_id = await poster.post_paper(
                        channel_id, self._post_from(entry, subscription), parent_id
                    )
                else:
                    message_id = await poster.post_header(channel_id, self._header_from(entry, subscription))
            except Exception as exc:
                error = f"{entry.item}: {type(exc).__name__}: {exc}"[:500]
                bound.warning("digest.post_failed", item=entry.item, error=error)
                await self.repo.mark_failed(entry.id, error)
                delivery.errors.append(error)
                if entry.kind == "header":
                    delivery.header_failed = True
                    break
                delivery.failed += 1
                continue
            await self.repo.mark_posted(entry.id, message_id)
            if entry.kind == "header":
                parent_id = message_id
            else:
                delivery.posted += entry.kind == "paper"
        return delivery

    # ------------------------------------------------------------------ building blocks

    def _rules(self, subscription: SubscriptionSettings) -> PickRules:
        return PickRules(
            topics=tuple(subscription.topics),
            keywords=tuple(subscription.keywords),
            negative_keywords=tuple(subscription.negative_keywords),
            min_upvotes=subscription.min_upvotes,
            max_papers=subscription.max_papers,
            min_topic_similarity=self.settings.min_topic_similarity,
        )

    async def _signals(self, subscription: SubscriptionSettings, candidates: list[Paper]) -> dict[str, Any]:
        if not candidates:
            return {}
        liked: list[Paper] = []
        disliked: list[Paper] = []
        if self.settings.feedback_history:
            feedback = await self.repo.channel_feedback(
                subscription.channel_id, self.settings.feedback_history
            )
            stored = await self.search.index.fetch_papers([*feedback.liked, *feedback.disliked])
            liked = [stored[p] for p in feedback.liked if p in stored]
            disliked = [stored[p] for p in feedback.disliked if p in stored]
        if not (subscription.topics or liked or disliked):
            return {}
        return await gather_signals(
            self.search, candidates, topics=subscription.topics, liked=liked, disliked=disliked
        )

    async def _with_engagement(
        self, subscription: SubscriptionSettings, candidates: list[Paper], signals: dict[str, Any]
    ) -> dict[str, Any]:
        """The channel's own 👍 and saves of each candidate, added to its signals."""
        engagement = await self.repo.channel_engagement(
            subscription.channel_id, [p.paper_id for p in candidates]
        )
        merged = dict(signals)
        for paper_id, (votes, saves) in engagement.items():
            merged[paper_id] = replace(
                signals.get(paper_id, PaperSignals()), channel_votes=votes, saves=saves
            )
        return merged

    def _plan(self, composition: Composition) -> list[PlannedItem]:
        date = composition.digest_date
        header = PlannedItem(
            HEADER_ITEM,
            "header",
            0,
            item_marker(date, HEADER_ITEM),
            {
                "counts": composition.counts.as_dict(),
                "sources": list(composition.sources),
                "paper_count": len(composition.picks),
                "weekly": composition.subscription.cadence == "weekly",
                "poll": composition.poll.to_content() if composition.poll else None,
            },
        )
        papers = []
        for rank, pick in enumerate(composition.picks, 1):
            summary = composition.summaries[pick.paper.paper_id]
            papers.append(
                PlannedItem(
                    pick.paper.paper_id,
                    "paper",
                    rank,
                    item_marker(date, pick.paper.paper_id),
                    {
                        "paper": pick.paper.model_dump(mode="json"),
                        "summary": summary.text,
                        "summary_is_fallback": summary.is_fallback,
                        "summary_note": summary.note,
                        "why": pick.why,
                        "score": pick.score,
                    },
                )
            )
        return [header, *papers]

    def _header(self, composition: Composition) -> DigestHeader:
        subscription = composition.subscription
        return DigestHeader(
            subscription_id=_subscription_id(subscription),
            digest_date=composition.digest_date,
            sources=composition.sources,
            counts=composition.counts,
            paper_count=len(composition.picks),
            layout=subscription.layout,
            marker=item_marker(composition.digest_date, NOTICE_ITEM if composition.empty else HEADER_ITEM),
            empty_message=composition.empty_message,
            weekly=subscription.cadence == "weekly",
            poll=composition.poll,
        )

    def _paper_post(self, composition: Composition, rank: int, pick: Pick) -> PaperPost:
        summary = composition.summaries[pick.paper.paper_id]
        return PaperPost(
            subscription_id=_subscription_id(composition.subscription),
            digest_date=composition.digest_date,
            rank=rank,
            paper=pick.paper,
            summary=summary.text,
            summary_note=summary.note,
            why=pick.why,
            layout=composition.subscription.layout,
            marker=item_marker(composition.digest_date, pick.paper.paper_id),
        )

    def _header_from(self, entry: LedgerEntry, subscription: Subscription) -> DigestHeader:
        content = entry.content
        return DigestHeader(
            subscription_id=subscription.id,
            digest_date=entry.digest_date,
            sources=tuple(content.get("sources", [])),
            counts=DigestCounts.from_dict(content.get("counts", {})),
            paper_count=int(content.get("paper_count", 0)),
            layout=subscription.layout,
            marker=entry.marker,
            empty_message=content.get("message") if entry.kind == "notice" else None,
            weekly=bool(content.get("weekly")),
            poll=DigestPoll.from_content(content.get("poll")),
        )

    def _post_from(self, entry: LedgerEntry, subscription: Subscription) -> PaperPost:
        content = entry.content
        return PaperPost(
            subscription_id=subscription.id,
            digest_date=entry.digest_date,
            rank=entry.position,
            paper=Paper.from_payload(content["paper"]),
            summary=str(content.get("summary", "")),
            # planned before notes were recorded: a fallback then meant the LLM was unavailable
            summary_note=content.get("summary_note")
            or (SUMMARIZER_UNAVAILABLE if content.get("summary_is_fallback") else None),
            why=str(content.get("why", "")),
            layout=subscription.layout,
            marker=entry.marker,
        )
