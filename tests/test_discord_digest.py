"""/digest end to end: the real discord.py against the fake Discord, the real digest service and
scheduler on SQLite, real embeddings in Qdrant Edge, the real LLM client against the scripted server,
and the day's Hugging Face papers from saved API responses (`directory_fetcher`).

At teardown the ``fake_discord`` fixture fails any test whose requests broke Discord's rules or could
have pinged anyone.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import discord
import pytest
from discord import app_commands

from bot.app.services import Services, build_services
from bot.core.config import DatabaseSettings, Settings
from bot.db import Database, upgrade_schema
from bot.db.repository import Repository
from bot.digest import cron as digest_schedule
from bot.digest.categories import category_suggestions
from bot.digest.delivery import DigestHeader, PaperPost, digest_marker, parse_marker
from bot.digest.records import Subscription
from bot.digest.scheduler import job_id as digest_job_id
from bot.digest.service import DigestService
from bot.digest.sources import directory_fetcher
from bot.digest.summaries import HF_AI_SUMMARY, SUMMARIZER_UNAVAILABLE
from bot.discord.bot import PaperBotBase, PosterFactory
from bot.discord.digest_messages import DiscordDigestPoster
from bot.discord.formatting import note_line
from bot.ingest.sources import parse_bytes
from tests.fakediscord import FakeDiscord, MessageFlag, run_client
from tests.support.digest import HF_DAY, HF_RAW, SimulatedCrash, summary_responder
from tests.support.paperbot_discord import build_index, make_settings, new_bot, open_services, reset_logging
from tests.support.scripted_llm import ScriptedError, ScriptedLLMServer

MAX_PAPERS = 3
TOPICS = "text-to-image diffusion models, GUI agents"


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


@pytest.fixture(scope="module")
def day_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    """The index with the real Hugging Face day already embedded (the slow part, once per module)."""
    path = tmp_path_factory.mktemp("discord-digest") / "qdrant"
    papers = parse_bytes(HF_RAW.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers
    build_index(path, embedder, papers)
    return path


def saved_sources(directory: Path) -> Path:
    """The real 2026-08-18 Hugging Face response saved as the response for the days around today, so
    that `/digest now` (which uses today's date in the channel's time zone) has papers."""
    directory.mkdir(parents=True, exist_ok=True)
    today = dt.datetime.now(dt.UTC).date()
    for offset in (-1, 0, 1):
        shutil.copy(HF_RAW, directory / f"hf_daily_{today + dt.timedelta(days=offset)}.json")
    return directory


@dataclass
class World:
    fake: FakeDiscord
    settings: Settings
    services: Services
    database: Database
    sources: Path

    def channel(self, name: str = "papers") -> int:
        return self.fake.state.channel_id(name)

    def user(self, name: str) -> int:
        return self.fake.state.user_id(name)

    @property
    def repo(self) -> Repository:
        assert self.services.state is not None
        return self.services.state.repo

    @property
    def digests(self) -> DigestService:
        assert self.services.state is not None
        return self.services.state.digests

    def restart_services(self) -> None:
        """New services over the same database, index and LLM, as after a process restart."""
        services = self.services
        self.services = build_services(
            self.settings, index=services.index, embedder=services.embedder, llm=services.llm,
            database=self.database, fetch=directory_fetcher(self.sources),
        )  # fmt: skip

    @asynccontextmanager
    async def bot(self, poster: PosterFactory | None = None) -> AsyncIterator[PaperBotBase]:
        self.restart_services()
        bot = new_bot(self.services, self.settings, digest_poster=poster)
        async with run_client(bot, self.fake):
            yield bot

    def digest_messages(self, channel_id: int) -> list[tuple[int, str]]:
        """(message id, marker) of every digest message in the channel, oldest first."""
        out = []
        for message in self.fake.messages_in(channel_id, ephemeral=False):
            for embed in message.get("embeds", []):
                footer = (embed.get("footer") or {}).get("text", "")
                if parse_marker(footer):
                    out.append((int(message["id"]), footer))
        return out


@pytest.fixture
async def world(
    request: pytest.FixtureRequest,
    fake_discord: FakeDiscord,
    scripted_llm: ScriptedLLMServer,
    day_index: Path,
    embedder: Any,
    tmp_path: Path,
) -> AsyncIterator[World]:
    """On SQLite in the data dir; `@pytest.mark.parametrize("world", ["postgresql"], indirect=True)`
    puts the state in a fresh database on a real PostgreSQL server instead."""
    scripted_llm.responder = summary_responder
    settings = make_settings(fake_discord, scripted_llm, tmp_path / "data")
    if getattr(request, "param", "sqlite") == "postgresql":
        url = request.getfixturevalue("postgres").create_database()
        settings.database = DatabaseSettings(url=url)
    async with AsyncExitStack() as stack:
        services = await stack.enter_async_context(open_services(day_index, embedder, scripted_llm, settings))
        database = Database.from_settings(settings)
        stack.push_async_callback(database.close)
        await upgrade_schema(database.engine)
        yield World(fake_discord, settings, services, database, saved_sources(tmp_path / "sources"))


async def ephemeral_text(handle: Any) -> str:
    """The text of a command's reply (immediate or after "thinking…"), which must be ephemeral."""
    callback = await handle.response()
    if callback["type"] == 4:
        assert callback["data"]["flags"] & MessageFlag.EPHEMERAL
        return str(callback["data"]["content"])
    assert callback["type"] == 5 and callback["data"]["flags"] & MessageFlag.EPHEMERAL, callback
    message = await handle.original_message(timeout=60)
    return str(message["content"])


