"""APScheduler 3 jobs for digests, persisted in the state database: one cron job per subscription.

- Each job fires in its subscription's time zone and weekdays (`schedule.cron_trigger`).
- Jobs live in the database (SQLAlchemyJobStore, the blocking twin of DATABASE_URL), so a digest
  missed while the bot was down is still due on start: with `coalesce=True` it runs once, however
  many fire times were missed, if the bot is back within `misfire_grace_time`. The ledger is the
  second guard: a run of a day already posted posts nothing.
- A run interrupted by a crash (still marked running) is resumed on start.
- Sharding: a process schedules only guilds whose shard it owns; each shard has its own job table,
  so processes never run each other's jobs and a shard moving to another process takes its jobs along.

APScheduler stores a job's function by reference, so jobs call the module-level `run_digest_job`,
which finds the live scheduler in this module's registry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.core.config import DigestSettings
from bot.db.engine import Database
from bot.db.repository import Repository
from bot.digest.cron import cron_trigger, due_digest_date, next_run_time, owns_guild, scheduled_time, shard_of
from bot.digest.delivery import DigestPoster
from bot.digest.records import DigestRun, RunTrigger, Subscription
from bot.digest.service import DigestRunner, RunOutcome

log = structlog.get_logger(__name__)

JOB_ID_PREFIX = "digest-"
T = TypeVar("T")
Clock = Callable[[], dt.datetime]

_active: DigestScheduler | None = None


def job_id(subscription_id: int) -> str:
    return f"{JOB_ID_PREFIX}{subscription_id}"


async def run_digest_job(subscription_id: int) -> None:
    """The function every digest job calls (module level: APScheduler persists it by name)."""
    scheduler = _active
    if scheduler is None:
        log.error("digest.job_without_scheduler", subscription_id=subscription_id)
        return
    await scheduler.run_due(subscription_id)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DigestScheduler:
    def __init__(
        self,
        runner: DigestRunner,
        repo: Repository,
        database: Database,
        settings: DigestSettings,
        *,
        shard_count: int = 1,
        shard_ids: Collection[int] | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        self.runner = runner
        self.repo = repo
        self.database = database
        self.settings = settings
        self.shard_count = shard_count
        self.shard_ids = frozenset(shard_ids) if shard_ids is not None else None
        self._clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._poster: DigestPoster | None = None
        self.recovery: asyncio.Task[list[RunOutcome]] | None = None
        self._running: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ life cycle

    @property
    def grace_s(self) -> int:
        return self.settings.catch_up_grace_minutes * 60

    @property
    def owned_shards(self) -> list[int]:
        return sorted(self.shard_ids) if self.shard_ids is not None else list(range(self.shard_count))

    def jobstore_alias(self, shard: int) -> str:
        return "default" if self.shard_count == 1 else f"shard-{shard}"

    def jobstore_table(self, shard: int) -> str:
        return (
            "apscheduler_jobs"
            if self.shard_count == 1
            else f"apscheduler_jobs_s{shard}_of_{self.shard_count}"
        )

    def owns(self, guild_id: int) -> bool:
        return owns_guild(guild_id, self.shard_count, self.shard_ids)

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    async def start(self, poster: DigestPoster, *, recover: bool = True) -> None:
        """Start posting digests through `poster` (the Discord client, once it exists): bring the jobs
        in line with the subscriptions, then let due jobs run.

        Interrupted runs are resumed in the background (`self.recovery`)."""
        global _active
        self._poster = poster
        engine = self.database.sync_engine()
        jobstores = {
            self.jobstore_alias(shard): SQLAlchemyJobStore(
                engine=engine, tablename=self.jobstore_table(shard)
            )
            for shard in self.owned_shards
        }
        scheduler = AsyncIOScheduler(
            jobstores=jobstores,
            job_defaults={"coalesce": True, "misfire_grace_time": self.grace_s, "max_instances": 1},
            timezone=dt.UTC,
        )
        scheduler.add_listener(self._on_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        # Paused first: jobs changed while we were away are replaced before anything fires.
        scheduler.start(paused=True)
        self._scheduler = scheduler
        _active = self
        await self.sync()
        # Read before resuming: once jobs run, their own fresh runs are `running` too.
        interrupted = (
            [r for r in await self.repo.unfinished_runs() if self.owns(r.guild_id)] if recover else []
        )
        scheduler.resume()
        log.info("digest.scheduler_started", shards=self.owned_shards, shard_count=self.shard_count)
        if interrupted:
            self.recovery = asyncio.create_task(self.recover_interrupted(interrupted))

    async def shutdown(self, *, grace_s: float = 0.0) -> None:
        """Stop firing jobs, give running digests up to `grace_s` to finish, then cancel them.

        A cancelled run stays `running` in the database and is resumed on the next start; the ledger
        makes sure nothing it already posted is posted again."""
        global _active
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.pause()  # no new job starts while we wait
        running = {task for task in self._running if not task.done()}
        if self.recovery is not None and not self.recovery.done():
            running.add(self.recovery)
        if running:
            log.info("digest.shutdown_waiting", runs=len(running), grace_s=grace_s)
            _, pending = await asyncio.wait(running, timeout=grace_s) if grace_s > 0 else (set(), running)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("digest.shutdown_cancelled_runs", runs=len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self._poster = None
        if _active is self:
            _active = None

    async def _tracked(self, run: Awaitable[T]) -> T:
        """Run `run` in the current task, which `shutdown` waits for (then cancels)."""
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            return await run
        finally:
            if task is not None:
                self._running.discard(task)

    async def run_now(self, subscription: Subscription, digest_date: dt.date) -> RunOutcome:
        """`/digest now`: a manual run that a graceful shutdown waits for like a scheduled one."""
        return await self._tracked(self._run(subscription, digest_date, "manual"))

    async def _run(self, subscription: Subscription, digest_date: dt.date, trigger: RunTrigger) -> RunOutcome:
        if self._poster is None:
            raise RuntimeError("the digest scheduler is not started")
        return await self.runner.run(subscription, digest_date, poster=self._poster, trigger=trigger)

    @property
    def scheduler(self) -> AsyncIOScheduler:
        if self._scheduler is None:
            raise RuntimeError("the digest scheduler is not started")
        return self._scheduler

    # ------------------------------------------------------------------ jobs

    async def sync(self) -> None:
        """Add, replace or remove jobs so there is exactly one per active owned subscription.

        An unchanged job is left alone, keeping its stored next run time (a missed run stays due)."""
        subscriptions = [s for s in await self.repo.list_subscriptions() if self.owns(s.guild_id)]
        wanted = {job_id(s.id): s for s in subscriptions if not s.paused}
        for job in self.scheduler.get_jobs():
            if job.id.startswith(JOB_ID_PREFIX) and job.id not in wanted:
                job.remove()
                log.info("digest.job_removed", job_id=job.id)
        for subscription in wanted.values():
            existing = self.scheduler.get_job(job_id(subscription.id))
            if existing is not None and self._unchanged(existing, subscription):
                continue
            self._add_job(subscription)

    def _unchanged(self, job: Any, subscription: Subscription) -> bool:
        return (
            repr(job.trigger) == repr(cron_trigger(subscription)) and job.misfire_grace_time == self.grace_s
        )

    def _add_job(self, subscription: Subscription) -> dt.datetime | None:
        job = self.scheduler.add_job(
            run_digest_job,
            trigger=cron_trigger(subscription),
            args=(subscription.id,),
            id=job_id(subscription.id),
            name=f"digest for channel {subscription.channel_id}",
            jobstore=self.jobstore_alias(shard_of(subscription.guild_id, self.shard_count)),
            replace_existing=True,
            coalesce=True,
            misfire_grace_time=self.grace_s,
            max_instances=1,
        )
        next_run: dt.datetime | None = getattr(job, "next_run_time", None)
        log.info(
            "digest.job_scheduled",
            subscription_id=subscription.id,
            channel_id=subscription.channel_id,
            schedule=subscription.schedule_text(),
            next_run=next_run.isoformat() if next_run else None,
        )
        return next_run

    async def schedule(self, subscription: Subscription) -> dt.datetime | None:
        """(Re)schedule after a subscribe or a settings change; returns the next run time.

        Paused subscriptions and guilds of other shards get no job here. Before `start` (the CLI),
        no job is made and the time comes from the subscription's schedule."""
        if not self.started:
            return next_run_time(subscription, self._clock())
        if subscription.paused or not self.owns(subscription.guild_id):
            self.unschedule(subscription.id)
            return None
        self._add_job(subscription)
        return self.next_run_time(subscription.id)

    def unschedule(self, subscription_id: int) -> None:
        if self.started and self.scheduler.get_job(job_id(subscription_id)) is not None:
            self.scheduler.remove_job(job_id(subscription_id))
            log.info("digest.job_removed", subscription_id=subscription_id)

    def next_run_time(self, subscription_id: int) -> dt.datetime | None:
        """The job's next fire time; None when this process holds no job for it (or is not started)."""
        if not self.started:
            return None
        job = self.scheduler.get_job(job_id(subscription_id))
        value: dt.datetime | None = getattr(job, "next_run_time", None) if job is not None else None
        return value

    # ------------------------------------------------------------------ running

    async def run_due(self, subscription_id: int) -> RunOutcome | None:
        """Run the digest that is due now for a subscription (called by its job)."""
        subscription = await self.repo.get_subscription(subscription_id)
        if subscription is None:
            log.warning("digest.job_for_deleted_subscription", subscription_id=subscription_id)
            self.unschedule(subscription_id)
            return None
        if not self.owns(subscription.guild_id):
            return None
        now = self._clock()
        digest_date = due_digest_date(subscription, now)
        if digest_date is None:
            log.warning("digest.job_fired_with_nothing_due", subscription_id=subscription_id)
            return None
        late_s = (now - scheduled_time(subscription, digest_date)).total_seconds()
        log.info(
            "digest.job_fired",
            subscription_id=subscription.id,
            channel_id=subscription.channel_id,
            digest_date=digest_date.isoformat(),
            catch_up=late_s > 60,
            late_s=round(late_s),
        )
        return await self._tracked(self._run(subscription, digest_date, "schedule"))

    async def recover_interrupted(self, runs: list[DigestRun]) -> list[RunOutcome]:
        """Resume `runs`, which a crash left `running`, if still within the catch-up grace."""
        outcomes: list[RunOutcome] = []
        resumed: set[tuple[int, dt.date]] = set()
        for run in runs:
            await self.repo.mark_run_interrupted(run.id, "interrupted: paperbot stopped during this run")
            subscription = (
                await self.repo.get_subscription(run.subscription_id) if run.subscription_id else None
            )
            if subscription is None or subscription.paused:
                continue
            key = (subscription.id, run.digest_date)
            late = self._clock() - scheduled_time(subscription, run.digest_date)
            if key in resumed or late.total_seconds() > self.grace_s:
                continue
            resumed.add(key)
            log.info("digest.resuming_interrupted_run", run_id=run.id, subscription_id=subscription.id)
            outcomes.append(await self._run(subscription, run.digest_date, "recovery"))
        return outcomes

    def _on_job_event(self, event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning(
                "digest.job_missed",
                job_id=event.job_id,
                scheduled=event.scheduled_run_time.isoformat(),
                grace_minutes=self.settings.catch_up_grace_minutes,
            )
        else:
            log.error("digest.job_error", job_id=event.job_id, error=repr(event.exception))
