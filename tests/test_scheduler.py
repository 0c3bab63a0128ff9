"""Digest scheduling: time zones, weekdays, DST, shards, and jobs persisted in the real database that
catch up a missed digest once after downtime (the job store is edited to the state downtime leaves)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from sqlalchemy import inspect

from bot.app.services import build_digest_service
from bot.core.config import DigestSettings, TokenizerSettings, load_settings
from bot.db import Database, Repository, upgrade_schema
from bot.digest.cron import cron_trigger, due_digest_date, next_run_time, owns_guild, shard_of
from bot.digest.delivery import DigestPoster
from bot.digest.records import DigestCounts, RunTrigger, Subscription, SubscriptionSettings
from bot.digest.scheduler import DigestScheduler, job_id, run_digest_job
from bot.digest.service import RunOutcome
from bot.digest.sources import live_fetcher
from bot.digest.status import digest_status
from bot.ingest.fetch import RetryPolicy
from bot.ingest.pipeline import Ingestor
from bot.retrieval.embedding import Embedder
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.search import SearchService
from tests.support.digest import MemoryPoster, SimulatedCrash, fake_sources, hf_day_from_slim

UTC = dt.UTC
SETTLE_S = 0.4  # long enough for a due job to have been picked up and run


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def settings_for(**overrides: Any) -> SubscriptionSettings:
    values: dict[str, Any] = {"guild_id": 1, "channel_id": 100, "timezone": "UTC", "weekdays": "daily"}
    values.update(overrides)
    return SubscriptionSettings.model_validate(values)


# ------------------------------------------------------------------ pure schedule arithmetic


def test_a_tokyo_morning_digest_fires_at_midnight_utc() -> None:
    sub = settings_for(timezone="Asia/Tokyo", post_time="09:00")
    fire = cron_trigger(sub).get_next_fire_time(None, utc(2026, 8, 17, 12, 0))
    assert fire is not None and fire.astimezone(UTC) == utc(2026, 8, 18, 0, 0)
    assert due_digest_date(sub, utc(2026, 8, 18, 0, 5)) == dt.date(2026, 8, 18)
    assert due_digest_date(sub, utc(2026, 8, 17, 23, 55)) == dt.date(2026, 8, 17)


def test_weekdays_and_daylight_saving_changes() -> None:
    new_york = settings_for(timezone="America/New_York", post_time="09:00", weekdays="mon-fri")
    trigger = cron_trigger(new_york)
    thursday = trigger.get_next_fire_time(None, utc(2026, 10, 29, 12, 0))
    assert thursday is not None and thursday.astimezone(UTC) == utc(2026, 10, 29, 13, 0)  # EDT
    after_friday = trigger.get_next_fire_time(None, utc(2026, 10, 30, 14, 0))
    assert after_friday is not None and after_friday.astimezone(UTC) == utc(2026, 11, 2, 14, 0)  # EST, Monday
    paris = settings_for(timezone="Europe/Paris", post_time="09:00")
    before = cron_trigger(paris).get_next_fire_time(None, utc(2026, 3, 28, 0, 0))
    after = cron_trigger(paris).get_next_fire_time(None, utc(2026, 3, 29, 0, 0))
    assert before is not None and before.astimezone(UTC) == utc(2026, 3, 28, 8, 0)
    assert after is not None and after.astimezone(UTC) == utc(2026, 3, 29, 7, 0)  # summer time began


def test_due_date_of_late_and_weekly_digests() -> None:
    late = settings_for(post_time="23:30", weekdays="mon")
    monday = dt.date(2026, 8, 17)
    assert due_digest_date(late, utc(2026, 8, 18, 0, 10)) == monday  # caught up after midnight
    assert due_digest_date(late, utc(2026, 8, 19, 12, 0)) == monday
    assert due_digest_date(late, utc(2026, 8, 17, 23, 0)) == dt.date(2026, 8, 10)  # today's not due yet
    assert next_run_time(late, utc(2026, 8, 18, 0, 0)) == dt.datetime(2026, 8, 24, 23, 30, tzinfo=late.zone)
    assert next_run_time(late.model_copy(update={"paused": True}), utc(2026, 8, 18)) is None


def test_shard_ownership_follows_discord() -> None:
    guild_on_shard = {n: (n << 22) + 12345 for n in range(4)}
    assert [shard_of(g, 4) for g in guild_on_shard.values()] == [0, 1, 2, 3]
    assert owns_guild(guild_on_shard[2], 4, {2, 3}) and not owns_guild(guild_on_shard[1], 4, {2, 3})
    assert owns_guild(guild_on_shard[1], 4, None)  # no shard list: this process runs them all
    assert shard_of(81384788765712384, 1) == 0


# ------------------------------------------------------------------ the scheduler with a recording runner


@dataclass
class RecordingRunner:
    calls: list[tuple[int, dt.date, RunTrigger]] = field(default_factory=list)
    called: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(
        self,
        subscription: Subscription,
        digest_date: dt.date,
        *,
        poster: DigestPoster,
        trigger: RunTrigger = "manual",
    ) -> RunOutcome:
        self.calls.append((subscription.id, digest_date, trigger))
        self.called.set()
        return RunOutcome(None, "posted", DigestCounts())


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    await upgrade_schema(db.engine)
    yield db
    await db.close()


def move_next_run(
    database: Database, subscription_id: int, when: dt.datetime, table: str = "apscheduler_jobs"
) -> None:
    """Leave the stored job as a stopped bot leaves it: due at `when`, which may be long past."""
    store = SQLAlchemyJobStore(engine=database.sync_engine(), tablename=table)
    store.start(None, "default")
    job = store.lookup_job(job_id(subscription_id))
    assert job is not None
    job.next_run_time = when
    store.update_job(job)


async def started(
    runner: RecordingRunner, database: Database, settings: DigestSettings | None = None, **options: Any
) -> DigestScheduler:
    scheduler = DigestScheduler(
        runner, Repository(database), database, settings or DigestSettings(), **options
    )
    await scheduler.start(MemoryPoster())
    return scheduler


async def test_a_missed_digest_runs_once_on_start_and_never_again(database: Database) -> None:
    repo = Repository(database)
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    sub = await repo.save_subscription(settings_for(post_time=(now - dt.timedelta(minutes=10)).time()))
    expected_date = due_digest_date(sub, now)

    # A grace long enough to cover every missed fire time: only coalescing keeps it to one run.
    settings = DigestSettings(catch_up_grace_minutes=5 * 24 * 60)
    runner = RecordingRunner()
    first = await started(runner, database, settings)  # first life: schedules tomorrow's run, nothing due
    stored = first.next_run_time(sub.id)
    assert stored is not None and stored > now
    job = first.scheduler.get_job(job_id(sub.id))
    assert job is not None and job.func_ref == "bot.digest.scheduler:run_digest_job"
    await asyncio.sleep(SETTLE_S)
    await first.shutdown()
    assert runner.calls == []

    # Down for three days: four fire times were missed, the last one ten minutes ago.
    move_next_run(database, sub.id, now - dt.timedelta(days=3, minutes=10))
    second = await started(runner, database, settings)
    await asyncio.wait_for(runner.called.wait(), timeout=5)
    await asyncio.sleep(SETTLE_S)
    assert runner.calls == [(sub.id, expected_date, "schedule")]  # coalesced into one run
    next_run = second.next_run_time(sub.id)
    assert next_run is not None and next_run > dt.datetime.now(UTC)
    await second.shutdown()

    third = await started(runner, database, settings)  # a second restart in a row
    await asyncio.sleep(SETTLE_S)
    assert len(runner.calls) == 1
    await third.shutdown()


async def test_a_digest_missed_beyond_the_grace_is_skipped(database: Database) -> None:
    repo = Repository(database)
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    sub = await repo.save_subscription(settings_for(post_time=(now - dt.timedelta(hours=2)).time()))
    settings = DigestSettings(catch_up_grace_minutes=60)
    runner = RecordingRunner()
    await (await started(runner, database, settings)).shutdown()
    move_next_run(database, sub.id, now - dt.timedelta(hours=2))
    scheduler = await started(runner, database, settings)
    await asyncio.sleep(SETTLE_S)
    assert runner.calls == []
    next_run = scheduler.next_run_time(sub.id)
    assert next_run is not None and next_run > now
    await scheduler.shutdown()


async def test_jobs_follow_subscription_changes_made_while_stopped(database: Database) -> None:
    repo = Repository(database)
    kept = await repo.save_subscription(settings_for(channel_id=1, post_time="06:00"))
    changed = await repo.save_subscription(settings_for(channel_id=2, post_time="07:00"))
    removed = await repo.save_subscription(settings_for(channel_id=3))
    paused = await repo.save_subscription(settings_for(channel_id=4, paused=True))
    runner = RecordingRunner()
    scheduler = await started(runner, database)
    assert {j.id for j in scheduler.scheduler.get_jobs()} == {job_id(s.id) for s in (kept, changed, removed)}
    await scheduler.shutdown()

    far = dt.datetime.now(UTC) + dt.timedelta(days=30)
    move_next_run(database, kept.id, far)  # a marker: an unchanged job must keep its stored state
    await repo.save_subscription(settings_for(channel_id=2, post_time="18:45", timezone="Asia/Tokyo"))
    await repo.delete_subscription(3)
    scheduler = await started(runner, database)
    jobs = {j.id: j for j in scheduler.scheduler.get_jobs()}
    assert set(jobs) == {job_id(kept.id), job_id(changed.id)}
    assert jobs[job_id(kept.id)].next_run_time == far
    assert "hour='18', minute='45', timezone='Asia/Tokyo'" in repr(jobs[job_id(changed.id)].trigger)

    assert await scheduler.schedule(await repo.set_paused(1, True)) is None  # type: ignore[arg-type]
    assert scheduler.next_run_time(kept.id) is None
    resumed = await repo.set_paused(4, False)
    assert resumed is not None
    when = await scheduler.schedule(resumed)
    assert when == next_run_time(resumed, dt.datetime.now(UTC))
    status = await digest_status(repo, 4, scheduler=scheduler)
    assert status is not None and status.scheduled_here and status.next_run == when
    assert (await digest_status(repo, 1, scheduler=scheduler)).next_run is None  # type: ignore[union-attr]
    assert paused.id == resumed.id
    await scheduler.shutdown()


async def test_each_process_schedules_only_the_guilds_of_its_shards(database: Database) -> None:
    repo = Repository(database)
    on_shard = {
        n: await repo.save_subscription(settings_for(guild_id=(n << 22) + 7, channel_id=n)) for n in (0, 1)
    }
    runner = RecordingRunner()
    zero = await started(runner, database, shard_count=2, shard_ids={0})
    one = await started(runner, database, shard_count=2, shard_ids={1})
    assert [j.id for j in zero.scheduler.get_jobs()] == [job_id(on_shard[0].id)]
    assert [j.id for j in one.scheduler.get_jobs()] == [job_id(on_shard[1].id)]
    async with database.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {"apscheduler_jobs_s0_of_2", "apscheduler_jobs_s1_of_2"} <= tables
    assert await zero.run_due(on_shard[1].id) is None  # not this process's guild
    assert await zero.schedule(on_shard[1]) is None
    await zero.shutdown()
    await one.shutdown()


async def test_the_job_function_finds_the_live_scheduler(database: Database) -> None:
    repo = Repository(database)
    now = dt.datetime.now(UTC)
    sub = await repo.save_subscription(settings_for(post_time=(now - dt.timedelta(minutes=1)).time()))
    runner = RecordingRunner()
    await run_digest_job(sub.id)  # no scheduler running: logged, nothing else
    assert runner.calls == []
    scheduler = await started(runner, database)
    await run_digest_job(sub.id)
    assert runner.calls == [(sub.id, due_digest_date(sub, dt.datetime.now(UTC)), "schedule")]
    await repo.delete_subscription(sub.channel_id)
    await run_digest_job(sub.id)  # a job left for a deleted subscription removes itself
    assert scheduler.next_run_time(sub.id) is None and len(runner.calls) == 1
    await scheduler.shutdown()
    await run_digest_job(sub.id)  # the stopped scheduler is no longer the jobs' target
    assert len(runner.calls) == 1


async def test_runs_left_running_by_a_crash_are_resumed_on_start(database: Database) -> None:
    repo = Repository(database)
    now = dt.datetime.now(UTC)
    sub = await repo.save_subscription(settings_for(post_time=(now - dt.timedelta(minutes=30)).time()))
    day = due_digest_date(sub, now)
    assert day is not None
    crashed = await repo.start_run(sub, day, "schedule")
    stale = await repo.start_run(sub, day - dt.timedelta(days=5), "schedule")  # too old to post now
    runner = RecordingRunner()
    scheduler = await started(runner, database)
    assert scheduler.recovery is not None
    await scheduler.recovery
    assert runner.calls == [(sub.id, day, "recovery")]
    runs = {run.id: run for run in await repo.recent_runs(sub.channel_id, limit=10)}
    assert {run_id: runs[run_id].status for run_id in (crashed, stale)} == {
        crashed: "interrupted",
        stale: "interrupted",
    }
    await scheduler.shutdown()


# ------------------------------------------------------------------ with the real digest service


async def test_after_a_kill_mid_digest_the_restarted_bot_finishes_it_exactly_once(
    database: Database, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    day = dt.date(2026, 8, 20)
    async with fake_sources() as sources:
        sources.hf_days[day.isoformat()] = hf_day_from_slim(day, limit=4)
        monkeypatch.setenv("SOURCES_HF_API_BASE", sources.base_url)
        settings = load_settings()
        index = EdgePaperIndex(tmp_path / "qdrant")
        await index.ensure_collection(embedder.dimensions)
        repo = Repository(database)
        poster = MemoryPoster()

        def service_for_a_new_process() -> Any:
            return build_digest_service(
                settings,
                repo=repo,
                search=SearchService(index, embedder),
                ingestor=Ingestor(index, embedder, TokenizerSettings()),
                llm=None,  # no LLM: abstract summaries, flagged
                fetch=live_fetcher(settings.sources, retry=RetryPolicy(attempts=1)),
            )

        now = dt.datetime.now(UTC)
        sub = await repo.save_subscription(settings_for(post_time=(now - dt.timedelta(minutes=5)).time()))
        clock_on_day = dt.datetime.combine(day, sub.post_time, tzinfo=UTC) + dt.timedelta(minutes=5)
        first = DigestScheduler(
            service_for_a_new_process(), repo, database, settings.digest, clock=lambda: clock_on_day
        )
        await first.start(poster)
        preview = await first.runner.preview(sub, day)  # type: ignore[attr-defined]
        picked = [p.paper.paper_id for p in preview.posts]
        assert len(picked) == 4
        poster.crash_after_sending = picked[1]
        with pytest.raises(SimulatedCrash):
            await run_digest_job(sub.id)  # the job fires; the process dies mid-digest
        await first.shutdown()

        restarted = DigestScheduler(
            service_for_a_new_process(), repo, database, settings.digest, clock=lambda: clock_on_day
        )
        await restarted.start(poster)
        assert restarted.recovery is not None
        (outcome,) = await restarted.recovery
        assert outcome.status == "posted" and (outcome.counts.recovered, outcome.counts.posted) == (1, 2)
        assert poster.paper_ids(100) == picked
        assert all(m.post.summary_is_fallback for m in poster.in_channel(100) if m.post)
        await run_digest_job(sub.id)  # the schedule firing again that day posts nothing
        assert poster.paper_ids(100) == picked
        runs = await repo.recent_runs(100)
        assert [r.status for r in runs] == ["already_posted", "posted", "interrupted"]
        await restarted.shutdown()
        await index.close()
