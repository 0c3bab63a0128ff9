"""The weekly roundup end to end (issue 17): `/digest subscribe cadence:weekly`, the roundup ranked by
the channel's reactions and saves, upvotes and topics with the reasons shown, its native "paper of
the week" poll, votes, the poll's end, and the discussion thread with a cited reading guide — the real
discord.py against the fake Discord (every request checked against Discord's OpenAPI spec, no pings),
the real digest service on SQLite, real embeddings in Qdrant Edge, the scripted LLM server.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from bot.app.services import Services, build_services
from bot.core.config import Settings
from bot.db import Database, upgrade_schema
from bot.digest.records import SubscriptionSettings
from bot.digest.roundup import RoundupService, content_words, grounded
from bot.digest.sources import directory_fetcher
from bot.ingest.sources import parse_bytes
from tests.fakediscord import FakeDiscord, run_client
from tests.support.digest import HF_DAY, HF_RAW, summary_responder
from tests.support.paperbot_discord import build_index, make_settings, new_bot, open_services, reset_logging
from tests.support.scripted_llm import ScriptedLLMServer, last_user_text

TOPICS = "text-to-image diffusion models, GUI agents"
POLL_RESULT = 46


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


@pytest.fixture(scope="module")
def day_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    path = tmp_path_factory.mktemp("roundup") / "qdrant"
    papers = parse_bytes(HF_RAW.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers
    build_index(path, embedder, papers)
    return path


def guide_responder(copy_example: bool = False) -> Any:
    """Summaries as the digest tests write them; reading guides from the excerpts' own words (or,
    with `copy_example`, the prompt's worked example, as small models do)."""

    def respond(body: dict[str, Any]) -> str:
        user = last_user_text(body)
        if "Write exactly 3 questions" not in user:
            return summary_responder(body)
        if copy_example:
            return "1. Why should model size and the number of training tokens be scaled equally? [1]"
        block = user.split("<<<EXCERPTS", 1)[1].split("EXCERPTS>>>", 1)[0].strip().splitlines()
        questions = []
        for position, line in enumerate(block):
            match = re.match(r"^\[(\d+)\] ", line)
            if match and position + 1 < len(block):
                words = " ".join(block[position + 1].split()[:12])
                number = len(questions) + 1
                questions.append(f"{number}. Why does the paper claim that {words}? [{match.group(1)}]")
        questions.append("4. What does this mean for the weather on Mars? [1]")  # grounded in nothing
        return "\n".join(questions[:2] + questions[-1:])

    return respond


@dataclass
class World:
    fake: FakeDiscord
    llm: ScriptedLLMServer
    settings: Settings
    services: Services
    database: Database

    def channel(self, name: str = "papers") -> int:
        return self.fake.state.channel_id(name)

    def user(self, name: str) -> int:
        return self.fake.state.user_id(name)

    def bot(self) -> Any:
        return run_client(new_bot(self.services, self.settings), self.fake)

    async def command(self, name: str, options: dict[str, Any], *, user: str = "alice") -> str:
        handle = await self.fake.dispatch_interaction(
            name, options, channel_id=self.channel(), user_id=self.user(user)
        )
        callback = await handle.response()
        if callback["type"] == 4:
            return str(callback["data"]["content"])
        return str((await handle.original_message(timeout=120))["content"])


@pytest.fixture
async def world(
    fake_discord: FakeDiscord, scripted_llm: ScriptedLLMServer, day_index: Path, embedder: Any, tmp_path: Path
) -> AsyncIterator[World]:
    scripted_llm.responder = guide_responder()
    settings = make_settings(fake_discord, scripted_llm, tmp_path / "data")
    # Every paper of the day on topic enough to qualify: the ranking, not the threshold, is under test.
    settings.digest = settings.digest.model_copy(update={"min_topic_similarity": 0.0})
    sources = tmp_path / "sources"
    sources.mkdir()
    today = dt.datetime.now(dt.UTC).date()
    for offset in (-1, 0):  # the saved day stands in for two days of this week
        shutil.copy(HF_RAW, sources / f"hf_daily_{today + dt.timedelta(days=offset)}.json")
    async with AsyncExitStack() as stack:
        services = await stack.enter_async_context(open_services(day_index, embedder, scripted_llm, settings))
        database = Database.from_settings(settings)
        stack.push_async_callback(database.close)
        await upgrade_schema(database.engine)
        services = build_services(
            settings, index=services.index, embedder=embedder, llm=services.llm, database=database,
            fetch=directory_fetcher(sources),
        )  # fmt: skip
        yield World(fake_discord, scripted_llm, settings, services, database)


