"""Issue 17's records and rules without Discord: the schema upgrade that adds channel memory and the
weekly cadence to an existing database, the roundup poll's answers, the winner rule, the guide's
grounding check, and the opt-in store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from bot.core.papers import Paper
from bot.db import Database, Repository, upgrade_schema
from bot.db.memory_store import MemoryChannelStore
from bot.db.schema import SCHEMA_VERSION, schema_version
from bot.digest.delivery import POLL_ANSWER_CHARS, DigestPoll
from bot.digest.records import SubscriptionSettings
from bot.digest.roundup import grounded, poll_winner


async def test_an_older_database_gains_channel_memory_and_daily_cadence(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'state.db'}", busy_timeout_ms=5000)
    await upgrade_schema(database.engine)
    await Repository(database).save_subscription(
        SubscriptionSettings(guild_id=1, channel_id=2, topics=["agents"], weekdays=(0, 2))
    )
    async with database.engine.begin() as connection:  # back to schema 2, as an older paperbot left it
        await connection.execute(text("DROP TABLE channel_memory"))
        await connection.execute(text("ALTER TABLE subscriptions DROP COLUMN cadence"))
        for table in ("library_papers", "follows", "personal_settings", "personal_feedback"):
            await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await connection.execute(text("DELETE FROM schema_version"))
        await connection.execute(
            text("INSERT INTO schema_version (version, description, applied_at) VALUES (2, 'v2', :at)"),
            {"at": "2026-11-01 00:00:00"},
        )
    assert await schema_version(database.engine) == 2
    assert await upgrade_schema(database.engine) == SCHEMA_VERSION
    subscription = await Repository(database).get_channel_subscription(2)
    assert subscription is not None and subscription.cadence == "daily" and subscription.weekdays == (0, 2)
    store = MemoryChannelStore(database)
    enabled = await store.enable(guild_id=1, channel_id=2, retention_days=30, enabled_by=5)
    again = await store.enable(guild_id=1, channel_id=2, retention_days=7, enabled_by=6)
    assert again.retention_days == 7 and again.enabled_by == 5 and again.enabled_at == enabled.enabled_at
    assert [c.channel_id for c in await store.all()] == [2]
    assert await store.disable(2) and await store.get(2) is None and not await store.disable(2)
    await database.close()


def test_a_weekly_subscription_needs_exactly_one_weekday() -> None:
    weekly = SubscriptionSettings(guild_id=1, channel_id=2, cadence="weekly", weekdays="fri")
    assert weekly.weekdays == (4,) and weekly.schedule_text() == "09:00 UTC weekly on fri"
    with pytest.raises(ValidationError, match="one weekday"):
        SubscriptionSettings(guild_id=1, channel_id=2, cadence="weekly", weekdays="mon-fri")


def test_poll_answers_fit_discords_55_characters_and_keep_the_ranking() -> None:
    papers = [Paper(paper_id=f"p{n}", title=f"Paper {n} " + "with a very long title " * n) for n in range(5)]
    poll = DigestPoll.for_papers(papers, hours=48)
    assert [a[1][:2] for a in poll.answers] == ["1.", "2.", "3.", "4.", "5."]
    assert all(len(text) <= POLL_ANSWER_CHARS for _, text in poll.answers)
    assert poll.answers[4][1].endswith("…") and poll.paper_ids == [p.paper_id for p in papers]
    assert DigestPoll.from_content(poll.to_content()) == poll


def test_the_winner_is_the_most_voted_ties_go_to_the_better_rank_and_no_votes_to_the_top() -> None:
    poll = DigestPoll.for_papers([Paper(paper_id=f"p{n}", title=f"T{n}") for n in range(1, 6)], hours=1)
    assert poll_winner(poll, {1: 1, 3: 4, 5: 2}) == (result := poll_winner(poll, {3: 4, 1: 1, 5: 2}))
    assert (result.winner, result.votes, result.total) == ("p3", 4, 7)
    assert poll_winner(poll, {2: 3, 4: 3}).winner == "p2"
    assert poll_winner(poll, {}).winner == "p1" and poll_winner(poll, {}).total == 0


def test_a_guide_question_holds_up_only_with_its_excerpts_words() -> None:
    excerpt = "We fine-tune adapters with LoRA rank 8 and find that larger ranks only add memory."
    assert grounded("Why do larger LoRA ranks only add memory when fine-tuning adapters?", excerpt)
    assert not grounded("What does this mean for the weather on Mars?", excerpt)
    assert not grounded("Why does memory matter?", excerpt)  # one shared word is not grounding
    about = "This paper's main focus is a new method: adapters fine-tuned with LoRA rank 8."
    assert not grounded(
        "What is the main focus of this paper and its new method?", about
    )  # asks nothing of it
