"""Exactly once across a real crash: the bot runs as its own process (`python -m bot run`) against the
fake Discord, the scripted LLM and a fake Hugging Face API, all served from this test process. It is
killed with SIGKILL in the middle of posting a digest, started again, and the channel must then hold
each paper of the digest exactly once, none missing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.digest.delivery import parse_marker
from tests.fakediscord import FakeDiscord, MessageFlag
from tests.support.digest import HF_RAW, FakeSources, fake_sources, summary_responder
from tests.support.paperbot_discord import discord_env
from tests.support.scripted_llm import ScriptedLLMServer

MAX_PAPERS = 8
KILL_AFTER_PAPERS = 2


@pytest.fixture
async def sources() -> AsyncIterator[FakeSources]:
    async with fake_sources() as fake:
        yield fake


def bot_env(
    fake: FakeDiscord, llm: ScriptedLLMServer, sources: FakeSources, data_dir: Path
) -> dict[str, str]:
    return {
        **os.environ,  # the conftest cleared every paperbot setting from it
        **discord_env(fake),
        "PAPERBOT_DATA_DIR": str(data_dir),
        "PAPERBOT_LOG_FORMAT": "json",
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-scripted",
        "LLM_API_MODE": "chat",
        "LLM_MAX_RETRIES": "0",
        "EMBEDDING_BACKEND": "openai",
        "EMBEDDING_BASE_URL": llm.base_url,
        "SOURCES_HF_API_BASE": sources.base_url,
        "SOURCES_ARXIV_API_BASE": sources.base_url,
        "DISCORD_USER_COOLDOWN_S": "0",
    }


async def start_bot(env: dict[str, str], log_path: Path) -> asyncio.subprocess.Process:
    log = log_path.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=env, stdout=log, stderr=log
        )
    finally:
        log.close()


async def ready(fake: FakeDiscord, process: asyncio.subprocess.Process, log_path: Path) -> None:
    def connected() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"the bot exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        return bool(fake.state.find_command("digest", None)) and fake.gateway.session is not None

    await fake.wait_for(connected, timeout=120, what="the bot process connected with /digest synced")
    await fake.wait_until_ready(timeout=60)


def digest_items(fake: FakeDiscord, channel_id: int) -> list[str]:
    """The item (paper id or "header") of every digest message in the channel, oldest first."""
    items = []
    for message in fake.messages_in(channel_id, ephemeral=False):
        for embed in message.get("embeds", []):
            parsed = parse_marker((embed.get("footer") or {}).get("text", ""))
            if parsed:
                items.append(parsed[1])
    return items


async def reply_text(handle: Any) -> str:
    callback = await handle.response(timeout=60)
    assert callback["data"]["flags"] & MessageFlag.EPHEMERAL
    if callback["type"] == 4:
        return str(callback["data"]["content"])
    return str((await handle.original_message(timeout=120))["content"])


async def test_sigkill_in_the_middle_of_a_digest_then_restart_posts_each_paper_exactly_once(
    fake_discord: FakeDiscord, scripted_llm: ScriptedLLMServer, sources: FakeSources, tmp_path: Path
) -> None:
    fake = fake_discord
    scripted_llm.responder = summary_responder
    today = dt.datetime.now(dt.UTC).date()
    for day in (today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)):
        sources.hf_days[day.isoformat()] = HF_RAW.read_bytes()  # whatever "today" is at run time
    env = bot_env(fake, scripted_llm, sources, tmp_path / "data")
    log_path = tmp_path / "bot.log"
    channel, alice = fake.state.channel_id("papers"), fake.state.user_id("alice")

    process = await start_bot(env, log_path)
    try:
        await ready(fake, process, log_path)
        due = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)  # a run of today is within catch-up
        subscribed = await reply_text(
            await fake.dispatch_interaction(
                "digest subscribe",
                {"max_papers": MAX_PAPERS, "time": f"{due:%H:%M}", "timezone": "UTC", "weekdays": "daily"},
                channel_id=channel,
                user_id=alice,
            )
        )
        assert "Subscribed" in subscribed, subscribed
        await fake.dispatch_interaction("digest now", {}, channel_id=channel, user_id=alice)
        await fake.wait_for(
            lambda: len(digest_items(fake, channel)) >= 1 + KILL_AFTER_PAPERS,
            timeout=120,
            what=f"{KILL_AFTER_PAPERS} digest papers posted",
        )
        process.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), 30) == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    before = digest_items(fake, channel)
    assert before[0] == "header" and 1 + KILL_AFTER_PAPERS <= len(before) < 1 + MAX_PAPERS, before

    process = await start_bot(env, log_path)  # same data directory, same Discord
    try:
        await ready(fake, process, log_path)
        # `/digest now` waits for the resumed run of the day (same channel and date), then finds it done.
        text = await reply_text(
            await fake.dispatch_interaction("digest now", {}, channel_id=channel, user_id=alice)
        )
        assert "already posted" in text, text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()

    after = digest_items(fake, channel)
    assert after[: len(before)] == before  # nothing posted before the kill was deleted or re-sent
    assert after.count("header") == 1
    papers = [item for item in after if item != "header"]
    assert len(papers) == MAX_PAPERS, after  # none missing
    assert len(set(papers)) == len(papers), after  # none twice
    assert "digest.resuming_interrupted_run" in log_path.read_text()
