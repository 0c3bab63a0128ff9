"""Cooldowns for expensive (LLM-backed) requests: one per user per N seconds, M per guild per minute."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

GUILD_WINDOW_S = 60.0


@dataclass(frozen=True)
class Verdict:
    """`wait` is 0 when the request may run (it has been counted); otherwise the seconds to wait
    and whose limit was hit."""

    wait: float
    scope: Literal["user", "guild"] | None = None

    @property
    def allowed(self) -> bool:
        return self.wait <= 0


@dataclass
class RateLimiter:
    user_cooldown_s: float
    guild_per_minute: int
    clock: Callable[[], float] = time.monotonic
    _last_by_user: dict[int, float] = field(default_factory=dict)
    _recent_by_guild: dict[int, deque[float]] = field(default_factory=dict)

    def check(self, user_id: int, guild_id: int | None) -> Verdict:
        now = self.clock()
        last = self._last_by_user.get(user_id)
        if last is not None and now - last < self.user_cooldown_s:
            return Verdict(self.user_cooldown_s - (now - last), "user")
        if guild_id is not None:
            recent = self._recent_by_guild.setdefault(guild_id, deque())
            while recent and now - recent[0] >= GUILD_WINDOW_S:
                recent.popleft()
            if len(recent) >= self.guild_per_minute:
                return Verdict(GUILD_WINDOW_S - (now - recent[0]), "guild")
            recent.append(now)
        self._last_by_user[user_id] = now
        self._forget_idle_users(now)
        return Verdict(0.0)

    def _forget_idle_users(self, now: float) -> None:
        # Keeps memory flat on a busy bot: entries older than the cooldown carry no information.
        if len(self._last_by_user) > 10_000:
            cutoff = now - self.user_cooldown_s
            self._last_by_user = {u: t for u, t in self._last_by_user.items() if t >= cutoff}
