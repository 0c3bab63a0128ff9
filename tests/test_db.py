"""The state database on real SQLite files and, when its binaries are installed, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.exc import IntegrityError

from bot.core.config import load_settings
from bot.core.timing import parse_weekdays, timezone_suggestions
from bot.db import Database, DatabaseConfigError, Repository, SchemaError, open_database, upgrade_schema
from bot.db.engine import async_url, sync_url
from bot.db.schema import SCHEMA_VERSION, schema_version
from bot.db.tables import LedgerRow
from bot.digest.records import DigestCounts, PlannedItem, SubscriptionSettings

BIG_SNOWFLAKE = 2**63 - 1  # the largest id a Discord snowflake (signed 64-bit) can be
DAY = dt.date(2026, 8, 18)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database()
    db = Database(url, busy_timeout_ms=5000)
    await upgrade_schema(db.engine)
    yield db
    await db.close()


@pytest.fixture
def repo(database: Database) -> Repository:
    return Repository(database)


def subscription_settings(**overrides: object) -> SubscriptionSettings:
    values: dict[str, object] = {
        "guild_id": 10,
        "channel_id": 20,
        "topics": "diffusion models, LLM agents",
        "arxiv_categories": "cs.CL, cs.LG",
        "keywords": "LoRA",
        "negative_keywords": "survey",
        "timezone": "Asia/Tokyo",
        "post_time": "09:00",
        "weekdays": "mon-fri",
    }
    values.update(overrides)
    return SubscriptionSettings.model_validate(values)


# ------------------------------------------------------------------ schema


async def test_schema_is_created_once_and_versioned(database: Database) -> None:
    assert await schema_version(database.engine) == SCHEMA_VERSION
    assert await upgrade_schema(database.engine) == SCHEMA_VERSION  # second start: nothing to do
    async with database.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        rows = (await conn.execute(text("SELECT version FROM schema_version"))).scalars().all()
    assert {
        "subscriptions",
        "guild_settings",
        "post_ledger",
        "digest_runs",
        "feedback",
        "summary_cache",
    } <= tables
    assert rows == [SCHEMA_VERSION]


async def test_migrations_apply_in_order_exactly_once(database: Database) -> None:
    applied: list[int] = []

    def add_note_column(conn: Connection) -> None:
        """add guild_settings.note"""
        applied.append(SCHEMA_VERSION + 1)
        conn.execute(text("ALTER TABLE guild_settings ADD COLUMN note VARCHAR(50)"))

    def fill_note(conn: Connection) -> None:
        """default notes"""
        applied.append(SCHEMA_VERSION + 2)
        conn.execute(text("UPDATE guild_settings SET note = 'x'"))

    current = SCHEMA_VERSION
    migrations = {current + 1: add_note_column, current + 2: fill_note}
    assert await upgrade_schema(database.engine, target=current + 2, migrations=migrations) == current + 2
    assert await upgrade_schema(database.engine, target=current + 2, migrations=migrations) == current + 2
    assert applied == [current + 1, current + 2]
    async with database.engine.connect() as conn:
        columns = await conn.run_sync(
            lambda c: [col["name"] for col in inspect(c).get_columns("guild_settings")]
        )
        versions = (
            await conn.execute(text("SELECT version, description FROM schema_version ORDER BY 1"))
        ).all()
    assert "note" in columns
    assert [tuple(v) for v in versions] == [
        (current, "created"),
        (current + 1, "add guild_settings.note"),
        (current + 2, "default notes"),
    ]


async def test_a_failed_migration_leaves_the_version_unchanged(database: Database) -> None:
    def broken(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE no_such_table ADD COLUMN x INTEGER"))

    with pytest.raises(Exception, match="no_such_table"):
        await upgrade_schema(
            database.engine, target=SCHEMA_VERSION + 1, migrations={SCHEMA_VERSION + 1: broken}
        )
    assert await schema_version(database.engine) == SCHEMA_VERSION


async def test_newer_or_unreachable_schemas_are_refused(database: Database) -> None:
    with pytest.raises(SchemaError, match="no migration"):
        await upgrade_schema(database.engine, target=SCHEMA_VERSION + 1, migrations={})
    next_version = SCHEMA_VERSION + 1
    await upgrade_schema(database.engine, target=next_version, migrations={next_version: lambda conn: None})
    with pytest.raises(SchemaError, match="newer than this paperbot"):
        await upgrade_schema(database.engine, target=SCHEMA_VERSION)


async def test_the_bot_opens_its_database_in_the_data_dir_and_upgrades_it(clean_settings_env: Path) -> None:
    async with open_database(load_settings()) as db:
        assert db.backend == "sqlite"
        assert await schema_version(db.engine) == SCHEMA_VERSION
        await Repository(db).save_subscription(subscription_settings())
    assert (clean_settings_env / "paperbot.db").is_file()
    async with open_database(load_settings()) as db:  # the next start finds its data
        assert await Repository(db).get_channel_subscription(20) is not None


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'x.db'}", busy_timeout_ms=1234)
    async with db.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 1234
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    with db.sync_engine().connect() as conn:
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 1234
    await db.close()


async def test_concurrent_writers_on_sqlite_all_succeed(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    await upgrade_schema(db.engine)
    repo = Repository(db)
    await asyncio.gather(
        *(
            repo.record_feedback(
                guild_id=1, channel_id=2, message_id=m, paper_id=f"p{m % 3}", user_id=m, value=1
            )
            for m in range(40)
        )
    )
    feedback = await repo.channel_feedback(2)
    assert sorted(feedback.liked) == ["p0", "p1", "p2"]
    await db.close()


def test_database_urls_map_to_async_and_sync_drivers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert str(async_url("sqlite:////data/x.db")) == "sqlite+aiosqlite:////data/x.db"
    assert str(sync_url("sqlite+aiosqlite:////data/x.db")) == "sqlite:////data/x.db"
    assert async_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert async_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert async_url("postgresql+asyncpg://u:p@h/db").drivername == "postgresql+asyncpg"
    assert sync_url("postgresql+asyncpg://u:p@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(DatabaseConfigError, match="unsupported database 'mysql'"):
        async_url("mysql://u@h/db")

    settings = load_settings()
    assert settings.database.url_for(settings.core.data_dir).endswith(str(tmp_path / "data" / "paperbot.db"))
    monkeypatch.setenv("DATABASE_URL", "postgresql://paperbot:s3cret-pw@db:5432/paperbot")
    settings = load_settings()
    assert "s3cret-pw" in settings.secrets
    assert "s3cret-pw" not in repr(settings)
    assert (
        Database.from_settings(settings).redacted_url == "postgresql+psycopg://paperbot:***@db:5432/paperbot"
    )


# ------------------------------------------------------------------ subscriptions


def test_subscription_settings_validate_what_admins_type() -> None:
    sub = subscription_settings(topics="Diffusion models; diffusion MODELS\nagents", weekdays="fri-mon")
    assert sub.topics == ["Diffusion models", "agents"]
    assert sub.weekdays == (0, 4, 5, 6)
    assert sub.arxiv_categories == ["cs.CL", "cs.LG"]
    assert sub.post_time == dt.time(9, 0)
    assert parse_weekdays("daily") == (0, 1, 2, 3, 4, 5, 6)
    assert parse_weekdays("Mon, wed,FRI") == (0, 2, 4)
    assert "Asia/Tokyo" in timezone_suggestions("tokyo")
    cases: list[tuple[dict[str, object], str]] = [
        ({"timezone": "Mars/Olympus"}, "not an IANA time zone"),
        ({"post_time": "25:00"}, "not HH:MM"),
        ({"arxiv_categories": "cs CL"}, "not an arXiv category"),
        ({"hf_daily": False, "arxiv_categories": ""}, "needs a source"),
        ({"weekdays": "someday"}, "unknown day"),
        ({"topics": ",".join(f"t{i}" for i in range(11))}, "at most 10 topics"),
        ({"layout": "carousel"}, "thread_per_paper"),
        ({"max_papers": 0}, "greater than or equal to 1"),
    ]
    for bad, message in cases:
        with pytest.raises(ValidationError, match=message):
            subscription_settings(**bad)


async def test_subscriptions_are_saved_per_channel_listed_paused_and_deleted(repo: Repository) -> None:
    first = await repo.save_subscription(subscription_settings(created_by=7))
    assert first.topics == ["diffusion models", "LLM agents"] and first.created_by == 7
    updated = await repo.save_subscription(subscription_settings(max_papers=3, topics="retrieval"))
    assert updated.id == first.id and updated.max_papers == 3 and updated.topics == ["retrieval"]
    assert updated.created_by == 7  # kept from the first subscribe
    assert updated.updated_at >= first.updated_at and updated.created_at == first.created_at
    other = await repo.save_subscription(subscription_settings(guild_id=11, channel_id=BIG_SNOWFLAKE))
    assert (await repo.get_channel_subscription(BIG_SNOWFLAKE)) == other

    assert [s.id for s in await repo.list_subscriptions()] == [first.id, other.id]
    assert [s.id for s in await repo.list_subscriptions(guild_ids=[11])] == [other.id]
    paused = await repo.set_paused(20, True)
    assert paused is not None and paused.paused
    assert [s.id for s in await repo.list_subscriptions(include_paused=False)] == [other.id]
    assert await repo.set_paused(999, True) is None

    run_id = await repo.start_run(first, DAY, "manual")
    deleted = await repo.delete_subscription(20)
    assert deleted is not None and deleted.id == first.id
    assert await repo.get_subscription(first.id) is None
    runs = await repo.recent_runs(20)
    assert [(r.id, r.subscription_id, r.channel_id) for r in runs] == [(run_id, None, 20)]  # history stays
    assert await repo.delete_subscription(20) is None


async def test_guild_settings_roundtrip(repo: Repository) -> None:
    assert await repo.get_guild_settings(BIG_SNOWFLAKE) is None
    await repo.set_guild_settings(
        BIG_SNOWFLAKE, default_timezone="Europe/Paris", default_post_time=dt.time(8, 30)
    )
    saved = await repo.get_guild_settings(BIG_SNOWFLAKE)
    assert saved is not None and (saved.default_timezone, saved.default_post_time) == (
        "Europe/Paris",
        dt.time(8, 30),
    )


# ------------------------------------------------------------------ runs and ledger


async def test_runs_record_counts_errors_and_interruptions(repo: Repository) -> None:
    sub = await repo.save_subscription(subscription_settings())
    first = await repo.start_run(sub, DAY, "schedule")
    second = await repo.start_run(sub, DAY + dt.timedelta(days=1), "manual")
    assert [r.id for r in await repo.unfinished_runs()] == [first, second]
    finished = await repo.finish_run(
        first,
        "partial",
        DigestCounts(fetched=29, new=25, duplicates=4, filtered=20, posted=4, failed=1),
        errors=["2608.1: HTTP 500"],
        details={"dropped": {"off_topic": 20}},
    )
    assert finished.status == "partial" and finished.counts.posted == 4 and finished.finished
    assert finished.errors == ["2608.1: HTTP 500"] and finished.details == {"dropped": {"off_topic": 20}}
    assert finished.finished_at is not None and finished.finished_at.tzinfo is not None
    await repo.mark_run_interrupted(second, "stopped")
    assert await repo.unfinished_runs() == []
    recent = await repo.recent_runs(sub.channel_id)
    assert [r.id for r in recent] == [second, first]
    assert recent[0].status == "interrupted" and recent[0].errors == ["stopped"]


async def test_ledger_plans_once_and_tracks_each_post(repo: Repository, database: Database) -> None:
    sub = await repo.save_subscription(subscription_settings())
    run_id = await repo.start_run(sub, DAY, "schedule")
    items = [
        PlannedItem("#header", "header", 0, "paperbot digest 2026-08-18 · header", {"counts": {}}),
        PlannedItem("2608.1", "paper", 1, "paperbot digest 2026-08-18 · 2608.1", {"why": "a"}),
        PlannedItem("2608.2", "paper", 2, "paperbot digest 2026-08-18 · 2608.2", {"why": "b"}),
    ]
    plan = await repo.plan_digest(guild_id=10, channel_id=20, digest_date=DAY, run_id=run_id, items=items)
    again = await repo.plan_digest(
        guild_id=10,
        channel_id=20,
        digest_date=DAY,
        run_id=run_id,
        items=[PlannedItem("2608.1", "paper", 9, "m")],
    )
    assert [e.item for e in plan] == ["#header", "2608.1", "2608.2"]
    assert again == plan  # the first plan wins
    assert all(e.state == "intent" and e.message_id is None and e.attempts == 0 for e in plan)

    await repo.mark_attempt(plan[1].id)
    await repo.mark_posted(plan[1].id, BIG_SNOWFLAKE)
    await repo.mark_attempt(plan[2].id)
    await repo.mark_failed(plan[2].id, "403 Missing Access")
    entries = await repo.digest_entries(20, DAY)
    assert [(e.state, e.attempts, e.message_id) for e in entries] == [
        ("intent", 0, None),
        ("posted", 1, BIG_SNOWFLAKE),
        ("failed", 1, None),
    ]
    assert entries[2].error == "403 Missing Access"
    found = await repo.find_post(BIG_SNOWFLAKE)
    assert found is not None and found.item == "2608.1" and found.content == {"why": "a"}
    assert await repo.posted_paper_ids(20, ["2608.1", "2608.2", "2608.3"]) == {"2608.1", "2608.2"}
    assert await repo.posted_paper_ids(21, ["2608.1"]) == set()

    # The database itself refuses a second row for the same channel, day and paper.
    async with database.transaction() as session:
        with pytest.raises(IntegrityError):
            await session.execute(
                insert(LedgerRow).values(
                    guild_id=10, channel_id=20, digest_date=DAY, item="2608.1", kind="paper", marker="m"
                )
            )


# ------------------------------------------------------------------ feedback and summary cache


async def test_feedback_balance_per_paper_replaces_and_removes(repo: Repository) -> None:
    async def react(message: int, paper: str, user: int, value: int, channel: int = 5) -> None:
        await repo.record_feedback(
            guild_id=1, channel_id=channel, message_id=message, paper_id=paper, user_id=user, value=value
        )

    await react(100, "liked", 1, 1)
    await react(100, "liked", 2, 1)
    await react(101, "mixed", 1, 1)
    await react(101, "mixed", 2, -1)
    await react(102, "disliked", 1, 1)
    await react(102, "disliked", 1, -1)  # the same user changes their mind: replaced, not added
    await react(103, "elsewhere", 1, 1, channel=6)
    feedback = await repo.channel_feedback(5)
    assert feedback.liked == ["liked"] and feedback.disliked == ["disliked"]

    assert await repo.remove_feedback(message_id=102, user_id=1, value=1) is False  # that reaction is gone
    assert await repo.remove_feedback(message_id=102, user_id=1, value=-1) is True
    assert (await repo.channel_feedback(5)).disliked == []
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        await react(104, "x", 1, 2)


async def test_summary_cache_is_keyed_by_paper_prompt_version_and_model(repo: Repository) -> None:
    await repo.store_summary("2608.1", prompt_version="v1", model="m", text="first")
    await repo.store_summary("2608.1", prompt_version="v1", model="m", text="second")
    await repo.store_summary("2608.1", prompt_version="v2", model="m", text="new prompt")
    assert await repo.cached_summaries(["2608.1", "2608.2"], prompt_version="v1", model="m") == {
        "2608.1": "second"
    }
    assert await repo.cached_summaries(["2608.1"], prompt_version="v2", model="m") == {"2608.1": "new prompt"}
    assert await repo.cached_summaries(["2608.1"], prompt_version="v1", model="other") == {}
