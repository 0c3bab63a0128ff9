"""/library, /follow, 🔖 Save, /ask scope:library and personal DM digests end to end: the real
discord.py against the fake Discord (every request checked against Discord's OpenAPI spec and for
pings at teardown), the production services on SQLite, real embeddings in Qdrant Edge, the real LLM
client against the scripted server."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bibtexparser
import pytest

from bot.app.services import DigestServices, Services
from bot.core.config import Settings
from bot.db import Database, upgrade_schema
from bot.digest.sources import directory_fetcher
from bot.discord.personal_messages import DiscordDMPoster
from bot.ingest.sources import parse_bytes
from tests.fakediscord import FakeDiscord, MessageFlag, run_client
from tests.support.digest import HF_DAY, HF_RAW, summary_responder
from tests.support.discord_world import final_message
from tests.support.paperbot_discord import (
    build_index,
    default_responder,
    make_settings,
    new_bot,
    open_services,
    reset_logging,
)
from tests.support.scripted_llm import ScriptedLLMServer

PAPERS = parse_bytes(HF_RAW.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers
AUTHOR = "Parsa Mazaheri"  # on two of the day's papers


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


@pytest.fixture(scope="module")
def day_index(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    path = tmp_path_factory.mktemp("discord-library") / "qdrant"
    build_index(path, embedder, PAPERS)
    return path


@dataclass
class World:
    fake: FakeDiscord
    settings: Settings
    services: Services

    @property
    def state(self) -> DigestServices:
        assert self.services.state is not None
        return self.services.state

    def user(self, name: str) -> int:
        return self.fake.state.user_id(name)

    async def command(self, name: str, options: dict[str, Any] | None = None, user: str = "bob") -> str:
        """The text of a command's reply, which must be ephemeral."""
        handle = await self.fake.dispatch_interaction(name, options or {}, user_id=self.user(user))
        return await private_text(handle)


async def private_text(handle: Any) -> str:
    callback = await handle.response(timeout=30)
    if callback["type"] == 4:
        assert callback["data"]["flags"] & MessageFlag.EPHEMERAL, callback
        return str(callback["data"]["content"])
    assert callback["type"] == 5 and callback["data"]["flags"] & MessageFlag.EPHEMERAL, callback
    return str((await handle.original_message(timeout=60))["content"])


@pytest.fixture
async def world(
    fake_discord: FakeDiscord, scripted_llm: ScriptedLLMServer, day_index: Path, embedder: Any, tmp_path: Path
) -> AsyncIterator[World]:
    scripted_llm.responder = summary_responder
    settings = make_settings(fake_discord, scripted_llm, tmp_path / "data")
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copy(HF_RAW, sources / f"hf_daily_{HF_DAY}.json")
    async with AsyncExitStack() as stack:
        database = Database.from_settings(settings)
        stack.push_async_callback(database.close)
        await upgrade_schema(database.engine)
        services = await stack.enter_async_context(
            open_services(day_index, embedder, scripted_llm, settings, database=database,
                          fetch=directory_fetcher(sources))
        )  # fmt: skip
        yield World(fake_discord, settings, services)


def uploaded(fake: FakeDiscord) -> list[tuple[str, bytes]]:
    return [(f.filename or "", f.data) for r in fake.requests for f in r.files]


