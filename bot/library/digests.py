"""Personal DM digests: each user who follows authors, topics, categories or queries gets the day's
(or, weekly, the week's) papers that match them, by direct message.

Built on the channel digest's parts, in one pass for every user:
- the day's papers come from the digest's `SourceLoader` (fetched and ingested once for everyone);
- topic similarity is computed once per distinct topic over the day (`picking.gather_signals`),
  authors, categories and queries are matched on the records; a user's 👍/👎 and saved papers
  shift their own ranking the way channel feedback does;
- every picked paper is summarized once, by the digest's `SummaryService` (cached per paper), so
  the LLM is called once per distinct paper however many users get it;
- each user's digest is planned in the digest ledger (`post_ledger`, keyed by the user's id and
  guild 0) before anything is sent, and each DM's message id recorded after: a rerun sends only what
  is missing, never twice.
A user whose DMs are closed (Discord 50007) keeps their follows; they are skipped until they are told,
at their next use of the personal tools.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.core.config import DigestSettings, LibrarySettings
from bot.core.errors import UserInputError
from bot.core.papers import Paper
from bot.db.library import PERSONAL_GUILD_ID, LibraryRepository
from bot.db.repository import Repository
from bot.digest.delivery import HEADER_ITEM, PaperPost, digest_marker, item_marker
from bot.digest.picking import PaperSignals, RankWeights, gather_signals, matched_keywords
from bot.digest.records import LedgerEntry, PlannedItem
from bot.digest.service import DigestService
from bot.digest.sources import select_day
from bot.digest.summaries import SUMMARIZER_UNAVAILABLE, Summary
from bot.library.records import Follow, PersonalSettings, fold
from bot.llm import Priority, llm_priority

log = structlog.get_logger(__name__)

FEEDBACK_HISTORY = 20
DEFAULT_WEIGHTS = RankWeights()


class DMClosedError(UserInputError):
    """Discord refused the DM (50007: the user does not accept direct messages from the bot). On the
    user's side, as their input is: the service keeps their follows and tells them (DM_CLOSED_NOTICE)."""


@dataclass(frozen=True)
class PersonalHeader:
    user_id: int
    digest_date: dt.date
    cadence: str
    paper_count: int
    marker: str

    @property
    def title(self) -> str:
        span = "week" if self.cadence == "weekly" else "day"
        count = f"{self.paper_count} paper{'s' if self.paper_count != 1 else ''}"
        return f"Your paper digest · {self.digest_date:%A %d %B %Y} · {count} from your follows this {span}"


class PersonalPoster(Protocol):
    """Sends personal digests; implemented by the Discord layer (DMs). Raises DMClosedError on 50007."""

    async def send_header(self, user_id: int, header: PersonalHeader) -> int: ...

    async def send_paper(self, user_id: int, post: PaperPost) -> int: ...

    async def find_recent(self, user_id: int, marker: str) -> list[tuple[int, str]]:
        """(message id, marker) of the bot's recent DMs to the user whose marker starts with `marker`."""
        ...


@dataclass(frozen=True)
class PersonalPick:
    paper: Paper
    score: float
    why: str


@dataclass
class PersonalRunReport:
    users: int = 0  # users with follows and delivery by DM due today
    with_picks: int = 0
    delivered: int = 0  # users whose digest is now fully sent
    papers_sent: int = 0
    dm_closed: int = 0
    failed: int = 0
    distinct_papers: int = 0  # papers summarized for this run
    llm_summaries: int = 0  # of those, summaries the LLM wrote now (not from the cache)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def pick_for_user(
    papers: Sequence[Paper],
    follows: Sequence[Follow],
    signals: dict[str, PaperSignals],
    *,
    min_topic_similarity: float,
    max_papers: int,
    weights: RankWeights = DEFAULT_WEIGHTS,
) -> list[PersonalPick]:
    """The papers matching at least one follow, best first; `why` names the follows they match."""
    authors = [f for f in follows if f.kind == "author"]
    categories = [f for f in follows if f.kind == "category"]
    topics = [f for f in follows if f.kind == "topic"]
    queries = [f for f in follows if f.kind == "query"]
    day = [signals.get(p.paper_id, PaperSignals()) for p in papers]
    liked_base = sum(s.liked_similarity for s in day) / len(day) if day else 0.0
    disliked_base = sum(s.disliked_similarity for s in day) / len(day) if day else 0.0
    picks = []
    for paper in papers:
        reasons: list[tuple[float, str]] = []
        names = author_keys(paper)
        reasons += [(1.0, f"follows author {f.value}") for f in authors if fold(f.value) in names]
        reasons += [(0.8, f"follows category {f.value}") for f in categories if f.value in paper.categories]
        signal = signals.get(paper.paper_id, PaperSignals())
        for follow in topics:
            similarity = signal.topic_similarity.get(follow.value, 0.0)
            if similarity >= min_topic_similarity:
                reasons.append((similarity, f"follows topic “{follow.value}” ({similarity:.2f})"))
        matched = set(matched_keywords(paper, [f.value for f in queries]))
        reasons += [(0.6, f"follows query “{f.value}”") for f in queries if f.value in matched]
        if not reasons:
            continue
        net_feedback = (signal.liked_similarity - liked_base) - (signal.disliked_similarity - disliked_base)
        score = sum(weight for weight, _ in reasons) + weights.feedback * net_feedback
        why = " · ".join(text for _, text in sorted(reasons, key=lambda r: -r[0])[:3])
        if signal.liked_similarity - liked_base >= weights.feedback_note_threshold:
            why += " · like papers you 👍 or saved"
        picks.append(PersonalPick(paper, round(score, 6), why))
    picks.sort(key=lambda p: (-p.score, -(p.paper.upvotes or 0), p.paper.paper_id))
    return picks[:max_papers]


