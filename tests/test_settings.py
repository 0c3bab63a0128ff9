"""Settings: defaults, environment parsing, secrets, validation, and .env.example completeness."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from bot.core.config import Settings, load_settings
from tests.conftest import ROOT


def test_defaults_are_the_embedded_offline_stack(clean_settings_env: Path) -> None:
    settings = load_settings()
    assert settings.qdrant.url is None
    assert settings.core.qdrant_path == clean_settings_env / "qdrant"
    assert settings.embedding.backend == "local"
    assert settings.llm.base_url is None
    assert (settings.rag.iterations, settings.rag.top_k) == (2, 5)


def test_environment_switches_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("QDRANT_API_KEY", "qdrant-secret-123")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("EMBEDDING_BACKEND", "openai")
    settings = load_settings()
    assert settings.qdrant.url == "http://qdrant:6333"
    assert settings.llm.base_url == "http://vllm:8000/v1"
    assert settings.embedding.backend == "openai"
    # secrets are SecretStr: never shown in repr or dumps
    dumped = repr(settings) + settings.model_dump_json()
    assert "qdrant-secret-123" not in dumped and "sk-test-secret" not in dumped
    assert set(settings.secrets) == {"qdrant-secret-123", "sk-test-secret"}


def test_open_index_picks_the_backend_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.retrieval.index import open_index
    from bot.retrieval.index.edge import EdgePaperIndex
    from bot.retrieval.index.server import ServerPaperIndex

    embedded = open_index(load_settings())
    assert isinstance(embedded, EdgePaperIndex) and embedded.fusion == "adaptive"
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("QDRANT_HYBRID_FUSION", "rrf")
    server = open_index(load_settings())
    assert isinstance(server, ServerPaperIndex) and server.fusion == "rrf"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RAG_ITERATIONS", "8"),
        ("RAG_ITERATIONS", "0"),
        ("TOKENIZER_CHUNK_OVERLAP", "600"),
        ("EMBEDDING_BACKEND", "fastembed"),
        ("TOKENIZER_ENCODING", "gpt2"),
        ("QDRANT_SHARD_NUMBER", "0"),
        ("QDRANT_HYBRID_FUSION", "max"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        load_settings()


def _env_names(model: type[BaseSettings]) -> set[str]:
    prefix = model.model_config.get("env_prefix", "")
    return {(field.alias or f"{prefix}{name}").upper() for name, field in model.model_fields.items()}


def test_env_example_documents_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))
    expected: set[str] = set()
    for field in Settings.model_fields.values():
        expected |= _env_names(field.annotation)  # type: ignore[arg-type]
    assert expected - documented == set(), "settings missing from .env.example"
    assert documented - expected == set(), ".env.example documents settings the code does not read"
    # every variable has a comment line above it (or shares the block of one)
    blocks = re.split(r"\n\s*\n", text)
    for block in blocks:
        if re.search(r"^[A-Z_]+=", block, re.MULTILINE):
            assert block.lstrip().startswith("#"), f"undocumented block: {block[:60]!r}"


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("mon-fri", "mon,tue,wed,thu,fri"),  # was read as Monday only
        ("daily", "mon,tue,wed,thu,fri,sat,sun"),  # was rejected, though /digest subscribe takes it
        ("weekends", "sat,sun"),
        ("Monday, Wednesday, fri", "mon,wed,fri"),
        ("fri-mon", "mon,fri,sat,sun"),
    ],
)
def test_default_weekdays_follow_the_same_rule_as_digest_subscribe(
    monkeypatch: pytest.MonkeyPatch, value: str, days: str
) -> None:
    from bot.digest.records import SubscriptionSettings

    monkeypatch.setenv("DIGEST_DEFAULT_WEEKDAYS", value)
    configured = load_settings().digest.default_weekdays
    assert configured == days
    typed = SubscriptionSettings(guild_id=1, channel_id=2, weekdays=value)  # type: ignore[arg-type]
    assert SubscriptionSettings(guild_id=1, channel_id=2, weekdays=configured).weekdays == typed.weekdays  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["9.30", "07h05"])
def test_default_time_accepts_what_digest_subscribe_accepts(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    from bot.core.timing import parse_post_time

    monkeypatch.setenv("DIGEST_DEFAULT_TIME", value)
    assert load_settings().digest.default_time == f"{parse_post_time(value):%H:%M}"


def test_a_bad_default_weekday_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_DEFAULT_WEEKDAYS", "funday")
    with pytest.raises(ValidationError, match="DIGEST_DEFAULT_WEEKDAYS: unknown day 'funday'"):
        load_settings()
