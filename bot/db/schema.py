"""Versioned schema: created on first start, upgraded in order on later starts.

A new database gets the current tables in one go and is stamped with `SCHEMA_VERSION`. An older
database runs every migration above its version, in order, each in the same transaction as the
stamp that records it. To change the schema: change `models.py`, bump `SCHEMA_VERSION`, and add
`MIGRATIONS[SCHEMA_VERSION]` that turns the previous schema into the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog
from sqlalchemy import Connection, func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.core.errors import DependencyUnavailableError
from bot.db.library_tables import LIBRARY_TABLES
from bot.db.tables import Base, ChannelMemoryRow, GuildTokenUsageRow, SchemaVersion

log = structlog.get_logger(__name__)

Migration = Callable[[Connection], None]


def _add_guild_token_usage(connection: Connection) -> None:
    """Add guild_token_usage (the per-guild daily LLM token budget)."""
    GuildTokenUsageRow.__table__.create(connection)  # type: ignore[attr-defined]


def _add_channel_memory_and_cadence(connection: Connection) -> None:
    """Add channel_memory (channels opted in to /memory) and subscriptions.cadence (daily/weekly)."""
    ChannelMemoryRow.__table__.create(connection)  # type: ignore[attr-defined]
    connection.execute(
        text("ALTER TABLE subscriptions ADD COLUMN cadence VARCHAR(8) NOT NULL DEFAULT 'daily'")
    )


def _add_personal_library(connection: Connection) -> None:
    """Add library_papers, follows, personal_settings, personal_feedback (issue 16)."""
    for table in LIBRARY_TABLES:
        table.__table__.create(connection)  # type: ignore[attr-defined]


SCHEMA_VERSION = 4
MIGRATIONS: dict[int, Migration] = {
    2: _add_guild_token_usage,
    3: _add_channel_memory_and_cadence,
    4: _add_personal_library,
}
# Any constant: only paperbot processes take this PostgreSQL advisory lock.
_PG_LOCK_KEY = 0x70617065


class SchemaError(DependencyUnavailableError):
    """The database cannot be used by this version of paperbot; the message says why."""

    what = "The bot's database"


def _current_version(connection: Connection) -> int | None:
    if not inspect(connection).has_table(SchemaVersion.__tablename__):
        return None
    return connection.execute(select(func.max(SchemaVersion.version))).scalar_one_or_none()


def _upgrade(connection: Connection, target: int, migrations: Mapping[int, Migration]) -> int:
    if connection.dialect.name == "postgresql":
        # Several processes (shards) may start at once: one upgrades, the others wait here.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    current = _current_version(connection)
    if current is None:
        Base.metadata.create_all(connection)
        connection.execute(insert(SchemaVersion).values(version=target, description="created"))
        log.info("db.schema_created", version=target)
        return target
    if current > target:
        raise SchemaError(
            f"the database schema is version {current}, newer than this paperbot understands ({target}); "
            "upgrade paperbot or point DATABASE_URL at another database"
        )
    missing = [v for v in range(current + 1, target + 1) if v not in migrations]
    if missing:
        raise SchemaError(f"no migration to schema version(s) {missing}")
    for version in range(current + 1, target + 1):
        migration = migrations[version]
        migration(connection)
        description = (migration.__doc__ or migration.__name__).strip().splitlines()[0][:200]
        connection.execute(insert(SchemaVersion).values(version=version, description=description))
        log.info("db.schema_upgraded", version=version, description=description)
    return target


async def upgrade_schema(
    engine: AsyncEngine,
    *,
    target: int = SCHEMA_VERSION,
    migrations: Mapping[int, Migration] = MIGRATIONS,
) -> int:
    """Create or upgrade the schema to `target`; returns the version the database is now at."""
    async with engine.begin() as connection:
        return await connection.run_sync(_upgrade, target, migrations)


async def schema_version(engine: AsyncEngine) -> int | None:
    async with engine.connect() as connection:
        return await connection.run_sync(_current_version)
