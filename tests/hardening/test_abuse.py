"""Abuse and access: /digest admin commands refused on the server side, cooldowns under a burst of
100 requests, and direct messages handled as configured.

The real bot (cogs, services, SQLite state database, digest scheduler) runs against the fake
Discord and the scripted LLM server; the fake fails any test whose requests broke Discord's rules.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from bot.app.services import Services
from bot.core.config import Settings
from bot.db import Database, upgrade_schema
from bot.db.repository import Repository
from bot.digest.sources import directory_fetcher
from bot.discord.bot import PaperBotBase
from bot.ingest.sources import ParseResult
from tests.fakediscord import FakeDiscord, Intent, InteractionHandle, MessageFlag, run_client
from tests.fakediscord.state import MODERATOR_PERMISSIONS, permission_bits
from tests.support.discord_world import MakeWorld, World, final_message, refusal
from tests.support.paperbot_discord import (
    captured_logs,
    default_responder,
    log_events,
    make_settings,
    new_bot,
    open_services,
    reset_logging,
)
from tests.support.scripted_llm import ScriptedLLMServer, prompt_text

COMPLETIONS = ("/v1/chat/completions", "/v1/completions")
BURST = 100


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


def completions(llm: ScriptedLLMServer) -> list[dict[str, Any]]:
    return [r.json for r in llm.requests if r.path in COMPLETIONS]


# ------------------------------------------------------------------ /digest: admins only


# Every subcommand of /digest with options that would change something if it ran.
DIGEST_ATTEMPTS: dict[str, dict[str, Any]] = {
    "subscribe": {"topics": "crypto scams", "time": "03:00", "max_papers": 50},
    "unsubscribe": {},
    "settings": {},
    "pause": {},
    "resume": {},
    "status": {},
    "preview": {},
    "now": {},
    "defaults": {"time": "03:00", "timezone": "Pacific/Kiritimati"},
}
# Manage Server is a server-wide permission: channel managers and moderators without it are refused.
ALMOST_ADMIN = MODERATOR_PERMISSIONS & ~permission_bits("manage_guild") | permission_bits(
    "manage_channels", "manage_roles", "manage_webhooks", "mention_everyone"
)


@dataclass
class DigestWorld:
    fake: FakeDiscord
    llm: ScriptedLLMServer
    settings: Settings
    services: Services
    database: Database
    fetched: list[str]

    @asynccontextmanager
    async def bot(self) -> AsyncIterator[PaperBotBase]:
        bot = new_bot(self.services, self.settings)
        async with run_client(bot, self.fake):
            yield bot

    @property
    def repo(self) -> Repository:
        assert self.services.state is not None
        return self.services.state.repo

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the state database (the scheduler's too)."""

        def dump(connection: Any) -> dict[str, list[tuple[Any, ...]]]:
            tables = inspect(connection).get_table_names()
            return {
                name: sorted(
                    (tuple(row) for row in connection.execute(text(f'SELECT * FROM "{name}"'))), key=repr
                )
                for name in tables
            }

        async with self.database.engine.connect() as connection:
            return await connection.run_sync(dump)


@pytest.fixture
async def digest_world(
    fake_discord: FakeDiscord,
    scripted_llm: ScriptedLLMServer,
    discord_seed_index: Path,
    embedder: Any,
    tmp_path: Path,
) -> AsyncIterator[DigestWorld]:
    scripted_llm.responder = default_responder
    settings = make_settings(fake_discord, scripted_llm, tmp_path / "data")
    saved = directory_fetcher(tmp_path / "sources")
    fetched: list[str] = []

    async def fetch(spec: str) -> ParseResult:  # a digest that runs asks for its sources first
        fetched.append(spec)
        return await saved(spec)

    async with AsyncExitStack() as stack:
        database = Database.from_settings(settings)
        stack.push_async_callback(database.close)
        await upgrade_schema(database.engine)
        services = await stack.enter_async_context(
            open_services(
                discord_seed_index, embedder, scripted_llm, settings, database=database, fetch=fetch
            )
        )
        yield DigestWorld(fake_discord, scripted_llm, settings, services, database, fetched)


async def ephemeral_reply(handle: InteractionHandle) -> str:
    callback = await handle.response()
    assert callback["type"] == 4, callback  # refused at once: nothing deferred, nothing started
    assert callback["data"]["flags"] & MessageFlag.EPHEMERAL
    return str(callback["data"]["content"])