async def subscribe(world: World, **options: Any) -> str:
    values = {"topics": TOPICS, "max_papers": MAX_PAPERS, **options}
    handle = await world.fake.dispatch_interaction(
        "digest subscribe", values, channel_id=world.channel(), user_id=world.user("alice")
    )
    return await ephemeral_text(handle)


async def command(world: World, name: str, user: str = "alice") -> str:
    handle = await world.fake.dispatch_interaction(
        name, {}, channel_id=world.channel(), user_id=world.user(user)
    )
    return await ephemeral_text(handle)


# ------------------------------------------------------------------ subscribe, permissions


async def test_help_lists_digest_and_every_subcommand_where_digests_are_enabled(world: World) -> None:
    async with world.bot() as bot:
        handle = await world.fake.dispatch_interaction("help", {}, channel_id=world.channel())
        text = (await handle.original_message())["embeds"][0]["description"]
        group = bot.tree.get_command("digest")
    assert isinstance(group, app_commands.Group) and len(group.commands) >= 9
    line = next(line for line in text.splitlines() if line.startswith("**/digest**"))
    assert all(f"`{sub.name}`" in line for sub in group.commands) and "(server admins)" in line


async def test_subscribe_as_admin_schedules_the_channel_in_its_time_zone(world: World) -> None:
    async with world.bot() as bot:
        text = await subscribe(world, time="07:30", timezone="Asia/Tokyo", weekdays="mon-fri")
        assert "Subscribed" in text and "07:30 Asia/Tokyo" in text
        assert world.repo is not None
        sub = await world.repo.get_channel_subscription(world.channel())
        assert sub is not None and sub.topics == ["text-to-image diffusion models", "GUI agents"]
        assert bot.digest_scheduler is not None
        next_run = bot.digest_scheduler.next_run_time(sub.id)
        assert next_run is not None
        local = next_run.astimezone(ZoneInfo("Asia/Tokyo"))
        assert (local.hour, local.minute) == (7, 30) and local.weekday() < 5
        assert next_run == digest_schedule.next_run_time(sub, dt.datetime.now(dt.UTC))
        assert f"<t:{int(next_run.timestamp())}:F>" in text

        # Changing the time reschedules the job; only the options given change.
        assert "Updated" in await subscribe(world, time="18:05")
        sub = await world.repo.get_channel_subscription(world.channel())
        assert sub is not None and sub.timezone == "Asia/Tokyo"
        moved = bot.digest_scheduler.next_run_time(sub.id)
        assert moved is not None and moved.astimezone(ZoneInfo("Asia/Tokyo")).hour == 18

        assert "paused" in await command(world, "digest pause")
        assert bot.digest_scheduler.next_run_time(sub.id) is None
        assert "resumed" in await command(world, "digest resume")
        assert bot.digest_scheduler.next_run_time(sub.id) is not None
        assert "stopped" in await command(world, "digest unsubscribe")
        assert bot.digest_scheduler.next_run_time(sub.id) is None
        assert await world.repo.get_channel_subscription(world.channel()) is None


