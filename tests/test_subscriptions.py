"""The digest subscription service below Discord and the CLI: a real SQLite state database, the real
digest service and an APScheduler-backed scheduler that is not started (as in the CLI), so each next
run is worked out from the subscription's own schedule and no job is made."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app.services import build_digest_services
from bot.core.config import Settings, load_settings
from bot.core.errors import UserInputError
from bot.db import Database, Repository, upgrade_schema
from bot.digest import cron
from bot.digest.records import PlannedItem
from bot.digest.scheduler import DigestScheduler
from bot.digest.sources import directory_fetcher
from bot.digest.subscriptions import (
    NO_DIGEST,
    InvalidSubscriptionError,
    NoDigestError,
    SubscriptionLimitError,
    SubscriptionService,
    scheduled_subscriptions,
)
from bot.ingest.pipeline import Ingestor
from bot.retrieval.embedding import Embedder
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.search import SearchService

GUILD, CHANNEL, ADMIN = 10, 20, 7


@dataclass
class World:
    settings: Settings
    repo: Repository
    scheduler: DigestScheduler
    service: SubscriptionService

    async def subscribe(self, channel_id: int = CHANNEL, **options: Any) -> Any:
        return await self.service.subscribe(
            guild_id=GUILD, channel_id=channel_id, options=options, user_id=ADMIN
        )


@pytest.fixture
async def world(tmp_path: Path, embedder: Embedder) -> AsyncIterator[World]:
    settings = load_settings()
    database = Database.from_settings(settings)
    await upgrade_schema(database.engine)
    index = EdgePaperIndex(tmp_path / "qdrant")  # never opened: nothing here searches or ingests
    search, ingestor = SearchService(index, embedder), Ingestor(index, embedder, settings.tokenizer)
    state = build_digest_services(
        settings, database, search=search, ingestor=ingestor, llm=None, fetch=directory_fetcher(tmp_path)
    )
    yield World(settings, state.repo, state.scheduler, state.subscriptions)
    await database.close()


def hours_from_now(hours: int, zone: str) -> str:
    """A time of day well away from now, so no fire time falls between two reads of the clock."""
    return f"{dt.datetime.now(ZoneInfo(zone)) + dt.timedelta(hours=hours):%H:%M}"


async def test_subscribe_saves_the_channel_and_schedules_it_from_its_own_schedule(world: World) -> None:
    at = hours_from_now(10, "Asia/Tokyo")
    before = dt.datetime.now(dt.UTC)
    result = await world.subscribe(
        topics="retrieval, agents", post_time=at, timezone="Asia/Tokyo", weekdays="mon-fri"
    )
    sub = result.subscription
    assert not result.updated
    assert await world.repo.get_channel_subscription(CHANNEL) == sub
    assert (sub.guild_id, sub.created_by, sub.topics) == (GUILD, ADMIN, ["retrieval", "agents"])
    assert (sub.timezone, f"{sub.post_time:%H:%M}", sub.weekdays) == ("Asia/Tokyo", at, (0, 1, 2, 3, 4))
    # Not started: no job, and the next run is the cron's next fire in the channel's time zone.
    assert not world.scheduler.started and world.scheduler.next_run_time(sub.id) is None
    assert result.next_run is not None and result.next_run == cron.next_run_time(sub, before)
    local = result.next_run.astimezone(ZoneInfo("Asia/Tokyo"))
    assert f"{local:%H:%M}" == at and local.weekday() < 5 and result.next_run > before
    assert [(s.subscription.id, s.next_run) for s in await world.service.list_scheduled()] == [
        (sub.id, result.next_run)
    ]


async def test_a_second_subscribe_changes_only_the_options_given(world: World) -> None:
    first = (
        await world.subscribe(
            topics="diffusion",
            post_time="07:30",
            timezone="Europe/Paris",
            weekdays="daily",
            arxiv_categories="cs.CV",
            max_papers=3,
            layout="message_per_paper",
        )
    ).subscription
    before = dt.datetime.now(dt.UTC)
    result = await world.service.subscribe(
        guild_id=GUILD, channel_id=CHANNEL, options={"max_papers": 4, "topics": None, "post_time": None},
        user_id=ADMIN + 1,
    )  # fmt: skip
    changed = result.subscription
    assert result.updated and changed.id == first.id and changed.max_papers == 4
    assert changed.model_dump(exclude={"max_papers", "updated_at"}) == first.model_dump(
        exclude={"max_papers", "updated_at"}
    )  # topics, time, zone, days, sources, layout and who created it: all kept
    assert result.next_run is not None and result.next_run == cron.next_run_time(changed, before)


async def test_bad_options_are_refused_with_the_admins_wording_and_nothing_is_saved(world: World) -> None:
    with pytest.raises(InvalidSubscriptionError) as bad_zone:
        await world.subscribe(timezone="Mars/Olympus")
    assert isinstance(bad_zone.value, UserInputError)
    assert (
        str(bad_zone.value)
        == "timezone: 'Mars/Olympus' is not an IANA time zone; try e.g. Europe/Paris or Asia/Tokyo"
    )
    with pytest.raises(UserInputError, match=r"^post_time: time '25:00' is not HH:MM"):
        await world.subscribe(post_time="25:00")
    with pytest.raises(UserInputError, match=r"^a digest needs a source: "):
        await world.subscribe(hf_daily=False)
    limit = world.settings.digest.max_papers_limit
    with pytest.raises(SubscriptionLimitError, match=f"at most {limit} papers per digest on this bot"):
        await world.subscribe(max_papers=limit + 1)
    assert await world.repo.list_subscriptions() == []


async def test_commands_on_a_channel_without_a_digest_say_so(world: World) -> None:
    with pytest.raises(NoDigestError, match=r"^This channel has no digest\.$"):
        await world.service.unsubscribe(CHANNEL)
    for attempt in (
        world.service.get(CHANNEL),
        world.service.set_paused(CHANNEL, True),
        world.service.status(CHANNEL),
    ):
        with pytest.raises(UserInputError) as refused:
            await attempt
        assert (
            str(refused.value)
            == NO_DIGEST
            == "This channel has no digest; set one up with `/digest subscribe`."
        )


async def test_pause_resume_and_unsubscribe(world: World) -> None:
    sub = (
        await world.subscribe(post_time=hours_from_now(5, "UTC"), timezone="UTC", weekdays="daily")
    ).subscription
    paused = await world.service.set_paused(CHANNEL, True)
    assert paused.subscription.paused and paused.next_run is None
    assert (await world.service.status(CHANNEL)).next_run is None
    resumed = await world.service.set_paused(CHANNEL, False)
    assert not resumed.subscription.paused
    assert resumed.next_run == cron.next_run_time(sub, dt.datetime.now(dt.UTC))
    assert resumed.next_run is not None and resumed.next_run - dt.datetime.now(dt.UTC) < dt.timedelta(hours=6)
    removed = await world.service.unsubscribe(CHANNEL)
    assert removed.id == sub.id and await world.repo.get_channel_subscription(CHANNEL) is None


async def test_reactions_count_only_on_paper_posts(world: World) -> None:
    sub = (await world.subscribe()).subscription
    run_id = await world.repo.start_run(sub, dt.date(2026, 8, 18), "manual")
    entries = await world.repo.plan_digest(
        guild_id=GUILD, channel_id=CHANNEL, digest_date=dt.date(2026, 8, 18), run_id=run_id,
        items=[PlannedItem("header", "header", 0, "m0"), PlannedItem("2408.1", "paper", 1, "m1")],
    )  # fmt: skip
    header, paper = entries
    await world.repo.mark_posted(header.id, 1001)
    await world.repo.mark_posted(paper.id, 1002)

    async def react(message_id: int, value: int, added: bool = True) -> bool:
        return await world.service.record_reaction(
            message_id=message_id, guild_id=GUILD, user_id=5, value=value, added=added
        )

    assert await react(1001, 1) is False  # the digest's header is not a paper
    assert await react(4242, 1) is False  # not one of the digest's messages
    assert (await world.repo.channel_feedback(CHANNEL)).liked == []
    assert await react(1002, -1) is True
    assert (await world.repo.channel_feedback(CHANNEL)).disliked == ["2408.1"]
    assert await react(1002, -1, added=False) is True
    feedback = await world.repo.channel_feedback(CHANNEL)
    assert (feedback.liked, feedback.disliked) == ([], [])


async def test_server_defaults_are_validated_kept_and_used_by_new_subscriptions(world: World) -> None:
    bot = world.settings.digest
    assert await world.service.guild_defaults(GUILD) == await world.service.set_guild_defaults(GUILD)
    assert (await world.service.guild_defaults(GUILD)).default_timezone is None
    with pytest.raises(InvalidSubscriptionError, match=r"^time: time '7pm' is not HH:MM"):
        await world.service.set_guild_defaults(GUILD, post_time="7pm")
    with pytest.raises(InvalidSubscriptionError, match=r"^timezone: 'Paris' is not an IANA time zone"):
        await world.service.set_guild_defaults(GUILD, timezone="Paris")
    await world.service.set_guild_defaults(GUILD, timezone="America/New_York")
    both = await world.service.set_guild_defaults(GUILD, post_time="6.45")  # the zone set before stays
    assert (both.default_timezone, both.default_post_time) == ("America/New_York", dt.time(6, 45))

    sub = (await world.subscribe(topics="agents")).subscription
    assert (sub.timezone, sub.post_time) == ("America/New_York", dt.time(6, 45))
    assert f"{sub.post_time:%H:%M}" != bot.default_time or sub.timezone != bot.default_timezone
    own = (await world.subscribe(channel_id=CHANNEL + 1, timezone="Asia/Tokyo")).subscription
    assert (own.timezone, own.post_time) == ("Asia/Tokyo", dt.time(6, 45))  # an option given wins
    other_guild = await world.service.subscribe(guild_id=GUILD + 1, channel_id=CHANNEL + 2, options={})
    assert other_guild.subscription.timezone == bot.default_timezone


async def test_listing_without_a_scheduler_works_out_each_next_run(world: World) -> None:
    active = (await world.subscribe(weekdays="daily")).subscription
    paused = (await world.subscribe(channel_id=CHANNEL + 1)).subscription
    await world.service.set_paused(CHANNEL + 1, True)
    now = dt.datetime(2026, 8, 18, 12, 0, tzinfo=dt.UTC)
    listed = await scheduled_subscriptions(world.repo, now=now)
    assert [(s.subscription.id, s.subscription.paused) for s in listed] == [
        (active.id, False),
        (paused.id, True),
    ]
    assert listed[0].next_run == dt.datetime(2026, 8, 19, 9, 0, tzinfo=dt.UTC)  # 09:00 UTC, the bot default
    assert listed[1].next_run is None