async def test_every_digest_subcommand_is_refused_server_side_to_members_without_manage_server(
    digest_world: DigestWorld,
) -> None:
    world, fake = digest_world, digest_world.fake
    state = fake.state
    papers = state.channel_id("papers")
    guild = state.default_guild.id
    alice, bob = state.user_id("alice"), state.user_id("bob")
    carol = state.add_user("carol")
    state.add_member(
        guild, carol, roles=[state.add_role(guild, "Channel managers", permissions=ALMOST_ADMIN)]
    )

    async def run(name: str, user: int, options: dict[str, Any] | None = None) -> InteractionHandle:
        return await fake.dispatch_interaction(
            f"digest {name}", DIGEST_ATTEMPTS[name] if options is None else options,
            channel_id=papers, user_id=user,
        )  # fmt: skip

    async with world.bot() as bot:
        registered = state.find_command("digest", None)
        assert registered is not None
        subcommands = {option["name"] for option in registered["options"]}
        assert subcommands == set(DIGEST_ATTEMPTS), "a new /digest subcommand needs a case here"
        # The admin sets the channel up: there is something to change, stop or post.
        setup = await run("subscribe", alice, {"topics": "retrieval", "time": "09:00"})
        assert "Subscribed" in (await setup.original_message(timeout=30))["content"]
        assert world.repo is not None
        subscription = await world.repo.get_channel_subscription(papers)
        assert subscription is not None and bot.digest_scheduler is not None
        next_run = bot.digest_scheduler.next_run_time(subscription.id)
        assert next_run is not None
        before = await world.snapshot()
        requests_before = len(fake.requests)

        # Discord hides /digest from members without Manage Server...
        assert registered["default_member_permissions"] == str(permission_bits("manage_guild"))
        with pytest.raises(PermissionError):
            await run("unsubscribe", bob)
        # ...but a server's admins can override that in the integration settings, and the fake
        # delivers the interaction as Discord then would: the bot must check again itself.
        registered["default_member_permissions"] = None
        refusals = {}
        for user in (bob, carol):
            handles = {name: await run(name, user) for name in DIGEST_ATTEMPTS}
            for name, handle in handles.items():
                refusals[(user, name)] = await ephemeral_reply(handle)

        after = await world.snapshot()
        scheduled = bot.digest_scheduler.next_run_time(subscription.id)
        new_requests = fake.requests[requests_before:]

        # The same harness sees a change when an admin makes one.
        await ephemeral_reply(await run("pause", alice))
        assert await world.snapshot() != after

    assert set(refusals.values()) == {"You need the Manage Server permission for that."}, refusals
    assert len(refusals) == 2 * len(DIGEST_ATTEMPTS)
    assert after == before  # not one row added, changed or removed
    assert scheduled == next_run  # nothing rescheduled, paused or unscheduled
    assert world.fetched == [] and world.llm.requests == []  # no digest was previewed or run
    assert fake.messages_in(papers, ephemeral=False) == []  # nothing was posted
    assert {r.key for r in new_requests} == {
        "POST /interactions/{interaction_id}/{interaction_token}/callback"
    }


# ------------------------------------------------------------------ cooldowns under a burst


RETRY = re.compile(r"You're going a bit fast — try again in (\d+) s\.")
GUILD_RETRY = re.compile(r"This server is asking a lot right now — try again in (\d+) s\.")


@dataclass
class Burst:
    answered: list[InteractionHandle]
    refused: dict[int, str]  # interaction id -> the refusal text
    log_events: list[dict[str, Any]]


