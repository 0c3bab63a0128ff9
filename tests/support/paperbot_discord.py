"""Running the real paperbot (its cogs, its services) against the fake Discord and the scripted LLM.

Nothing of our own is replaced: the index is a real Qdrant Edge store built from real papers, the
search and answer services are the production ones, the LLM client is the real `openai`-based one
talking HTTP to ``ScriptedLLMServer``, and discord.py talks HTTP and websockets to ``FakeDiscord``.
"""

# Test helpers wait on the bot, so their timeouts are part of the API.

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import structlog

from bot.app.services import Services, build_services
from bot.core.config import (
    CoreSettings,
    DiscordSettings,
    FulltextSettings,
    LLMSettings,
    RagSettings,
    Settings,
    TokenizerSettings,
)
from bot.core.logs import configure_logging
from bot.core.papers import Paper
from bot.db import Database
from bot.digest.sources import SourceFetcher
from bot.discord.bot import PaperBotBase, PosterFactory, create_bot
from bot.ingest.pipeline import Ingestor
from bot.ingest.sources import parse_path
from bot.llm.client import LLMClient
from bot.llm.queue import GenerationQueue
from bot.retrieval.embedding import Embedder
from bot.retrieval.index.edge import EdgePaperIndex
from tests.conftest import SEED_PAGE, SHARED_DATA
from tests.fakediscord import FakeDiscord, run_client
from tests.support.scripted_llm import ScriptedLLMServer, last_user_text, prompt_text

HF_DAY = SHARED_DATA / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"

# A paper whose metadata tries to ping a whole server: every text the bot builds from it must not.
HOSTILE = Paper(
    paper_id="2609.00001",
    arxiv_id="2609.00001",
    title="Ping storms @everyone <@&123> <@456>: adversarial titles in retrieval",
    abstract=(
        "We study ping storms: chat messages that mention @everyone, @here, roles such as <@&123> and "
        "users such as <@456>. A bot that quotes paper titles must never ping anyone."
    ),
    authors=["Mallory <@789>", "@here Eve"],
    published=dt.date(2026, 8, 10),
    upvotes=7,
)

# A paper whose every field is far beyond what one Discord embed may hold.
LONG = Paper(
    paper_id="2609.00002",
    arxiv_id="2609.00002",
    title="Gargantuan " + "very long title words " * 30,
    abstract="Gargantuan transformers with unbounded context. "
    + "This sentence makes the abstract longer. " * 120,
    ai_summary="Gargantuan models summarised at length: " + "and then some more words about it " * 200,
    authors=[
        f"Author Number {n} With A Rather Long Hyphenated-Double Surname-Of-Distinction" for n in range(60)
    ],
    categories=[f"cs.{c}" for c in ("CL", "LG", "AI", "IR", "CV", "NE", "DC")],
    published=dt.date(2026, 8, 12),
    upvotes=1234,
    github_url="https://github.com/gargantuan/" + "x" * 700,
    project_url="https://gargantuan.example.org/" + "y" * 700,
)


# A small corpus keeps the module's one-off indexing to a few seconds on two cores.
SEED_TITLES = (
    "SHERL",
    "Titans",
    "Matryoshka Representation Learning",
    "2D Matryoshka",
    "Enhancing Retrieval-Augmented",
    "Long-Context LLMs Meet RAG",
    "Re-ranking the Context",
    "When to Retrieve",
    "Dense Text Retrieval",
    "Retrieval Helps or Hurts",
)
HF_IDS = ("2608.15265", "2608.16859", "2608.16798", "2608.15930", "2608.13900", "2608.16887", "2608.06947",
          "2608.14614")  # fmt: skip


def seed_papers() -> list[Paper]:
    page = [p for p in parse_path(SEED_PAGE).papers if p.title.startswith(SEED_TITLES)]
    day = [p for p in parse_path(HF_DAY).papers if p.paper_id in HF_IDS]
    assert len(page) == len(SEED_TITLES) and len(day) == len(HF_IDS)
    return [*page, *day, HOSTILE, LONG]


def build_index(path: Path, embedder: Embedder, papers: list[Paper]) -> None:
    """An embedded Qdrant Edge index at `path` holding `papers` (for module-scoped fixtures)."""

    async def build() -> None:
        index = EdgePaperIndex(path)
        await index.ensure_collection(embedder.dimensions)
        await Ingestor(index, embedder, TokenizerSettings()).ingest(papers)
        await index.close()

    asyncio.run(build())


def build_seed_index(path: Path, embedder: Embedder) -> None:
    """The seed page, one real Hugging Face day and the two hostile papers."""
    build_index(path, embedder, seed_papers())


STANDALONE_PREFIX = "Standalone:"