@pytest.mark.parametrize("world", ["sqlite", "postgresql"], indirect=True)
async def test_a_subscription_posts_its_digest_when_its_time_comes_and_only_once(world: World) -> None:
    """One path, end to end: /digest subscribe → APScheduler's cron job in the channel's time zone
    fires → sources fetched, papers picked and summarized → posted through discord.py → recorded."""
    channel, zone = world.channel(), ZoneInfo("America/New_York")
    async with world.bot() as bot:
        scheduler = bot.digest_scheduler
        assert scheduler is not None and world.repo is not None
        at = dt.datetime.now(zone).strftime("%H:%M")  # this minute: today's digest is due from now on
        text = await subscribe(world, time=at, timezone="America/New_York", weekdays="daily")
        assert "Subscribed" in text, text
        sub = await world.repo.get_channel_subscription(channel)
        assert sub is not None
        planned = scheduler.next_run_time(sub.id)
        assert planned is not None and planned.astimezone(zone).strftime("%H:%M") == at
        assert planned - dt.datetime.now(dt.UTC) > dt.timedelta(hours=23)  # the cron's next fire: tomorrow
        assert world.digest_messages(channel) == []

        # The clock reaching the scheduled time, without waiting a day: wake the real job now.
        scheduler.scheduler.modify_job(digest_job_id(sub.id), next_run_time=dt.datetime.now(dt.UTC))
        for _ in range(600):
            if len(world.digest_messages(channel)) == 1 + MAX_PAPERS:
                break
            await asyncio.sleep(0.1)
        posted = world.digest_messages(channel)
        local_today = dt.datetime.now(zone).date()
        assert len(posted) == 1 + MAX_PAPERS, posted
        assert posted[0][1] == f"{digest_marker(local_today)} · header"
        runs = await world.repo.recent_runs(channel)
        for _ in range(100):  # the run is finished just after its last post
            if runs and runs[0].finished:
                break
            await asyncio.sleep(0.05)
            runs = await world.repo.recent_runs(channel)
        assert [(r.trigger, r.status, r.counts.posted) for r in runs] == [("schedule", "posted", MAX_PAPERS)]
        following = scheduler.next_run_time(sub.id)
        assert following is not None and following - dt.datetime.now(dt.UTC) > dt.timedelta(hours=23)

        # The job waking again the same day (a duplicate trigger) posts nothing twice.
        scheduler.scheduler.modify_job(digest_job_id(sub.id), next_run_time=dt.datetime.now(dt.UTC))
        for _ in range(100):
            if len(await world.repo.recent_runs(channel)) > 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert world.digest_messages(channel) == posted
        status = await command(world, "digest status")
        assert f"{MAX_PAPERS} posted" in status or f"posted {MAX_PAPERS}" in status, status


async def test_bad_options_get_a_clear_message(world: World) -> None:
    async with world.bot():
        assert "not an IANA time zone" in await subscribe(world, timezone="Mars/Olympus")
        assert "HH:MM" in await subscribe(world, time="25:00")
        assert world.repo is not None
        assert await world.repo.get_channel_subscription(world.channel()) is None


