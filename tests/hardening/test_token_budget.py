"""The per-guild daily LLM token budget: counted per UTC day, kept in the state database, refused
with a clear message once spent — through the real bot, and at the service and database levels."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from bot.app.services import build_services
from bot.core.config import CoreSettings, Settings
from bot.db import Repository, open_database
from bot.db.library_tables import LIBRARY_TABLES
from bot.db.schema import MIGRATIONS, SCHEMA_VERSION, schema_version, upgrade_schema
from bot.digest.summaries import fallback_summary
from bot.ingest.sources import parse_path
from bot.limits.budget import BudgetExhausted, MemoryUsageStore, TokenBudget
from tests.support.digest import key_contribution
from tests.support.discord_world import MakeWorld, final_message, llm_requests_since, refusal
from tests.support.paperbot_discord import HF_DAY

NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


async def test_a_guild_is_refused_once_its_day_is_spent_and_served_again_the_next_day() -> None:
    clock = Clock(NOON)
    budget = TokenBudget(1000, MemoryUsageStore(), clock=clock)
    await budget.ensure_available(1)
    await budget.spend(1, 600)
    await budget.ensure_available(1)  # 600 < 1000: still in
    await budget.spend(1, 600)  # one answer may overshoot by its own size
    with pytest.raises(BudgetExhausted) as refused:
        await budget.ensure_available(1)
    await budget.ensure_available(2)  # another guild has its own budget
    assert (refused.value.used, refused.value.limit) == (1200, 1000)
    assert str(refused.value) == (
        "This server has used today's answer budget (1,200 of 1,000 LLM tokens). "
        "It resets at 00:00 UTC, in 12 h 0 min; searching and paper cards still work"
    )
    clock.now = NOON + dt.timedelta(hours=12)  # midnight UTC
    await budget.ensure_available(1)


async def test_zero_means_unlimited() -> None:
    budget = TokenBudget(0, MemoryUsageStore(), clock=Clock(NOON))
    await budget.spend(1, 10**9)
    await budget.ensure_available(1)


async def test_usage_is_kept_in_the_database_added_atomically_and_survives_a_restart(tmp_path: Path) -> None:
    settings = Settings(core=CoreSettings(data_dir=tmp_path / "data"))
    day = NOON.date()
    async with open_database(settings) as database:
        repo = Repository(database)
        totals = await asyncio.gather(*(repo.add_tokens(7, day, 10) for _ in range(25)))
        await repo.add_tokens(7, day + dt.timedelta(days=1), 5)
        assert max(totals) == 250 and sorted(totals) == list(range(10, 251, 10))
    async with open_database(settings) as database:  # a restarted bot reads the same day
        budget = TokenBudget(250, Repository(database), clock=Clock(NOON))
        with pytest.raises(BudgetExhausted):
            await budget.ensure_available(7)
        assert await Repository(database).tokens_used(7, day + dt.timedelta(days=1)) == 5


async def test_a_version_1_database_is_upgraded_through_every_migration(tmp_path: Path) -> None:
    settings = Settings(core=CoreSettings(data_dir=tmp_path / "data"))
    async with open_database(settings) as database:
        added_since_1 = ["guild_token_usage", "channel_memory", *(t.__tablename__ for t in LIBRARY_TABLES)]
        async with database.engine.begin() as connection:  # back to what version 1 had
            for table in added_since_1:
                await connection.execute(text(f"DROP TABLE {table}"))
            await connection.execute(text("ALTER TABLE subscriptions DROP COLUMN cadence"))
            await connection.execute(text("UPDATE schema_version SET version = 1"))  # stamped "created"
        assert await schema_version(database.engine) == 1
        assert await upgrade_schema(database.engine) == SCHEMA_VERSION == max(MIGRATIONS)
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: inspect(c).get_table_names())
            columns = await connection.run_sync(
                lambda c: [col["name"] for col in inspect(c).get_columns("subscriptions")]
            )
        assert set(added_since_1) <= set(tables) and "cadence" in columns  # every migration ran
        assert await Repository(database).add_tokens(1, NOON.date(), 3) == 3


async def test_a_spent_server_gets_a_clear_refusal_without_calling_the_llm(make_world: MakeWorld) -> None:
    world = await make_world(guild_daily_token_budget=1)
    fake, general = world.fake, world.channel()
    async with world.bot() as bot:
        answered = await final_message(await fake.dispatch_interaction("ask", {"question": "What is SHERL?"}))
        spent = await bot.services.budget._store.tokens_used(
            fake.state.default_guild_id, dt.datetime.now(dt.UTC).date()
        )
        calls = len(llm_requests_since(world.llm, 0))
        again = await refusal(await fake.dispatch_interaction("ask", {"question": "And Titans?"}))
        mention = await fake.dispatch_message(general, f"<@{world.bot_id}> and Titans?")
        told = await fake.wait_for_message(general, after=int(mention["id"]))
        after = len(llm_requests_since(world.llm, 0))
    assert answered["embeds"] and spent > 1  # the answer went through and its tokens were counted
    budget_message = (
        rf"This server has used today's answer budget \({spent:,} of 1 LLM tokens\)\. "
        r"It resets at 00:00 UTC, in (\d+ h )?\d+ min; searching and paper cards still work"
    )
    assert re.fullmatch(budget_message, again)
    assert re.fullmatch(budget_message, told["content"])
    assert after == calls  # neither refusal reached the LLM


async def test_paper_summaries_are_charged_when_made_and_a_spent_server_gets_the_abstract_instead(
    make_world: MakeWorld, tmp_path: Path
) -> None:
    world = await make_world(guild_daily_token_budget=1)
    fake = world.fake
    first, second = parse_path(HF_DAY).papers[:2]
    async with open_database(Settings(core=CoreSettings(data_dir=tmp_path / "state"))) as database:
        assert world.services.llm is not None
        services = world.services
        world.services = build_services(
            world.settings, index=services.index, embedder=services.embedder, llm=services.llm,
            database=database,
        )  # fmt: skip
        written = f"{key_contribution(first.abstract)}."  # a summary the abstract supports
        world.llm.responder = lambda body: written
        async with world.bot() as bot:

            async def used() -> int:
                day = dt.datetime.now(dt.UTC).date()
                return await bot.services.budget._store.tokens_used(fake.state.default_guild_id, day)

            async def card(paper_id: str) -> str:
                handle = await fake.dispatch_interaction("paper", {"id_or_url": paper_id})
                return str((await handle.original_message())["embeds"][0]["description"])

            made = await card(first.paper_id)
            spent, calls = await used(), len(world.llm.requests)
            cached = await card(first.paper_id)  # from the cache: free, even with the budget spent
            spent_after_cached = await used()
            refused = await card(second.paper_id)
            calls_after = len(world.llm.requests)
    assert made == cached == f"TL;DR: {written}"
    assert spent > 1 and calls == 1  # the summary's prompt and completion tokens were charged
    assert spent_after_cached == spent
    assert refused == (
        fallback_summary(second)
        + "\n-# (first sentences of the abstract; this server has used today's LLM budget)"
    )
    assert calls_after == calls  # no LLM call once the budget was spent
