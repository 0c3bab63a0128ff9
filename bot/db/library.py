"""Reads and writes of users' libraries, follows and personal-digest settings (bot.db.library_tables).

Personal DM digests use the digest ledger (`post_ledger`) with the user's id as its channel and
guild 0 (no guild has id 0), so `forget_user` deletes those rows too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from bot.core.papers import Paper
from bot.db.engine import Database
from bot.db.library_tables import FollowRow, LibraryPaperRow, PersonalFeedbackRow, PersonalSettingsRow
from bot.db.repository import ledger_entry
from bot.db.tables import FeedbackRow, LedgerRow, SubscriptionRow, utcnow
from bot.digest.records import LedgerEntry
from bot.library.records import Follow, FollowKind, PersonalSettings, SavedPaper, fold

PERSONAL_GUILD_ID = 0  # the ledger's guild for personal DM digests


def _saved(row: LibraryPaperRow) -> SavedPaper:
    return SavedPaper(Paper.from_payload(dict(row.paper)), row.note, row.saved_at)


def _follow(row: FollowRow) -> Follow:
    return Follow(row.id, row.kind, row.value)  # type: ignore[arg-type]


def _settings(row: PersonalSettingsRow | None, user_id: int) -> PersonalSettings:
    if row is None:
        return PersonalSettings(user_id)
    return PersonalSettings(user_id, row.delivery, row.cadence, row.dm_closed)  # type: ignore[arg-type]


class LibraryRepository:
    def __init__(self, database: Database) -> None:
        self.database = database

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.database.backend == "postgresql" else sqlite.insert)(table)

    # ---------------------------------------------------------------- library

    async def count_saved(self, user_id: int) -> int:
        async with self.database.snapshot() as session:
            query = (
                select(func.count()).select_from(LibraryPaperRow).where(LibraryPaperRow.user_id == user_id)
            )
            return int((await session.execute(query)).scalar_one())

    async def save_papers(self, user_id: int, papers: Sequence[Paper], *, limit: int) -> list[str]:
        """Save the papers not saved yet, up to `limit` in the library; returns the ids newly saved."""
        async with self.database.transaction() as session:
            have = set(
                (
                    await session.execute(
                        select(LibraryPaperRow.paper_id).where(LibraryPaperRow.user_id == user_id)
                    )
                ).scalars()
            )
            room = max(0, limit - len(have))
            new = [p for p in dict((p.paper_id, p) for p in papers).values() if p.paper_id not in have][:room]
            if new:
                now = utcnow()
                await session.execute(
                    self._insert(LibraryPaperRow)
                    .values(
                        [
                            {"user_id": user_id, "paper_id": p.paper_id, "paper": p.model_dump(mode="json"),
                             "note": None, "saved_at": now}
                            for p in new
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["user_id", "paper_id"])
                )  # fmt: skip
            return [p.paper_id for p in new]

    async def list_saved(
        self, user_id: int, *, offset: int = 0, limit: int | None = None
    ) -> list[SavedPaper]:
        query = (
            select(LibraryPaperRow)
            .where(LibraryPaperRow.user_id == user_id)
            .order_by(LibraryPaperRow.saved_at.desc(), LibraryPaperRow.paper_id)
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        async with self.database.snapshot() as session:
            return [_saved(row) for row in (await session.execute(query)).scalars()]

    async def get_saved(self, user_id: int, paper_ids: Collection[str]) -> dict[str, SavedPaper]:
        query = select(LibraryPaperRow).where(
            LibraryPaperRow.user_id == user_id, LibraryPaperRow.paper_id.in_(list(paper_ids))
        )
        async with self.database.snapshot() as session:
            return {row.paper_id: _saved(row) for row in (await session.execute(query)).scalars()}

    async def set_note(self, user_id: int, paper_id: str, note: str | None) -> bool:
        async with self.database.transaction() as session:
            result = await session.execute(
                update(LibraryPaperRow)
                .where(LibraryPaperRow.user_id == user_id, LibraryPaperRow.paper_id == paper_id)
                .values(note=note)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove_saved(self, user_id: int, paper_id: str) -> bool:
        async with self.database.transaction() as session:
            result = await session.execute(
                delete(LibraryPaperRow).where(
                    LibraryPaperRow.user_id == user_id, LibraryPaperRow.paper_id == paper_id
                )
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- follows

    async def list_follows(self, user_id: int) -> list[Follow]:
        query = select(FollowRow).where(FollowRow.user_id == user_id).order_by(FollowRow.id)
        async with self.database.snapshot() as session:
            return [_follow(row) for row in (await session.execute(query)).scalars()]

    async def add_follow(self, user_id: int, kind: FollowKind, value: str, *, limit: int) -> Follow | None:
        """The new follow; None when the user already follows it. ValueError past `limit` follows."""
        async with self.database.transaction() as session:
            count = (
                await session.execute(
                    select(func.count()).select_from(FollowRow).where(FollowRow.user_id == user_id)
                )
            ).scalar_one()
            key = fold(value) if kind in ("author", "topic", "query") else value.lower()
            exists = await session.execute(
                select(FollowRow.id).where(
                    FollowRow.user_id == user_id, FollowRow.kind == kind, FollowRow.value_key == key
                )
            )
            if exists.first() is not None:
                return None
            if count >= limit:
                raise ValueError(f"at most {limit} follows")
            row = FollowRow(user_id=user_id, kind=kind, value=value, value_key=key)
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:  # the same follow added at the same moment
                return None
            return _follow(row)

    async def remove_follow(self, user_id: int, follow_id: int) -> Follow | None:
        async with self.database.transaction() as session:
            row = await session.get(FollowRow, follow_id)
            if row is None or row.user_id != user_id:
                return None
            follow = _follow(row)
            await session.delete(row)
            return follow

    # ---------------------------------------------------------------- personal digest settings

    async def get_settings(self, user_id: int) -> PersonalSettings:
        async with self.database.snapshot() as session:
            return _settings(await session.get(PersonalSettingsRow, user_id), user_id)

    async def set_settings(self, user_id: int, **values: Any) -> PersonalSettings:
        """Change the given columns (delivery, cadence, dm_closed); a user without a row gets one."""
        async with self.database.transaction() as session:
            row = await session.get(PersonalSettingsRow, user_id)
            if row is None:
                row = PersonalSettingsRow(user_id=user_id, delivery="dm", cadence="daily", dm_closed=False)
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            await session.flush()
            return _settings(row, user_id)

    async def take_dm_closed(self, user_id: int) -> bool:
        """True once after a DM to the user failed with 50007 (the flag is cleared: tell them once)."""
        async with self.database.transaction() as session:
            result = await session.execute(
                update(PersonalSettingsRow)
                .where(PersonalSettingsRow.user_id == user_id, PersonalSettingsRow.dm_closed.is_(True))
                .values(dm_closed=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def digest_users(self) -> list[tuple[PersonalSettings, list[Follow]]]:
        """Every user with at least one follow, their settings (defaults when they have no row)."""
        async with self.database.snapshot() as session:
            follows: dict[int, list[Follow]] = {}
            for row in (
                await session.execute(select(FollowRow).order_by(FollowRow.user_id, FollowRow.id))
            ).scalars():
                follows.setdefault(row.user_id, []).append(_follow(row))
            settings: dict[int, PersonalSettings] = {}
            if follows:
                query = select(PersonalSettingsRow).where(PersonalSettingsRow.user_id.in_(list(follows)))
                for stored in (await session.execute(query)).scalars():
                    settings[stored.user_id] = _settings(stored, stored.user_id)
        return [
            (settings.get(user_id, PersonalSettings(user_id)), items) for user_id, items in follows.items()
        ]

    # ---------------------------------------------------------------- feedback

    async def set_feedback(self, user_id: int, paper_id: str, value: int) -> None:
        async with self.database.transaction() as session:
            row = await session.get(PersonalFeedbackRow, (user_id, paper_id))
            if row is None:
                session.add(PersonalFeedbackRow(user_id=user_id, paper_id=paper_id, value=value))
            else:
                row.value = value

    async def feedback(self, user_ids: Collection[int], limit: int) -> dict[int, tuple[list[str], list[str]]]:
        """Per user: (liked, disliked) paper ids, most recent first, `limit` each."""
        if not user_ids:
            return {}
        query = (
            select(PersonalFeedbackRow)
            .where(PersonalFeedbackRow.user_id.in_(list(user_ids)))
            .order_by(PersonalFeedbackRow.updated_at.desc())
        )
        found: dict[int, tuple[list[str], list[str]]] = {}
        async with self.database.snapshot() as session:
            for row in (await session.execute(query)).scalars():
                liked, disliked = found.setdefault(row.user_id, ([], []))
                target = liked if row.value > 0 else disliked
                if len(target) < limit:
                    target.append(row.paper_id)
        return found

    # ---------------------------------------------------------------- personal digests' ledger

    async def personal_ledger(
        self, user_ids: Collection[int], digest_date: dt.date
    ) -> dict[int, list[LedgerEntry]]:
        """The day's planned personal digests of these users (one query for all of them)."""
        found: dict[int, list[LedgerEntry]] = {}
        ids = list(user_ids)
        async with self.database.snapshot() as session:
            for start in range(0, len(ids), 500):
                query = (
                    select(LedgerRow)
                    .where(
                        LedgerRow.guild_id == PERSONAL_GUILD_ID,
                        LedgerRow.channel_id.in_(ids[start : start + 500]),
                        LedgerRow.digest_date == digest_date,
                    )
                    .order_by(LedgerRow.channel_id, LedgerRow.position, LedgerRow.id)
                )
                for row in (await session.execute(query)).scalars():
                    found.setdefault(row.channel_id, []).append(ledger_entry(row))
        return found

    async def sent_papers(self, user_ids: Collection[int], paper_ids: Collection[str]) -> dict[int, set[str]]:
        """Which of `paper_ids` each user's personal digests already planned (one query for all)."""
        found: dict[int, set[str]] = {}
        ids = list(user_ids)
        async with self.database.snapshot() as session:
            for start in range(0, len(ids), 500):
                query = select(LedgerRow.channel_id, LedgerRow.item).where(
                    LedgerRow.guild_id == PERSONAL_GUILD_ID,
                    LedgerRow.channel_id.in_(ids[start : start + 500]),
                    LedgerRow.kind == "paper",
                    LedgerRow.item.in_(list(paper_ids)),
                )
                for user_id, item in await session.execute(query):
                    found.setdefault(user_id, set()).add(item)
        return found

    async def saved_ids(self, user_ids: Collection[int], limit: int) -> dict[int, list[str]]:
        """Each user's most recently saved paper ids, `limit` each (one query for all)."""
        found: dict[int, list[str]] = {}
        query = (
            select(LibraryPaperRow.user_id, LibraryPaperRow.paper_id)
            .where(LibraryPaperRow.user_id.in_(list(user_ids)))
            .order_by(LibraryPaperRow.saved_at.desc())
        )
        async with self.database.snapshot() as session:
            for user_id, paper_id in await session.execute(query):
                items = found.setdefault(user_id, [])
                if len(items) < limit:
                    items.append(paper_id)
        return found

    async def mark_attempts(self, entry_ids: Collection[int]) -> None:
        """Durably note that these items are about to be sent (one transaction): after a crash, each
        is looked for in the DM before it is sent again."""
        async with self.database.transaction() as session:
            await session.execute(
                update(LedgerRow)
                .where(LedgerRow.id.in_(list(entry_ids)))
                .values(attempts=LedgerRow.attempts + 1)
            )

    async def mark_sent(self, message_ids: dict[int, int]) -> None:
        """Record the message id of each item sent (entry id → message id), in one transaction."""
        if not message_ids:
            return
        now = utcnow()
        async with self.database.transaction() as session:
            for entry_id, message_id in message_ids.items():
                await session.execute(
                    update(LedgerRow)
                    .where(LedgerRow.id == entry_id)
                    .values(state="posted", message_id=message_id, posted_at=now, error=None)
                )

    # ---------------------------------------------------------------- forget

    async def forget_user(self, user_id: int) -> dict[str, int]:
        """Delete every row about the user, in one transaction; returns the rows removed per table.

        Their library, follows, settings, personal feedback, their personal digests' ledger and their
        👍/👎 on channel digests; subscriptions they created lose the creator's id."""
        counts: dict[str, int] = {}
        async with self.database.transaction() as session:
            for name, statement in (
                ("library_papers", delete(LibraryPaperRow).where(LibraryPaperRow.user_id == user_id)),
                ("follows", delete(FollowRow).where(FollowRow.user_id == user_id)),
                ("personal_settings", delete(PersonalSettingsRow).where(
                    PersonalSettingsRow.user_id == user_id)),
                ("personal_feedback", delete(PersonalFeedbackRow).where(
                    PersonalFeedbackRow.user_id == user_id)),
                ("post_ledger", delete(LedgerRow).where(
                    LedgerRow.guild_id == PERSONAL_GUILD_ID, LedgerRow.channel_id == user_id)),
                ("feedback", delete(FeedbackRow).where(FeedbackRow.user_id == user_id)),
                ("subscriptions", update(SubscriptionRow).where(SubscriptionRow.created_by == user_id)
                 .values(created_by=None)),
            ):  # fmt: skip
                result = await session.execute(statement)
                counts[name] = int(result.rowcount or 0)  # type: ignore[attr-defined]
        return counts