async def ask_burst(world: World, users: list[int]) -> Burst:
    """One /ask per entry of `users`, all dispatched at once; each question is distinct."""
    fake = world.fake
    with captured_logs(world.settings) as logs:
        async with world.bot():
            handles = await asyncio.gather(*(
                fake.dispatch_interaction("ask", {"question": f"Burst question {n}: what is SHERL?"},
                                          user_id=user)
                for n, user in enumerate(users)
            ))  # fmt: skip
            callbacks = await asyncio.gather(*(h.response(timeout=10) for h in handles))
            answered = [h for h, c in zip(handles, callbacks, strict=True) if c["type"] == 5]
            for handle in answered:
                await final_message(handle, within=60)
    refused = {}
    for handle, callback in zip(handles, callbacks, strict=True):
        if callback["type"] != 5:
            assert callback["type"] == 4 and callback["data"]["flags"] & MessageFlag.EPHEMERAL, callback
            refused[handle.id] = callback["data"]["content"]
    assert all(len(h.callbacks) == 1 for h in handles)  # every interaction answered, exactly once
    firsts = sorted(h.record.responded_at - h.record.dispatched_at for h in handles)
    print(
        f"\n{len(handles)} /ask at once from {len(set(users))} user(s): {len(answered)} answered; first "
        f"response p50 {firsts[len(firsts) // 2] * 1000:.0f} ms, max {firsts[-1] * 1000:.0f} ms"
    )
    return Burst(answered, refused, log_events(logs))


def asked_questions(llm: ScriptedLLMServer) -> set[str]:
    return set(re.findall(r"Burst question \d+", "\n".join(prompt_text(body) for body in completions(llm))))


# The fake checks every request against the spec when it stops: its validator's CPU time (~10 ms a
# request, in this event loop) is not the bot's and must not count against the 3 s deadline.
@pytest.mark.fakediscord(spec_validation="deferred")
async def test_a_burst_of_100_asks_from_one_user_runs_one_and_refuses_99_at_once(
    make_world: MakeWorld,
) -> None:
    world = await make_world(user_cooldown_s=30, guild_rate_per_minute=1000)
    burst = await ask_burst(world, [world.user("bob")] * BURST)

    assert len(burst.answered) == 1 and len(burst.refused) == BURST - 1
    waits = {int(m.group(1)) for text in burst.refused.values() if (m := RETRY.fullmatch(text))}
    assert len([t for t in burst.refused.values() if RETRY.fullmatch(t)]) == BURST - 1, burst.refused
    assert waits <= {29, 30}
    answer = burst.answered[0].original
    assert answer is not None and answer["embeds"]  # the one that ran is a real answer with sources
    # The LLM saw only the question that was let through.
    (question,) = re.findall(r"Burst question \d+", burst.answered[0].payload["data"]["options"][0]["value"])
    assert asked_questions(world.llm) == {question} and completions(world.llm)
    refused = [e for e in burst.log_events if e["event"] == "discord.request_refused"]
    assert len(refused) == BURST - 1 and {e["error_type"] for e in refused} == {"RateLimited"}
    assert not [e for e in burst.log_events if e.get("level") in ("error", "critical")]


@pytest.mark.fakediscord(spec_validation="deferred")
async def test_a_burst_of_100_asks_from_100_users_is_held_to_the_guild_rate(make_world: MakeWorld) -> None:
    world = await make_world(user_cooldown_s=30, guild_rate_per_minute=5)
    state = world.fake.state
    users = [state.add_user(f"reader{n:03d}") for n in range(BURST)]
    for user in users:
        state.add_member(state.default_guild.id, user)
    burst = await ask_burst(world, users)

    assert len(burst.answered) == 5 and len(burst.refused) == BURST - 5
    assert all(GUILD_RETRY.fullmatch(text) for text in burst.refused.values()), burst.refused
    assert {int(m.group(1)) for t in burst.refused.values() if (m := GUILD_RETRY.fullmatch(t))} <= {59, 60}
    assert all((h.original or {}).get("embeds") for h in burst.answered)
    let_through = {
        re.findall(r"Burst question \d+", h.payload["data"]["options"][0]["value"])[0] for h in burst.answered
    }
    assert asked_questions(world.llm) == let_through
    assert not [e for e in burst.log_events if e.get("level") in ("error", "critical")]


# ------------------------------------------------------------------ direct messages


GUILD_ONLY = "That command only works in a server."


def delivered(fake: FakeDiscord, event: str = "MESSAGE_CREATE") -> list[str]:
    """Ids of the messages the gateway delivered to the bot."""
    return [f.payload["d"]["id"] for f in fake.gateway.frames if f.direction == "send" and f.event == event]