async def test_save_from_search_then_list_note_export_import_remove(world: World) -> None:
    fake = world.fake
    bob = world.user("bob")
    async with run_client(new_bot(world.services, world.settings), fake):
        handle = await fake.dispatch_interaction("search", {"query": "GUI agents", "limit": 3}, user_id=bob)
        await handle.response()
        results = await handle.original_message(timeout=30)
        first = results["embeds"][0]["footer"]["text"].split(" · ")[1]
        click = await fake.dispatch_component(int(results["id"]), f"pb:save:{first}", user_id=bob)
        assert "🔖 Saved" in await private_text(click)
        again = await fake.dispatch_component(int(results["id"]), f"pb:save:{first}", user_id=bob)
        assert "already in your library" in await private_text(again)

        card = await fake.dispatch_interaction("paper", {"id_or_url": PAPERS[5].paper_id}, user_id=bob)
        await card.response()
        message = await card.original_message(timeout=30)
        saved = await fake.dispatch_component(
            int(message["id"]), f"pb:save:{PAPERS[5].paper_id}", user_id=bob
        )
        assert "🔖 Saved" in await private_text(saved)

        listing = await world.command("library list")
        assert "2 papers" in listing and first in listing and PAPERS[5].paper_id in listing
        assert "library is empty" in await world.command("library list", user="alice")  # private

        assert "Note saved" in await world.command("library note", {"paper": first, "text": "read §3"})
        choices = await (
            await fake.dispatch_autocomplete("library remove", {"paper": ""}, focused="paper", user_id=bob)
        ).autocomplete_choices()
        assert {c["value"] for c in choices} == {first, PAPERS[5].paper_id}

        text = await world.command("library export", {"format": "bibtex"})
        assert "2 papers" in text
        name, data = uploaded(fake)[-1]
        entries = bibtexparser.loads(data.decode()).entries
        assert name == "paperbot-library.bib" and {e["eprint"] for e in entries} == {
            first,
            PAPERS[5].paper_id,
        }
        assert next(e for e in entries if e["eprint"] == first)["note"] == "read §3"

        bib = (
            f"@misc{{x, title={{T}}, eprint={{{PAPERS[7].paper_id}}}, archivePrefix={{arXiv}}}}\n"
            "@misc{y, title={Nope}}"
        )
        handle = await fake.dispatch_interaction(
            "library import", {"file": ("mine.bib", bib.encode())}, user_id=bob
        )
        report = await private_text(handle)
        assert "saved 1 new papers" in report and "1 not in paperbot's index" in report and "`y`" in report
        bad = await fake.dispatch_interaction(
            "library import", {"file": ("latin.bib", "@misc{k, title={Café}}".encode("latin-1"))}, user_id=bob
        )
        assert "not UTF-8" in await private_text(bad)

        assert f"Removed `{first}`" in await world.command("library remove", {"paper": first})
        assert "not in your library" in await world.command("library remove", {"paper": first})
    assert len(await world.state.library.repo.list_saved(bob)) == 2


async def test_follow_then_personal_dm_digest_with_why_feedback_and_closed_dms(world: World) -> None:
    fake = world.fake
    bob, alice = world.user("bob"), world.user("alice")
    async with run_client(bot := new_bot(world.services, world.settings), fake):
        text = await world.command("follow add", {"kind": "author", "value": AUTHOR})
        assert f"Now following author {AUTHOR}" in text and "direct message" in text
        await world.command("follow add", {"kind": "topic", "value": "GUI agents"})
        assert "not an arXiv category" in await world.command(
            "follow add", {"kind": "category", "value": "robots"}
        )
        listing = await world.command("follow list")
        assert f"1. author {AUTHOR}" in listing and "2. topic “GUI agents”" in listing
        assert "weekly" in await world.command("follow settings", {"cadence": "weekly"})
        assert "daily" in await world.command("follow settings", {"cadence": "daily"})
        await world.command("follow add", {"kind": "author", "value": AUTHOR}, user="alice")
        fake.state.close_dms(alice)

        report = await world.state.personal.run(HF_DAY, poster=DiscordDMPoster(bot))

        assert report.delivered == 1 and report.dm_closed == 1
        assert len(fake.requests_to("POST /users/@me/channels")) >= 2
        dm = fake.state.add_dm_channel(bob)  # the channel the bot opened (the same one)
        header, *papers = fake.messages_in(dm, ephemeral=False)
        assert "Your paper digest" in header["embeds"][0]["title"]
        whys = [p["embeds"][0]["fields"][0]["value"] for p in papers]
        assert sum(f"follows author {AUTHOR}" in why for why in whys) == 2
        liked = papers[0]
        paper_id = liked["embeds"][0]["footer"]["text"].split(" · ")[-1]
        vote = await fake.dispatch_component(int(liked["id"]), f"pb:pf:up:{paper_id}", user_id=bob)
        assert "more papers like this" in await private_text(vote)
        assert (await world.state.library.repo.feedback([bob], 5))[bob] == ([paper_id], [])

        # Alice's DMs are closed: her follows stay, and she is told once, at her next command.
        search = await fake.dispatch_interaction(
            "search", {"query": "agents", "private": True}, user_id=alice
        )
        notice = await search.wait_for(  # after the results, one more private message
            lambda h: next((m for m in h.followups if "direct messages" in m["content"]), None),
            timeout=30, what="the closed-DMs notice",
        )  # fmt: skip
        assert "direct messages are closed" in notice["content"] and notice["flags"] & MessageFlag.EPHEMERAL
        first = await world.command("follow list", user="alice")
        assert "direct messages are closed" not in first and f"author {AUTHOR}" in first  # told once
        fake.state.close_dms(alice, closed=False)
        await world.state.follows.configure(alice, delivery="dm", cadence=None)
        assert "direct messages are closed" not in await world.command("follow list", user="alice")
        again = await world.state.personal.run(HF_DAY, poster=DiscordDMPoster(bot))
        # Bob gets nothing twice; Alice, whose DMs are open again, gets the digest planned for her.
        assert len(fake.messages_in(dm, ephemeral=False)) == 1 + len(papers)
        alice_dm = [m for m in fake.messages_in(fake.state.add_dm_channel(alice), ephemeral=False)]
        assert again.delivered == 1 and len(alice_dm) == 1 + again.papers_sent and again.papers_sent >= 2

        assert "Stopped following author" in await world.command("follow remove", {"follow": "1"})
        assert "**off**" in await world.command("follow settings", {"delivery": "off"})


