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

from bot.discord.formatting import MESSAGE_LIMIT, NO_MENTIONS, clip, defang_links

log = structlog.get_logger(__name__)

Edit = Callable[[str], Awaitable[object]]
QUEUE_MARK = "⏳"


def queue_text(ahead: int) -> str:
    questions = "question" if ahead == 1 else "questions"
    return f"{QUEUE_MARK} Waiting for the language model — {ahead} {questions} ahead of yours"


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
        self._stage = "🔎 searching the papers…"
        self.edits = 0

    async def stage(self, step: str, iteration: int, total: int) -> None:
        label = "searching the papers" if step == "searching" else "reading and writing"
        self._stage = f"🔎 {label}… ({iteration}/{total})"
        await self.update(self._stage)

    async def queued(self, ahead: int) -> None:
        await self.update(queue_text(ahead) if ahead > 0 else self._stage)

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


Send = Callable[[str], Awaitable[discord.Message]]


class QueueNotice:
    """The AnswerProgress of chat answers, which show only "typing…": a message appears if the
    question has to wait for the language model, shows its place in the queue and then the answer's
    progress, and is then replaced by the answer (`message` is that message, if one was posted)."""

    def __init__(self, send: Send, *, interval_s: float = 1.0) -> None:
        self._send = send
        self.message: discord.Message | None = None
        self._waited = False
        self._stage: tuple[str, int, int] | None = None
        self._progress = ThrottledProgress(self._show, interval_s=interval_s)

    async def _show(self, text: str) -> None:
        if self.message is None:
            self.message = await self._send(text)
        else:
            await self.message.edit(content=text, allowed_mentions=NO_MENTIONS)

    async def stage(self, step: str, iteration: int, total: int) -> None:
        self._stage = (step, iteration, total)
        if self._waited:
            await self._progress.stage(step, iteration, total)

    async def queued(self, ahead: int) -> None:
        self._waited = True
        if ahead == 0 and self._stage is not None:
            await self._progress.stage(*self._stage)
        else:
            await self._progress.queued(ahead)

    async def partial(self, text: str) -> None:
        if self._waited:
            await self._progress.partial(text)

    async def aclose(self) -> None:
        await self._progress.aclose()
