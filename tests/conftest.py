"""Shared fixtures: isolated settings per test, one embedding model per session, both index back ends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SEED_PAGE = SHARED_DATA / "seed" / "000_c48a4a4dc127d178.txt"

from bot.retrieval.embedding import OFFLINE_ENV  # noqa: E402  (after ROOT, before any model import)

for _name, _value in {**OFFLINE_ENV, "OMP_WAIT_POLICY": "passive"}.items():
    os.environ.setdefault(_name, _value)
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "data" / "cache" / "tiktoken"))

from tests.support.postgres import PostgresServer, postgres_or_skip  # noqa: E402

pytest_plugins = ["tests.support.scripted_llm", "tests.fakediscord.plugin", "tests.support.discord_world"]

# Settings must never come from a developer's .env or shell during tests.
_SETTING_PREFIXES = (
    "PAPERBOT_",
    "QDRANT_",
    "EMBEDDING_",
    "TOKENIZER_",
    "SOURCES_",
    "RAG_",
    "LLM_",
    "OPENAI_",
    "LOCAL_LLM_",
    "DISCORD_",
    "DIGEST_",
    "MEMORY_",
    "DATABASE_",
    "HEALTH_",
    "FULLTEXT_",
    "ARXIV_",
)


@pytest.fixture(autouse=True)
def clean_settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith(_SETTING_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    data_dir = tmp_path / "data"
    monkeypatch.setenv("PAPERBOT_DATA_DIR", str(data_dir))
    yield data_dir


@pytest.fixture(autouse=True)
def reset_logging() -> Iterator[None]:
    """CLI tests configure logging onto pytest's capture streams; never let that leak into later tests."""
    import logging

    import structlog

    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers[:] = []


@pytest.fixture(scope="session")
def embedder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from bot.retrieval.embedding import LocalEmbedder

    # A fresh cache: every run exports the ONNX query model itself, as a new deployment does.
    return LocalEmbedder(batch_size=32, cache_dir=tmp_path_factory.mktemp("onnx"))


@pytest.fixture(params=["edge", "server"])
async def make_paper_index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """Builds indexes on Qdrant Edge or on qdrant-client (`:memory:` stands in for a server), so the
    same contract runs on both: `make_paper_index(fusion="rrf")`. Each is closed after the test."""
    from qdrant_client import AsyncQdrantClient

    from bot.core.config import QdrantSettings
    from bot.retrieval.index.base import DEFAULT_FUSION, Fusion, PaperIndex
    from bot.retrieval.index.edge import EdgePaperIndex
    from bot.retrieval.index.server import ServerPaperIndex

    made: list[PaperIndex] = []

    def make(*, fusion: Fusion = DEFAULT_FUSION) -> PaperIndex:
        index: PaperIndex
        if request.param == "edge":
            index = EdgePaperIndex(tmp_path / f"qdrant-{len(made)}", fusion=fusion)
        else:
            index = ServerPaperIndex(
                QdrantSettings(hybrid_fusion=fusion), AsyncQdrantClient(location=":memory:")
            )
        made.append(index)
        return index

    yield make
    for index in made:
        await index.close()


@pytest.fixture
def paper_index(make_paper_index: Any) -> object:
    """One index with the default fusion, on each back end."""
    return make_paper_index()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (Debian's package; `make test` installs it) for the session."""
    with postgres_or_skip() as server:
        yield server