def hf_papers() -> list[Any]:
    return parse_bytes(HF_RAW.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers


async def seed_engagement(world: World, paper_id: str) -> None:
    """Bob 👍'd the paper on an earlier post here and saved it to his library."""
    assert world.services.state is not None
    repo = world.services.state.repo
    guild = world.fake.state.default_guild_id
    assert guild is not None
    await repo.record_feedback(
        guild_id=guild, channel_id=world.channel(), message_id=1, paper_id=paper_id,
        user_id=world.user("bob"), value=1,
    )  # fmt: skip
    async with world.database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO library_papers (user_id, paper_id, paper, saved_at) "
                "VALUES (:user, :paper, :record, :saved)"
            ),
            {"user": world.user("bob"), "paper": paper_id, "record": json.dumps({"paper_id": paper_id}),
             "saved": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
        )  # fmt: skip


async def post_roundup(world: World) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    weekday = dt.datetime.now(dt.UTC).strftime("%a").lower()
    reply = await world.command(
        "digest subscribe",
        {"topics": TOPICS, "cadence": "weekly", "weekday": weekday, "max_papers": 6, "timezone": "UTC"},
    )
    assert "Subscribed" in reply and "weekly on" in reply and "**Cadence:** weekly" in reply
    outcome = await world.command("digest now", {})
    assert "osted" in outcome, outcome
    messages = world.fake.messages_in(world.channel(), ephemeral=False)
    header = next(m for m in messages if m.get("poll"))
    papers = [m for m in messages if m.get("embeds") and int(m["id"]) > int(header["id"])]
    return header, papers


# ------------------------------------------------------------------ the roundup and its poll


async def test_weekly_roundup_is_ranked_with_reasons_and_carries_a_top_5_poll(world: World) -> None:
    assert world.services.state is not None
    today = dt.datetime.now(dt.UTC).date()
    plain = SubscriptionSettings(
        guild_id=world.fake.state.default_guild_id, channel_id=world.channel(), topics=TOPICS.split(", "),
        cadence="weekly", weekdays=(today.weekday(),), max_papers=6,
    )  # fmt: skip
    before = await world.services.state.digests.compose(plain, today)
    assert len(before.picks) == 6
    winner_by_engagement = before.picks[-1].paper.paper_id  # last of six without the channel's votes
    await seed_engagement(world, winner_by_engagement)
    async with world.bot():
        header, papers = await post_roundup(world)
    assert header["content"].startswith("**Weekly roundup · week to ")
    assert "paper of the week" in header["content"] and "paperbot digest" in header["content"]
    poll = header["poll"]
    assert poll["question"]["text"] == "Paper of the week?"
    assert len(poll["answers"]) == 5 and not poll["allow_multiselect"]
    assert all(len(a["poll_media"]["text"]) <= 55 for a in poll["answers"])
    assert len(papers) == 6
    titles = [p["embeds"][0]["title"] for p in papers]
    # The poll offers the roundup's top 5, in its order.
    for answer, title in zip(poll["answers"], titles, strict=False):
        assert answer["poll_media"]["text"].rstrip("…")[3:15] in title
    # The channel's own engagement ranks that paper first, and the reason says so.
    first = papers[0]["embeds"][0]
    why = next(f["value"] for f in first["fields"] if f["name"] == "Why this paper")
    assert "1 👍 here" in why and "saved by 1 here" in why
    assert winner_by_engagement in first["url"]
    others = [
        next(f["value"] for f in p["embeds"][0]["fields"] if f["name"] == "Why this paper")
        for p in papers[1:]
    ]
    assert all("matches “" in w for w in others)  # topic match and upvotes, shown
    assert sum("upvote" in w for w in others) >= 3
    request = next(
        r
        for r in world.fake.requests_to("POST /channels/{channel_id}/messages")
        if (r.json or {}).get("poll")
    )
    assert request.json["poll"]["duration"] == world.settings.digest.roundup_poll_hours


# ------------------------------------------------------------------ the poll ends → the discussion


