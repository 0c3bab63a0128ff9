"""Digest subscriptions, one per channel: created, changed, paused and removed with their schedule,
the reactions that steer them, and the server-wide defaults that new ones start from.

`SubscriptionService` is what `/digest` (and `python -m bot digest subscriptions`) call; it never
imports discord. Its errors are `UserInputError`s worded for the server admin who typed the command.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import structlog
from pydantic import ValidationError

from bot.core.config import DigestSettings
from bot.core.errors import UserInputError
from bot.core.timing import parse_post_time, validate_timezone
from bot.db.repository import Repository
from bot.digest import cron
from bot.digest.records import GuildSettings, Subscription, SubscriptionSettings
from bot.digest.scheduler import DigestScheduler
from bot.digest.service import DigestPreview, DigestService, RunOutcome
from bot.digest.status import DigestStatus, digest_status, local_today, preview_digest

log = structlog.get_logger(__name__)

NO_DIGEST = "This channel has no digest; set one up with `/digest subscribe`."


class SubscriptionLimitError(UserInputError, ValueError):
    """The options are valid but exceed what this bot allows; the message is for the admin."""


class InvalidSubscriptionError(UserInputError):
    """Options that do not make a valid subscription (or server default); the message says which."""


class NoDigestError(UserInputError):
    """The channel has no digest subscription."""

    def __init__(self, message: str = NO_DIGEST) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class ScheduledSubscription:
    subscription: Subscription
    next_run: dt.datetime | None  # None: paused, or (scheduler started) a guild another process runs
    updated: bool = False  # from `subscribe`: the channel already had a digest, and it was changed


def validation_text(error: ValidationError, *, fields: bool = True) -> str:
    """Pydantic's errors as one sentence for the person who typed the options (`fields`: say which)."""
    parts = []
    for item in error.errors():
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        where = ".".join(str(p) for p in item.get("loc", ())) if fields else ""
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def new_subscription(
    *,
    guild_id: int,
    channel_id: int,
    options: dict[str, Any],
    digest: DigestSettings,
    guild: GuildSettings | None = None,
    created_by: int | None = None,
) -> SubscriptionSettings:
    """Settings from the options given; unset ones come from the guild's defaults, then the bot's.

    Raises pydantic's ValidationError (bad values) or SubscriptionLimitError (over the limits)."""
    values: dict[str, Any] = {
        "post_time": (guild.default_post_time if guild and guild.default_post_time else digest.default_time),
        "timezone": (guild.default_timezone if guild and guild.default_timezone else digest.default_timezone),
        "weekdays": digest.default_weekdays,
        "max_papers": digest.default_max_papers,
    }
    values.update({k: v for k, v in options.items() if v is not None})
    values.update(guild_id=guild_id, channel_id=channel_id, created_by=created_by)
    settings = SubscriptionSettings.model_validate(values)
    check_limits(settings, digest)
    return settings


def update_subscription(
    current: SubscriptionSettings, changes: dict[str, Any], digest: DigestSettings
) -> SubscriptionSettings:
    """`/digest settings` edits: only the options given change."""
    values = current.model_dump()
    values.update({k: v for k, v in changes.items() if v is not None})
    settings = SubscriptionSettings.model_validate(
        {k: v for k, v in values.items() if k in SubscriptionSettings.model_fields}
    )
    check_limits(settings, digest)
    return settings


def check_limits(settings: SubscriptionSettings, digest: DigestSettings) -> None:
    if settings.max_papers > digest.max_papers_limit:
        limit, asked = digest.max_papers_limit, settings.max_papers
        raise SubscriptionLimitError(f"at most {limit} papers per digest on this bot (asked for {asked})")


