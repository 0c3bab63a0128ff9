"""The fake Discord against the real discord.py: connection, commands, interactions, messages,
validation, fault injection and gateway reconnects."""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakediscord import (
    Close,
    FakeDiscord,
    FakeDiscordState,
    MessageFlag,
    Op,
    ViolationKind,
    point_discord_at,
    run_client,
)
from tests.fakediscord.checks import MentionAllowance, message_problems, ping_problems
from tests.fakediscord.spec import SPEC_PATH, DiscordSpec

pytest_plugins = ["tests.fakediscord.plugin"]  # fixtures fake_discord and discord_spec

MESSAGES = "POST /channels/{channel_id}/messages"
NO_PINGS = discord.AllowedMentions.none()


def make_bot(
    *, allowed_mentions: discord.AllowedMentions | None = NO_PINGS, message_content: bool = True
) -> commands.Bot:
    """A small bot shaped like paperbot: slash commands, a modal, a button, mention replies."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = True
    bot = commands.Bot(
        command_prefix=commands.when_mentioned,
        intents=intents,
        allowed_mentions=allowed_mentions,
        guild_ready_timeout=0.05,
    )
    seen: dict[str, list[Any]] = {"reactions": [], "resumed": [], "messages": [], "interactions": []}
    bot.seen = seen  # type: ignore[attr-defined]

    @bot.tree.command(description="Search papers")
    @app_commands.describe(query="What to look for", limit="How many papers")
    async def search(
        interaction: discord.Interaction, query: str, limit: app_commands.Range[int, 1, 20] = 5
    ) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content=f"Top {limit} papers for **{query}**")
        await interaction.followup.send(
            embed=discord.Embed(title="Sources", description="[1] arXiv:2401.00001")
        )

    @bot.tree.command(description="Show one paper")
    async def paper(interaction: discord.Interaction, arxiv_id: str) -> None:
        view = discord.ui.View()
        view.add_item(discord.ui.Button(label="Summarize", custom_id=f"summarize:{arxiv_id}"))
        await interaction.response.send_message(f"Paper {arxiv_id}", view=view)

    @bot.tree.command(description="Pick a topic")
    async def topic(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(f"Topic {name}", ephemeral=True)

    @topic.autocomplete("name")
    async def topic_names(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        count = 30 if current == "many" else 3
        return [app_commands.Choice(name=f"{current}-{i}", value=f"{current}-{i}") for i in range(count)]

    @bot.tree.command(description="Send feedback")
    async def feedback(interaction: discord.Interaction) -> None:
        modal = discord.ui.Modal(title="Feedback", custom_id="feedback")
        modal.add_item(discord.ui.TextInput(label="Comment", custom_id="comment"))

        async def on_submit(submitted: discord.Interaction) -> None:
            comment = modal.children[0].value  # type: ignore[attr-defined]
            await submitted.response.send_message(f"Thanks: {comment}", ephemeral=True)

        modal.on_submit = on_submit  # type: ignore[method-assign]
        await interaction.response.send_modal(modal)

    @bot.tree.command(description="Too slow for Discord")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(0.3)
        await interaction.response.send_message("late")

    @bot.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if interaction.type is discord.InteractionType.component and custom_id.startswith("summarize:"):
            await interaction.response.edit_message(content="Summary: it works.", view=None)

    @bot.tree.command(description="Keeps the interaction for later")
    async def later(interaction: discord.Interaction) -> None:
        seen["interactions"].append(interaction)
        await interaction.response.defer()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        seen["messages"].append(message.content)
        if message.author.bot or bot.user is None or bot.user not in message.mentions:
            return
        await message.reply(f"You asked: {message.clean_content}")

    @bot.event
    async def on_raw_reaction_add(event: discord.RawReactionActionEvent) -> None:
        seen["reactions"].append((event.message_id, str(event.emoji), event.user_id))

    @bot.event
    async def on_resumed() -> None:
        seen["resumed"].append(True)

    return bot


def seen(bot: commands.Bot) -> dict[str, list[Any]]:
    return bot.seen  # type: ignore[attr-defined]


def general(fake: FakeDiscord) -> int:
    return fake.state.channel_id("general")


# -- connecting and syncing -----------------------------------------------------------------------


async def test_bot_connects_and_fills_its_cache(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        identify = fake_discord.gateway.identifies[0]
        assert identify["intents"] == bot.intents.value
        assert identify["token"] == fake_discord.token
        assert fake_discord.gateway.connections[0].compress in ("zlib-stream", "zstd-stream")  # as asked
        guild = bot.get_guild(fake_discord.state.default_guild.id)
        assert guild is not None and guild.name == "Paper Lab"
        assert {c.name for c in guild.text_channels} == {"general", "papers", "bot-admin"}
        # Without the presences intent GUILD_CREATE carries only the bot; the rest came by chunking.
        assert any(f.op == Op.REQUEST_GUILD_MEMBERS for f in fake_discord.gateway.frames)
        assert {m.name for m in guild.members} == {"paperbot", "alice", "bob"}
        assert bot.user is not None and bot.user.id == fake_discord.state.bot_user_id
        assert bot.application_id == fake_discord.state.application_id
        assert [r.key for r in fake_discord.requests] == ["GET /users/@me", "GET /oauth2/applications/@me"]


async def test_command_sync_is_recorded_and_valid(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        synced = await bot.tree.sync()
        guild = discord.Object(fake_discord.state.default_guild.id)
        bot.tree.copy_global_to(guild=guild)
        await bot.tree.sync(guild=guild)
        resynced = await bot.tree.sync()
    puts = [r for r in fake_discord.requests if r.method == "PUT"]
    assert [r.route for r in puts] == [
        "/applications/{application_id}/commands",
        "/applications/{application_id}/guilds/{guild_id}/commands",
        "/applications/{application_id}/commands",
    ]
    search = next(c for c in puts[0].json if c["name"] == "search")
    assert [o["name"] for o in search["options"]] == ["query", "limit"]
    assert {c.name for c in synced} == {"search", "paper", "topic", "feedback", "slow", "later"}
    assert [c.id for c in synced] == [c.id for c in resynced]  # ids survive an overwrite, as on Discord
    assert len(fake_discord.state.guild_commands[guild.id]) == 6
    fake_discord.assert_valid()


# -- interactions ---------------------------------------------------------------------------------


async def test_slash_command_defer_edit_and_followup(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.dispatch_interaction("search", {"query": "retrieval", "limit": 3})
        assert (await handle.response())["type"] == 5
        original = await handle.original_message()
        followup = await handle.followup()
    assert original["content"] == "Top 3 papers for **retrieval**"
    assert original["interaction_metadata"]["user"]["username"] == "bob"
    assert followup["embeds"][0]["title"] == "Sources"
    option = handle.payload["data"]["options"][1]
    assert option == {"name": "limit", "type": 4, "value": 3}  # typed from the registered command
    routes = [r.key for r in fake_discord.requests if r.path.startswith(("/interactions/", "/webhooks/"))]
    assert routes == [
        "POST /interactions/{interaction_id}/{interaction_token}/callback",
        "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original",
        "POST /webhooks/{webhook_id}/{webhook_token}",
    ]
    assert [m["id"] for m in fake_discord.messages_in(general(fake_discord))] == [
        original["id"],
        followup["id"],
    ]


async def test_subcommands_and_typed_options(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    received: list[tuple[str, Any, Any, Any]] = []
    digest = app_commands.Group(name="digest", description="Digest subscriptions")

    @digest.command(description="Subscribe a channel")
    async def subscribe(
        interaction: discord.Interaction,
        topic: str,
        channel: discord.TextChannel,
        hour: app_commands.Range[int, 0, 23],
        curator: discord.Member,
    ) -> None:
        received.append((topic, channel, hour, curator))
        await interaction.response.send_message("Subscribed", ephemeral=True)

    bot.tree.add_command(digest)
    alice = fake_discord.state.user_id("alice")
    papers = fake_discord.state.channel_id("papers")
    async with run_client(bot, fake_discord):
        await bot.tree.sync()
        options = {"topic": "rag", "channel": papers, "hour": 9, "curator": alice}
        handle = await fake_discord.dispatch_interaction("digest subscribe", options)
        assert (await handle.original_message())["flags"] & MessageFlag.EPHEMERAL
        with pytest.raises(ValueError, match=r"outside \[0, 23\]"):
            await fake_discord.dispatch_interaction("digest subscribe", {**options, "hour": 24})
        with pytest.raises(ValueError, match="has no option"):
            await fake_discord.dispatch_interaction("digest subscribe", {**options, "typo": 1})
    topic, channel, hour, curator = received[0]
    assert (topic, hour) == ("rag", 9)
    assert isinstance(channel, discord.TextChannel) and channel.id == papers
    assert isinstance(curator, discord.Member) and curator.id == alice


async def test_first_followup_after_defer_fills_the_thinking_message(fake_discord: FakeDiscord) -> None:
    bot = make_bot()

    @bot.tree.command(description="Defer then follow up")
    async def digest(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("first")
        await interaction.followup.send("second")

    async with run_client(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.dispatch_interaction("digest")
        second = await handle.followup()
    original = handle.original
    assert original is not None and original["content"] == "first"  # Discord reuses the loading message
    assert original["flags"] & MessageFlag.EPHEMERAL  # ...and keeps the defer's ephemerality
    assert second["content"] == "second"
    assert fake_discord.messages_in(general(fake_discord), ephemeral=False) == [second]


async def test_component_modal_autocomplete_and_reaction(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        await bot.tree.sync()
        shown = await (
            await fake_discord.dispatch_interaction("paper", {"arxiv_id": "2401.00001"})
        ).original_message()
        click = await fake_discord.dispatch_component(int(shown["id"]), "summarize:2401.00001")
        assert (await click.response())["type"] == 7
        assert fake_discord.state.message(int(shown["id"]))["content"] == "Summary: it works."
        assert fake_discord.state.message(int(shown["id"]))["components"] == []

        opened = await fake_discord.dispatch_interaction("feedback")
        modal = await opened.opened_modal()
        assert modal["custom_id"] == "feedback"
        submitted = await fake_discord.dispatch_modal_submit(opened, {"comment": "great digest"})
        assert (await submitted.original_message())["content"] == "Thanks: great digest"

        typed = await fake_discord.dispatch_autocomplete("topic", {"name": "rag"}, focused="name")
        assert [c["name"] for c in await typed.autocomplete_choices()] == ["rag-0", "rag-1", "rag-2"]

        await fake_discord.dispatch_reaction(
            int(shown["id"]), "🔥", user_id=fake_discord.state.user_id("alice")
        )
        await fake_discord.wait_for(lambda: seen(bot)["reactions"], what="on_raw_reaction_add")
    assert seen(bot)["reactions"] == [(int(shown["id"]), "🔥", fake_discord.state.user_id("alice"))]


async def test_interaction_rules_are_enforced(fake_discord: FakeDiscord) -> None:
    fake_discord.interaction_deadline = 0.2  # /slow sleeps 0.3 s
    bot = make_bot()
    async with run_client(bot, fake_discord):
        await bot.tree.sync()
        late = await fake_discord.dispatch_interaction("slow")
        await fake_discord.wait_for(lambda: fake_discord.violations, what="late response")
        many = await fake_discord.dispatch_autocomplete("topic", {"name": "many"}, focused="name")
        await fake_discord.wait_for(lambda: len(fake_discord.violations) > 1, what="autocomplete check")
        answered = await fake_discord.dispatch_interaction("paper", {"arxiv_id": "1"})
        await answered.original_message()
        again = {"type": 4, "data": {"content": "again", "allowed_mentions": {"parse": []}}}
        url = f"{fake_discord.api_base}/interactions/{answered.id}/{answered.token}/callback"
        async with aiohttp.ClientSession() as session, session.post(url, json=again) as response:
            second = await response.json()
    assert late.callbacks == []  # Discord answered 404 Unknown interaction
    assert many.choices is None  # rejected with 400 Invalid Form Body
    assert second["code"] == 40060 and len(answered.callbacks) == 1
    reported = [v.message for v in fake_discord.clear_violations()]
    assert "first response" in reported[0] and "defer()" in reported[0]
    assert "body.data.choices: 30 items, at most 25 allowed" in reported
    assert "body.data.choices: Must be 25 or fewer in length. (30)" in reported
    assert "second callback (type 4)" in reported[-1]


async def test_expired_interaction_token_is_rejected(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        await bot.tree.sync()
        handle = await fake_discord.dispatch_interaction("later")
        await handle.response()
        fake_discord.advance_clock(16 * 60)
        with pytest.raises(discord.HTTPException) as raised:
            await seen(bot)["interactions"][0].followup.send("too late")
    assert raised.value.status == 401 and raised.value.code == 50027
    assert "min after dispatch" in fake_discord.clear_violations(ViolationKind.INTERACTION)[0].message


# -- messages -------------------------------------------------------------------------------------


async def test_message_event_gets_a_reply_without_pings(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    channel = general(fake_discord)
    async with run_client(bot, fake_discord):
        asked = await fake_discord.dispatch_message(
            channel, f"<@{fake_discord.state.bot_user_id}> what is RAG? cc @everyone"
        )
        reply = await fake_discord.wait_for_message(channel, after=int(asked["id"]))
    assert reply["content"].startswith("You asked:")
    assert reply["message_reference"]["message_id"] == asked["id"]
    assert reply["mentions"] == [] and not reply["mention_everyone"]
    sent = fake_discord.requests_to(MESSAGES)[0].json
    assert sent["allowed_mentions"] == {"parse": []}  # AllowedMentions.none(), set once on the Bot
    fake_discord.assert_no_pings()


async def test_ping_checker_catches_a_bot_without_allowed_mentions(fake_discord: FakeDiscord) -> None:
    bot = make_bot(allowed_mentions=None)
    async with run_client(bot, fake_discord):
        text_channel = bot.get_channel(general(fake_discord))
        assert isinstance(text_channel, discord.TextChannel)
        sent = await text_channel.send("@everyone today's digest is out")
    assert sent.mention_everyone  # without allowed_mentions Discord really pings the whole server
    with pytest.raises(AssertionError, match=r"no allowed_mentions.*content mentions @everyone"):
        fake_discord.assert_no_pings()
    assert len(fake_discord.clear_violations(ViolationKind.PING)) == 1


async def test_without_message_content_intent_the_bot_sees_no_text(fake_discord: FakeDiscord) -> None:
    bot = make_bot(message_content=False)
    mention = f"<@{fake_discord.state.bot_user_id}> hello"
    async with run_client(bot, fake_discord):
        await fake_discord.dispatch_message(general(fake_discord), "plain text")
        await fake_discord.dispatch_message(general(fake_discord), mention)
        await fake_discord.wait_for(lambda: len(seen(bot)["messages"]) >= 2, what="on_message")
    assert seen(bot)["messages"][:2] == ["", mention]  # mentions of the bot keep their content


async def test_history_threads_and_restart_keep_state(
    fake_discord: FakeDiscord, discord_spec: DiscordSpec
) -> None:
    channel = general(fake_discord)
    for n in range(5):
        store_message(fake_discord, channel, f"m{n}")
    bot = make_bot()
    async with run_client(bot, fake_discord):
        text_channel = bot.get_channel(channel)
        assert isinstance(text_channel, discord.TextChannel)
        history = [m.content async for m in text_channel.history(limit=3)]
        oldest = [m.content async for m in text_channel.history(limit=2, oldest_first=True)]
        sent = await text_channel.send("Digest for today")
        thread = await sent.create_thread(name="Discuss the digest")
        await thread.send("Questions here")
        await sent.add_reaction("📄")
    assert history == ["m4", "m3", "m2"] and oldest == ["m0", "m1"]
    assert thread.id == sent.id  # a thread started from a message shares its id
    assert [m["content"] for m in fake_discord.messages_in(thread.id)] == ["Questions here"]
    assert fake_discord.state.message(sent.id)["reactions"][0]["me"] is True

    # A second Discord process over the same state: a restarted bot sees what was posted before.
    async with FakeDiscord(fake_discord.state, spec=discord_spec) as restarted:
        with point_discord_at(restarted.api_base, restarted.gateway_url):
            bot = make_bot()
            async with run_client(bot, restarted):
                text_channel = bot.get_channel(channel)
                assert isinstance(text_channel, discord.TextChannel)
                latest = [m.content async for m in text_channel.history(limit=1)]
        restarted.assert_valid()
    assert latest == ["Digest for today"]


def store_message(fake: FakeDiscord, channel: int, content: str) -> None:
    """History written before any bot connects (stored only, nobody to dispatch to)."""
    fake.state.create_message(channel, author_id=fake.state.user_id("alice"), content=content)


# -- validation -----------------------------------------------------------------------------------


async def test_validator_reports_invalid_requests(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    channel = general(fake_discord)
    async with run_client(bot, fake_discord):
        route = discord.http.Route("POST", "/channels/{channel_id}/messages", channel_id=channel)
        with pytest.raises(discord.HTTPException) as bad_body:
            await bot.http.request(
                route, json={"content": 5, "embeds": "none", "allowed_mentions": {"parse": []}}
            )
        text_channel = bot.get_channel(channel)
        assert isinstance(text_channel, discord.TextChannel)
        with pytest.raises(discord.HTTPException) as too_long:
            await text_channel.send("x" * 2001)
        huge = [discord.Embed(title="t", description="d" * 4000) for _ in range(2)]
        with pytest.raises(discord.HTTPException):
            await text_channel.send(embeds=huge)
        with pytest.raises(discord.HTTPException):
            await text_channel.send(file=discord.File(__file__), embed=discord.Embed(title="x" * 300))
    assert bad_body.value.status == 400 and bad_body.value.code == 50035
    assert too_long.value.code == 50035 and "2000 or fewer" in str(too_long.value)
    with pytest.raises(AssertionError) as failure:
        fake_discord.assert_valid()
    report = str(failure.value)
    assert "body.content: 5 is not of type 'string'" in report
    assert "body.embeds: 'none' is not of type 'array'" in report
    assert "body.content: Must be 2000 or fewer in length. (2001)" in report
    assert "Embed size exceeds maximum size of 6000 (8002" in report
    assert "body.embeds[0].title: 300 characters, at most 256 allowed" in report  # from payload_json
    multipart = fake_discord.requests_to(MESSAGES)[-1]
    assert multipart.multipart and multipart.files[0].filename == "test_fakediscord.py"
    assert fake_discord.messages_in(channel) == []  # Discord stored none of them
    fake_discord.clear_violations()


def test_spec_lookup_and_error_messages(discord_spec: DiscordSpec) -> None:
    original = discord_spec.find_operation("patch", "/webhooks/1/abc/messages/@original")
    assert original is not None and original.template.endswith("/messages/@original")
    assert discord_spec.find_operation("get", "/nope") is None
    problems = discord_spec.validate_request(
        "post", "/interactions/1/tok/callback", json_body={"type": 4, "data": {"content": 5}}, has_body=True
    )
    assert problems == ["body.data.content: 5 is not of type 'string', 'null'"]  # the matching union branch
    assert discord_spec.validate_response(
        "get", "/users/@me", 200, {"id": "1"}, headers={"Authorization": "Bot x"}
    )


# -- fault injection and the gateway --------------------------------------------------------------


async def test_rate_limits_are_survived_and_the_message_posted_once(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    channel = general(fake_discord)
    fake_discord.server_error(MESSAGES, times=1, status=502)  # first: discord.py waits 1 + 2 * attempt s
    fake_discord.rate_limit(MESSAGES, times=2, retry_after=0.1)
    fake_discord.rate_limit(MESSAGES, times=1, retry_after=0.1, is_global=True)
    async with run_client(bot, fake_discord):
        text_channel = bot.get_channel(channel)
        assert isinstance(text_channel, discord.TextChannel)
        await text_channel.send("posted despite 429s and a 502")
    assert [r.status for r in fake_discord.requests_to(MESSAGES)] == [502, 429, 429, 429, 200]
    assert [m["content"] for m in fake_discord.messages_in(channel)] == ["posted despite 429s and a 502"]


async def test_close_4000_resumes_and_replays_missed_events(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        session = fake_discord.gateway.session
        assert session is not None
        await fake_discord.gateway.disconnect(Close.UNKNOWN_ERROR)
        assert fake_discord.gateway.connection is None  # so the next event waits for RESUME
        await fake_discord.dispatch_message(general(fake_discord), "sent while the bot was away")
        await fake_discord.wait_for(lambda: seen(bot)["resumed"] and seen(bot)["messages"], what="resume")
    resume = fake_discord.gateway.resumes[0]
    assert resume["session_id"] == session.id and resume["token"] == fake_discord.token
    second = fake_discord.gateway.connections[1]
    assert second.path == "/gateway/resume"  # READY's resume_gateway_url
    replayed = [f.event for f in fake_discord.gateway.frames if f.connection == 2 and f.event]
    assert replayed == ["MESSAGE_CREATE", "RESUMED"]
    assert len(fake_discord.gateway.identifies) == 1
    assert seen(bot)["messages"] == ["sent while the bot was away"]


async def test_close_4009_makes_the_bot_identify_again(fake_discord: FakeDiscord) -> None:
    bot = make_bot()
    async with run_client(bot, fake_discord):
        first = fake_discord.gateway.session
        await fake_discord.gateway.disconnect(Close.SESSION_TIMED_OUT)
        # discord.py tries RESUME, gets INVALID_SESSION, waits its 5 s identify delay, identifies.
        await fake_discord.wait_for(
            lambda: len(fake_discord.gateway.identifies) == 2, timeout=15, what="IDENTIFY"
        )
        await fake_discord.wait_until_ready()
    invalid = [f for f in fake_discord.gateway.frames if f.op == Op.INVALID_SESSION]
    assert len(fake_discord.gateway.resumes) == 1 and invalid[0].payload["d"] is False
    assert fake_discord.gateway.session is not first


async def test_permissions_are_enforced(fake_discord: FakeDiscord) -> None:
    state = fake_discord.state
    papers = state.channel_id("papers")
    state.deny_bot(papers, "send_messages")
    state.overwrite_commands(
        None, [{"name": "admin", "description": "x", "default_member_permissions": "32"}]
    )
    bot = make_bot()
    async with run_client(bot, fake_discord):
        text_channel = bot.get_channel(papers)
        assert isinstance(text_channel, discord.TextChannel)
        assert not text_channel.permissions_for(text_channel.guild.me).send_messages  # the cache agrees
        with pytest.raises(discord.Forbidden) as refused:
            await text_channel.send("digest")
        with pytest.raises(PermissionError, match="bob cannot see /admin"):
            await fake_discord.dispatch_interaction("admin")
    assert refused.value.code == 50013
    assert fake_discord.messages_in(papers) == []


def test_state_can_be_built_for_other_servers() -> None:
    state = FakeDiscordState(default_world=False)
    guild = state.add_guild("Other Lab")
    channel = state.add_channel(guild, "digest")
    state.deny_bot(channel, "send_messages")
    assert not state.has_permissions(state.bot_user_id, channel, "send_messages")
    assert state.has_permissions(state.owner_id, channel, "send_messages")


def test_hand_checked_limits_and_ping_rules() -> None:
    embed = {
        "title": "t" * 257,
        "description": "d" * 4097,
        "fields": [{"name": "n" * 257, "value": "v" * 1025}] + [{"name": "n", "value": "v"}] * 25,
        "footer": {"text": "f" * 2049},
        "author": {"name": "a" * 257},
    }
    problems = {p.where(): p.code for p in message_problems({"content": "c" * 2001, "embeds": [embed] * 11})}
    assert problems["body.content"] == "BASE_TYPE_MAX_LENGTH"
    assert problems["body.embeds"] in ("BASE_TYPE_MAX_LENGTH", "MAX_EMBED_SIZE_EXCEEDED")
    for where in (
        "title",
        "description",
        "fields",
        "fields[0].name",
        "fields[0].value",
        "footer.text",
        "author.name",
    ):
        assert f"body.embeds[0].{where}" in problems, where
    assert [p.code for p in message_problems({"embeds": [{"fields": [{"name": "", "value": "x"}]}]})] == [
        "BASE_TYPE_REQUIRED"
    ]
    assert message_problems({"content": "c" * 2000, "embeds": [{"description": "d" * 4096}]}) == []

    none = MentionAllowance()
    assert ping_problems({"content": "hi", "allowed_mentions": {"parse": []}}, none, is_reply=False) == []
    assert ping_problems({"allowed_mentions": {"parse": ["users"]}}, none, is_reply=False)
    assert ping_problems({"allowed_mentions": {"parse": [], "users": [1]}}, none, is_reply=False)
    replying = {"allowed_mentions": {"parse": [], "replied_user": True}}
    assert ping_problems(replying, none, is_reply=True)
    assert ping_problems(replying, MentionAllowance(replied_user=True), is_reply=True) == []
    assert (
        ping_problems({"allowed_mentions": {"users": [1]}}, MentionAllowance(users={1}), is_reply=False) == []
    )


# --- a plugin for any project ---------------------------------------------------------------------

PACKAGE = Path(__file__).resolve().parent / "fakediscord"


def test_the_fake_imports_nothing_of_paperbot_and_only_itself_relatively() -> None:
    """It models Discord, not paperbot: no `bot` import, and no absolute import of the tests package
    (lazy imports inside functions included), so the directory can be copied into another project."""
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] in ("bot", "tests")
            ]
    assert offenders == []
    code = "import sys, tests.fakediscord.plugin; print([m for m in sys.modules if m.split('.')[0] == 'bot'])"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACKAGE.parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]"


OTHER_PROJECT_TESTS = """
import sys

