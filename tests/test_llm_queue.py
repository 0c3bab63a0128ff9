"""The generation queue (bot/llm/queue.py): order, places, priorities, turns and bounds — on its own, and
through the real LLM client against the scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio
from pydantic import ValidationError

from bot.core.config import LLMSettings
from bot.llm import GenerationQueue, LLMBusyError, LLMClient, Priority, QueueFullError, llm_priority
from tests.support.scripted_llm import ScriptedDelay, ScriptedLLMServer, ScriptedReply, last_user_text

INTERACTIVE, BACKGROUND = Priority.INTERACTIVE, Priority.BACKGROUND


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


def recorder(into: list[int]) -> Callable[[int], Awaitable[None]]:
    async def on_wait(ahead: int) -> None:
        into.append(ahead)

    return on_wait


async def cancel(*tasks: asyncio.Task[object]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, LLMBusyError):
            await task


# --------------------------------------------------------------------------- the queue on its own


async def test_waiters_are_served_first_come_first_served_and_told_each_move() -> None:
    queue = GenerationQueue(1)
    await queue.acquire(INTERACTIVE)  # a generation is running
    places: dict[str, list[int]] = {name: [] for name in "abc"}
    served: list[str] = []

    async def wait(name: str) -> None:
        await queue.acquire(INTERACTIVE, on_wait=recorder(places[name]))
        served.append(name)

    tasks = []
    for name in "abc":
        tasks.append(asyncio.create_task(wait(name)))
        await settle()
    assert places == {"a": [1], "b": [2], "c": [3]}
    assert (queue.running, queue.waiting()) == (1, 3)
    for expected in "abc":
        queue.release(INTERACTIVE)
        await settle()
        assert served[-1] == expected
    assert places == {"a": [1, 0], "b": [2, 1, 0], "c": [3, 2, 1, 0]}
    queue.release(INTERACTIVE)
    assert (queue.running, queue.waiting()) == (0, 0)
    await asyncio.gather(*tasks)


async def test_questions_go_before_background_summaries_waiting_longer() -> None:
    queue = GenerationQueue(1)
    await queue.acquire(BACKGROUND)  # a digest summary is being written
    served: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        await queue.acquire(priority)
        served.append(name)

    tasks = []
    for name, priority in [("summary 2", BACKGROUND), ("summary 3", BACKGROUND), ("question", INTERACTIVE)]:
        tasks.append(asyncio.create_task(take(name, priority)))
        await settle()
    queue.release(BACKGROUND)
    await settle()
    assert served == ["question"]  # it waited for the summary being written, not for the batch
    for priority in (INTERACTIVE, BACKGROUND, BACKGROUND):
        queue.release(priority)
        await settle()
    assert served == ["question", "summary 2", "summary 3"]
    await asyncio.gather(*tasks)


async def test_background_work_keeps_slots_free_for_questions_on_a_parallel_server() -> None:
    queue = GenerationQueue(2)
    assert queue.background_slots == 1
    await queue.acquire(BACKGROUND)
    second_summary = asyncio.create_task(queue.acquire(BACKGROUND))
    await settle()
    assert not second_summary.done() and queue.running == 1  # a slot is free, but not for summaries
    assert await asyncio.wait_for(queue.acquire(INTERACTIVE), 1) == 0.0  # a question takes it at once
    queue.release(BACKGROUND)
    await asyncio.wait_for(second_summary, 1)
    assert queue.running == 2


async def test_a_full_line_refuses_questions_at_once_but_not_background_work() -> None:
    queue = GenerationQueue(1, max_waiting=2)
    await queue.acquire(INTERACTIVE)
    queue.check_room()  # nobody waits yet
    waiting = [asyncio.create_task(queue.acquire(INTERACTIVE)) for _ in range(2)]
    await settle()
    with pytest.raises(QueueFullError) as refused:
        queue.check_room()
    assert str(refused.value) == (
        "paperbot is busy: 2 questions are waiting for the language model; try again in a few minutes"
    )
    started = time.monotonic()
    with pytest.raises(LLMBusyError):
        await asyncio.wait_for(queue.acquire(INTERACTIVE), 1)
    assert time.monotonic() - started < 0.1 and queue.waiting() == 2
    summary = asyncio.create_task(queue.acquire(BACKGROUND))
    await settle()
    assert not summary.done() and queue.waiting(BACKGROUND) == 1
    queue.check_room(BACKGROUND)  # background work is bounded by its own concurrency, not refused
    await cancel(*waiting, summary)
    assert queue.waiting() == 0


async def test_a_wait_is_bounded_and_those_behind_move_up() -> None:
    queue = GenerationQueue(1, max_wait_s=0.3)
    await queue.acquire(INTERACTIVE)  # a generation that outlasts the bound
    first = asyncio.create_task(queue.acquire(INTERACTIVE))
    await asyncio.sleep(0.1)
    behind: list[int] = []
    second = asyncio.create_task(queue.acquire(INTERACTIVE, on_wait=recorder(behind)))
    await settle()
    started = time.monotonic()
    with pytest.raises(LLMBusyError) as gave_up:
        await first
    assert 0.1 < time.monotonic() - started < 0.5
    assert gave_up.value.waited_s == pytest.approx(0.3, abs=0.1) and gave_up.value.ahead == 1
    await settle()
    assert behind == [2, 1]  # it moved up when the first left the line
    with pytest.raises(LLMBusyError):
        await second
    assert (queue.running, queue.waiting()) == (1, 0)


async def test_a_cancelled_waiter_leaves_the_line_and_leaks_no_slot() -> None:
    queue = GenerationQueue(1)
    await queue.acquire(INTERACTIVE)
    places: list[int] = []
    cancelled = asyncio.create_task(queue.acquire(INTERACTIVE))
    await settle()
    behind = asyncio.create_task(queue.acquire(INTERACTIVE, on_wait=recorder(places)))
    await settle()
    await cancel(cancelled)
    await settle()
    assert queue.waiting() == 1 and places == [2, 1]
    queue.release(INTERACTIVE)
    await asyncio.wait_for(behind, 1)
    queue.release(INTERACTIVE)
    assert (queue.running, queue.waiting()) == (0, 0)


def test_settings_give_one_slot_to_the_embedded_server_and_cap_the_wait_below_discords_window() -> None:
    embedded = LLMSettings(OPENAI_BASE_URL=None, LLM_MAX_CONCURRENT=None)
    configured = LLMSettings(OPENAI_BASE_URL="http://llm:8000/v1", LLM_MAX_CONCURRENT=None)
    assert (embedded.concurrent_generations, configured.concurrent_generations) == (1, 4)
    assert LLMSettings(OPENAI_BASE_URL=None, LLM_MAX_CONCURRENT=2).concurrent_generations == 2
    queue = GenerationQueue.from_settings(embedded)
    assert (queue.max_concurrent, queue.max_waiting, queue.max_wait_s) == (1, 10, 600.0)
    # An interaction token lives 15 minutes: a longer wait would leave no time to answer.
    with pytest.raises(ValidationError, match="LLM_QUEUE_MAX_WAIT_S"):
        LLMSettings(LLM_QUEUE_MAX_WAIT_S=900)


# --------------------------------------------------------------------------- through the LLM client


@pytest_asyncio.fixture
async def server() -> AsyncIterator[ScriptedLLMServer]:
    async with ScriptedLLMServer() as scripted:
        yield scripted


@pytest_asyncio.fixture
async def one_slot(server: ScriptedLLMServer) -> AsyncIterator[Callable[..., LLMClient]]:
    clients: list[LLMClient] = []

    def make(timeout_s: float = 5.0, **queue_options: float) -> LLMClient:
        client = LLMClient(
            base_url=server.base_url, api_key=None, model="m", api_mode="chat", timeout_s=timeout_s,
            max_retries=0, queue=GenerationQueue(1, **queue_options),  # type: ignore[arg-type]
        )  # fmt: skip
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def users(server: ScriptedLLMServer) -> list[str]:
    return [last_user_text(r.json) for r in server.requests_to("/v1/chat/completions")]


async def test_one_slot_runs_generations_one_at_a_time_and_the_timeout_counts_only_the_generation(
    server: ScriptedLLMServer, one_slot: Callable[..., LLMClient]
) -> None:
    client = one_slot(timeout_s=1.5)
    await client.generate(system="s", user="warm-up", max_tokens=5)  # connection set up
    server.script(*(ScriptedDelay(0.6) for _ in range(4)))
    started = time.monotonic()
    completions = await asyncio.gather(
        *(client.generate(system="s", user=f"q{n}", max_tokens=5) for n in range(4))
    )
    assert time.monotonic() - started >= 2.35  # together they would have taken 0.6 s
    # The last one waited about 1.8 s, longer than the 1.5 s timeout, before its own 0.6 s.
    assert all(0.55 <= c.seconds < 1.5 for c in completions), [c.seconds for c in completions]
    assert users(server) == ["warm-up", "q0", "q1", "q2", "q3"] and client.usage.errors == 0


async def test_a_stream_holds_its_slot_until_it_is_closed(
    server: ScriptedLLMServer, one_slot: Callable[..., LLMClient]
) -> None:
    client = one_slot()
    server.script(ScriptedReply("a streamed answer of some length", chunk_chars=2, chunk_delay_s=0.02))
    async with client.stream(system="s", user="streamed", max_tokens=20) as stream:
        async for _ in stream:
            break  # the reader stops early
        waiting = asyncio.create_task(client.generate(system="s", user="next", max_tokens=5))
        await asyncio.sleep(0.2)
        assert not waiting.done() and client.queue.waiting() == 1
    await asyncio.wait_for(waiting, 2)
    assert users(server) == ["streamed", "next"] and client.queue.running == 0


async def test_a_turn_keeps_its_slot_between_its_generations(
    server: ScriptedLLMServer, one_slot: Callable[..., LLMClient]
) -> None:
    client = one_slot()
    places: list[int] = []

    async def answer(name: str, on_wait: Callable[[int], Awaitable[None]] | None = None) -> float:
        async with client.queue.turn(on_wait=on_wait) as turn:
            await client.generate(system="s", user=f"{name} draft", max_tokens=5)
            await asyncio.sleep(0.05)  # retrieval between the two generations: the slot stays held
            await client.generate(system="s", user=f"{name} final", max_tokens=5)
        return turn.waited_s

    first = asyncio.create_task(answer("A"))
    await asyncio.sleep(0.01)
    waited = await answer("B", recorder(places))
    await first
    assert users(server) == ["A draft", "A final", "B draft", "B final"]
    assert places == [1, 0] and waited > 0.04


async def test_a_turn_that_gave_up_waiting_does_not_wait_again(
    server: ScriptedLLMServer, one_slot: Callable[..., LLMClient]
) -> None:
    client = one_slot(max_wait_s=0.2)
    await client.queue.acquire(INTERACTIVE)  # the model is busy for longer than the bound
    async with client.queue.turn() as turn:
        started = time.monotonic()
        with pytest.raises(LLMBusyError):
            await client.generate(system="s", user="rewrite", max_tokens=5)
        with pytest.raises(LLMBusyError):
            await client.generate(system="s", user="draft", max_tokens=5)
        assert time.monotonic() - started < 0.35
    assert turn.refused and server.requests == []
    client.queue.release(INTERACTIVE)
    assert (client.queue.running, client.queue.waiting()) == (0, 0)


async def test_background_work_started_under_llm_priority_waits_behind_a_question(
    server: ScriptedLLMServer, one_slot: Callable[..., LLMClient]
) -> None:
    client = one_slot()
    server.script(*(ScriptedDelay(0.2) for _ in range(4)))
    with llm_priority(Priority.BACKGROUND):  # as a digest run summarizes its papers (tasks inherit it)
        batch = [
            asyncio.create_task(client.generate(system="s", user=f"summary {n}", max_tokens=5))
            for n in range(3)
        ]
    await asyncio.sleep(0.05)  # the first summary is being written
    await client.generate(system="s", user="question", max_tokens=5)
    await asyncio.gather(*batch)
    assert users(server) == ["summary 0", "question", "summary 1", "summary 2"]


def test_clients_from_settings_get_the_configured_queue() -> None:
    # No OPENAI_BASE_URL: the client of the embedded server, one generation at a time.
    settings = LLMSettings(OPENAI_BASE_URL=None, LLM_MAX_CONCURRENT=None, LLM_QUEUE_MAX_WAITING=3)
    embedded = LLMClient.from_settings(settings, base_url="http://127.0.0.1:9/v1")
    assert (embedded.queue.max_concurrent, embedded.queue.max_waiting) == (1, 3)
    asyncio.run(embedded.aclose())
