"""The generation queue: at most N generations at once; the others wait in line, knowing their place.

On 2 cores the embedded llama.cpp server decodes one request at a time. Requests sent beside it would
only wait inside the server, where nobody sees their place, nothing bounds the wait, and the client's
timeout counts the wait as generation time. So the client keeps the line itself:

- **Slots.** `max_concurrent` generations run at once (`LLM_MAX_CONCURRENT`: 1 for the embedded
  server, 4 for a configured one). The client's timeout starts once a slot is granted.
- **Order.** Interactive work (a question, a paper card's summary: someone is waiting for it) goes
  first, first come first served. Background work (digest summaries, see `llm_priority`) takes a slot
  only when no interactive request waits, and holds at most `background_slots` of them, so a question
  waits behind at most the summary being written, never behind a digest's whole batch.
- **Turns.** An answer makes two or three generations. `turn()` holds one slot from the first of them
  to the end of the answer, so it never waits twice and the questions behind it wait for whole
  answers: "2 ahead of yours" counts answers.
- **Bounds.** Every wait is bounded. An interactive request that finds `max_waiting` others already
  waiting is turned away (`check_room` → `QueueFullError` for front ends, before any work; inside
  the client → `LLMBusyError`), and a request that has waited `max_wait_s` leaves the line
  (`LLMBusyError`; answers and summaries fall back without the model).

Background work may wait while questions keep coming; its waits are bounded too, and questions are
rate-limited per user and per server, so a digest is delayed, not stalled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import enum
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from bot.core.errors import UserInputError
from bot.llm.errors import LLMBusyError

if TYPE_CHECKING:
    from bot.core.config import LLMSettings

log = structlog.get_logger(__name__)

# Told how many requests are ahead (running or earlier in line) whenever that changes while waiting,
# and 0 once the slot is granted after a wait. Not called for a request that did not wait.
OnWait = Callable[[int], Awaitable[None]]


class Priority(enum.IntEnum):
    INTERACTIVE = 0  # a user is waiting for it
    BACKGROUND = 1  # digest summaries


_priority: contextvars.ContextVar[Priority] = contextvars.ContextVar(
    "llm_priority", default=Priority.INTERACTIVE
)
_turn: contextvars.ContextVar[Turn | None] = contextvars.ContextVar("llm_turn", default=None)


@contextmanager
def llm_priority(priority: Priority) -> Iterator[None]:
    """LLM calls made in this block, and in tasks started from it, wait with this priority."""
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


def current_priority() -> Priority:
    return _priority.get()


class QueueFullError(UserInputError):
    """Too many questions are already waiting for the language model; refused before any work."""

    def __init__(self, waiting: int) -> None:
        several = "questions are" if waiting != 1 else "question is"
        super().__init__(
            f"paperbot is busy: {waiting} {several} waiting for the language model; "
            "try again in a few minutes"
        )
        self.waiting = waiting


@dataclass(eq=False)
class _Waiter:
    priority: Priority
    seq: int
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    granted: bool = False

    @property
    def order(self) -> tuple[int, int]:
        return (self.priority, self.seq)


class GenerationQueue:
    """At most `max_concurrent` generations at once; FIFO within a priority, interactive first."""

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_waiting: int = 10,
        max_wait_s: float = 600.0,
        background_slots: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        # Keeps slots free for questions on a server that runs several generations at once.
        self.background_slots = background_slots or max(1, max_concurrent // 2)
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._waiters: list[_Waiter] = []  # in the order they will be served
        self._running = {Priority.INTERACTIVE: 0, Priority.BACKGROUND: 0}
        self._seq = itertools.count()

    @classmethod
    def from_settings(cls, settings: LLMSettings) -> GenerationQueue:
        return cls(
            settings.concurrent_generations,
            max_waiting=settings.queue_max_waiting,
            max_wait_s=settings.queue_max_wait_s,
        )

    # ------------------------------------------------------------------ what front ends read

    @property
    def running(self) -> int:
        return sum(self._running.values())

    def waiting(self, priority: Priority | None = None) -> int:
        return sum(1 for w in self._waiters if priority is None or w.priority == priority)

    def check_room(self, priority: Priority = Priority.INTERACTIVE) -> None:
        """Before accepting a question: `QueueFullError` if it would join a full line."""
        if priority == Priority.INTERACTIVE and self._line_full():
            raise QueueFullError(self.waiting(Priority.INTERACTIVE))

    # ------------------------------------------------------------------ turns and slots

    @asynccontextmanager
    async def turn(self, *, on_wait: OnWait | None = None) -> AsyncIterator[Turn]:
        """A unit of work (an answer) that holds one slot from its first generation to its end.

        Nothing waits until the first generation; a block that never calls the model never queues.
        Tasks started inside the block share the turn's slot."""
        turn = Turn(self, current_priority(), on_wait)
        token = _turn.set(turn)
        try:
            yield turn
        finally:
            _turn.reset(token)
            turn.end()

    @asynccontextmanager
    async def generation(self) -> AsyncIterator[None]:
        """What every LLM call goes through: the current turn's slot, or a slot of its own."""
        turn = _turn.get()
        if turn is not None and turn.queue is self:
            await turn.hold()
            yield
            return
        priority = current_priority()
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release(priority)

    async def acquire(self, priority: Priority, *, on_wait: OnWait | None = None) -> float:
        """Wait for a slot; the seconds waited. Raises `LLMBusyError` when the line is full or the
        wait reaches `max_wait_s`. Pair with `release(priority)`."""
        if self._can_start(priority):
            self._running[priority] += 1
            return 0.0
        if priority == Priority.INTERACTIVE and self._line_full():
            waiting = self.waiting(Priority.INTERACTIVE)
            log.warning("llm.queue_full", waiting=waiting, running=self.running)
            raise LLMBusyError(
                f"the LLM queue is full ({waiting} waiting, {self.running} running)",
                waited_s=0.0,
                ahead=self.running + waiting,
            )
        waiter = _Waiter(priority, next(self._seq))
        bisect.insort(self._waiters, waiter, key=lambda w: w.order)
        started = self._clock()
        deadline = started + self.max_wait_s
        reported: int | None = None
        entered_behind = self._ahead(waiter)
        try:
            while True:
                waiter.changed.clear()  # before looking, so that no change after the look is missed
                if waiter.granted:
                    break
                ahead = self._ahead(waiter)
                if on_wait is not None and ahead != reported:
                    reported = ahead
                    await on_wait(ahead)
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    log.warning("llm.queue_timeout", waited_s=round(self.max_wait_s, 1), ahead=ahead)
                    raise LLMBusyError(
                        f"no LLM slot came free within {self.max_wait_s:g} s ({ahead} ahead)",
                        waited_s=self._clock() - started,
                        ahead=ahead,
                    )
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                # arrives as the event is set, and the cancelled waiter would stay in line.
                with contextlib.suppress(TimeoutError):  # the loop sees the deadline
                    async with asyncio.timeout(remaining):
                        await waiter.changed.wait()
            if reported is not None and on_wait is not None:
                await on_wait(0)
        except BaseException:
            if waiter.granted:  # granted as it gave up: hand the slot on
                self.release(priority)
            else:
                self._waiters.remove(waiter)
                self._dispatch()  # those behind it moved up
            raise
        waited = self._clock() - started
        log.info(
            "llm.queue_waited",
            priority=priority.name.lower(),
            waited_s=round(waited, 3),
            entered_behind=entered_behind,
        )
        return waited

    def release(self, priority: Priority) -> None:
        self._running[priority] -= 1
        self._dispatch()

    # ------------------------------------------------------------------ internals

    def _line_full(self) -> bool:
        return (
            not self._can_start(Priority.INTERACTIVE)
            and self.waiting(Priority.INTERACTIVE) >= self.max_waiting
        )

    def _eligible(self, priority: Priority) -> bool:
        """A free slot this priority may take (ignoring who waits)."""
        if self.running >= self.max_concurrent:
            return False
        return priority == Priority.INTERACTIVE or self._running[priority] < self.background_slots

    def _can_start(self, priority: Priority) -> bool:
        return self._eligible(priority) and not any(w.priority <= priority for w in self._waiters)

    def _ahead(self, waiter: _Waiter) -> int:
        return self.running + self._waiters.index(waiter)

    def _dispatch(self) -> None:
        """Grant free slots in line order, then tell everyone still waiting that the line moved."""
        for waiter in list(self._waiters):
            if self.running >= self.max_concurrent:
                break
            if not self._eligible(waiter.priority):
                break  # background work over its share (and only background work is behind it)
            self._waiters.remove(waiter)
            waiter.granted = True
            self._running[waiter.priority] += 1
            waiter.changed.set()
        for waiter in self._waiters:
            waiter.changed.set()