@lru_cache(maxsize=4096)
def _author_keys(authors: tuple[str, ...]) -> frozenset[str]:
    return frozenset(fold(a) for a in authors)


def author_keys(paper: Paper) -> frozenset[str]:
    """The paper's authors, folded for matching (cached: a run matches the same papers per user)."""
    return _author_keys(tuple(paper.authors))


def is_due(settings: PersonalSettings, digest_date: dt.date, weekly_day: int) -> bool:
    if settings.delivery != "dm" or settings.dm_closed:
        return False
    return settings.cadence == "daily" or digest_date.weekday() == weekly_day


class PersonalDigestService:
    def __init__(
        self,
        *,
        library: LibraryRepository,
        repo: Repository,
        digests: DigestService,
        settings: LibrarySettings,
        digest_settings: DigestSettings,
    ) -> None:
        self.library = library
        self.repo = repo
        self.digests = digests
        self.settings = settings
        self.digest_settings = digest_settings
        self._lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None

    def start(self, poster: PersonalPoster) -> None:
        """Send the personal digests every day at LIBRARY_DIGEST_TIME (UTC) through `poster`."""
        if self._scheduler is not None:
            return
        hour, minute = (int(part) for part in self.settings.digest_time.split(":"))
        scheduler = AsyncIOScheduler(timezone=dt.UTC)

        async def job() -> None:
            try:
                await self.run(dt.datetime.now(dt.UTC).date(), poster=poster)
            except Exception:
                log.exception("personal_digest.job_failed")

        scheduler.add_job(
            job, CronTrigger(hour=hour, minute=minute, timezone=dt.UTC), id="personal-digests",
            misfire_grace_time=3600, coalesce=True, max_instances=1,
        )  # fmt: skip
        scheduler.start()
        self._scheduler = scheduler
        log.info("personal_digest.scheduled", time=self.settings.digest_time)

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def next_run_time(self) -> dt.datetime | None:
        job = self._scheduler.get_job("personal-digests") if self._scheduler is not None else None
        return job.next_run_time if job is not None else None

    @property
    def weekly_day(self) -> int:
        return ("mon", "tue", "wed", "thu", "fri", "sat", "sun").index(self.settings.weekly_day[:3].lower())

    async def run(
        self, digest_date: dt.date, *, poster: PersonalPoster, user_ids: set[int] | None = None
    ) -> PersonalRunReport:
        """Send every due user their digest for `digest_date` (or finish sending it)."""
        async with self._lock:
            started = time.monotonic()
            report = await self._run(digest_date, poster, user_ids)
            report.seconds = round(time.monotonic() - started, 3)
            figures = {k: v for k, v in report.__dict__.items() if k != "errors"}
            log.info(
                "personal_digest.run_finished",
                digest_date=digest_date.isoformat(),
                error_count=len(report.errors),
                **figures,
            )
            return report

    async def _run(
        self, digest_date: dt.date, poster: PersonalPoster, user_ids: set[int] | None
    ) -> PersonalRunReport:
        report = PersonalRunReport()
        users = [
            (s, f) for s, f in await self.library.digest_users()
            if is_due(s, digest_date, self.weekly_day) and (user_ids is None or s.user_id in user_ids)
        ]  # fmt: skip
        report.users = len(users)
        if not users:
            return report
        papers_by_cadence = {
            cadence: await self._papers(digest_date, cadence, users, report)
            for cadence in {s.cadence for s, _ in users}
        }
        all_papers = {p.paper_id: p for papers in papers_by_cadence.values() for p in papers}
        topics = sorted({f.value for _, follows in users for f in follows if f.kind == "topic"})
        signals = await self._topic_signals(list(all_papers.values()), topics)
        due = [s.user_id for s, _ in users]
        feedback = await self.library.feedback(due, FEEDBACK_HISTORY)
        saved = await self.library.saved_ids(due, FEEDBACK_HISTORY)
        ledger = await self.library.personal_ledger(due, digest_date)
        sent = await self.library.sent_papers(due, list(all_papers))
        plans: list[tuple[PersonalSettings, list[PersonalPick]]] = []
        resumed: list[tuple[PersonalSettings, list[LedgerEntry]]] = []
        for settings, follows in users:
            planned = ledger.get(settings.user_id, [])
            if planned:  # an earlier run picked this user's digest: finish it, never re-pick
                resumed.append((settings, planned))
                continue
            candidates = papers_by_cadence[settings.cadence]
            already = sent.get(settings.user_id, set())
            candidates = [p for p in candidates if p.paper_id not in already]
            user_signals = await self._with_feedback(
                candidates, signals, feedback.get(settings.user_id, ([], [])), saved.get(settings.user_id, [])
            )
            picks = pick_for_user(
                candidates, follows, user_signals,
                min_topic_similarity=self.digest_settings.min_topic_similarity,
                max_papers=self.settings.digest_max_papers,
            )  # fmt: skip
            plans.append((settings, picks))
        picked = {p.paper.paper_id: p.paper for _, picks in plans for p in picks}
        report.with_picks = sum(1 for _, picks in plans if picks)
        report.distinct_papers = len(picked)
        summaries: dict[str, Summary] = {}
        if picked:
            with llm_priority(Priority.BACKGROUND):
                summaries = await self.digests.summaries.summarize(list(picked.values()))
        report.llm_summaries = sum(
            1 for s in summaries.values() if not s.from_cache and s.note != SUMMARIZER_UNAVAILABLE
        )
        # Users' DMs go out a few at a time, as channel digests run (SQLite has one writer).
        slots = asyncio.Semaphore(self.digest_settings.max_concurrent_runs)

        async def deliver(settings: PersonalSettings, entries: list[LedgerEntry]) -> None:
            async with slots:
                await self._deliver_user(settings, entries, poster, report)

        async def plan_and_deliver(settings: PersonalSettings, picks: list[PersonalPick]) -> None:
            async with slots:  # planning writes too: within the same bound
                entries = await self.repo.plan_digest(
                    guild_id=PERSONAL_GUILD_ID, channel_id=settings.user_id, digest_date=digest_date,
                    run_id=None,  # personal digests have no channel run
                    items=self._plan(digest_date, picks, summaries, settings.cadence),
                )  # fmt: skip
                await self._deliver_user(settings, entries, poster, report)

        await asyncio.gather(
            *(plan_and_deliver(s, picks) for s, picks in plans if picks),
            *(deliver(s, entries) for s, entries in resumed if any(not e.posted for e in entries)),
        )
        return report

    async def _papers(
        self, digest_date: dt.date, cadence: str, users: list[tuple[PersonalSettings, list[Follow]]],
        report: PersonalRunReport,
    ) -> list[Paper]:  # fmt: skip
        days = 7 if cadence == "weekly" else 1
        specs = [f"hf:{(digest_date - dt.timedelta(days=n)).isoformat()}" for n in range(days)]
        categories = sorted(
            {f.value for s, follows in users if s.cadence == cadence for f in follows if f.kind == "category"}
        )
        specs += [f"arxiv:{c}" for c in categories]
        loader = self.digests.sources
        batches = [await loader.load(spec) for spec in specs]
        day = select_day(
            batches, digest_date, arxiv_lookback_days=max(days, self.digest_settings.arxiv_lookback_days)
        )
        report.errors += day.errors
        return day.papers

    async def _topic_signals(self, papers: list[Paper], topics: list[str]) -> dict[str, PaperSignals]:
        if not papers or not topics:
            return {}
        return await gather_signals(self.digests.search, papers, topics=topics)

    async def _with_feedback(
        self,
        candidates: list[Paper],
        signals: dict[str, PaperSignals],
        votes: tuple[list[str], list[str]],
        saved_ids: list[str],
    ) -> dict[str, PaperSignals]:
        """The day's signals plus this user's closeness to what they 👍 or saved and 👎."""
        liked_ids = list(dict.fromkeys([*votes[0], *saved_ids]))
        disliked_ids = votes[1]
        if not candidates or not (liked_ids or disliked_ids):
            return signals
        stored = await self.digests.search.index.fetch_papers([*liked_ids, *disliked_ids])
        liked = [stored[p] for p in liked_ids if p in stored]
        disliked = [stored[p] for p in disliked_ids if p in stored]
        own = await gather_signals(self.digests.search, candidates, topics=(), liked=liked, disliked=disliked)
        merged = dict(signals)
        for paper_id, signal in own.items():
            base = signals.get(paper_id, PaperSignals())
            merged[paper_id] = PaperSignals(
                base.topic_similarity, signal.liked_similarity, signal.disliked_similarity
            )
        return merged

    def _plan(
        self, digest_date: dt.date, picks: list[PersonalPick], summaries: dict[str, Summary], cadence: str
    ) -> list[PlannedItem]:
        header = PlannedItem(HEADER_ITEM, "header", 0, item_marker(digest_date, HEADER_ITEM),
                             {"paper_count": len(picks), "cadence": cadence})  # fmt: skip
        items = [header]
        for rank, pick in enumerate(picks, 1):
            summary = summaries[pick.paper.paper_id]
            items.append(
                PlannedItem(
                    pick.paper.paper_id, "paper", rank, item_marker(digest_date, pick.paper.paper_id),
                    {"paper": pick.paper.model_dump(mode="json"), "summary": summary.text,
                     "summary_note": summary.note, "why": pick.why, "score": pick.score},
                )
            )  # fmt: skip
        return items

    async def _deliver_user(
        self,
        settings: PersonalSettings,
        entries: list[LedgerEntry],
        poster: PersonalPoster,
        report: PersonalRunReport,
    ) -> None:
        user_id = settings.user_id
        bound = log.bind(user_id=user_id, digest_date=entries[0].digest_date.isoformat())
        try:
            sent = await self._send(user_id, entries, poster, bound)
        except DMClosedError:
            await self.library.set_settings(user_id, dm_closed=True)
            bound.info("personal_digest.dm_closed")
            report.dm_closed += 1
            return
        except Exception as exc:
            bound.warning("personal_digest.failed", error=str(exc)[:300])
            report.failed += 1
            report.errors.append(f"user {user_id}: {type(exc).__name__}: {exc}"[:300])
            return
        report.delivered += 1
        report.papers_sent += sent

    async def _send(
        self, user_id: int, entries: list[LedgerEntry], poster: PersonalPoster, bound: object
    ) -> int:
        """Send what is not sent yet, in order; an attempted but unconfirmed item is looked for first."""
        pending = [e for e in entries if not e.posted]
        found: dict[str, int] = {}
        if any(e.attempts > 0 for e in pending):
            found = dict(
                (m, i) for i, m in await poster.find_recent(user_id, digest_marker(pending[0].digest_date))
            )
        sent = 0
        to_send = []
        recovered: dict[int, int] = {}
        for entry in pending:
            if entry.attempts > 0 and entry.marker in found:
                recovered[entry.id] = found[entry.marker]
            else:
                to_send.append(entry)
        await self.library.mark_sent(recovered)
        # One durable "about to send" for the user's items, then one record of what was sent: a crash
        # in between leaves them attempted, and the next run looks each up in the DM before sending.
        await self.library.mark_attempts([e.id for e in to_send])
        posted: dict[int, int] = {}
        try:
            for entry in to_send:
                try:
                    if entry.kind == "header":
                        message_id = await poster.send_header(user_id, self._header_from(user_id, entry))
                    else:
                        message_id = await poster.send_paper(user_id, self._post_from(entry))
                except DMClosedError:
                    await self.repo.mark_failed(entry.id, "50007: the user does not accept direct messages")
                    raise
                posted[entry.id] = message_id
                sent += entry.kind == "paper"
        finally:
            await self.library.mark_sent(posted)
        return sent

    @staticmethod
    def _header_from(user_id: int, entry: LedgerEntry) -> PersonalHeader:
        return PersonalHeader(
            user_id, entry.digest_date, str(entry.content.get("cadence", "daily")),
            int(entry.content.get("paper_count", 0)), entry.marker,
        )  # fmt: skip

    @staticmethod
    def _post_from(entry: LedgerEntry) -> PaperPost:
        content = entry.content
        return PaperPost(
            subscription_id=None, digest_date=entry.digest_date, rank=entry.position,
            paper=Paper.from_payload(content["paper"]), summary=str(content.get("summary", "")),
            summary_note=content.get("summary_note"), why=str(content.get("why", "")),
            layout="message_per_paper", marker=entry.marker,
        )  # fmt: skip