async def test_poll_end_opens_one_discussion_thread_with_a_grounded_cited_reading_guide(world: World) -> None:
    async with world.bot():
        header, papers = await post_roundup(world)
        poll_id = int(header["id"])
        await world.fake.dispatch_poll_vote(poll_id, 3, user_id=world.user("bob"))
        await world.fake.dispatch_poll_vote(poll_id, 3, user_id=world.user("alice"))
        await world.fake.dispatch_poll_vote(poll_id, 1, user_id=world.fake.state.add_user("carol"))
        await world.fake.end_poll(poll_id)  # MESSAGE_UPDATE (finalized) and the POLL_RESULT message
        guide = await world.fake.wait_for_message(poll_id, timeout=60)  # the thread shares its id
        thread = world.fake.state.channel(poll_id)
        assert any(m["type"] == POLL_RESULT for m in world.fake.messages_in(world.channel(), ephemeral=False))
    winner_title = papers[2]["embeds"][0]["title"].split(". ", 1)[1]
    assert thread["name"].startswith("Paper of the week: ")
    embed = guide["embeds"][0]
    assert winner_title[:40] in embed["title"] and embed["url"] == papers[2]["embeds"][0]["url"]
    assert "with 2 of 3 votes" in embed["description"]
    questions = re.findall(r"^(\d)\. (.+) \[(\d+)\]$", embed["description"], flags=re.MULTILINE)
    assert [q[0] for q in questions] == ["1", "2", "3"]
    excerpts = {int(f["name"].split("]")[0][1:]): f["value"] for f in embed["fields"]}
    winner = next(p for p in hf_papers() if p.url == embed["url"])
    for _, question, cited in questions:
        assert int(cited) in excerpts  # every question cites an excerpt that is shown
        assert content_words(excerpts[int(cited)].rstrip("…")) <= content_words(
            winner.title + " " + winner.abstract
        )
        assert grounded(question, excerpts[int(cited)]) or question.startswith("The paper says: “")
    assert not any("Mars" in q for _, q, _ in questions)  # the ungrounded question was dropped
    # Both poll-end events arrived; one thread only, recorded once.
    threads = [c for c in world.fake.state.channels.values() if c.get("parent_id") == str(world.channel())]
    assert len([t for t in threads if t["name"].startswith("Paper of the week")]) == 1
    assert len(world.fake.messages_in(poll_id, ephemeral=False)) == 1


async def test_a_guide_falls_back_to_quotes_when_the_model_only_copies_its_example(world: World) -> None:
    world.llm.responder = guide_responder(copy_example=True)
    async with world.bot():
        header, papers = await post_roundup(world)
        poll_id = int(header["id"])
        await world.fake.end_poll(poll_id)  # nobody voted: the top pick
        guide = await world.fake.wait_for_message(poll_id, timeout=60)
    embed = guide["embeds"][0]
    assert "no votes were cast" in embed["description"] and embed["url"] == papers[0]["embeds"][0]["url"]
    questions = re.findall(r"^\d\. (.+) \[(\d+)\]$", embed["description"], flags=re.MULTILINE)
    assert len(questions) == 3 and all(q.startswith("The paper says: “") for q, _ in questions)
    assert "compute-optimal" not in embed["description"].lower()  # the example never reaches users
    assert "quote the paper" in embed["description"]


async def test_a_poll_that_ended_while_the_bot_was_down_still_gets_its_discussion(world: World) -> None:
    async with world.bot():
        header, papers = await post_roundup(world)
    poll_id = int(header["id"])
    await world.fake.dispatch_poll_vote(poll_id, 2, user_id=world.user("bob"))
    await world.fake.end_poll(poll_id)  # nobody is connected: both poll-end events are missed
    assert world.services.state is not None
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=world.settings.digest.roundup_poll_hours, minutes=6)
    roundups = RoundupService(
        world.services.state.repo, world.services.search, world.services.llm, clock=lambda: later
    )
    assert await roundups.due_polls(dt.datetime.now(dt.UTC)) == []  # not yet due an hour after posting
    world.services = replace(world.services, state=replace(world.services.state, roundups=roundups))
    assert await roundups.due_polls() == [(world.channel(), poll_id)]
    async with world.bot() as bot:
        cog = bot.get_cog("Roundup")
        await cog.missed_polls()  # what its loop runs every 10 minutes
        guide = await world.fake.wait_for_message(poll_id, timeout=60)
    assert (
        guide["embeds"][0]["url"] == papers[1]["embeds"][0]["url"]
        and "1 of 1 votes" in guide["embeds"][0]["description"]
    )
    assert await roundups.due_polls() == []  # done: not looked for again
