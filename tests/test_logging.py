"""Logs never contain the configured secrets, in either format; JSON lines carry the request context."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from bot.core.config import Settings, load_settings
from bot.core.logs import REDACTED, configure_logging

DISCORD_TOKEN = "MTIzNDU2Nzg5MDEy.Gh7abc.this-is-the-discord-bot-token-0123456789"
OPENAI_KEY = "sk-proj-openai-key-ABCDEFGHIJKLMNOP"
QDRANT_KEY = "qdrant-api-key-7f3c9e"
DB_PASSWORD = "pg-pass-W0rd-5ecret"


@pytest.fixture
def secret_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DISCORD_TOKEN", DISCORD_TOKEN)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("QDRANT_API_KEY", QDRANT_KEY)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://paperbot:{DB_PASSWORD}@db:5432/paperbot")
    settings = load_settings()
    assert {DISCORD_TOKEN, OPENAI_KEY, QDRANT_KEY, DB_PASSWORD} <= set(settings.secrets)
    return settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


class Credentials:
    """An object whose repr shows a secret, as careless __repr__s do."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Credentials(token={self.token!r})"


def _fails_with_token_in_locals(token: str) -> None:
    headers = {"Authorization": f"Bot {token}"}
    raise ValueError(f"request failed with {len(headers)} header(s)")  # the message itself is clean


def log_everything(secret_settings: Settings) -> None:
    """Every way a secret could reach a log line, through structlog and through stdlib logging."""
    log = structlog.get_logger("paperbot.test")
    structlog.contextvars.bind_contextvars(request_id="req-1", auth=f"Bot {DISCORD_TOKEN}")
    log.info(f"connecting with token {DISCORD_TOKEN}")
    log.info("llm.request", api_key=OPENAI_KEY, headers={"api-key": QDRANT_KEY}, urls=[str(secret_settings)])
    log.bind(dsn=f"postgresql://paperbot:{DB_PASSWORD}@db/paperbot").warning("db.connect")
    log.info("object.value", credentials=Credentials(DISCORD_TOKEN), raw=DISCORD_TOKEN.encode())
    try:
        raise ConnectionError(f"401 Unauthorized for token {DISCORD_TOKEN} and key {OPENAI_KEY}")
    except ConnectionError as exc:
        log.exception("discord.login_failed")
        log.error("discord.login_failed_value", error=exc)
    try:
        _fails_with_token_in_locals(DISCORD_TOKEN)
    except ValueError:
        log.exception("discord.request_failed")
    library = logging.getLogger("discord.http")
    library.warning("sending Authorization: Bot %s", DISCORD_TOKEN)
    try:
        raise RuntimeError(f"database said: password {DB_PASSWORD} rejected")
    except RuntimeError:
        library.exception("library traceback")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_configured_secrets_never_reach_the_output(
    secret_settings: Settings, log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = secret_settings.core.model_copy(update={"log_format": log_format})
    stream = io.StringIO()
    configure_logging(core, secret_settings.secrets, stream=stream)
    log_everything(secret_settings)
    output = stream.getvalue()

    # The lines were written (so the test would see a leak) …
    markers = (
        "connecting with token",
        "llm.request",
        "db.connect",
        "discord.login_failed",
        "discord.request_failed",
        "sending Authorization",
        "library traceback",
        "Traceback",
    )
    for marker in markers:
        assert marker in output, marker
    assert REDACTED in output
    # … and no secret survived, whole or as the password inside the database URL.
    for secret in (DISCORD_TOKEN, OPENAI_KEY, QDRANT_KEY, DB_PASSWORD):
        assert secret not in output, f"{secret[:8]}… leaked in {log_format} logs"
    # Tracebacks are plain text: local variables (the token in `headers`) are not printed.
    assert "Authorization': 'Bot" not in output


def test_json_lines_carry_the_request_context(secret_settings: Settings) -> None:
    core = secret_settings.core.model_copy(update={"log_format": "json"})
    stream = io.StringIO()
    configure_logging(core, secret_settings.secrets, stream=stream)
    # What the command tree binds for every interaction (bot/discord/bot.py).
    structlog.contextvars.bind_contextvars(
        request_id="3f2a9c1d7b00", guild_id=111, channel_id=222, user_id=333, command="ask"
    )
    log = structlog.get_logger("paperbot.rag")
    log.info("rag.retrieved", chunks=5)
    log.warning("llm.retry", attempt=1)
    logging.getLogger("discord.http").warning("We are being rate limited.")  # a library's line
    structlog.contextvars.clear_contextvars()
    log.info("after.request")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "rag.retrieved",
        "llm.retry",
        "We are being rate limited.",
        "after.request",
    ]
    for line in lines[:3]:
        assert {k: line[k] for k in ("request_id", "guild_id", "channel_id", "user_id", "command")} == {
            "request_id": "3f2a9c1d7b00",
            "guild_id": 111,
            "channel_id": 222,
            "user_id": 333,
            "command": "ask",
        }
        assert line["level"] in ("info", "warning") and line["timestamp"].endswith("Z")
    assert "request_id" not in lines[3]


def test_console_format_in_development_and_json_in_production(secret_settings: Settings) -> None:
    for env, expect_json in (("development", False), ("production", True)):
        core = secret_settings.core.model_copy(update={"env": env, "log_format": "auto"})
        stream = io.StringIO()
        configure_logging(core, secret_settings.secrets, stream=stream)
        structlog.get_logger("t").info("hello", n=1)
        line = stream.getvalue().strip()
        if expect_json:
            assert json.loads(line)["event"] == "hello"
        else:
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
            assert "hello" in line and "n=1" in line
