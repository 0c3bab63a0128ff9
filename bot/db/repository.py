"""Every read and write of the state database, one transaction per method, plain records out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import column, delete, func, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.engine import Database
from bot.db.tables import (
    DigestRunRow,
    FeedbackRow,
    GuildSettingsRow,
    GuildTokenUsageRow,
    LedgerRow,
    SubscriptionRow,
    SummaryCacheRow,
    utcnow,
)
from bot.digest.records import (
    ChannelFeedback,
    DigestCounts,
    DigestRun,
    GuildSettings,
    LedgerEntry,
    PlannedItem,
    RunStatus,
    RunTrigger,
    Subscription,
    SubscriptionSettings,
)

_SUBSCRIPTION_FIELDS = tuple(SubscriptionSettings.model_fields)


def _subscription(row: SubscriptionRow) -> Subscription:
    data = {name: getattr(row, name) for name in _SUBSCRIPTION_FIELDS}
    return Subscription(**data, id=row.id, created_at=row.created_at, updated_at=row.updated_at)


def _run(row: DigestRunRow) -> DigestRun:
    counts = DigestCounts(
        fetched=row.fetched,
        new=row.new,
        duplicates=row.duplicates,
        filtered=row.filtered,
        posted=row.posted,
        failed=row.failed,
        recovered=row.recovered,
    )
    return DigestRun(
        id=row.id,
        subscription_id=row.subscription_id,
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        digest_date=row.digest_date,
        trigger=row.trigger,
        status=row.status,
        counts=counts,
        errors=list(row.errors or []),
        empty_reason=row.empty_reason,
        details=dict(row.details or {}),
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def ledger_entry(row: LedgerRow) -> LedgerEntry:
    """A ledger row as the digest services see it (shared by the channel and personal ledgers)."""
    return LedgerEntry(
        id=row.id,
        guild_id=row.guild_id,
        channel_id=row.channel_id,
        digest_date=row.digest_date,
        item=row.item,
        kind=row.kind,
        position=row.position,
        marker=row.marker,
        state=row.state,
        attempts=row.attempts,
        message_id=row.message_id,
        run_id=row.run_id,
        content=dict(row.content or {}),
        error=row.error,
    )


class Repository:
    def __init__(self, database: Database) -> None:
        self.database = database

    # ---------------------------------------------------------------- helpers

    def _insert(self, table: Any) -> Any:
        """A dialect INSERT that supports ON CONFLICT (both SQLite and PostgreSQL have it)."""
        return (postgresql.insert if self.database.backend == "postgresql" else sqlite.insert)(table)

    # ---------------------------------------------------------------- guild settings

    async def get_guild_settings(self, guild_id: int) -> GuildSettings | None:
        async with self.database.snapshot() as session:
            row = await session.get(GuildSettingsRow, guild_id)
            if row is None:
                return None
            return GuildSettings(row.guild_id, row.default_timezone, row.default_post_time)

    async def set_guild_settings(
        self, guild_id: int, *, default_timezone: str | None, default_post_time: dt.time | None
    ) -> GuildSettings:
        async with self.database.transaction() as session:
            row = await session.get(GuildSettingsRow, guild_id)
            if row is None:
                row = GuildSettingsRow(guild_id=guild_id)
                session.add(row)
            row.default_timezone = default_timezone
            row.default_post_time = default_post_time
            return GuildSettings(guild_id, default_timezone, default_post_time)

    # ---------------------------------------------------------------- subscriptions

    async def save_subscription(self, settings: SubscriptionSettings) -> Subscription:
        """Create the channel's subscription, or replace its settings (one subscription per channel)."""
        settings = SubscriptionSettings.model_validate(settings.model_dump())  # re-validate
        async with self.database.transaction() as session:
            row = (
                await session.execute(
                    select(SubscriptionRow).where(SubscriptionRow.channel_id == settings.channel_id)
                )
            ).scalar_one_or_none()
            values = settings.model_dump()
            values["weekdays"] = list(settings.weekdays)
            if row is None:
                row = SubscriptionRow(**values)
                session.add(row)
            else:
                values.pop("created_by", None)
                for name, value in values.items():
                    setattr(row, name, value)
                row.updated_at = utcnow()
            await session.flush()
            await session.refresh(row)
            return _subscription(row)

    async def get_subscription(self, subscription_id: int) -> Subscription | None:
        async with self.database.snapshot() as session:
            row = await session.get(SubscriptionRow, subscription_id)
            return _subscription(row) if row else None

    async def get_channel_subscription(self, channel_id: int) -> Subscription | None:
        async with self.database.snapshot() as session:
            query = select(SubscriptionRow).where(SubscriptionRow.channel_id == channel_id)
            row = (await session.execute(query)).scalar_one_or_none()
            return _subscription(row) if row else None

    async def list_subscriptions(
        self, *, guild_ids: Collection[int] | None = None, include_paused: bool = True
    ) -> list[Subscription]:
        query = select(SubscriptionRow).order_by(SubscriptionRow.id)
        if guild_ids is not None:
            query = query.where(SubscriptionRow.guild_id.in_(list(guild_ids)))
        if not include_paused:
            query = query.where(SubscriptionRow.paused.is_(False))
        async with self.database.snapshot() as session:
            return [_subscription(row) for row in (await session.execute(query)).scalars()]

    async def set_paused(self, channel_id: int, paused: bool) -> Subscription | None:
        async with self.database.transaction() as session:
            query = select(SubscriptionRow).where(SubscriptionRow.channel_id == channel_id)
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None:
                return None
            row.paused = paused
            row.updated_at = utcnow()
            await session.flush()
            return _subscription(row)

    async def delete_subscription(self, channel_id: int) -> Subscription | None:
        """Remove the channel's subscription; its runs and ledger stay (for status and exactly-once)."""
        async with self.database.transaction() as session:
            query = select(SubscriptionRow).where(SubscriptionRow.channel_id == channel_id)
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None:
                return None
            removed = _subscription(row)
            await session.execute(
                update(DigestRunRow)
                .where(DigestRunRow.subscription_id == row.id)
                .values(subscription_id=None)
            )
            await session.delete(row)
            return removed

    # ---------------------------------------------------------------- runs

    async def start_run(self, subscription: Subscription, digest_date: dt.date, trigger: RunTrigger) -> int:
        async with self.database.transaction() as session:
            row = DigestRunRow(
                subscription_id=subscription.id,
                guild_id=subscription.guild_id,
                channel_id=subscription.channel_id,
                digest_date=digest_date,
                trigger=trigger,
                status="running",
                errors=[],
                details={},
            )
            session.add(row)
            await session.flush()
            return row.id

    async def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        counts: DigestCounts,
        *,
        errors: Sequence[str] = (),
        empty_reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> DigestRun:
        async with self.database.transaction() as session:
            row = await session.get(DigestRunRow, run_id)
            if row is None:
                raise LookupError(f"no digest run {run_id}")
            for name, value in counts.as_dict().items():
                setattr(row, name, value)
            row.status = status
            row.errors = list(errors)
            row.empty_reason = empty_reason
            row.details = details or {}
            row.finished_at = utcnow()
            await session.flush()
            return _run(row)

    async def recent_runs(self, channel_id: int, limit: int = 5) -> list[DigestRun]:
        query = (
            select(DigestRunRow)
            .where(DigestRunRow.channel_id == channel_id)
            .order_by(DigestRunRow.started_at.desc(), DigestRunRow.id.desc())
            .limit(limit)
        )
        async with self.database.snapshot() as session:
            return [_run(row) for row in (await session.execute(query)).scalars()]

    async def unfinished_runs(self, *, guild_ids: Collection[int] | None = None) -> list[DigestRun]:
        """Runs still marked `running`: after a restart, these were interrupted."""
        query = select(DigestRunRow).where(DigestRunRow.status == "running").order_by(DigestRunRow.id)
        if guild_ids is not None:
            query = query.where(DigestRunRow.guild_id.in_(list(guild_ids)))
        async with self.database.snapshot() as session:
            return [_run(row) for row in (await session.execute(query)).scalars()]

    async def mark_run_interrupted(self, run_id: int, error: str) -> None:
        async with self.database.transaction() as session:
            row = await session.get(DigestRunRow, run_id)
            if row is not None and row.status == "running":
                row.status = "interrupted"
                row.errors = [*(row.errors or []), error]
                row.finished_at = utcnow()

    # ---------------------------------------------------------------- ledger

    async def plan_digest(
        self,
        *,
        guild_id: int,
        channel_id: int,
        digest_date: dt.date,
        run_id: int | None,
        items: Sequence[PlannedItem],
    ) -> list[LedgerEntry]:
        """Record the intent to post `items`; items already planned for that channel and date are kept.

        Returns every ledger entry of the channel and date, in position order.
        """
        async with self.database.transaction() as session:
            if items:
                insert = self._insert(LedgerRow).values(
                    [
                        {
                            "guild_id": guild_id,
                            "channel_id": channel_id,
                            "digest_date": digest_date,
                            "item": item.item,
                            "kind": item.kind,
                            "position": item.position,
                            "marker": item.marker,
                            "state": "intent",
                            "attempts": 0,
                            "run_id": run_id,
                            "content": item.content,
                            "created_at": utcnow(),
                        }
                        for item in items
                    ]
                )
                await session.execute(
                    insert.on_conflict_do_nothing(index_elements=["channel_id", "digest_date", "item"])
                )
            return await self._entries(session, channel_id, digest_date)

    async def _entries(
        self, session: AsyncSession, channel_id: int, digest_date: dt.date
    ) -> list[LedgerEntry]:
        query = (
            select(LedgerRow)
            .where(LedgerRow.channel_id == channel_id, LedgerRow.digest_date == digest_date)
            .order_by(LedgerRow.position, LedgerRow.id)
        )
        return [ledger_entry(row) for row in (await session.execute(query)).scalars()]

    async def digest_entries(self, channel_id: int, digest_date: dt.date) -> list[LedgerEntry]:
        async with self.database.snapshot() as session:
            return await self._entries(session, channel_id, digest_date)

    async def mark_attempt(self, entry_id: int) -> None:
        """Durably note that a post is about to be sent, so a restart knows to look for it first."""
        async with self.database.transaction() as session:
            await session.execute(
                update(LedgerRow).where(LedgerRow.id == entry_id).values(attempts=LedgerRow.attempts + 1)
            )

    async def mark_posted(self, entry_id: int, message_id: int) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                update(LedgerRow)
                .where(LedgerRow.id == entry_id)
                .values(state="posted", message_id=message_id, posted_at=utcnow(), error=None)
            )

    async def mark_failed(self, entry_id: int, error: str) -> None:
        async with self.database.transaction() as session:
            await session.execute(
                update(LedgerRow).where(LedgerRow.id == entry_id).values(state="failed", error=error[:2000])
            )

    async def posted_paper_ids(self, channel_id: int, paper_ids: Collection[str]) -> set[str]:
        """Which of `paper_ids` this channel already has (posted, or planned and not abandoned)."""
        if not paper_ids:
            return set()
        query = select(LedgerRow.item).where(
            LedgerRow.channel_id == channel_id,
            LedgerRow.kind == "paper",
            LedgerRow.item.in_(list(paper_ids)),
        )
        async with self.database.snapshot() as session:
            return set((await session.execute(query)).scalars())

    async def find_post(self, message_id: int) -> LedgerEntry | None:
        """The digest post a message id belongs to (reactions → feedback)."""
        query = select(LedgerRow).where(LedgerRow.message_id == message_id).limit(1)
        async with self.database.snapshot() as session:
            row = (await session.execute(query)).scalar_one_or_none()
            return ledger_entry(row) if row else None

    # ---------------------------------------------------------------- feedback

    async def record_feedback(
        self, *, guild_id: int, channel_id: int, message_id: int, paper_id: str, user_id: int, value: int
    ) -> None:
        """A user's 👍 (+1) or 👎 (-1) on a post; a later reaction by the same user replaces it."""
        if value not in (1, -1):
            raise ValueError("feedback value must be +1 or -1")
        async with self.database.transaction() as session:
            now = utcnow()
            insert = self._insert(FeedbackRow).values(
                guild_id=guild_id,
                channel_id=channel_id,
                message_id=message_id,
                paper_id=paper_id,
                user_id=user_id,
                value=value,
                created_at=now,
                updated_at=now,
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["message_id", "user_id"], set_={"value": value, "updated_at": now}
                )
            )

    async def remove_feedback(self, *, message_id: int, user_id: int, value: int) -> bool:
        """Undo a reaction; only removes the row if it still holds that value."""
        async with self.database.transaction() as session:
            result = await session.execute(
                delete(FeedbackRow).where(
                    FeedbackRow.message_id == message_id,
                    FeedbackRow.user_id == user_id,
                    FeedbackRow.value == value,
                )
            )
            return bool(getattr(result, "rowcount", 0))

    async def channel_feedback(self, channel_id: int, limit: int = 20) -> ChannelFeedback:
        """Papers with a positive / negative balance of reactions in the channel, most recent first."""
        balance = func.sum(FeedbackRow.value)
        latest = func.max(FeedbackRow.updated_at)
        query = (
            select(FeedbackRow.paper_id, balance, latest)
            .where(FeedbackRow.channel_id == channel_id)
            .group_by(FeedbackRow.paper_id)
            .order_by(latest.desc(), FeedbackRow.paper_id)
        )
        liked: list[str] = []
        disliked: list[str] = []
        async with self.database.snapshot() as session:
            for paper_id, total, _ in (await session.execute(query)).all():
                if total > 0 and len(liked) < limit:
                    liked.append(paper_id)
                elif total < 0 and len(disliked) < limit:
                    disliked.append(paper_id)
        return ChannelFeedback(liked=liked, disliked=disliked)

    # ---------------------------------------------------------------- summary cache

    async def cached_summaries(
        self, paper_ids: Collection[str], *, prompt_version: str, model: str
    ) -> dict[str, str]:
        if not paper_ids:
            return {}
        query = select(SummaryCacheRow.paper_id, SummaryCacheRow.text).where(
            SummaryCacheRow.paper_id.in_(list(paper_ids)),
            SummaryCacheRow.prompt_version == prompt_version,
            SummaryCacheRow.model == model,
        )
        async with self.database.snapshot() as session:
            return {paper_id: text for paper_id, text in (await session.execute(query)).all()}

    async def store_summary(self, paper_id: str, *, prompt_version: str, model: str, text: str) -> None:
        async with self.database.transaction() as session:
            insert = self._insert(SummaryCacheRow).values(
                paper_id=paper_id, prompt_version=prompt_version, model=model, text=text, created_at=utcnow()
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=["paper_id", "prompt_version", "model"], set_={"text": text}
                )
            )

    # ---------------------------------------------------------------- LLM token budget

    async def tokens_used(self, guild_id: int, day: dt.date) -> int:
        async with self.database.snapshot() as session:
            row = await session.get(GuildTokenUsageRow, (guild_id, day))
            return row.tokens if row is not None else 0

    async def add_tokens(self, guild_id: int, day: dt.date, tokens: int) -> int:
        """Add one request's tokens to the guild's day (atomic upsert); returns the day's total."""
        table = GuildTokenUsageRow.__table__
        statement = self._insert(table).values(guild_id=guild_id, day=day, tokens=tokens, requests=1)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.guild_id, table.c.day],
            set_={"tokens": table.c.tokens + tokens, "requests": table.c.requests + 1},
        )
        async with self.database.transaction() as session:
            await session.execute(statement)
            row = await session.get(GuildTokenUsageRow, (guild_id, day), populate_existing=True)
            return row.tokens if row is not None else tokens

    # ---------------------------------------------------------------- weekly roundups

    async def channel_engagement(
        self, channel_id: int, paper_ids: Collection[str]
    ) -> dict[str, tuple[int, int]]:
        """Per paper: (net 👍 − 👎 votes in this channel, how many of the channel's voters saved it to
        their library). The channel's voters are the members who reacted on its posts; counts only,
        never who."""
        ids = list(dict.fromkeys(paper_ids))
        if not ids:
            return {}
        library = table("library_papers", column("user_id"), column("paper_id"))
        voters = select(FeedbackRow.user_id).where(FeedbackRow.channel_id == channel_id).distinct()
        async with self.database.snapshot() as session:
            votes = await session.execute(
                select(FeedbackRow.paper_id, func.sum(FeedbackRow.value))
                .where(FeedbackRow.channel_id == channel_id, FeedbackRow.paper_id.in_(ids))
                .group_by(FeedbackRow.paper_id)
            )
            saves = await session.execute(
                select(library.c.paper_id, func.count())
                .where(library.c.paper_id.in_(ids), library.c.user_id.in_(voters))
                .group_by(library.c.paper_id)
            )
            net = {str(p): int(v or 0) for p, v in votes.all()}
            saved = {str(p): int(n) for p, n in saves.all()}
        return {p: (net.get(p, 0), saved.get(p, 0)) for p in ids if p in net or p in saved}

    async def posted_headers(self, since: dt.datetime) -> list[tuple[LedgerEntry, dt.datetime]]:
        """Digest headers posted since `since`, with when (weekly roundups' polls are among them)."""
        query = select(LedgerRow).where(
            LedgerRow.kind == "header", LedgerRow.state == "posted", LedgerRow.posted_at >= since
        )
        async with self.database.snapshot() as session:
            rows = (await session.execute(query)).scalars()
            return [(ledger_entry(row), row.posted_at) for row in rows if row.posted_at is not None]