async def test_time_zone_autocomplete(world: World) -> None:
    async with world.bot():
        handle = await world.fake.dispatch_autocomplete(
            "digest subscribe", {"timezone": "tokyo"}, focused="timezone",
            channel_id=world.channel(), user_id=world.user("alice"),
        )  # fmt: skip
        assert [c["value"] for c in await handle.autocomplete_choices()] == ["Asia/Tokyo"]


async def test_arxiv_category_autocomplete_completes_the_last_of_the_list(world: World) -> None:
    async with world.bot():

        async def choices(typed: str) -> list[dict[str, Any]]:
            handle = await world.fake.dispatch_autocomplete(
                "digest subscribe", {"arxiv": typed}, focused="arxiv",
                channel_id=world.channel(), user_id=world.user("alice"),
            )  # fmt: skip
            return list(await handle.autocomplete_choices())

        first = await choices("cs.c")
        assert first[0] == {"name": "cs.CC — Computational Complexity", "value": "cs.CC"}
        assert {"name": "cs.CL — Computation and Language", "value": "cs.CL"} in first
        by_code = [c for c in first if c["value"].startswith("cs.C")]  # code prefix first, then names
        assert len(by_code) == 7 and first[:7] == by_code
        # The option is one comma-separated string: earlier categories are kept, not offered again.
        second = await choices("cs.CL, retrieval")
        assert [c["value"] for c in second] == ["cs.CL, cs.IR"]
        again = [c["value"] for c in await choices("cs.CL, cs.")]
        assert again and "cs.CL, cs.CL" not in again and all(v.startswith("cs.CL, cs.") for v in again)
        # Every suggestion is a category the subscription accepts.
        assert "Subscribed" in await subscribe(world, arxiv=second[0]["value"])
        assert world.repo is not None
        sub = await world.repo.get_channel_subscription(world.channel())
        assert sub is not None and sub.arxiv_categories == ["cs.CL", "cs.IR"]


def test_category_suggestions_fit_discord_and_match_names() -> None:
    assert category_suggestions("no such field") == []
    assert ("cs.RO — Robotics", "cs.RO") in category_suggestions("robot")
    near_limit = category_suggestions(", ".join(["cs.CL"] * 13) + ", cs.")  # 96 characters with one more
    assert near_limit and all(len(label) <= 100 and len(value) <= 100 for label, value in near_limit)
    assert category_suggestions(", ".join(["cs.CL"] * 14) + ", cs.") == []  # would not fit a choice
    assert len(category_suggestions("")) == 25


async def test_non_admins_are_refused_on_the_server_side(world: World) -> None:
    async with world.bot():
        # Discord hides /digest from members without Manage Server...
        command_payload = world.fake.state.find_command("digest", None)
        assert command_payload is not None and command_payload["default_member_permissions"] == str(1 << 5)
        with pytest.raises(PermissionError):
            await world.fake.dispatch_interaction("digest subscribe", {}, channel_id=world.channel())
        # ...but a server can override that in its integration settings: the bot checks again.
        command_payload["default_member_permissions"] = None
        for name in ("digest subscribe", "digest now", "digest status", "digest preview"):
            text = await command(world, name, user="bob")
            assert "Manage Server permission" in text, text
        assert world.repo is not None
        assert await world.repo.get_channel_subscription(world.channel()) is None
        assert world.digest_messages(world.channel()) == []


# ------------------------------------------------------------------ posting


