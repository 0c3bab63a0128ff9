"""When a subscription's digests fire, in its own time zone; which process owns which guild."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from apscheduler.triggers.cron import CronTrigger

from bot.core.timing import WEEKDAY_NAMES
from bot.digest.records import SubscriptionSettings

DISCORD_SHARD_SHIFT = 22  # Discord: shard_id = (guild_id >> 22) % shard_count


def cron_trigger(subscription: SubscriptionSettings) -> CronTrigger:
    return CronTrigger(
        day_of_week=",".join(WEEKDAY_NAMES[d] for d in subscription.weekdays),
        hour=subscription.post_time.hour,
        minute=subscription.post_time.minute,
        timezone=subscription.zone,
    )


def scheduled_time(subscription: SubscriptionSettings, digest_date: dt.date) -> dt.datetime:
    """The moment the digest of `digest_date` is due (aware, in the subscription's time zone)."""
    return dt.datetime.combine(digest_date, subscription.post_time, tzinfo=subscription.zone)


def due_digest_date(subscription: SubscriptionSettings, now: dt.datetime) -> dt.date | None:
    """The date of the latest digest due at `now` (local date of its scheduled time), if any this week.

    A 23:30 digest caught up at 00:10 the next day is still the previous day's digest.
    """
    local_today = now.astimezone(subscription.zone).date()
    for days_back in range(8):
        day = local_today - dt.timedelta(days=days_back)
        if day.weekday() in subscription.weekdays and scheduled_time(subscription, day) <= now:
            return day
    return None


def next_run_time(subscription: SubscriptionSettings, now: dt.datetime) -> dt.datetime | None:
    if subscription.paused:
        return None
    return cron_trigger(subscription).get_next_fire_time(None, now)


def shard_of(guild_id: int, shard_count: int) -> int:
    return (guild_id >> DISCORD_SHARD_SHIFT) % shard_count


def owns_guild(guild_id: int, shard_count: int, shard_ids: Collection[int] | None) -> bool:
    """True when this process runs the guild's shard (`shard_ids` None = all shards)."""
    return shard_ids is None or shard_of(guild_id, shard_count) in shard_ids