import discord
import pytest

from othertests.fakediscord import FakeDiscord, FakeDiscordState, run_client


def general(fake: FakeDiscord) -> int:
    return fake.state.channel_id("general")


@pytest.mark.asyncio
@pytest.mark.fakediscord(state=FakeDiscordState(bot_name="otherbot"))
async def test_a_plain_client_posts(fake_discord: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    async with run_client(client, fake_discord):
        assert client.user.name == "otherbot"
        channel = client.get_channel(general(fake_discord))
        await channel.send("hello", allowed_mentions=discord.AllowedMentions.none())
    assert [m["content"] for m in fake_discord.messages_in(general(fake_discord))] == ["hello"]
    assert not [name for name in sys.modules if name.split(".")[0] in ("bot", "tests")]


@pytest.mark.asyncio
async def test_a_message_that_could_ping(fake_discord: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
    async with run_client(client, fake_discord):
        await client.get_channel(general(fake_discord)).send("hello")  # no allowed_mentions
"""


def test_another_project_uses_the_plugin_by_its_ini_file_alone(tmp_path: Path) -> None:
    """A copy of the package under another name, registered with `-p` in the other project's ini
    file, none of paperbot's conftest: a clean test passes, a message that could ping fails at teardown."""
    project = tmp_path / "other"
    package = project / "othertests"
    shutil.copytree(PACKAGE, package / "fakediscord", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")
    (project / "pytest.ini").write_text(
        textwrap.dedent(f"""\
            [pytest]
            addopts = -p othertests.fakediscord.plugin
            discord_spec = {os.path.relpath(SPEC_PATH, project)}
            asyncio_default_fixture_loop_scope = function
            """)
    )
    (project / "test_other.py").write_text(OTHER_PROJECT_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISCORD_OPENAPI_SPEC")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_other.py"],
        cwd=project,
        env={**env, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    # pytest counts a test whose teardown fails as passed (its call) and as an error (its teardown)
    assert re.search(r"\b2 passed\b.*\b1 error\b", output) and "failed" not in output, output
    assert "ERROR at teardown of test_a_message_that_could_ping" in output, output
    assert "messages that could ping @everyone, roles or users" in output, output


def test_a_missing_spec_fails_with_where_to_point_it(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (tmp_path / "test_it.py").write_text("def test_it(discord_spec):\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fakediscord.plugin",
         "--discord-spec", str(tmp_path / "nowhere.json"), "test_it.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(PACKAGE.parents[1])},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"no Discord OpenAPI description at {tmp_path / 'nowhere.json'}" in result.stdout, result.stdout
