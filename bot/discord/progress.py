"""Shows an answer's progress in Discord by editing one message, at most once per interval.

Updates that come too soon are not dropped but coalesced: the latest one is shown as soon as the
interval allows, so the message never lags behind a stage for longer than one interval (a slow
model would otherwise leave "searching…" on screen while it writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import discord
import structlog

from bot.discord.formatting import MESSAGE_LIMIT, clip, defang_links

log = structlog.get_logger(__name__)

Edit = Callable[[str], Awaitable[object]]


class ThrottledProgress:
    """Implements the AnswerProgress protocol of bot.rag on top of any "edit this message" call.

    Call `aclose()` before writing the final answer: it drops any pending update and waits for an
    edit in flight, so a late progress edit can never overwrite the answer.
    """

    def __init__(
        self, edit: Edit, *, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._edit = edit
        self._interval = interval_s
        self._clock = clock
        self._last_edit = float("-inf")
        self._pending: str | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._editing = False
        self._closed = False
        self.edits = 0

    async def stage(self, step: str, iteration: int, total: int) -> None:
        label = "searching the papers" if step == "searching" else "reading and writing"
        await self.update(f"🔎 {label}… ({iteration}/{total})")

    async def partial(self, text: str) -> None:
        await self.update(f"✍️ {defang_links(text)} ▌")

    async def update(self, text: str) -> None:
        if self._closed:
            return
        self._pending = clip(text, MESSAGE_LIMIT)
        if self._flusher is not None and not self._flusher.done():
            return  # the flusher shows the latest text when the interval allows
        if self._clock() - self._last_edit >= self._interval:
            await self._show_pending()
        else:
            self._flusher = asyncio.create_task(self._flush_later(), name="discord-progress-flush")

    async def _flush_later(self) -> None:
        while self._pending is not None and not self._closed:
            await asyncio.sleep(max(0.0, self._last_edit + self._interval - self._clock()))
            if self._closed:
                return
            await self._show_pending()

    async def _show_pending(self) -> None:
        text, self._pending = self._pending, None
        if text is None:
            return
        self._last_edit = self._clock()
        self._editing = True
        try:
            await self._edit(text)
            self.edits += 1
        except discord.HTTPException as exc:  # progress is best effort; the final answer is not
            log.warning("discord.progress_edit_failed", error=str(exc))
        finally:
            self._editing = False

    async def aclose(self) -> None:
        self._closed = True
        self._pending = None
        flusher, self._flusher = self._flusher, None
        if flusher is None or flusher.done():
            return
        if not self._editing:
            flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
