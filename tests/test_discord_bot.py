"""paperbot end to end: the real discord.py against the fake Discord, the real services over a real
Qdrant Edge index, the real LLM client against the scripted OpenAI-compatible server.

At teardown the ``fake_discord`` fixture fails any test whose requests broke Discord's OpenAPI
description or its limits, or could have pinged anyone.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import time
from typing import Any

import pytest

from bot.discord.bot import ShardedPaperBot
from bot.discord.formatting import first_sentences
from bot.discord.progress import QUEUE_MARK, queue_text
from bot.llm import GenerationQueue
from bot.rag.extractive import BUSY_LABEL, EXTRACTIVE_LABEL
from tests.fakediscord import FakeDiscord, Intent, InteractionHandle, MessageFlag
from tests.fakediscord.interactions import iter_components
from tests.support.discord_world import MakeWorld, World, final_message, llm_requests_since, refusal
from tests.support.paperbot_discord import (
    HF_DAY,
    HOSTILE,
    LONG,
    STANDALONE_PREFIX,
    captured_logs,
    log_events,
    reset_logging,
)
from tests.support.scripted_llm import (
    RecordedRequest,
    ScriptedDelay,
    ScriptedError,
    ScriptedReply,
    prompt_text,
)

CALLBACK = "POST /interactions/{interaction_id}/{interaction_token}/callback"
EDIT_ORIGINAL = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"
GLOBAL_COMMANDS = "PUT /applications/{application_id}/commands"
GUILD_COMMANDS = "PUT /applications/{application_id}/guilds/{guild_id}/commands"
VIBE = "2608.15265"  # VibeWorlding, a real Hugging Face daily paper of the seed corpus
REFERENCE = re.compile(r"\(reference `([0-9a-f]{8})`\)")


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


# -- helpers --------------------------------------------------------------------------------------


def field(embed: dict[str, Any], name: str) -> str | None:
    return next((f["value"] for f in embed.get("fields", []) if f["name"] == name), None)


def custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for c in iter_components(message["components"]) if c.get("custom_id")]


def excerpt_titles(request: RecordedRequest) -> list[str]:
    block = prompt_text(request.json).rsplit("<<<EXCERPTS", 1)[1].split("EXCERPTS>>>", 1)[0]
    return re.findall(r"^\[\d+\] (.+)$", block, flags=re.MULTILINE)


def question_of(request: RecordedRequest) -> str:
    return prompt_text(request.json).rsplit("Question:", 1)[1].split("\n", 1)[0].strip()


def _code_file(task: asyncio.Task[Any]) -> str:
    code = getattr(task.get_coro(), "cr_code", None)
    return str(code.co_filename) if code is not None else repr(task)


def bot_messages_after(fake: FakeDiscord, channel_id: int, after: int) -> list[dict[str, Any]]:
    return [m for m in fake.bot_messages(channel_id) if int(m["id"]) > after]


# -- start-up, intents, sync, shutdown ------------------------------------------------------------


async def test_setup_hook_loads_cogs_and_syncs_commands_and_close_is_clean(world: World) -> None:
    fake = world.fake
    with captured_logs(world.settings) as logs:
        async with world.bot() as bot:
            assert set(bot.cogs) == {"Search", "Ask", "Paper", "Help", "Chat"}
            identify = fake.gateway.identifies[0]
            http_session = bot.http._HTTPClient__session
            gateway = fake.gateway.connection
            handle = await fake.dispatch_interaction("help")
            await handle.original_message()
            asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> What is SHERL?")
            await fake.wait_for_message(int(asked["id"]))  # a mention is a question, not a prefix command
        tasks_left = [_code_file(t) for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    # Start-up work happens in setup_hook, before the gateway connection; nothing waits for on_ready.
    assert not any("on_ready" in vars(cls) for cls in type(bot).__mro__ if cls.__module__.startswith("bot."))
    assert not bot.extra_events.get("on_ready")
    assert all(name != "on_ready" for cog in bot.cogs.values() for name, _ in cog.get_listeners())
    assert [r.key for r in fake.requests[:3]] == [
        "GET /users/@me",
        "GET /oauth2/applications/@me",
        GLOBAL_COMMANDS,
    ]
    assert {c["name"] for c in fake.state.global_commands.values()} == {"search", "ask", "paper", "help"}
    search = next(c for c in fake.state.global_commands.values() if c["name"] == "search")
    assert [o["name"] for o in search["options"]] == ["query", "since", "limit", "private"]
    assert fake.requests_to(GUILD_COMMANDS) == []
    # Intents: guilds, guild messages and message content; no other privileged intent.
    intents = identify["intents"]
    assert intents & Intent.GUILDS and intents & Intent.GUILD_MESSAGES and intents & Intent.MESSAGE_CONTENT
    assert not intents & (Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES)
    # close(): the HTTP session and the websocket are closed, no task of the bot is left running.
    assert bot.is_closed() and http_session.closed
    assert gateway is not None and gateway.ws.closed
    assert [f for f in tasks_left if "/discord/" in f or "/bot/" in f] == []
    events = log_events(logs)
    names = [e["event"] for e in events]
    assert (
        names.index("discord.commands_synced")
        < names.index("discord.setup_done")
        < names.index("discord.closing")
    )
    assert not [e for e in events if e["level"] in ("error", "critical")]


async def test_dev_guilds_get_the_commands_instantly(
    fake_discord: FakeDiscord, make_world: MakeWorld
) -> None:
    guild_id = fake_discord.state.default_guild.id
    world = await make_world(dev_guild_ids=[guild_id])
    async with world.bot():
        handle = await fake_discord.dispatch_interaction("help")
        await handle.original_message()
    synced = fake_discord.requests_to(GUILD_COMMANDS)
    assert len(synced) == 1 and synced[0].path.endswith(f"/guilds/{guild_id}/commands")
    assert fake_discord.requests_to(GLOBAL_COMMANDS) == []
    assert {c["name"] for c in fake_discord.state.guild_commands[guild_id].values()} == {
        "search",
        "ask",
        "paper",
        "help",
    }


async def test_without_message_content_the_bot_still_answers_commands_and_mentions(
    make_world: MakeWorld,
) -> None:
    world = await make_world(message_content_intent=False)
    fake, general = world.fake, world.channel()
    with captured_logs(world.settings) as logs:
        async with world.bot():
            assert not fake.gateway.identifies[0]["intents"] & Intent.MESSAGE_CONTENT
            assert (await (await fake.dispatch_interaction("help")).original_message())["embeds"]
            asked = await fake.dispatch_message(general, f"<@{world.bot_id}> What is SHERL?")
            thread = int(asked["id"])
            first = await fake.wait_for_message(thread)
            # Without the intent a plain follow-up arrives without text: the bot cannot answer it and
            # must not answer "ask me something"; a follow-up that mentions the bot is answered.
            plain = await fake.dispatch_message(thread, "and how does it save memory?")
            mention = await fake.dispatch_message(thread, f"<@{world.bot_id}> how does it save memory?")
            await fake.wait_for_message(thread, after=int(mention["id"]))
    assert first["embeds"][0]["title"].startswith("Sources")
    replies = bot_messages_after(fake, thread, int(plain["id"]))
    assert len(replies) == 1 and int(replies[0]["id"]) > int(mention["id"])
    warning = next(e for e in log_events(logs) if e["event"] == "discord.message_content_intent_off")
    assert warning["level"] == "warning" and "mentions" in warning["detail"]


async def test_sharding_setting_builds_an_auto_sharded_bot(make_world: MakeWorld) -> None:
    world = await make_world(shard_count=1)
    async with world.bot() as bot:
        assert isinstance(bot, ShardedPaperBot)
        assert (await (await world.fake.dispatch_interaction("help")).original_message())["embeds"]
    assert world.fake.gateway.identifies[0]["shard"] == [0, 1]


async def test_gateway_close_4000_resumes_without_redoing_start_up(world: World) -> None:
    fake = world.fake
    async with world.bot():
        await fake.gateway.disconnect(4000)
        handle = await fake.dispatch_interaction("help")  # buffered, replayed after RESUME
        assert (await handle.original_message(timeout=10))["embeds"]
    assert len(fake.gateway.resumes) == 1 and len(fake.gateway.identifies) == 1
    assert len(fake.requests_to(GLOBAL_COMMANDS)) == 1  # setup_hook ran once


# -- /search and its buttons ----------------------------------------------------------------------


async def test_search_shows_paper_cards_with_buttons(world: World) -> None:
    fake = world.fake
    expected = next(p for p in _hf_papers() if p.paper_id == VIBE)
    async with world.bot():
        handle = await fake.dispatch_interaction(
            "search", {"query": "can multimodal agents construct 3D open worlds", "limit": 3}
        )
        assert (await handle.response())["type"] == 5  # deferred at once
        message = await handle.original_message()
    cards = message["embeds"]
    assert 1 <= len(cards) <= 3
    top = cards[0]
    assert top["title"] == expected.title
    assert top["url"] == f"https://arxiv.org/abs/{VIBE}"
    assert top["description"] == first_sentences(expected.ai_summary or "")
    assert field(top, "Authors") == ", ".join(expected.authors[:6]) + " et al."
    details = field(top, "Details") or ""
    assert "2026-08-15" in details and f"▲ {expected.upvotes}" in details
    assert f"[PDF](https://arxiv.org/pdf/{VIBE})" in (field(top, "Links") or "")
    assert top["footer"]["text"] == f"#1 · {VIBE}"
    ids = custom_ids(message)
    assert ids[:3] == [f"pb:sum:{VIBE}", f"pb:ask:{VIBE}", f"pb:sim:{VIBE}"]
    assert len(ids) == 3 * len(cards) and len(message["components"]) == len(cards)  # one row per paper
    labels = [c["label"] for c in iter_components(message["components"]) if c.get("label")]
    assert labels[:3] == ["Summarize #1", "Ask about this #1", "Similar papers #1"]
    assert not message["flags"] & MessageFlag.EPHEMERAL


async def test_buttons_summarize_ask_and_similar_work_even_after_a_restart(world: World) -> None:
    fake, llm = world.fake, world.llm
    vibe = next(p for p in _hf_papers() if p.paper_id == VIBE)
    async with world.bot():
        results = await (
            await fake.dispatch_interaction(
                "search", {"query": "agents constructing 3D open worlds", "limit": 3}
            )
        ).original_message()
        message_id = int(results["id"])

        summarize = await fake.dispatch_component(message_id, f"pb:sum:{VIBE}")
        summary = await summarize.original_message()
        assert summary["flags"] & MessageFlag.EPHEMERAL
        assert summary["embeds"][0]["title"] == vibe.title
        assert summary["embeds"][0]["description"] == vibe.ai_summary

        similar = await fake.dispatch_component(message_id, f"pb:sim:{VIBE}")
        shown = await similar.original_message()
        assert shown["flags"] & MessageFlag.EPHEMERAL and shown["embeds"]
        assert all(not e["footer"]["text"].endswith(VIBE) for e in shown["embeds"])
        assert len(shown["embeds"]) == len({e["title"] for e in shown["embeds"]})  # one card per paper

        asking = await fake.dispatch_component(message_id, f"pb:ask:{VIBE}")
        modal = await asking.opened_modal()
        (text_input,) = [c["custom_id"] for c in iter_components(modal["components"]) if c.get("type") == 4]
        before = len(llm.requests)
        submitted = await fake.dispatch_modal_submit(asking, {text_input: "What does the gym measure?"})
        answer = await final_message(submitted)
    assert answer["flags"] & MessageFlag.EPHEMERAL
    assert answer["content"] == "About “What does the gym measure?”: see the first paper [1]."
    assert answer["embeds"][0]["description"].startswith(f"**[1]** [{vibe.title}]")
    # Restricted to that paper: every excerpt the LLM saw comes from it.
    generations = llm_requests_since(llm, before)
    assert len(generations) == 2
    assert all(set(excerpt_titles(r)) == {vibe.title} for r in generations)

    # A new bot process: the buttons of the old message are routed by their custom_id alone.
    async with world.bot():
        again = await fake.dispatch_component(message_id, f"pb:sum:{VIBE}")
        assert (await again.original_message())["embeds"][0]["title"] == vibe.title
        opened = await fake.dispatch_component(message_id, f"pb:ask:{VIBE}")
        assert (await opened.opened_modal())["title"] == "Ask about this paper"


async def test_search_since_filters_and_bad_input_gets_a_clear_ephemeral_message(world: World) -> None:
    fake = world.fake
    async with world.bot():
        bad = [
            await refusal(await fake.dispatch_interaction("search", {"query": "agents", "since": value}))
            for value in ("last week", "2026-13-01", "9999y")
        ]
        empty_query = await refusal(await fake.dispatch_interaction("search", {"query": "   "}))
        recent = await (
            await fake.dispatch_interaction("search", {"query": "agents", "since": "2026-08-16", "limit": 10})
        ).original_message()
        future = await fake.dispatch_interaction("search", {"query": "agents", "since": "2030-01-01"})
        nothing = await future.original_message()
    for text, value in zip(bad, ("last week", "2026-13-01", "9999y"), strict=True):
        assert text.startswith("`since` must be a date like 2026-08-01 or a span like 7d") and value in text
    assert empty_query.startswith("The search query is empty")
    dates = [re.search(r"\d{4}-\d{2}-\d{2}", field(e, "Details") or "") for e in recent["embeds"]]
    assert dates and all(d is not None and d.group() >= "2026-08-16" for d in dates)
    assert nothing["content"] == "No papers found for “agents” since 2030-01-01."
    assert nothing["components"] == []


# -- /ask -----------------------------------------------------------------------------------------


async def test_ask_defers_at_once_shows_progress_streams_about_once_a_second(world: World) -> None:
    fake, llm = world.fake, world.llm
    final = "Titans add a neural long-term memory that learns to memorize at test time [1]. " * 3
    streamed = "Reasoning: excerpt [1] describes the memory module.\nAnswer: " + final.strip()
    llm.script(
        ScriptedReply("Reasoning: a draft.\nAnswer: a draft [1]."),
        ScriptedReply(streamed, chunk_chars=4, chunk_delay_s=3.2 / (len(streamed) / 4)),
    )
    interval = world.settings.discord.stream_edit_interval_s
    assert interval == 1.0  # the production default is what is measured
    async with world.bot():
        handle = await fake.dispatch_interaction("ask", {"question": "How do models memorize at test time?"})
        answer = await final_message(handle, within=15)
    callback = fake.requests_to(CALLBACK)[-1]
    assert callback.json["type"] == 5 and callback.at - handle.record.dispatched_at < 1.0
    edits = fake.requests_to(EDIT_ORIGINAL)
    progress, last = edits[:-1], edits[-1]
    contents = [r.json["content"] for r in progress]
    assert contents[0] == "🔎 searching the papers… (1/2)"
    assert sum(c.startswith("✍️") for c in contents) >= 2  # the answer streamed into the message
    # Throttled: never two progress edits within the interval, so at most one per second overall.
    gaps = [b.at - a.at for a, b in itertools.pairwise(progress)]
    assert gaps and min(gaps) >= interval - 0.1, gaps
    # (arrival times at the fake jitter by the same 0.1 s the gap check allows)
    assert len(progress) <= (progress[-1].at - progress[0].at) / (interval - 0.1) + 1
    assert last.json["content"] == final.strip() == answer["content"]
    assert [e["title"] for e in answer["embeds"]] == ["Sources"]
    assert answer["embeds"][0]["description"].startswith("**[1]** ")
    assert not answer["flags"] & MessageFlag.EPHEMERAL


async def test_long_answers_are_split_on_paragraphs_across_followups(world: World) -> None:
    fake, llm = world.fake, world.llm
    paragraphs = [f"Paragraph {n}: " + ("Titans memorize at test time [1]. " * 20).strip() for n in range(5)]
    assert all(600 < len(p) < 1000 for p in paragraphs)
    llm.script(ScriptedReply("Answer: draft [1]"), ScriptedReply("Answer: " + "\n\n".join(paragraphs)))
    async with world.bot():
        handle = await fake.dispatch_interaction("ask", {"question": "Explain Titans in detail"})
        await handle.followup(1, timeout=15)
        original = await final_message(handle)
    messages = [original, *handle.followups]
    assert [m["content"] for m in messages] == [
        "\n\n".join(paragraphs[0:2]),
        "\n\n".join(paragraphs[2:4]),
        paragraphs[4],
    ]
    assert all(len(m["content"]) <= 2000 for m in messages)
    assert [bool(m["embeds"]) for m in messages] == [False, False, True]  # Sources under the last part
    assert messages[-1]["embeds"][0]["title"] == "Sources"


async def test_when_the_llm_is_down_the_answer_is_extractive_and_replaces_the_progress(world: World) -> None:
    world.llm.script(ScriptedError(500))
    async with world.bot():
        handle = await world.fake.dispatch_interaction("ask", {"question": "How does SHERL save memory?"})
        answer = await final_message(handle)
    assert answer["content"].startswith(EXTRACTIVE_LABEL) and re.search(r"\[\d\]", answer["content"])
    assert answer["embeds"][0]["title"] == "Sources" and "SHERL" in answer["embeds"][0]["description"]
    assert handle.followups == []


async def test_private_ask_is_ephemeral(world: World) -> None:
    fake = world.fake
    async with world.bot():
        handle = await fake.dispatch_interaction("ask", {"question": "What is SHERL?", "private": True})
        callback = await handle.response()
        answer = await final_message(handle)
    assert callback["type"] == 5 and callback["data"]["flags"] & MessageFlag.EPHEMERAL
    assert answer["flags"] & MessageFlag.EPHEMERAL and answer["embeds"][0]["title"] == "Sources"
    assert fake.messages_in(world.channel(), ephemeral=False) == []


# -- /paper and /help -----------------------------------------------------------------------------


async def test_paper_accepts_arxiv_ids_and_links(world: World) -> None:
    fake = world.fake
    vibe = next(p for p in _hf_papers() if p.paper_id == VIBE)
    inputs = [
        VIBE,
        f"arXiv:{VIBE}v2",
        f"https://arxiv.org/abs/{VIBE}",
        f"https://arxiv.org/pdf/{VIBE}v1",
        f"arxiv.org/pdf/{VIBE}.pdf",
        f"https://huggingface.co/papers/{VIBE}",
        f"<https://www.arxiv.org/abs/{VIBE}>",
    ]
    async with world.bot():
        cards = [
            await (await fake.dispatch_interaction("paper", {"id_or_url": value})).original_message()
            for value in inputs
        ]
        unknown = await (
            await fake.dispatch_interaction("paper", {"id_or_url": "2609.99999"})
        ).original_message()
    for card in cards:
        (embed,) = card["embeds"]
        assert embed["title"] == vibe.title and embed["url"] == f"https://arxiv.org/abs/{VIBE}"
        assert embed["description"] == vibe.ai_summary
        assert "Code" in (field(embed, "Links") or "")
    assert unknown["content"].startswith("arXiv:2609.99999 isn't in paperbot's index yet")


async def test_paper_rejects_other_links_without_any_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, llm = world.fake, world.llm
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def recording_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        resolved.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    rejected = [
        f"https://evil.example/abs/{VIBE}",
        f"http://arxiv.org.evil.example/abs/{VIBE}",
        f"https://arxiv.org@evil.example/abs/{VIBE}",
        f"ftp://arxiv.org/abs/{VIBE}",
        "file:///etc/passwd",
        "https://huggingface.co/models/gpt2",
        f"https://arxiv.org/list/{VIBE}",
        "www.example.com",
        "not a paper",
        "javascript:alert(1)",
    ]
    async with world.bot():
        before = len(fake.requests)
        monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
        texts = [
            await refusal(await fake.dispatch_interaction("paper", {"id_or_url": value}))
            for value in rejected
        ]
        monkeypatch.undo()
        during = fake.requests[before:]
    for text in texts:
        assert re.match(
            r"(Only arxiv\.org and huggingface\.co/papers links|That link is not|`.*` is not an arXiv id)",
            text,
        ), text
    assert {r.key for r in during} == {CALLBACK}  # nothing but the refusals
    assert llm.requests == [] and resolved == []  # no lookup of any host, let alone a fetch


async def test_help_lists_every_command(world: World) -> None:
    async with world.bot():
        message = await (await world.fake.dispatch_interaction("help")).original_message()
    assert message["flags"] & MessageFlag.EPHEMERAL
    text = message["embeds"][0]["description"]
    for command in world.fake.state.global_commands.values():
        assert f"**/{command['name']}**" in text


# -- chat: mentions, replies, threads -------------------------------------------------------------


async def test_mention_answers_in_a_thread_that_remembers_even_after_a_restart(world: World) -> None:
    fake, llm = world.fake, world.llm
    general = world.channel()
    async with world.bot():
        asked = await fake.dispatch_message(general, f"<@{world.bot_id}> What is SHERL?")
        thread = int(asked["id"])  # a thread started from a message has the message's id
        first = await fake.wait_for_message(thread)
        before = len(llm.requests)
        follow = await fake.dispatch_message(thread, "how does it save memory?")
        second = await fake.wait_for_message(thread, after=int(follow["id"]))
        rewrite_request, *answer_requests = llm_requests_since(llm, before)
    channel = fake.state.channels[thread]
    assert channel["name"] == "What is SHERL?" and int(channel["owner_id"]) == world.bot_id
    assert first["content"] == "About “What is SHERL?”: see the first paper [1]."
    assert first["embeds"][0]["title"] == "Sources"
    assert [m["content"] for m in fake.bot_messages(general)] == []  # everything went to the thread
    history = prompt_text(rewrite_request.json)
    assert (
        f"User: What is SHERL?\nAssistant: {first['content']}\nFollow-up: how does it save memory?" in history
    )
    assert {question_of(r) for r in answer_requests} == {f"{STANDALONE_PREFIX} how does it save memory?"}
    assert (
        second["content"] == f"About “{STANDALONE_PREFIX} how does it save memory?”: see the first paper [1]."
    )

    # A restarted bot has no memory of its own: it reads the thread back from Discord.
    async with world.bot():
        before = len(llm.requests)
        later = await fake.dispatch_message(thread, "and is it fast?")
        await fake.wait_for_message(thread, after=int(later["id"]))
        rewrite_request = llm_requests_since(llm, before)[0]
    assert (
        f"User: What is SHERL?\nAssistant: {first['content']}\nUser: how does it save memory?\n"
        f"Assistant: {second['content']}\nFollow-up: and is it fast?"
    ) in prompt_text(rewrite_request.json)


async def test_follow_up_in_an_archived_thread_after_a_restart_still_has_its_history(world: World) -> None:
    fake, llm = world.fake, world.llm
    async with world.bot():
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> What is SHERL?")
        thread = int(asked["id"])
        first = await fake.wait_for_message(thread)
    fake.state.channels[thread]["thread_metadata"]["archived"] = True  # not in GUILD_CREATE any more
    async with world.bot() as bot:
        assert bot.get_channel(thread) is None
        fake.state.channels[thread]["thread_metadata"]["archived"] = False  # a post unarchives it
        before = len(llm.requests)
        later = await fake.dispatch_message(thread, "how does it save memory?")
        await fake.wait_for_message(thread, after=int(later["id"]))
        rewrite_request = llm_requests_since(llm, before)[0]
    assert f"User: What is SHERL?\nAssistant: {first['content']}\nFollow-up: how does it save memory?" in (
        prompt_text(rewrite_request.json)
    )
    assert [r.path for r in fake.requests_to("GET /channels/{channel_id}")] == [f"/channels/{thread}"]


async def test_reply_to_the_bot_continues_its_answer_in_a_new_thread(world: World) -> None:
    fake, llm = world.fake, world.llm
    general = world.channel()
    async with world.bot():
        answer = await final_message(await fake.dispatch_interaction("ask", {"question": "What is SHERL?"}))
        before = len(llm.requests)
        # A reply with the ping switched off: no mention, only the reference to the bot's message.
        reply = await fake.dispatch_message(
            general, "does it work for vision models?", reply_to=int(answer["id"]), mentions=[]
        )
        assert reply["mentions"] == []
        thread = int(reply["id"])
        answered = await fake.wait_for_message(thread)
        rewrite_request = llm_requests_since(llm, before)[0]
    assert fake.state.channels[thread]["name"] == "does it work for vision models?"
    assert answered["embeds"][0]["title"] == "Sources"
    assert f"Assistant: {answer['content']}\nFollow-up: does it work for vision models?" in (
        prompt_text(rewrite_request.json)
    )


async def test_where_threads_are_not_allowed_the_answer_is_a_reply_in_the_channel(world: World) -> None:
    fake, papers = world.fake, world.channel("papers")
    fake.state.deny_bot(papers, "create_public_threads")
    async with world.bot():
        asked = await fake.dispatch_message(papers, f"<@{world.bot_id}> What is SHERL?")
        answer = await fake.wait_for_message(papers, after=int(asked["id"]))
    assert answer["content"] == "About “What is SHERL?”: see the first paper [1]."
    assert answer["message_reference"]["message_id"] == asked["id"] and answer["mentions"] == []
    assert answer["embeds"][0]["title"] == "Sources"
    assert [
        r.status for r in fake.requests_to("POST /channels/{channel_id}/messages/{message_id}/threads")
    ] == [403]


# -- nothing pings anyone -------------------------------------------------------------------------


async def test_hostile_titles_questions_and_answers_never_ping(world: World) -> None:
    fake, llm = world.fake, world.llm
    general = world.channel()
    hostile_answer = "Answer: Ping storms @everyone @here <@&123> <@456> are studied in [1]."
    async with world.bot():
        results = await (
            await fake.dispatch_interaction("search", {"query": "ping storms adversarial titles", "limit": 3})
        ).original_message()
        llm.script(ScriptedReply(hostile_answer), ScriptedReply(hostile_answer))
        answer = await final_message(
            await fake.dispatch_interaction("ask", {"question": "@here ping <@456> what are ping storms?"})
        )
        card = await (
            await fake.dispatch_interaction("paper", {"id_or_url": HOSTILE.paper_id})
        ).original_message()
        llm.script(ScriptedReply(hostile_answer), ScriptedReply(hostile_answer))
        asked = await fake.dispatch_message(
            general, f"<@{world.bot_id}> @everyone what are ping storms <@&123>?"
        )
        in_thread = await fake.wait_for_message(int(asked["id"]))
    assert results["embeds"][0]["title"] == HOSTILE.title  # shown verbatim, as text
    assert "@everyone @here <@&123> <@456>" in answer["content"] and "@everyone" in in_thread["content"]
    assert field(card["embeds"][0], "Authors") == "Mallory <@789>, @here Eve"
    sent = [m for m in fake.bot_messages() if m["content"] or m["embeds"]]
    assert len(sent) >= 4
    for message in sent:
        assert (
            message["mentions"] == [] and message["mention_roles"] == [] and not message["mention_everyone"]
        )
    writes = [r for r in fake.requests if r.method in ("POST", "PATCH") and isinstance(r.json, dict)]
    for request in writes:
        body = request.json.get("data", request.json) if request.key == CALLBACK else request.json
        if "content" in body or "embeds" in body:
            assert body.get("allowed_mentions", {}).get("parse") == [], request


# -- Discord's limits -----------------------------------------------------------------------------


async def test_huge_paper_fields_fit_every_embed_limit(world: World) -> None:
    fake = world.fake
    async with world.bot():
        results = await (
            await fake.dispatch_interaction("search", {"query": "Gargantuan transformers", "limit": 10})
        ).original_message()
        card = await (
            await fake.dispatch_interaction("paper", {"id_or_url": LONG.paper_id})
        ).original_message()
        summary = await (
            await fake.dispatch_component(int(results["id"]), f"pb:sum:{LONG.paper_id}")
        ).original_message()
    assert all(r.status is not None and r.status < 400 for r in fake.requests)
    long_card = next(e for e in results["embeds"] if e["footer"]["text"].endswith(LONG.paper_id))
    for embed in (long_card, card["embeds"][0], summary["embeds"][0]):
        assert len(embed["title"]) <= 256 and embed["title"].endswith("…")
        assert len(embed.get("description", "")) <= 4096
        assert all(0 < len(f["value"]) <= 1024 for f in embed["fields"])
        assert _embed_chars(embed) <= 6000
        assert (field(embed, "Authors") or "").endswith("et al.")
        links = field(embed, "Links") or ""
        assert "[PDF](" in links and "[Code](" in links and "Project" not in links  # whole links only
    assert len(card["embeds"][0]["description"]) > 3000  # the summary is shortened, not dropped
    for message in fake.bot_messages():
        assert sum(_embed_chars(e) for e in message["embeds"]) <= 6000 and len(message["embeds"]) <= 10


def _embed_chars(embed: dict[str, Any]) -> int:
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + len(embed["footer"]["text"])
        + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    )


# -- cooldowns and limits -------------------------------------------------------------------------


async def test_user_cooldown_says_when_to_try_again(make_world: MakeWorld) -> None:
    world = await make_world(user_cooldown_s=30)
    fake, general = world.fake, world.channel()
    bob, alice = world.user("bob"), world.user("alice")
    async with world.bot():
        started = time.monotonic()
        await final_message(
            await fake.dispatch_interaction("ask", {"question": "What is SHERL?"}, user_id=bob)
        )
        again = await refusal(
            await fake.dispatch_interaction("ask", {"question": "And Titans?"}, user_id=bob)
        )
        elapsed = time.monotonic() - started
        other = await final_message(
            await fake.dispatch_interaction("ask", {"question": "And Titans?"}, user_id=alice)
        )
        mention = await fake.dispatch_message(general, f"<@{world.bot_id}> and Titans?", author_id=bob)
        told = await fake.wait_for_message(general, after=int(mention["id"]))
    wait = re.fullmatch(r"You're going a bit fast — try again in (\d+) s\.", again)
    assert wait, again
    assert 30 - elapsed - 1 <= int(wait.group(1)) <= 30  # the cooldown counts from the first ask
    assert other["embeds"]  # another user is not held back
    assert re.fullmatch(r"You're going a bit fast — try again in \d+ s\.", told["content"])
    assert told["message_reference"]["message_id"] == mention["id"]


async def test_guild_rate_limit_holds_back_the_whole_server(make_world: MakeWorld) -> None:
    world = await make_world(guild_rate_per_minute=2)
    fake = world.fake
    async with world.bot():
        started = time.monotonic()
        for user in ("alice", "bob"):
            handle = await fake.dispatch_interaction(
                "ask", {"question": "What is SHERL?"}, user_id=world.user(user)
            )
            await final_message(handle)
        third = await refusal(await fake.dispatch_interaction("ask", {"question": "And Titans?"}))
        elapsed = time.monotonic() - started
    told = re.fullmatch(r"This server is asking a lot right now — try again in (\d+) s\.", third)
    assert told, third
    # The first ask's slot frees 60 s after it was taken: what is left, however slow this machine is.
    assert 60 - elapsed - 1 <= int(told.group(1)) <= 60


async def test_question_length_and_empty_questions_get_clear_messages(world: World) -> None:
    fake, general = world.fake, world.channel()
    async with world.bot():
        empty = await refusal(await fake.dispatch_interaction("ask", {"question": "    "}))
        long = await fake.dispatch_message(general, f"<@{world.bot_id}> " + "why " * 300)
        told = await fake.wait_for_message(general, after=int(long["id"]))
        bare = await fake.dispatch_message(general, f"<@{world.bot_id}>")
        hint = await fake.wait_for_message(general, after=int(bare["id"]))
    assert empty == "The question is empty; ask something about the papers"
    assert told["content"] == "The question is 1199 characters long; the limit is 1000"
    assert hint["content"] == "Ask me something about the papers."
    assert (
        world.llm.requests == []
        and fake.requests_to("POST /channels/{channel_id}/messages/{message_id}/threads") == []
    )


# -- the central error handler --------------------------------------------------------------------


async def test_unexpected_failures_show_a_reference_and_log_the_traceback_with_context(world: World) -> None:
    fake, general = world.fake, world.channel()
    bob = world.user("bob")
    with captured_logs(world.settings) as logs:
        async with world.bot():
            results = await (
                await fake.dispatch_interaction("search", {"query": "memory"})
            ).original_message()
            await world.services.index.close()  # the index goes away under the running bot
            searched = await (
                await fake.dispatch_interaction("search", {"query": "memory"})
            ).original_message()
            asked = await fake.dispatch_interaction("ask", {"question": "What is SHERL?"})
            answered = await final_message(asked)
            clicked = await refusal(await fake.dispatch_component(int(results["id"]), custom_ids(results)[0]))
            mention = await fake.dispatch_message(general, f"<@{world.bot_id}> What is SHERL?")
            in_thread = await fake.wait_for_message(int(mention["id"]))
    shown = {
        "search": searched["content"],
        "ask": answered["content"],
        "button:sum": clicked,
        "chat": in_thread["content"],
    }
    failures = {e["command"]: e for e in log_events(logs) if e["event"] == "discord.request_failed"}
    assert set(failures) == set(shown)
    for command, text in shown.items():
        assert text.startswith(
            "The paper index is unavailable right now; please try again in a minute (reference `"
        )
        match = REFERENCE.search(text)
        assert match is not None, text
        event = failures[command]
        assert event["reference"] == match.group(1) and event["level"] == "error"
        assert event["guild_id"] == fake.state.default_guild.id and event["user_id"] == bob
        assert event["channel_id"] == general
        assert "Traceback" in event["exception"] and "IndexUnavailableError" in event["exception"]
    assert "🔎" not in answered["content"] and answered["embeds"] == []  # the progress was replaced
    assert asked.followups == []


# -- the LLM's queue ------------------------------------------------------------------------------


def llm_queue(world: World) -> GenerationQueue:
    assert world.services.llm is not None
    return world.services.llm.queue


def progress_edits(fake: FakeDiscord, handle: InteractionHandle) -> list[str]:
    return [r.json["content"] for r in fake.requests_to(EDIT_ORIGINAL) if handle.token in r.path][:-1]


async def test_asks_that_wait_for_the_model_show_their_place_then_each_gets_its_answer(
    make_world: MakeWorld,
) -> None:
    world = await make_world(llm_overrides={"LLM_MAX_CONCURRENT": 1})
    fake, llm, queue = world.fake, world.llm, llm_queue(world)
    # The first answer's two generations take 3 s each (time for the others to line up), the
    # others' 1.3 s: each place in line lasts longer than the progress message's 1 s throttle.
    llm.script(ScriptedDelay(3.0), ScriptedDelay(3.0), *(ScriptedDelay(1.3) for _ in range(4)))
    questions = ["What is SHERL?", "What are Titans?", "What is 2D Matryoshka sentence embedding?"]
    async with world.bot():
        first = await fake.dispatch_interaction("ask", {"question": questions[0]})
        await fake.wait_for(lambda: llm.requests, what="the first question with the model")
        second = await fake.dispatch_interaction("ask", {"question": questions[1]})
        await fake.wait_for(lambda: queue.waiting() == 1, what="the second question in line")
        third = await fake.dispatch_interaction("ask", {"question": questions[2]})
        await fake.wait_for(lambda: queue.waiting() == 2, what="the third question in line")
        handles = [first, second, third]
        answers = [await final_message(handle, within=20) for handle in handles]
    for handle in handles:  # deferred at once: the interaction stays open while it waits
        assert (await handle.response())["type"] == 5
    waits = [[e for e in progress_edits(fake, h) if e.startswith(QUEUE_MARK)] for h in handles]
    assert waits == [[], [queue_text(1)], [queue_text(2), queue_text(1)]]
    assert queue_text(2) == "⏳ Waiting for the language model — 2 questions ahead of yours"
    third_edits = progress_edits(fake, third)
    # Its place came after it searched, and the progress went on once its turn came.
    assert third_edits[0].startswith("🔎 searching") and third_edits[-1].startswith(("🔎", "✍️"))
    for question, answer in zip(questions, answers, strict=True):
        assert f"“{question}”" in answer["content"] and answer["embeds"][0]["title"] == "Sources"
    # One answer at a time, both of its generations back to back, in the order asked.
    assert [question_of(r) for r in llm_requests_since(llm, 0)] == [q for q in questions for _ in range(2)]


async def test_a_mention_that_waits_gets_a_queue_message_that_becomes_its_answer(
    make_world: MakeWorld,
) -> None:
    world = await make_world(llm_overrides={"LLM_MAX_CONCURRENT": 1})
    fake, llm = world.fake, world.llm
    llm.script(ScriptedDelay(1.5), ScriptedDelay(1.5))  # the /ask ahead of the mention
    async with world.bot():
        ahead = await fake.dispatch_interaction("ask", {"question": "What is SHERL?"})
        await fake.wait_for(lambda: llm.requests, what="the /ask with the model")
        asked = await fake.dispatch_message(world.channel(), f"<@{world.bot_id}> What are Titans?")
        thread = int(asked["id"])
        waiting = await fake.wait_for_message(thread)
        await final_message(ahead)
        message_id = int(waiting["id"])
        answer = await fake.wait_for(
            lambda: (m := fake.state.message(message_id))["embeds"] and m, what="the answer in place"
        )
    assert waiting["content"] == queue_text(1)
    assert "“What are Titans?”" in answer["content"] and answer["embeds"][0]["title"] == "Sources"
    assert [m["id"] for m in fake.bot_messages(thread)] == [waiting["id"]]  # edited, not a second post


async def test_a_full_queue_refuses_a_question_at_once_and_serves_the_waiting_ones(
    make_world: MakeWorld,
) -> None:
    world = await make_world(llm_overrides={"LLM_MAX_CONCURRENT": 1, "LLM_QUEUE_MAX_WAITING": 1})
    fake, llm, queue = world.fake, world.llm, llm_queue(world)
    llm.script(ScriptedDelay(4.0))
    async with world.bot():
        first = await fake.dispatch_interaction("ask", {"question": "What is SHERL?"})
        await fake.wait_for(lambda: llm.requests, what="the first question with the model")
        second = await fake.dispatch_interaction("ask", {"question": "What are Titans?"})
        await fake.wait_for(lambda: queue.waiting() == 1, what="the second question in line")
        refused = await refusal(await fake.dispatch_interaction("ask", {"question": "And MRL?"}))
        answers = [await final_message(handle, within=15) for handle in (first, second)]
    assert refused == (
        "Paperbot is busy: 1 question is waiting for the language model; try again in a few minutes"
    )
    assert all(a["embeds"][0]["title"] == "Sources" for a in answers)
    assert "And MRL?" not in {question_of(r) for r in llm_requests_since(llm, 0)}


async def test_a_question_that_waits_too_long_is_answered_from_the_passages_with_a_label(
    make_world: MakeWorld,
) -> None:
    # The bound outlasts the progress message's 1 s throttle, so the place is shown before it ends.
    world = await make_world(llm_overrides={"LLM_MAX_CONCURRENT": 1, "LLM_QUEUE_MAX_WAIT_S": 2.0})
    fake, llm = world.fake, world.llm
    llm.script(ScriptedDelay(5.0))
    async with world.bot():
        first = await fake.dispatch_interaction("ask", {"question": "What is SHERL?"})
        await fake.wait_for(lambda: llm.requests, what="the first question with the model")
        second = await fake.dispatch_interaction("ask", {"question": "How does SHERL save memory?"})
        busy = await final_message(second, within=10)
        assert first.original is None or not first.original["embeds"]  # it came before the first's
        await final_message(first, within=10)
    assert busy["content"].startswith(BUSY_LABEL) and re.search(r"\[\d\]", busy["content"])
    assert busy["embeds"][0]["title"] == "Sources"
    assert queue_text(1) in progress_edits(fake, second)


def _hf_papers() -> list[Any]:
    from bot.ingest.sources import parse_path

    return parse_path(HF_DAY).papers
