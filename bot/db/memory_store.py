"""Which channels opted in to channel memory, and for how long they keep messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select

from bot.db.engine import Database
from bot.db.tables import ChannelMemoryRow, utcnow


@dataclass(frozen=True)
class MemoryChannel:
    guild_id: int
    channel_id: int
    retention_days: int
    enabled_by: int | None
    enabled_at: dt.datetime


def _channel(row: ChannelMemoryRow) -> MemoryChannel:
    return MemoryChannel(row.guild_id, row.channel_id, row.retention_days, row.enabled_by, row.enabled_at)


class MemoryChannelStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def enable(
        self, *, guild_id: int, channel_id: int, retention_days: int, enabled_by: int | None
    ) -> MemoryChannel:
        """Opt the channel in, or change its retention (keeps the first opt-in's time)."""
        async with self.database.transaction() as session:
            row = await session.get(ChannelMemoryRow, channel_id)
            if row is None:
                row = ChannelMemoryRow(
                    channel_id=channel_id, guild_id=guild_id, enabled_by=enabled_by, enabled_at=utcnow()
                )
                session.add(row)
            row.retention_days = retention_days
            await session.flush()
            return _channel(row)

    async def disable(self, channel_id: int) -> bool:
        async with self.database.transaction() as session:
            result = await session.execute(
                delete(ChannelMemoryRow).where(ChannelMemoryRow.channel_id == channel_id)
            )
            return bool(getattr(result, "rowcount", 0))

    async def get(self, channel_id: int) -> MemoryChannel | None:
        async with self.database.snapshot() as session:
            row = await session.get(ChannelMemoryRow, channel_id)
            return _channel(row) if row is not None else None

    async def all(self) -> list[MemoryChannel]:
        async with self.database.snapshot() as session:
            rows = (await session.execute(select(ChannelMemoryRow))).scalars().all()
            return [_channel(row) for row in rows]
