"""A daily LLM token budget per guild: once a server has spent it, answers stop until 00:00 UTC.

Usage is kept in the state database when there is one (it survives restarts and is shared by
every shard), in memory otherwise. A request is let in while the day's total is under the limit,
and its real token count is added afterwards: one answer may overshoot by its own size, which
keeps the check cheap and never cuts an answer off half-way.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Protocol

import structlog

from bot.core.errors import UserInputError

log = structlog.get_logger(__name__)

# Direct messages (when allowed) share one budget: they belong to no guild.
DIRECT_MESSAGES = 0


class UsageStore(Protocol):
    async def tokens_used(self, guild_id: int, day: dt.date) -> int: ...

    async def add_tokens(self, guild_id: int, day: dt.date, tokens: int) -> int: ...


class MemoryUsageStore:
    """For a bot without a state database; keeps only the current day."""

    def __init__(self) -> None:
        self._day: dt.date | None = None
        self._tokens: dict[int, int] = {}

    def _roll(self, day: dt.date) -> None:
        if day != self._day:
            self._day, self._tokens = day, {}

    async def tokens_used(self, guild_id: int, day: dt.date) -> int:
        self._roll(day)
        return self._tokens.get(guild_id, 0)

    async def add_tokens(self, guild_id: int, day: dt.date, tokens: int) -> int:
        self._roll(day)
        self._tokens[guild_id] = self._tokens.get(guild_id, 0) + tokens
        return self._tokens[guild_id]


class BudgetExhausted(UserInputError):
    """The guild has used its tokens for today; the message is for the user."""

    def __init__(self, used: int, limit: int, resets_in_s: float) -> None:
        hours, minutes = divmod(max(1, math.ceil(resets_in_s / 60)), 60)
        when = f"{hours} h {minutes} min" if hours else f"{minutes} min"
        super().__init__(
            f"This server has used today's answer budget ({used:,} of {limit:,} LLM tokens). "
            f"It resets at 00:00 UTC, in {when}; searching and paper cards still work"
        )
        self.used = used
        self.limit = limit
        self.resets_in_s = resets_in_s


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TokenBudget:
    """`daily_limit` 0 means unlimited (usage is still recorded)."""

    def __init__(
        self, daily_limit: int, store: UsageStore, *, clock: Callable[[], dt.datetime] = _utcnow
    ) -> None:
        self.daily_limit = daily_limit
        self._store = store
        self._clock = clock

    async def ensure_available(self, guild_id: int | None) -> None:
        """Raise BudgetExhausted when the guild has no tokens left today."""
        if self.daily_limit <= 0:
            return
        now = self._clock()
        used = await self._store.tokens_used(guild_id or DIRECT_MESSAGES, now.date())
        if used >= self.daily_limit:
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
            raise BudgetExhausted(used, self.daily_limit, (midnight - now).total_seconds())

    async def has_room(self, guild_id: int | None) -> bool:
        try:
            await self.ensure_available(guild_id)
        except BudgetExhausted:
            return False
        return True

    async def spend(self, guild_id: int | None, tokens: int) -> None:
        """Record an answer's tokens. A failure to record is logged, never shown to the user: the
        answer has been made and must still be delivered."""
        if tokens <= 0:
            return
        key = guild_id or DIRECT_MESSAGES
        try:
            total = await self._store.add_tokens(key, self._clock().date(), tokens)
        except Exception as exc:  # the database may be briefly unavailable
            log.warning("budget.record_failed", guild_id=key, tokens=tokens, error=str(exc))
            return
        if self.daily_limit and total >= self.daily_limit > total - tokens:
            log.info("budget.exhausted", guild_id=key, used=total, limit=self.daily_limit)