class Turn:
    """One slot held across the generations of one piece of work (see `GenerationQueue.turn`)."""

    def __init__(self, queue: GenerationQueue, priority: Priority, on_wait: OnWait | None) -> None:
        self.queue = queue
        self.priority = priority
        self.waited_s = 0.0
        self._on_wait = on_wait
        self._held = False
        self._ended = False
        self._refused: LLMBusyError | None = None
        self._lock = asyncio.Lock()

    @property
    def refused(self) -> bool:
        """The turn never got a slot (the line was full, or the wait ran out)."""
        return self._refused is not None

    async def hold(self) -> None:
        """Wait for the slot on first use. A turn refused once is refused again at once: an answer
        that gave up waiting must not wait a second time for its next generation."""
        async with self._lock:
            if self._ended:
                raise RuntimeError("the turn has ended")
            if self._refused is not None:
                raise LLMBusyError(
                    str(self._refused), waited_s=self._refused.waited_s, ahead=self._refused.ahead
                )
            if self._held:
                return
            try:
                self.waited_s = await self.queue.acquire(self.priority, on_wait=self._on_wait)
            except LLMBusyError as exc:
                self._refused = exc
                self.waited_s = exc.waited_s
                raise
            self._held = True

    def end(self) -> None:
        self._ended = True
        if self._held:
            self._held = False
            self.queue.release(self.priority)