async def test_digest_now_posts_header_and_papers_once_status_and_feedback(world: World) -> None:
    channel = world.channel()
    async with world.bot():
        await subscribe(world)
        preview = await command(world, "digest preview")
        assert "nothing was posted" in preview
        assert world.digest_messages(channel) == []  # the preview is ephemeral only

        text = await command(world, "digest now")
        assert f"Posted {MAX_PAPERS} papers" in text, text
        posted = world.digest_messages(channel)
        today = dt.datetime.now(dt.UTC).date()
        markers = [marker for _, marker in posted]
        assert len(posted) == 1 + MAX_PAPERS and markers[0] == f"{digest_marker(today)} · header"
        assert all(m.startswith(digest_marker(today)) for m in markers) and len(set(markers)) == len(markers)
        papers = [m for m in world.fake.messages_in(channel) if int(m["id"]) in {i for i, _ in posted[1:]}]
        for message in papers:
            embed = message["embeds"][0]
            assert embed["url"].startswith("https://arxiv.org/abs/")
            assert any(f["name"] == "Why this paper" for f in embed["fields"])
            description = embed["description"]
            assert "Summary of" in description and note_line(SUMMARIZER_UNAVAILABLE) not in description
            assert message.get("thread")  # thread_per_paper: a discussion thread on each paper

        assert "already posted" in await command(world, "digest now")
        assert world.digest_messages(channel) == posted

        # 👍 from a reader is feedback on that paper for this channel.
        assert world.repo is not None
        liked_id = posted[1][0]
        paper_id = posted[1][1].rsplit(" · ", 1)[1]
        await world.fake.dispatch_reaction(liked_id, "👍", user_id=world.user("bob"))

        async def liked() -> bool:
            feedback = await world.repo.channel_feedback(channel)  # type: ignore[union-attr]
            return paper_id in feedback.liked

        for _ in range(100):
            if await liked():
                break
            await asyncio.sleep(0.05)
        assert await liked()

        status = await command(world, "digest status")
        assert f"posted {MAX_PAPERS}" in status and "(manual) posted:" in status
        assert "already posted" in status and "Next run:" in status


async def test_llm_down_posts_every_paper_with_its_abstract_labelled_as_fallback(
    world: World, scripted_llm: ScriptedLLMServer
) -> None:
    channel = world.channel()
    scripted_llm.responder = lambda body: ScriptedError(500, message="model crashed")
    abstracts = {
        p.paper_id: p.abstract
        for p in parse_bytes(HF_RAW.read_bytes(), source_name="hf", fmt="hf_json").papers
    }
    async with world.bot():
        await subscribe(world)
        text = await command(world, "digest now")
        assert f"Posted {MAX_PAPERS} papers" in text, text
    asked = scripted_llm.requests_to("/v1/chat/completions")
    assert len(asked) == MAX_PAPERS  # one attempt per paper; the failure did not stop the digest
    posted = world.digest_messages(channel)
    assert len(posted) == 1 + MAX_PAPERS
    paper_ids = {message_id: marker.rsplit(" · ", 1)[1] for message_id, marker in posted[1:]}
    messages = [m for m in world.fake.messages_in(channel) if int(m["id"]) in paper_ids]
    assert len(messages) == MAX_PAPERS
    for message in messages:
        description = message["embeds"][0]["description"]
        summary, label = description.rsplit("\n", 1)
        assert label == note_line(SUMMARIZER_UNAVAILABLE)
        abstract = " ".join(abstracts[paper_ids[int(message["id"])]].split())
        assert summary and abstract.startswith(summary.rstrip("…")), (summary, abstract[:200])
        assert "Summary of" not in description
    assert world.repo is not None
    cached = await world.repo.cached_summaries(
        list(paper_ids.values()), prompt_version=world.digests.summaries.prompt_version,  # type: ignore[union-attr]
        model=world.digests.summaries.model,  # type: ignore[union-attr]
    )  # fmt: skip
    assert cached == {}  # fallbacks are not cached: tomorrow's digest asks the LLM again