async def test_direct_messages_are_ignored_by_default(world: World) -> None:
    fake, llm = world.fake, world.llm
    bob = world.user("bob")
    dm = fake.state.add_dm_channel(bob)
    async with world.bot():
        identify = fake.gateway.identifies[0]
        sent = await fake.dispatch_message(
            dm, f"<@{world.bot_id}> DM question: what is SHERL?", author_id=bob
        )
        # A question in the server after it, answered: the bot is up and reading.
        asked = await fake.dispatch_message(
            world.channel(), f"<@{world.bot_id}> What is Titans?", author_id=bob
        )
        answered = await fake.wait_for_message(int(asked["id"]))
    assert world.settings.discord.allow_dms is False
    assert not int(identify["intents"]) & Intent.DIRECT_MESSAGES  # so Discord does not even send DMs
    assert sent["id"] not in delivered(fake) and asked["id"] in delivered(fake)
    assert answered["content"]
    assert fake.messages_in(dm) == [sent]  # no answer, no refusal
    assert not [r for r in fake.requests if str(dm) in r.path]  # no typing, no history read, nothing
    prompts = "\n".join(prompt_text(b) for b in completions(llm))
    assert "What is Titans?" in prompts and "DM question" not in prompts


async def test_slash_commands_in_a_dm_are_refused_by_default(world: World) -> None:
    fake, llm = world.fake, world.llm
    bob = world.user("bob")
    dm = fake.state.add_dm_channel(bob)
    async with world.bot():
        # Not offered in DMs (Discord's clients honour `contexts`)...
        for name in ("ask", "search", "paper", "help"):
            command = fake.state.find_command(name, None)
            assert command is not None and command.get("contexts") == [0], command
        # ...and refused if one arrives anyway (an old client, a command registered before).
        attempts = {
            "ask": {"question": "DM question: what is SHERL?"},
            "search": {"query": "memory"},
            "paper": {"id_or_url": "2608.15265"},
            "help": {},
        }
        handles = [
            await fake.dispatch_interaction(name, options, channel_id=dm, user_id=bob)
            for name, options in attempts.items()
        ]
        texts = [await refusal(handle) for handle in handles]
    assert texts == [GUILD_ONLY] * len(attempts)
    assert completions(llm) == [] and fake.messages_in(dm, ephemeral=False) == []


async def test_direct_messages_are_answered_when_allowed(make_world: MakeWorld) -> None:
    world = await make_world(allow_dms=True)
    fake = world.fake
    bob = world.user("bob")
    dm = fake.state.add_dm_channel(bob)
    async with world.bot():
        identify = fake.gateway.identifies[0]
        first = await fake.dispatch_message(dm, f"<@{world.bot_id}> What is SHERL?", author_id=bob)
        answer = await fake.wait_for_message(dm, after=int(first["id"]), timeout=30)
        command = await fake.dispatch_interaction(
            "ask", {"question": "What is Titans?"}, channel_id=dm, user_id=bob
        )
        by_command = await final_message(command, within=30)
    assert int(identify["intents"]) & Intent.DIRECT_MESSAGES
    assert "What is SHERL?" in answer["content"] and answer["embeds"]  # answered in the DM, with sources
    assert "What is Titans?" in by_command["content"] and by_command["embeds"]
    assert fake.requests_to("POST /channels/{channel_id}/messages/{message_id}/threads") == []
    assert {int(m["author"]["id"]) for m in fake.bot_messages(dm)} == {world.bot_id}


async def test_a_dm_conversation_needs_no_mentions_when_allowed(make_world: MakeWorld) -> None:
    world = await make_world(allow_dms=True)
    fake, llm = world.fake, world.llm
    bob = world.user("bob")
    dm = fake.state.add_dm_channel(bob)
    async with world.bot():
        first = await fake.dispatch_message(dm, "DM question: what is SHERL?", author_id=bob)
        answer = await fake.wait_for_message(dm, after=int(first["id"]), timeout=5)
        follow_up = await fake.dispatch_message(dm, "And how does it compare with Titans?", author_id=bob)
        second = await fake.wait_for_message(dm, after=int(follow_up["id"]), timeout=5)
    assert "DM question: what is SHERL?" in answer["content"]
    assert "And how does it compare with Titans?" in second["content"]
    # The DM is the conversation: the follow-up is rewritten with the first question as history.
    rewrites = [p for b in completions(llm) if "Standalone question:" in (p := prompt_text(b))]
    assert len(rewrites) == 1 and "DM question: what is SHERL?" in rewrites[0]
    assert "Follow-up: And how does it compare with Titans?" in rewrites[0]
