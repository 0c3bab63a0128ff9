"""`python -m bot run` wiring: settings from the environment, endpoints applied, the bot against the
fake Discord, SIGTERM, and the configuration errors that must stop it with exit code 78.

The daemon's own code path runs (`cmd_run` → `run_bot` → `open_services`); the embeddings and the
LLM come from the scripted OpenAI-compatible server by configuration, as a deployment with a hosted
model would, so that no model is loaded here.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Iterator

import discord.gateway
import discord.http
import pytest
import yarl

from bot.app.cli import cmd_run
from bot.app.daemon import EXIT_CONFIG, ConfigurationError, run_bot
from bot.core import metrics
from bot.core.config import load_settings
from tests.fakediscord import FakeDiscord, Intent, MessageFlag
from tests.support.paperbot_discord import captured_logs, discord_env, log_events, reset_logging
from tests.support.scripted_llm import ScriptedLLMServer


@pytest.fixture(autouse=True)
def _isolated_logging() -> None:
    reset_logging()


@pytest.fixture
def daemon_env(
    fake_discord: FakeDiscord, scripted_llm: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The environment `make run` would have, pointing at the fakes; discord.py's endpoints are
    reset to Discord's own so that only the daemon's settings can send it to the fake."""
    env = {
        **discord_env(fake_discord),
        "OPENAI_BASE_URL": scripted_llm.base_url,
        "LLM_API_MODE": "chat",
        "EMBEDDING_BACKEND": "openai",
        "EMBEDDING_BASE_URL": scripted_llm.base_url,
        "DISCORD_USER_COOLDOWN_S": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The daemon instruments its bot; the process-wide gateway tracker must not remember this test's
    # shard (a later bot's first connect would count as a reconnect).
    monkeypatch.setattr(metrics, "GATEWAY", metrics.GatewayTracker())
    # Plain assignments: the fake_discord fixture puts the previous values back at teardown.
    discord.http.Route.BASE = "https://discord.com/api/v10"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL("wss://gateway.discord.gg/")
    yield env


async def test_run_bot_connects_syncs_answers_and_stops_on_sigterm(
    daemon_env: dict[str, str], fake_discord: FakeDiscord
) -> None:
    settings = load_settings()
    with captured_logs(settings) as logs:
        daemon = asyncio.create_task(run_bot(settings))
        await fake_discord.wait_for(
            lambda: fake_discord.state.global_commands and fake_discord.gateway.session,
            timeout=30,
            what="commands synced and IDENTIFY",
        )
        await fake_discord.wait_until_ready()
        help_message = await (await fake_discord.dispatch_interaction("help")).original_message(timeout=10)
        searched = await (
            await fake_discord.dispatch_interaction("search", {"query": "memory"})
        ).original_message()
        os.kill(os.getpid(), signal.SIGTERM)  # what systemd sends; run_bot installed the handler
        await asyncio.wait_for(daemon, timeout=10)
    assert daemon_env["DISCORD_API_BASE"] == discord.http.Route.BASE
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == daemon_env["DISCORD_GATEWAY_URL"]
    assert {c["name"] for c in fake_discord.state.global_commands.values()} == {
        "search",
        "ask",
        "paper",
        "help",
        "digest",
        "memory",
        "library",
        "follow",
    }
    assert fake_discord.gateway.identifies[0]["intents"] & Intent.MESSAGE_CONTENT
    assert help_message["flags"] & MessageFlag.EPHEMERAL and help_message["embeds"]
    assert searched["content"] == "No papers found for “memory”."  # a fresh, empty data dir
    events = [e["event"] for e in log_events(logs)]
    assert "db.ready" in events and "digest.scheduler_started" in events  # the daemon wires digests
    assert (
        events.index("discord.setup_done") < events.index("daemon.stopping") < events.index("discord.closing")
    )
    assert fake_discord.gateway.connections[0].ws.closed


async def test_a_rejected_token_stops_the_daemon_with_exit_code_78(
    daemon_env: dict[str, str],
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.not-the.token")
    settings = load_settings()
    with pytest.raises(ConfigurationError, match="Discord rejected the token"):
        await run_bot(settings)
    with captured_logs(settings) as logs:
        assert await cmd_run(argparse.Namespace(), settings) == EXIT_CONFIG
    assert "error: Discord rejected the token" in capsys.readouterr().err
    logged = next(e for e in log_events(logs) if e["event"] == "daemon.configuration_error")
    assert logged["level"] == "error" and "MTIz.not-the.token" not in str(logged)  # secrets never logged
    me = fake_discord.requests_to("GET /users/@me")
    assert me and all(r.status == 401 for r in me) and fake_discord.gateway.identifies == []


async def test_missing_token_and_ungranted_message_content_intent_exit_78(
    daemon_env: dict[str, str],
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DISCORD_TOKEN")
    assert await cmd_run(argparse.Namespace(), load_settings()) == EXIT_CONFIG
    assert "DISCORD_TOKEN is not set" in capsys.readouterr().err and fake_discord.requests == []

    # The developer portal has not granted the message-content intent: Discord closes with 4014.
    monkeypatch.setenv("DISCORD_TOKEN", fake_discord.token)
    fake_discord.state.privileged_intents = 0
    assert await cmd_run(argparse.Namespace(), load_settings()) == EXIT_CONFIG
    error = capsys.readouterr().err
    assert (
        "message-content intent is not enabled" in error and "DISCORD_MESSAGE_CONTENT_INTENT=false" in error
    )

    # ...and the remedy the message names works: without the intent the bot connects.
    monkeypatch.setenv("DISCORD_MESSAGE_CONTENT_INTENT", "false")
    daemon = asyncio.create_task(run_bot(load_settings()))
    await fake_discord.wait_for(
        lambda: len(fake_discord.gateway.identifies) == 2, timeout=30, what="IDENTIFY"
    )
    await fake_discord.wait_until_ready()
    assert (await (await fake_discord.dispatch_interaction("help")).original_message(timeout=10))["embeds"]
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(daemon, timeout=10)
    assert not fake_discord.gateway.identifies[-1]["intents"] & Intent.MESSAGE_CONTENT