async def test_a_summary_the_abstract_does_not_support_gives_way_to_hugging_faces_labelled(
    world: World, scripted_llm: ScriptedLLMServer
) -> None:
    channel = world.channel()
    # what the base model wrote in the demo digest: the same invented sentence for every paper
    scripted_llm.responder = lambda body: (
        "TL;DR: The paper proposes a multi-agent reinforcement learning framework that combines the "
        "ability to learn from user intent.\nKey contribution: The Transformer architecture."
    )
    ai_summaries = {
        p.paper_id: p.ai_summary
        for p in parse_bytes(HF_RAW.read_bytes(), source_name="hf", fmt="hf_json").papers
    }
    async with world.bot():
        await subscribe(world)
        text = await command(world, "digest now")
        assert f"Posted {MAX_PAPERS} papers" in text, text
    posted = world.digest_messages(channel)
    paper_ids = {message_id: marker.rsplit(" · ", 1)[1] for message_id, marker in posted[1:]}
    messages = [m for m in world.fake.messages_in(channel) if int(m["id"]) in paper_ids]
    assert len(messages) == MAX_PAPERS
    for message in messages:
        description = message["embeds"][0]["description"]
        assert description == f"{ai_summaries[paper_ids[int(message['id'])]]}\n{note_line(HF_AI_SUMMARY)}"
        assert "multi-agent" not in description and "Transformer architecture" not in description


class CrashAfterPosting:
    """The real Discord poster; the "process dies" right after a paper reached Discord, before its
    message id could be recorded."""

    def __init__(self, inner: DiscordDigestPoster, crash_at_rank: int) -> None:
        self.inner = inner
        self.crash_at_rank = crash_at_rank

    async def post_header(self, channel_id: int, header: DigestHeader) -> int:
        return await self.inner.post_header(channel_id, header)

    async def post_paper(self, channel_id: int, post: PaperPost, parent_message_id: int | None) -> int:
        message_id = await self.inner.post_paper(channel_id, post, parent_message_id)
        if post.rank == self.crash_at_rank:
            raise SimulatedCrash(f"killed after posting {post.paper.paper_id}")
        return message_id

    async def find_recent_digest_messages(self, channel_id: int, marker: str) -> list[tuple[int, str]]:
        return await self.inner.find_recent_digest_messages(channel_id, marker)


async def subscribed_daily_at(world: World, when: dt.datetime) -> Subscription:
    """`/digest subscribe` in the world's channel, daily at `when` (UTC); the stored subscription."""
    await subscribe(world, time=f"{when:%H:%M}", timezone="UTC", weekdays="daily")
    sub = await world.repo.get_channel_subscription(world.channel())
    assert sub is not None
    return sub


async def test_a_crash_after_posting_is_completed_on_restart_without_duplicates(world: World) -> None:
    channel = world.channel()
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)

    def crash_on_second_paper(client: discord.Client) -> CrashAfterPosting:
        return CrashAfterPosting(DiscordDigestPoster(client), crash_at_rank=2)

    async with world.bot(crash_on_second_paper) as bot:
        # Scheduled a minute ago, so the interrupted run is still within the catch-up grace.
        sub = await subscribed_daily_at(world, now)
        with pytest.raises(SimulatedCrash):
            await world.digests.run(sub, now.date(), poster=bot.digest_poster, trigger="schedule")
    before = world.digest_messages(channel)
    assert len(before) == 1 + 2  # header, paper 1, paper 2 (sent, id never recorded)

    async with world.bot() as bot:  # restart: same database, same Discord
        assert bot.digest_scheduler is not None and bot.digest_scheduler.recovery is not None
        outcomes = await asyncio.wait_for(bot.digest_scheduler.recovery, 60)
        assert [o.status for o in outcomes] == ["posted"]
        assert outcomes[0].counts.recovered == 1 and outcomes[0].counts.posted == MAX_PAPERS - 2
    after = world.digest_messages(channel)
    markers = [marker for _, marker in after]
    assert after[: len(before)] == before
    assert len(after) == 1 + MAX_PAPERS and len(set(markers)) == len(markers)  # each exactly once


class SlowPoster(CrashAfterPosting):
    """The real poster, a little slow per paper, so that a shutdown lands in the middle of a digest."""

    def __init__(self, inner: DiscordDigestPoster, delay_s: float) -> None:
        super().__init__(inner, crash_at_rank=0)
        self.delay_s = delay_s

    async def post_paper(self, channel_id: int, post: PaperPost, parent_message_id: int | None) -> int:
        await asyncio.sleep(self.delay_s)
        return await super().post_paper(channel_id, post, parent_message_id)


