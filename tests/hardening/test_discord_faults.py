"""Discord faults: gateway closes (1000, 4000, 4009) and REST 429s and 5xx under the real paperbot.

The real bot (cogs, services, Qdrant Edge index) runs on the real discord.py against the fake
Discord; the LLM is the scripted OpenAI-compatible server. After each fault the bot must still
answer, and every post and edit must land exactly once (discord.py retries; nothing is lost or
doubled).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.fakediscord import Close, FakeDiscord, Op
from tests.support.discord_world import MakeWorld, World, final_message
from tests.support.paperbot_discord import reset_logging
from tests.support.scripted_llm import ScriptedReply, last_user_text

CALLBACK = "POST /interactions/{interaction_id}/{interaction_token}/callback"
EDIT_ORIGINAL = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"
GLOBAL_COMMANDS = "PUT /applications/{application_id}/commands"
CHANNEL_MESSAGES = "POST /channels/{channel_id}/messages"
FOLLOWUP = "POST /webhooks/{webhook_id}/{webhook_token}"
START_THREAD = "POST /channels/{channel_id}/messages/{message_id}/threads"


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


# -- the gateway ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "resumed"),
    [
        pytest.param(1000, True, id="1000-normal-close-resumes"),
        pytest.param(Close.UNKNOWN_ERROR, True, id="4000-unknown-error-resumes"),
        pytest.param(Close.SESSION_TIMED_OUT, False, id="4009-session-timed-out-identifies-again"),
    ],
)
async def test_gateway_close_then_the_bot_still_answers_commands_and_mentions(
    world: World, code: int, resumed: bool
) -> None:
    fake = world.fake
    async with world.bot():
        first_session = fake.gateway.session
        await fake.gateway.disconnect(code)
        if not resumed:
            # discord.py tries RESUME, is told INVALID_SESSION, waits its identify delay (~5 s).
            await fake.wait_for(lambda: len(fake.gateway.identifies) == 2, timeout=15, what="IDENTIFY")
        # Dispatched before the bot is back: a resumed session replays it, a new one gets it live.
        searched = await fake.dispatch_interaction("search", {"query": "memory efficient transfer learning"})
        results = await searched.original_message(timeout=10)
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> What is SHERL?")
        answer = await fake.wait_for_message(int(asked["id"]), timeout=10)
    assert results["embeds"] and results["embeds"][0]["title"].startswith("SHERL")
    assert answer["content"] == "About “What is SHERL?”: see the first paper [1]."
    gateway = fake.gateway
    assert len(gateway.resumes) == 1  # discord.py always tries to RESUME first
    if resumed:
        assert len(gateway.identifies) == 1 and gateway.session is first_session
        assert gateway.connections[1].path == "/gateway/resume"
    else:
        invalid = [f for f in gateway.frames if f.op == Op.INVALID_SESSION]
        assert len(invalid) == 1 and invalid[0].payload["d"] is False
        assert len(gateway.identifies) == 2 and gateway.session is not first_session
    assert len(fake.requests_to(GLOBAL_COMMANDS)) == 1  # setup_hook ran once: no start-up work redone
    # Exactly one answer to each: nothing replayed twice.
    assert len(searched.messages) == 1
    assert len(fake.bot_messages(int(asked["id"]))) == 1


# -- REST 429 and 5xx -------------------------------------------------------------------------------


def _retry_gaps(fake: FakeDiscord, route: str) -> list[tuple[int | None, float]]:
    """(status of a request, seconds until the next request to the same route)."""
    requests = fake.requests_to(route)
    return [(a.status, b.at - a.at) for a, b in itertools.pairwise(requests)]


async def test_429_and_5xx_on_the_deferred_callback_and_the_results_post_lose_nothing(world: World) -> None:
    fake = world.fake
    async with world.bot():
        fake.rate_limit(CALLBACK, times=1, retry_after=0.3)  # the "thinking…" defer itself
        fake.server_error(FOLLOWUP, times=1, status=502)  # the first followup fills it in
        fake.rate_limit(FOLLOWUP, times=2, retry_after=0.25)
        handle = await fake.dispatch_interaction("search", {"query": "memory efficient transfer learning"})
        results = await handle.original_message(timeout=15)
    assert [r.status for r in fake.requests_to(CALLBACK)] == [429, 200]
    assert [r.status for r in fake.requests_to(FOLLOWUP)] == [502, 429, 429, 200]
    # The defer still landed within Discord's 3 s (the fake would have answered 404 otherwise).
    assert handle.response_type == 5
    for status, gap in _retry_gaps(fake, CALLBACK) + _retry_gaps(fake, FOLLOWUP):
        if status == 429:
            assert gap >= 0.25 - 0.02  # retry_after was honoured, not hammered
    assert results["embeds"][0]["title"].startswith("SHERL")
    assert handle.followups == [] and len(handle.messages) == 1  # posted once, not per retry
    assert fake.messages_in(world.channel()) == [results]


async def test_429_and_5xx_on_the_final_answer_edit_lose_nothing(make_world: MakeWorld) -> None:
    # A long progress interval: one "searching…" edit, then the next edit is the final answer.
    world = await make_world(stream_edit_interval_s=60)
    fake, llm = world.fake, world.llm
    final = "SHERL decouples the adaptation from the backbone to save memory [1]."
    calls = 0

    def responder(body: dict[str, Any]) -> str | ScriptedReply:
        nonlocal calls
        calls += 1
        if calls == 2:  # the final generation: the edit that carries the answer will fail first
            fake.server_error(EDIT_ORIGINAL, times=1, status=500)
            fake.rate_limit(EDIT_ORIGINAL, times=2, retry_after=0.25)
            return ScriptedReply(f"Reasoning: excerpt [1].\nAnswer: {final}")
        return f"Answer: draft about {last_user_text(body)[-20:]} [1]"

    llm.responder = responder
    async with world.bot():
        handle = await fake.dispatch_interaction("ask", {"question": "How does SHERL save memory?"})
        answer = await final_message(handle, within=20)
    edits = fake.requests_to(EDIT_ORIGINAL)
    assert [r.status for r in edits] == [200, 500, 429, 429, 200]
    assert edits[0].json["content"].startswith("🔎")
    assert all(r.json["content"] == final for r in edits[1:])  # the same answer, retried
    assert answer["content"] == final and answer["embeds"][0]["title"] == "Sources"
    assert handle.followups == []
    assert [m["content"] for m in fake.messages_in(world.channel())] == [final]


async def test_429_and_5xx_on_followup_parts_keep_every_part_once_and_in_order(world: World) -> None:
    fake, llm = world.fake, world.llm
    paragraphs = [f"Part {n}: " + ("SHERL saves memory by decoupling [1]. " * 25).strip() for n in range(5)]
    llm.script(ScriptedReply("Answer: draft [1]"), ScriptedReply("Answer: " + "\n\n".join(paragraphs)))
    fake.server_error(FOLLOWUP, times=1, status=503)
    fake.rate_limit(FOLLOWUP, times=1, retry_after=0.2, is_global=True)
    fake.rate_limit(FOLLOWUP, times=1, retry_after=0.2)
    async with world.bot():
        handle = await fake.dispatch_interaction("ask", {"question": "Explain SHERL in detail"})
        await handle.followup(1, timeout=20)
        original = await final_message(handle)
    posted = [original["content"], *(m["content"] for m in handle.followups)]
    assert posted == ["\n\n".join(paragraphs[0:2]), "\n\n".join(paragraphs[2:4]), paragraphs[4]]
    assert [r.status for r in fake.requests_to(FOLLOWUP)] == [503, 429, 429, 200, 200]
    assert handle.followups[-1]["embeds"][0]["title"] == "Sources"


async def test_429_and_5xx_on_a_thread_answer_post_it_exactly_once(world: World) -> None:
    fake = world.fake
    async with world.bot():
        fake.rate_limit(START_THREAD, times=1, retry_after=0.2)
        fake.server_error(CHANNEL_MESSAGES, times=1, status=502)
        fake.rate_limit(CHANNEL_MESSAGES, times=1, retry_after=0.2)
        fake.rate_limit(CHANNEL_MESSAGES, times=1, retry_after=0.2, is_global=True)
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> What is SHERL?")
        thread = int(asked["id"])
        await fake.wait_for_message(thread, timeout=15)
    assert [r.status for r in fake.requests_to(START_THREAD)] == [429, 201]
    assert [r.status for r in fake.requests_to(CHANNEL_MESSAGES)] == [502, 429, 429, 200]
    for status, gap in _retry_gaps(fake, CHANNEL_MESSAGES):
        if status == 429:
            assert gap >= 0.2 - 0.02
    (answer,) = fake.bot_messages(thread)
    assert answer["content"] == "About “What is SHERL?”: see the first paper [1]."
    assert answer["embeds"][0]["title"] == "Sources"
    assert fake.bot_messages(world.channel()) == []  # no error reply, no stray post
