"""Turning `/digest subscribe` options into validated subscription settings, with the defaults."""

from __future__ import annotations

from typing import Any

from bot.core.config import DigestSettings
from bot.digest.records import GuildSettings, SubscriptionSettings


class SubscriptionLimitError(ValueError):
    """The options are valid but exceed what this bot allows; the message is for the admin."""


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