@pytest.mark.parametrize("grace_s", [30.0, 0.0])
async def test_shutdown_during_a_digest_loses_nothing_and_posts_nothing_twice(
    world: World, grace_s: float
) -> None:
    """close() (what SIGTERM calls) waits for a running digest up to the grace, then cancels it; a
    cancelled digest is resumed on the next start."""
    channel = world.channel()
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    world.settings = world.settings.model_copy(
        update={"digest": world.settings.digest.model_copy(update={"shutdown_grace_s": grace_s})}
    )

    def slow(client: discord.Client) -> SlowPoster:
        return SlowPoster(DiscordDigestPoster(client), delay_s=0.3)

    async with world.bot(slow) as bot:
        sub = await subscribed_daily_at(world, now)
        assert bot.digest_scheduler is not None
        run = asyncio.create_task(bot.digest_scheduler.run_now(sub, now.date()))
        await world.fake.wait_for(
            lambda: len(world.digest_messages(channel)) >= 2, timeout=60, what="a paper"
        )
        await bot.close()
        if grace_s:
            outcome = await run
            assert outcome.status == "posted" and outcome.counts.posted == MAX_PAPERS
        else:
            with pytest.raises(asyncio.CancelledError):
                await run
    interrupted = len(world.digest_messages(channel))
    assert (interrupted == 1 + MAX_PAPERS) == bool(grace_s)

    async with world.bot() as bot:  # the next start resumes a cancelled digest
        assert bot.digest_scheduler is not None
        if bot.digest_scheduler.recovery is not None:
            await asyncio.wait_for(bot.digest_scheduler.recovery, 60)
    markers = [marker for _, marker in world.digest_messages(channel)]
    assert len(markers) == 1 + MAX_PAPERS and len(set(markers)) == len(markers)


# ------------------------------------------------------------------ server defaults


async def test_server_defaults_are_shown_set_and_used_by_the_next_subscribe(world: World) -> None:
    async def defaults(**options: Any) -> str:
        handle = await world.fake.dispatch_interaction(
            "digest defaults", options, channel_id=world.channel(), user_id=world.user("alice")
        )
        return await ephemeral_text(handle)

    async with world.bot() as bot:
        shown = await defaults()
        assert shown.startswith("This server's defaults for new digests:"), shown
        assert "**Time:** 09:00 (bot default) · **Time zone:** UTC (bot default)" in shown
        # The same rules as /digest subscribe; a refused value changes nothing.
        assert "not an IANA time zone" in await defaults(timezone="Mars/Olympus")
        assert "not HH:MM" in await defaults(time="25:00")
        assert "(bot default)" in (await defaults()).split("\n", 2)[1]
        handle = await world.fake.dispatch_autocomplete(
            "digest defaults", {"timezone": "paris"}, focused="timezone",
            channel_id=world.channel(), user_id=world.user("alice"),
        )  # fmt: skip
        assert [c["value"] for c in await handle.autocomplete_choices()] == ["Europe/Paris"]

        text = await defaults(time="06:45", timezone="Europe/Paris")
        assert text.startswith("Updated this server's defaults for new digests:"), text
        assert "**Time:** 06:45 · **Time zone:** Europe/Paris" in text
        assert "**Time:** 06:45 · **Time zone:** Europe/Paris" in await defaults()  # stored

        # A subscribe without time or timezone starts from the server's defaults.
        text = await subscribe(world)
        assert "Subscribed" in text and "06:45 Europe/Paris" in text, text
        sub = await world.repo.get_channel_subscription(world.channel())
        assert sub is not None and (sub.post_time, sub.timezone) == (dt.time(6, 45), "Europe/Paris")
        assert bot.digest_scheduler is not None
        next_run = bot.digest_scheduler.next_run_time(sub.id)
        assert next_run is not None and f"<t:{int(next_run.timestamp())}:F>" in text
        assert f"{next_run.astimezone(ZoneInfo('Europe/Paris')):%H:%M}" == "06:45"