async def test_ask_scope_library_answers_from_saved_papers_and_forget_me(
    world: World, scripted_llm: ScriptedLLMServer
) -> None:
    llm = scripted_llm
    fake = world.fake
    bob = world.user("bob")
    target = next(p for p in PAPERS if "GUI" in p.title)
    llm.responder = default_responder  # answers citing its first excerpt
    async with run_client(new_bot(world.services, world.settings), fake):
        empty = await fake.dispatch_interaction(
            "ask", {"question": "What do GUI agents do?", "scope": "library"}, user_id=bob
        )
        assert "library is empty" in (await empty.response())["data"]["content"]
        saved = await world.command("library save", {"paper": f"https://arxiv.org/abs/{target.paper_id}v2"})
        assert "🔖 Saved" in saved and "(1 paper in your library)" in saved
        assert "not a paper in paperbot's index" in await world.command(
            "library save", {"paper": "2999.99999"}
        )
        start = len(llm.requests)
        handle = await fake.dispatch_interaction(
            "ask", {"question": "What do GUI agents do?", "scope": "library", "private": True}, user_id=bob
        )
        await handle.response(timeout=30)
        answer = await final_message(handle, within=90)
        cited = " ".join(e.get("description", "") for e in answer["embeds"])
        assert target.title[:40] in cited  # the Sources embed: the saved paper
        assert all(p.title[:40] not in cited for p in PAPERS if p.paper_id != target.paper_id)
        prompts = " ".join(json.dumps(r.json, ensure_ascii=False) for r in llm.requests[start:])
        assert target.title[:40] in prompts  # Iter-RetGen's excerpts came from the library alone
        assert all(p.title[:40] not in prompts for p in PAPERS if p.paper_id != target.paper_id)

        await world.command("follow add", {"kind": "query", "value": "agents"})
        assert "confirm:True" in await world.command("library forget-me")
        assert await world.state.library.repo.count_saved(bob) == 1  # nothing deleted without confirm
        done = await world.command("library forget-me", {"confirm": True})
        assert "records about you were deleted" in done
    assert await world.state.library.repo.count_saved(bob) == 0
    assert await world.state.library.repo.list_follows(bob) == []


async def test_save_button_on_digest_posts(world: World) -> None:
    """Channel digest posts carry 🔖 Save too; a click saves into the clicker's own library."""
    fake = world.fake
    papers_channel = fake.state.channel_id("papers")
    async with run_client(bot := new_bot(world.services, world.settings), fake):
        handle = await fake.dispatch_interaction(
            "digest subscribe", {"topics": "GUI agents", "max_papers": 2, "layout": "message_per_paper"},
            channel_id=papers_channel, user_id=world.user("alice"),
        )  # fmt: skip
        await private_text(handle)
        sub = await world.state.repo.get_channel_subscription(papers_channel)
        assert sub is not None
        outcome = await world.state.digests.run(sub, HF_DAY, poster=bot.digest_poster)
        assert outcome.status == "posted", outcome.errors
        posts = [m for m in fake.messages_in(papers_channel, ephemeral=False) if m.get("components")]
        assert len(posts) == 2
        paper_id = posts[0]["embeds"][0]["footer"]["text"].split(" · ")[-1]
        click = await fake.dispatch_component(
            int(posts[0]["id"]), f"pb:save:{paper_id}", user_id=world.user("bob")
        )
        assert "🔖 Saved" in await private_text(click)
    saved = await world.state.library.repo.list_saved(world.user("bob"))
    assert [s.paper.paper_id for s in saved] == [paper_id]