class SubscriptionService:
    """What `/digest` does to a channel's subscription, without Discord: every change is saved, then
    the channel's job is brought in line (`scheduler`; before it is started, the next run is worked
    out from the schedule and no job is made)."""

    def __init__(
        self,
        repo: Repository,
        settings: DigestSettings,
        *,
        digests: DigestService,
        scheduler: DigestScheduler,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.digests = digests
        self.scheduler = scheduler

    async def get(self, channel_id: int) -> Subscription:
        """The channel's subscription; NoDigestError if it has none."""
        subscription = await self.repo.get_channel_subscription(channel_id)
        if subscription is None:
            raise NoDigestError()
        return subscription

    async def subscribe(
        self, *, guild_id: int, channel_id: int, options: dict[str, Any], user_id: int | None = None
    ) -> ScheduledSubscription:
        """Subscribe the channel (options left None take the server's defaults, then the bot's), or,
        if it has a digest, change only the options given. Saved, then (re)scheduled.

        `options` are SubscriptionSettings fields (`post_time`, `arxiv_categories`, ...)."""
        unknown = options.keys() - SubscriptionSettings.model_fields.keys()
        if unknown:
            raise TypeError(f"not subscription settings: {', '.join(sorted(unknown))}")
        current = await self.repo.get_channel_subscription(channel_id)
        try:
            if current is None:
                settings = new_subscription(
                    guild_id=guild_id,
                    channel_id=channel_id,
                    options=options,
                    digest=self.settings,
                    guild=await self.repo.get_guild_settings(guild_id),
                    created_by=user_id,
                )
            else:
                settings = update_subscription(current.settings(), options, self.settings)
        except ValidationError as exc:
            raise InvalidSubscriptionError(validation_text(exc)) from None
        subscription = await self.repo.save_subscription(settings)
        next_run = await self.scheduler.schedule(subscription)
        log.info("digest.subscribed", subscription_id=subscription.id, updated=current is not None)
        return ScheduledSubscription(subscription, next_run, updated=current is not None)

    async def unsubscribe(self, channel_id: int) -> Subscription:
        """Delete the channel's subscription and its job (its runs and posts stay); returns it."""
        removed = await self.repo.delete_subscription(channel_id)
        if removed is None:
            raise NoDigestError("This channel has no digest.")
        self.scheduler.unschedule(removed.id)
        log.info("digest.unsubscribed", subscription_id=removed.id)
        return removed

    async def set_paused(self, channel_id: int, paused: bool) -> ScheduledSubscription:
        """Pause (no job) or resume (job again, next run returned) the channel's digest."""
        subscription = await self.repo.set_paused(channel_id, paused)
        if subscription is None:
            raise NoDigestError()
        next_run = await self.scheduler.schedule(subscription)
        log.info("digest.paused" if paused else "digest.resumed", subscription_id=subscription.id)
        return ScheduledSubscription(subscription, next_run)

    async def status(self, channel_id: int, *, limit: int = 5) -> DigestStatus:
        """The channel's subscription, its next run and its last `limit` runs."""
        status = await digest_status(self.repo, channel_id, scheduler=self.scheduler, limit=limit)
        if status is None:
            raise NoDigestError()
        return status

    async def preview(self, subscription: Subscription) -> DigestPreview:
        """What would be posted now (today in the channel's time zone); nothing is posted."""
        return await preview_digest(self.digests, subscription)

    async def run_now(self, subscription: Subscription) -> RunOutcome:
        """Post today's digest (the channel's local date) now, through the started scheduler."""
        return await self.scheduler.run_now(subscription, local_today(subscription))

    async def record_reaction(
        self, *, message_id: int, guild_id: int, user_id: int, value: int, added: bool
    ) -> bool:
        """A reader's +1 / -1 added to (or taken off) a message: feedback on the paper when the
        message is a digest's paper post; any other message is ignored (False)."""
        post = await self.repo.find_post(message_id)
        if post is None or post.kind != "paper":
            return False
        if added:
            await self.repo.record_feedback(
                guild_id=guild_id, channel_id=post.channel_id, message_id=message_id,
                paper_id=post.item, user_id=user_id, value=value,
            )  # fmt: skip
        else:
            await self.repo.remove_feedback(message_id=message_id, user_id=user_id, value=value)
        log.info("digest.feedback", paper_id=post.item, value=value, added=added, channel_id=post.channel_id)
        return True

    async def list_scheduled(self) -> list[ScheduledSubscription]:
        """Every subscription, with its next run."""
        return await scheduled_subscriptions(self.repo, scheduler=self.scheduler)

    async def guild_defaults(self, guild_id: int) -> GuildSettings:
        """The server's defaults for new subscriptions (None: the bot's default applies)."""
        stored = await self.repo.get_guild_settings(guild_id)
        return stored if stored is not None else GuildSettings(guild_id, None, None)

    async def set_guild_defaults(
        self, guild_id: int, *, timezone: str | None = None, post_time: str | dt.time | None = None
    ) -> GuildSettings:
        """Change the server's default time zone and/or time of day (those given); new subscriptions
        start from them, existing ones keep their own. Same rules as `/digest subscribe`."""
        current = await self.guild_defaults(guild_id)
        if timezone is None and post_time is None:
            return current
        try:
            zone = validate_timezone(timezone) if timezone is not None else current.default_timezone
        except ValueError as exc:
            raise InvalidSubscriptionError(f"timezone: {exc}") from None
        try:
            at = parse_post_time(post_time) if post_time is not None else current.default_post_time
        except ValueError as exc:
            raise InvalidSubscriptionError(f"time: {exc}") from None
        saved = await self.repo.set_guild_settings(guild_id, default_timezone=zone, default_post_time=at)
        log.info("digest.guild_defaults_set", guild_id=guild_id, timezone=zone, post_time=str(at))
        return saved


async def scheduled_subscriptions(
    repo: Repository, *, scheduler: DigestScheduler | None = None, now: dt.datetime | None = None
) -> list[ScheduledSubscription]:
    """Every subscription with its next run: its job's when `scheduler` holds one, else worked out from
    its schedule (so the CLI can list them without a scheduler, or the index and embedding model)."""
    now = now or dt.datetime.now(dt.UTC)
    listed = []
    for subscription in await repo.list_subscriptions():
        next_run = scheduler.next_run_time(subscription.id) if scheduler is not None else None
        listed.append(ScheduledSubscription(subscription, next_run or cron.next_run_time(subscription, now)))
    return listed
