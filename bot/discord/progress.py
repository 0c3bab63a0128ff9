"""Shows an answer's progress in Discord by editing one message, at most about once a second."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import discord
import structlog

from bot.discord.formatting import MESSAGE_LIMIT, clip

log = structlog.get_logger(__name__)

Edit = Callable[[str], Awaitable[object]]


class ThrottledProgress:
    """Implements the AnswerProgress protocol of bot.rag on top of any "edit this message" call."""

    def __init__(self, edit: Edit, *, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._edit = edit
        self._interval = interval_s
        self._clock = clock
        self._last_edit = float("-inf")
        self.edits = 0

    async def _maybe_edit(self, text: str, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._last_edit < self._interval:
            return
        self._last_edit = now
        try:
            await self._edit(clip(text, MESSAGE_LIMIT))
            self.edits += 1
        except discord.HTTPException as exc:  # progress is best effort; the final answer is not
            log.warning("discord.progress_edit_failed", error=str(exc))

    async def stage(self, step: str, iteration: int, total: int) -> None:
        label = "searching the papers" if step == "searching" else "reading and writing"
        await self._maybe_edit(f"🔎 {label}… ({iteration}/{total})", force=step == "searching")

    async def partial(self, text: str) -> None:
        await self._maybe_edit(f"✍️ {text} ▌")
