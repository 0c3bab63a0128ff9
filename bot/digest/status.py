"""What `/digest status` and `/digest preview` show, as data and as plain lines (no Discord here)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bot.db.repository import Repository
from bot.digest import cron as schedule
from bot.digest.records import DigestRun, Subscription, SubscriptionSettings
from bot.digest.scheduler import DigestScheduler
from bot.digest.service import DigestPreview, DigestService

_STATUS_WORDS = {
    "running": "running",
    "posted": "posted",
    "partial": "posted with failures",
    "empty": "nothing to post",
    "already_posted": "already posted",
    "skipped": "skipped",
    "failed": "failed",
    "interrupted": "interrupted",
}


@dataclass(frozen=True)
class DigestStatus:
    subscription: Subscription
    next_run: dt.datetime | None  # None when paused
    scheduled_here: bool  # this process holds the job (False: another shard's process, or paused)
    runs: list[DigestRun]  # most recent first


async def digest_status(
    repo: Repository,
    channel_id: int,
    *,
    scheduler: DigestScheduler | None = None,
    now: dt.datetime | None = None,
    limit: int = 5,
) -> DigestStatus | None:
    """The channel's subscription, its next run and its last runs; None if it has no digest."""
    subscription = await repo.get_channel_subscription(channel_id)
    if subscription is None:
        return None
    runs = await repo.recent_runs(channel_id, limit)
    next_run = scheduler.next_run_time(subscription.id) if scheduler is not None else None
    scheduled_here = next_run is not None
    if next_run is None:
        next_run = schedule.next_run_time(subscription, now or dt.datetime.now(dt.UTC))
    return DigestStatus(subscription, next_run, scheduled_here, runs)


def describe_run(run: DigestRun) -> str:
    """One line: `2026-08-18 (schedule) posted: fetched 29, new 29, filtered 24, posted 5 · 12 s`."""
    counts = run.counts
    numbers = [
        f"fetched {counts.fetched}",
        f"new {counts.new}",
        f"duplicates {counts.duplicates}",
        f"filtered {counts.filtered}",
        f"posted {counts.posted}",
    ]
    if counts.failed:
        numbers.append(f"failed {counts.failed}")
    if counts.recovered:
        numbers.append(f"recovered {counts.recovered}")
    line = f"{run.digest_date.isoformat()} ({run.trigger}) {_STATUS_WORDS.get(run.status, run.status)}: "
    line += ", ".join(numbers)
    if run.finished_at is not None:
        line += f" · {(run.finished_at - run.started_at).total_seconds():.0f} s"
    if run.empty_reason:
        line += f" · {run.empty_reason.replace('_', ' ')}"
    if run.errors:
        line += f" · error: {run.errors[0][:200]}"
    return line


def local_today(subscription: SubscriptionSettings, now: dt.datetime | None = None) -> dt.date:
    return (now or dt.datetime.now(dt.UTC)).astimezone(subscription.zone).date()


async def preview_digest(
    service: DigestService,
    subscription: SubscriptionSettings,
    *,
    digest_date: dt.date | None = None,
    now: dt.datetime | None = None,
) -> DigestPreview:
    """What would post now for the channel (today in its time zone, unless a date is given)."""
    return await service.preview(subscription, digest_date or local_today(subscription, now))