def default_responder(body: dict[str, Any]) -> str:
    """Rewrites follow-ups recognisably, and answers every question citing its first source."""
    prompt = prompt_text(body)
    if prompt.rstrip().endswith("Standalone question:"):
        follow_up = prompt.rsplit("Follow-up:", 1)[1].split("\n", 1)[0].strip()
        return f"{STANDALONE_PREFIX} {follow_up}"
    question = last_user_text(body).rsplit("Question:", 1)[-1].split("\n", 1)[0].strip()
    return f"Reasoning: excerpt [1] is relevant.\nAnswer: About “{question}”: see the first paper [1]."


def discord_env(fake: FakeDiscord) -> dict[str, str]:
    """paperbot's DISCORD_* variables pointing a bot process at `fake` (which knows nothing of paperbot)."""
    return {
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE": fake.api_base,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
    }


def make_settings(
    fake: FakeDiscord,
    llm: ScriptedLLMServer,
    data_dir: Path,
    *,
    llm_overrides: dict[str, Any] | None = None,
    fulltext_overrides: dict[str, Any] | None = None,
    **discord_overrides: Any,
) -> Settings:
    """`llm_overrides` by variable name, e.g. {"LLM_MAX_CONCURRENT": 1}. Full texts are never fetched
    (FULLTEXT_MODE=off: tests do not reach arxiv.org) unless `fulltext_overrides` say where from."""
    discord_values: dict[str, Any] = {
        "token": fake.token,
        "api_base": fake.api_base,
        "gateway_url": fake.gateway_url,
        "user_cooldown_s": 0.0,
        "guild_rate_per_minute": 1000,
        **discord_overrides,
    }
    return Settings(
        core=CoreSettings(data_dir=data_dir, log_format="json"),
        llm=LLMSettings(
            OPENAI_BASE_URL=llm.base_url,
            LLM_MAX_RETRIES=0,
            LLM_TIMEOUT_S=10,
            LLM_API_MODE="chat",
            **(llm_overrides or {}),
        ),
        rag=RagSettings(),
        discord=DiscordSettings(**discord_values),
        fulltext=FulltextSettings(**{"mode": "off", **(fulltext_overrides or {})}),
    )


@asynccontextmanager
async def open_services(
    index_path: Path,
    embedder: Embedder,
    llm: ScriptedLLMServer,
    settings: Settings,
    *,
    database: Database | None = None,
    fetch: SourceFetcher | None = None,
) -> AsyncIterator[Services]:
    """The production services (built by the production wiring) over the seed index, the LLM client
    pointed at the scripted server; with `database`, digests too (their sources read by `fetch`)."""
    index = EdgePaperIndex(index_path)
    await index.ensure_collection(embedder.dimensions)
    client = LLMClient(
        base_url=llm.base_url, api_key="sk-scripted", model="scripted", api_mode="chat",
        timeout_s=settings.llm.timeout_s, max_retries=0, queue=GenerationQueue.from_settings(settings.llm),
    )  # fmt: skip
    try:
        yield build_services(
            settings, index=index, embedder=embedder, llm=client, database=database, fetch=fetch
        )
    finally:
        await client.aclose()
        await index.close()


def new_bot(
    services: Services, settings: Settings, *, digest_poster: PosterFactory | None = None
) -> PaperBotBase:
    options: dict[str, Any] = {"digest_poster": digest_poster} if digest_poster is not None else {}
    return create_bot(services, settings, guild_ready_timeout=0.05, **options)


@asynccontextmanager
async def running_bot(
    services: Services, settings: Settings, fake: FakeDiscord
) -> AsyncIterator[PaperBotBase]:
    """A freshly built bot, connected and ready (its setup_hook synced the commands), closed on exit."""
    bot = new_bot(services, settings)
    async with run_client(bot, fake):
        yield bot


def reset_logging() -> None:
    """Undo a logging configuration another test left behind (`main()` configures logging onto the
    stream it was given, e.g. a capsys stream that is closed by now): structlog back to its
    defaults, and no root handler writing to a closed stream."""
    structlog.reset_defaults()
    root = logging.getLogger()
    root.handlers[:] = [
        h for h in root.handlers
        if not (isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False))
    ]  # fmt: skip


@contextmanager
def captured_logs(settings: Settings) -> Iterator[io.StringIO]:
    """structlog (and stdlib logging) as JSON lines into a StringIO, as `python -m bot run` logs in
    production; the previous configuration is restored afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(
        settings.core.model_copy(update={"log_format": "json"}), settings.secrets, stream=stream
    )
    try:
        yield stream
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def log_events(stream: io.StringIO) -> list[dict[str, Any]]:
    events = []
    for line in stream.getvalue().splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events
