"""Service faults: the LLM, Qdrant, the state database and the disk fail; the bot says so clearly,
does not crash, and works again once the service is back, without a restart.

Real parts throughout: the `openai` client against the scripted OpenAI-compatible server, qdrant-client
against a Qdrant REST server (tests/support/fake_qdrant.py: qdrant-client's local engine behind real
HTTP, stoppable on its port), real SQLite files and a real PostgreSQL, and `python -m bot` in a
subprocess under a file-size limit for a full disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import resource
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.app.services import build_digest_service, open_services
from bot.core.config import (
    CoreSettings,
    EmbeddingSettings,
    LLMSettings,
    RagSettings,
    TokenizerSettings,
    load_settings,
)
from bot.core.logs import configure_logging
from bot.db import Database, DatabaseUnavailableError, Repository, open_database, upgrade_schema
from bot.digest.delivery import DigestHeader
from bot.digest.records import SubscriptionSettings
from bot.digest.sources import directory_fetcher
from bot.discord.errors import user_message
from bot.ingest.pipeline import Ingestor
from bot.ingest.sources import parse_path
from bot.llm.client import LLMClient
from bot.rag.extractive import EXTRACTIVE_LABEL
from bot.rag.iter_retgen import AnswerService
from bot.retrieval.embedding import Embedder, OpenAIEmbedder
from bot.retrieval.index import IndexUnavailableError
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.search import SearchService
from bot.retrieval.tokens import ensure_tiktoken_cache
from tests.conftest import ROOT, SEED_PAGE
from tests.support.digest import MemoryPoster
from tests.support.fake_qdrant import FakeQdrant
from tests.support.paperbot_discord import build_index
from tests.support.postgres import PostgresServer, postgres_or_skip
from tests.support.recording_progress import RecordingProgress
from tests.support.scripted_llm import (
    ScriptedLLMServer,
    ScriptedMalformed,
    ScriptedReply,
    ScriptedTruncatedStream,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

QUESTION = "How does SHERL reduce memory in transfer learning?"
SAMPLES_DIR = ROOT / "samples"
SAMPLE_DAY = dt.date(2026, 8, 18)  # samples/hf_daily_2026-08-18.json


@pytest.fixture(autouse=True)
def production_logging() -> None:
    """Log as the bot does (plain tracebacks); structlog's default renders rich ones with locals,
    which takes seconds per failure logged here. tests/conftest.py resets it afterwards."""
    configure_logging(CoreSettings())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# =========================================================================== 1. the LLM


@pytest.fixture(scope="module")
def seed_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """The first 12 papers of the saved page (SHERL among them), embedded once for the module."""
    path = tmp_path_factory.mktemp("faults") / "qdrant"
    build_index(path, embedder, parse_path(SEED_PAGE).papers[:12])
    return path


@dataclass
class LLMStack:
    service: AnswerService
    server: ScriptedLLMServer
    sleeps: list[float]

    @property
    def completions(self) -> int:
        return len(self.server.requests_to("/v1/completions"))


@pytest.fixture
async def llm_stack(
    seed_index: Path, embedder: Embedder, scripted_llm: ScriptedLLMServer
) -> AsyncIterator[LLMStack]:
    """AnswerService over the real openai client, 2 retries, backoff 0.5 s doubling (sleeps recorded)."""
    index = EdgePaperIndex(seed_index)
    await index.ensure_collection(embedder.dimensions)
    sleeps: list[float] = []

    async def record_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    llm_settings = LLMSettings.model_validate(
        {"LLM_MAX_RETRIES": 2, "OPENAI_BASE_URL": scripted_llm.base_url}
    )
    client = LLMClient(
        base_url=scripted_llm.base_url,
        api_key="sk-scripted",
        model="m",
        api_mode="completions",
        timeout_s=5.0,
        max_retries=2,
        backoff_base_s=0.5,
        backoff_max_s=4.0,
        sleep=record_sleep,
    )
    service = AnswerService(SearchService(index, embedder), client, RagSettings(), llm_settings)
    yield LLMStack(service, scripted_llm, sleeps)
    await client.aclose()
    await index.close()


def assert_labelled_and_cited(answer: Any) -> None:
    """The extractive fallback: labelled, quoting passages with [n] marks that cite shown papers."""
    assert answer.fallback
    assert answer.text.startswith(EXTRACTIVE_LABEL)
    marks = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert marks and marks == {c.n for c in answer.citations}
    shown = {s.paper.paper_id for s in answer.trace[-1].sources} if answer.trace else None
    if shown is not None:
        assert {c.paper_id for c in answer.citations} <= shown
    assert any(c.title.startswith("SHERL") for c in answer.citations)


def assert_backoff(sleeps: list[float]) -> None:
    """Jittered exponential backoff: the n-th wait lies in [0.5·2ⁿ/2, 0.5·2ⁿ] seconds."""
    assert len(sleeps) == 2
    for n, delay in enumerate(sleeps):
        assert 0.5 * 2**n / 2 <= delay <= 0.5 * 2**n


@pytest.mark.parametrize(
    "body",
    [
        '{"id": "cmpl-broken", "choices": [{"text": ',  # invalid JSON
        '{"id": "cmpl-1", "object": "text_completion", "model": "m"}',  # valid JSON, no choices
    ],
    ids=["invalid-json", "no-choices"],
)
async def test_malformed_llm_replies_are_retried_with_backoff_then_the_answer_is_extractive(
    llm_stack: LLMStack, body: str
) -> None:
    llm_stack.server.script(*[ScriptedMalformed(body)] * 3)
    answer = await llm_stack.service.answer(QUESTION)
    assert llm_stack.completions == 3  # the first try and 2 retries
    assert_backoff(llm_stack.sleeps)
    assert_labelled_and_cited(answer)


async def test_a_cut_json_body_is_retried_then_the_answer_is_extractive(llm_stack: LLMStack) -> None:
    # For a non-streamed request, a truncated reply is a JSON body cut in half.
    llm_stack.server.script(*[ScriptedTruncatedStream("Answer: SHERL saves memory [1].")] * 3)
    answer = await llm_stack.service.answer(QUESTION)
    assert llm_stack.completions == 3
    assert_backoff(llm_stack.sleeps)
    assert_labelled_and_cited(answer)


async def test_a_stream_cut_after_text_was_shown_falls_back_without_retrying(llm_stack: LLMStack) -> None:
    """The final generation streams to the user; once text was shown a retry could contradict it, so
    the answer becomes the labelled extractive one at once (the front end replaces the partial)."""
    llm_stack.server.script(
        ScriptedReply("Reasoning: SHERL decouples adaptation [1].\nAnswer: draft [1]"),
        ScriptedTruncatedStream("Answer: SHERL keeps the backbone", chunk_chars=6),
        ScriptedReply("Answer: never requested [1]"),
    )
    progress = RecordingProgress()
    answer = await llm_stack.service.answer(QUESTION, progress=progress)
    assert progress.partials and progress.partials[-1] == "Answer: SHERL keeps the backbone"
    assert llm_stack.completions == 2 and llm_stack.sleeps == []
    assert llm_stack.server.pending == 1
    assert_labelled_and_cited(answer)


# What the SHERL excerpt says: an answer sentence that it supports keeps its [1].
GROUNDED = "SHERL avoids backpropagating gradients through the large backbone [1]."


async def test_a_stream_cut_before_any_text_is_retried_and_the_answer_is_normal(llm_stack: LLMStack) -> None:
    llm_stack.server.script(
        ScriptedReply("Reasoning: SHERL decouples adaptation [1].\nAnswer: draft [1]"),
        ScriptedTruncatedStream("", chunk_chars=6),  # the connection drops before the first delta
        ScriptedMalformed('{"choices": [{"text": "unterminated'),  # an SSE event that is not JSON
        ScriptedReply(f"Answer: {GROUNDED}"),
    )
    progress = RecordingProgress()
    answer = await llm_stack.service.answer(QUESTION, progress=progress)
    assert llm_stack.completions == 4
    assert_backoff(llm_stack.sleeps)
    assert not answer.fallback and answer.text == GROUNDED
    assert answer.citations and answer.citations[0].n == 1
    assert progress.partials[-1] == f"Answer: {GROUNDED}"


# =========================================================================== 2. Qdrant


def _bot_env(**extra: str) -> dict[str, str]:
    """The test's (cleaned) environment for `python -m bot`, importable from the checkout."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **extra}


async def run_bot(
    *args: str, env: dict[str, str], file_size_limit: int | None = None, timeout_s: float = 120
) -> tuple[int, str, str]:
    """`python -m bot ARGS`; with a limit, writes past that many bytes fail with EFBIG (SIGXFSZ is
    ignored), which the bot sees exactly as a full disk."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        assert file_size_limit is not None
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limit_file_size if file_size_limit is not None else None,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _qdrant_env(url: str, embeddings: ScriptedLLMServer, **extra: str) -> dict[str, str]:
    # Embeddings come from the scripted server's /v1/embeddings so no model loads in the subprocess.
    settings = {
        "QDRANT_URL": url,
        "QDRANT_TIMEOUT_S": "2",
        "EMBEDDING_BACKEND": "openai",
        "EMBEDDING_BASE_URL": embeddings.base_url,
    }
    return _bot_env(**{**settings, **extra})


async def test_qdrant_down_at_start_is_one_clear_cli_line_and_exit_3(scripted_llm: ScriptedLLMServer) -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens here
    started = time.perf_counter()
    code, out, err = await run_bot(
        "search", "--json", "memory efficient transfer learning", env=_qdrant_env(url, scripted_llm)
    )
    seconds = time.perf_counter() - started
    assert code == 3, err
    assert "Traceback" not in err and out == ""
    [line] = _error_lines(err)
    assert line.startswith(f"error: Qdrant at {url} is not usable:"), line
    assert "cli.unavailable" in err  # and a structured log line
    assert seconds < 30  # refused at once; the rest is the interpreter's start-up


async def test_qdrant_down_when_services_open_is_a_clear_error_and_opening_again_works_once_it_is_up(
    scripted_llm: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    for name, value in _qdrant_env(url, scripted_llm).items():
        if name.startswith(("QDRANT_", "EMBEDDING_")):
            monkeypatch.setenv(name, value)
    settings = load_settings()
    with pytest.raises(IndexUnavailableError) as caught:
        async with open_services(settings):
            pass
    assert str(caught.value).startswith(f"Qdrant at {url} is not usable:")
    assert "\n" not in str(caught.value)

    with FakeQdrant(port=port) as qdrant:  # Qdrant comes up where the bot already points
        async with open_services(settings) as services:
            await services.ingestor.ingest(parse_path(SEED_PAGE).papers)
            result = await services.search.search("SHERL memory efficient transfer learning")
        assert result.hits[0].paper.title.startswith("SHERL")
        assert qdrant.unknown == []


async def test_the_embedding_service_down_is_one_clear_line(scripted_llm: ScriptedLLMServer) -> None:
    with FakeQdrant() as qdrant:
        env = _qdrant_env(qdrant.url, scripted_llm, EMBEDDING_BASE_URL=f"http://127.0.0.1:{_free_port()}/v1")
        code, _, err = await run_bot("search", "transfer learning", env=env)
    assert code == 3, err
    assert "Traceback" not in err
    [line] = _error_lines(err)
    assert line.startswith("error: embedding endpoint failed: Connection error"), line


@pytest.fixture
async def server_services(
    scripted_llm: ScriptedLLMServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Any, FakeQdrant]]:
    """The bot's services wired by `open_services` against a Qdrant server (the fake), holding the
    saved page's 48 papers."""
    qdrant = FakeQdrant()
    qdrant.start()
    for name, value in _qdrant_env(qdrant.url, scripted_llm).items():
        if name.startswith(("QDRANT_", "EMBEDDING_")):
            monkeypatch.setenv(name, value)
    async with open_services(load_settings()) as services:
        await services.ingestor.ingest(parse_path(SEED_PAGE).papers)
        yield services, qdrant
    qdrant.close()


async def test_qdrant_stopping_mid_run_is_reported_and_the_next_search_after_it_returns_works(
    server_services: tuple[Any, FakeQdrant],
) -> None:
    services, qdrant = server_services
    before = await services.search.search("SHERL memory efficient transfer learning")
    assert before.hits and before.hits[0].paper.title.startswith("SHERL")

    qdrant.stop()  # also cuts the client's pooled keep-alive connection
    started = time.perf_counter()
    with pytest.raises(IndexUnavailableError, match=f"Qdrant at {qdrant.url} is unreachable") as caught:
        await services.search.search("SHERL memory efficient transfer learning")
    failed_after_s = time.perf_counter() - started
    with pytest.raises(IndexUnavailableError):
        await services.answers.answer(QUESTION)
    with pytest.raises(IndexUnavailableError):
        await services.index.count_papers()
    text, expected = user_message(caught.value)
    assert text == "The paper index is unavailable right now; please try again in a minute"
    assert not expected  # logged as a failure with a reference, not as bad input
    assert failed_after_s < 2  # refused at once, not a hang

    qdrant.start()  # same port, same data; the process was never restarted
    after = await services.search.search("SHERL memory efficient transfer learning")
    assert [h.paper.paper_id for h in after.hits] == [h.paper.paper_id for h in before.hits]
    answer = await services.answers.answer(QUESTION)  # no LLM configured: extractive, cited
    assert answer.citations and answer.fallback
    assert await services.index.count_papers() == 48
    assert qdrant.unknown == []


async def test_a_hung_qdrant_times_out_into_unavailable_then_recovers(
    server_services: tuple[Any, FakeQdrant],
) -> None:
    services, qdrant = server_services
    qdrant.delay_s = 6.0  # accepts the connection, answers too late (QDRANT_TIMEOUT_S=2)
    started = time.perf_counter()
    with pytest.raises(IndexUnavailableError, match="unreachable"):
        await services.search.search("SHERL")
    waited_s = time.perf_counter() - started
    assert 1.9 <= waited_s < 5.0  # gave up at the timeout, did not wait for the late answer
    qdrant.delay_s = 0.0
    assert (await services.search.search("SHERL")).hits


# =========================================================================== 3. the state database


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """This module's own server (not the session's): its tests stop and restart it."""
    with postgres_or_skip() as server:
        yield server


@dataclass
class Outage:
    """A database and a way to take it away (`begin`) and give it back (`end`)."""

    database: Database
    backend: str
    begin: Callable[[], None]
    end: Callable[[], None]


class SqliteLock:
    """Another process's writer holding SQLite's write lock (longer than our busy timeout)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connection: sqlite3.Connection | None = None

    def begin(self) -> None:
        self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=0, check_same_thread=False)
        self.connection.execute("BEGIN IMMEDIATE")

    def end(self) -> None:
        if self.connection is not None:
            self.connection.execute("ROLLBACK")
            self.connection.close()
            self.connection = None


@pytest.fixture(params=["sqlite", "postgresql"])
async def outage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outage]:
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        database = Database(f"sqlite:///{path}", busy_timeout_ms=300)
        lock = SqliteLock(path)
        fault = Outage(database, "sqlite", lock.begin, lock.end)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database = Database(server.create_database())
        stopped: list[bool] = []

        def stop() -> None:
            server.stop()
            stopped.append(True)

        def start() -> None:
            if stopped:
                server.start()
                stopped.clear()

        fault = Outage(database, "postgresql", stop, start)
    await upgrade_schema(database.engine)
    yield fault
    fault.end()  # never leave the module's PostgreSQL stopped
    await database.close()


def _subscription(channel_id: int) -> SubscriptionSettings:
    return SubscriptionSettings.model_validate({"guild_id": 1, "channel_id": channel_id, "max_papers": 3})


async def test_a_locked_or_stopped_database_is_a_clear_error_and_the_same_process_recovers(
    outage: Outage,
) -> None:
    repo = Repository(outage.database)
    await repo.save_subscription(_subscription(100))

    await asyncio.to_thread(outage.begin)
    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailableError) as caught:
        await repo.save_subscription(_subscription(200))
    failed_after_s = time.perf_counter() - started
    message = str(caught.value)
    assert "\n" not in message
    if outage.backend == "sqlite":
        assert "is locked by another writer (waited 300 ms)" in message
        assert 0.3 <= failed_after_s < 3  # the busy timeout, then a clear error
    else:
        assert message.startswith("the state database at postgresql+psycopg://") and "unavailable" in message
        assert failed_after_s < 5
    text, expected = user_message(caught.value)
    assert text == "The bot's database is unavailable right now; please try again in a minute"
    assert not expected

    await asyncio.to_thread(outage.end)  # the same Database object, no restart: the pool reconnects
    await repo.save_subscription(_subscription(200))
    assert [s.channel_id for s in await repo.list_subscriptions()] == [100, 200]


async def test_sqlite_reads_neither_wait_for_a_writer_nor_see_its_uncommitted_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    database = Database(f"sqlite:///{path}", busy_timeout_ms=2000)
    await upgrade_schema(database.engine)
    repo = Repository(database)
    await repo.save_subscription(_subscription(100))
    writer = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process mid-write, holding the write lock
        writer.execute("UPDATE subscriptions SET paused = 1 WHERE channel_id = 100")
        started = time.perf_counter()
        (subscription,) = await repo.list_subscriptions()
        assert await repo.get_channel_subscription(100) == subscription
        assert await repo.tokens_used(1, dt.date(2026, 11, 29)) == 0
        read_s = time.perf_counter() - started
        assert not subscription.paused  # the last committed state
        assert read_s < 0.5, f"reads waited {read_s:.2f} s for the writer (busy timeout 2 s)"

        started = time.perf_counter()
        with pytest.raises(DatabaseUnavailableError, match="locked by another writer"):
            await repo.set_paused(100, True)  # a write still queues, then fails clearly
        assert time.perf_counter() - started >= 2.0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert (await repo.set_paused(100, True)) is not None
    assert (await repo.get_channel_subscription(100)).paused  # type: ignore[union-attr]
    await database.close()


async def test_postgresql_down_at_start_is_a_clear_error_and_opening_again_works(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres.create_database())
    settings = load_settings()
    await asyncio.to_thread(postgres.stop)
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            async with open_database(settings):
                pass
    finally:
        await asyncio.to_thread(postgres.start)
    message = str(caught.value)
    assert message.startswith(f"the state database at postgresql+psycopg://{postgres.user}@127.0.0.1:")
    assert "unavailable" in message and "\n" not in message
    async with open_database(settings) as database:
        assert await Repository(database).list_subscriptions() == []


@dataclass
class FaultyPoster(MemoryPoster):
    """Posts like a channel would; `after_header` runs once, right after the header was sent."""

    after_header: list[Callable[[], None]] = field(default_factory=list)

    async def post_header(self, channel_id: int, header: DigestHeader) -> int:
        message_id = await super().post_header(channel_id, header)
        while self.after_header:
            await asyncio.to_thread(self.after_header.pop())
        return message_id


async def test_a_database_outage_mid_digest_fails_the_run_clearly_and_a_rerun_posts_each_item_once(
    outage: Outage, scripted_llm: ScriptedLLMServer, tmp_path: Path
) -> None:
    """The header is sent, then the database goes away before its message id is recorded: the run
    stops with DatabaseUnavailableError (the scheduler logs it; /digest now shows it). Once the
    database is back, the next run finds the header by its marker and posts only the papers."""
    settings = load_settings()
    embedder = OpenAIEmbedder(EmbeddingSettings(backend="openai", base_url=scripted_llm.base_url))
    index = EdgePaperIndex(tmp_path / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    repo = Repository(outage.database)
    poster = FaultyPoster(after_header=[outage.begin])
    service = build_digest_service(
        settings,
        repo=repo,
        search=SearchService(index, embedder),
        ingestor=Ingestor(index, embedder, settings.tokenizer),
        llm=None,
        fetch=directory_fetcher(SAMPLES_DIR),
    )
    subscription = await repo.save_subscription(_subscription(100))
    try:
        with pytest.raises(DatabaseUnavailableError):
            await service.run(subscription, SAMPLE_DAY, poster=poster)
        assert [m.kind for m in poster.messages] == ["header"]

        await asyncio.to_thread(outage.end)
        outcome = await service.run(subscription, SAMPLE_DAY, poster=poster)
    finally:
        await index.close()
        await embedder.aclose()
    assert outcome.status == "posted" and outcome.counts.posted == 3
    assert [m.kind for m in poster.messages] == ["header", "paper", "paper", "paper"]
    assert len({m.marker for m in poster.messages}) == 4  # nothing posted twice
    assert poster.lookups == 1  # the unconfirmed header was looked up, not re-sent
    entries = await repo.digest_entries(100, SAMPLE_DAY)
    assert len(entries) == 4 and all(e.posted for e in entries)
    assert {e.message_id for e in entries} == {m.message_id for m in poster.messages}


# =========================================================================== 4. a full disk


@pytest.fixture
def disk_env(clean_settings_env: Path, scripted_llm: ScriptedLLMServer) -> dict[str, str]:
    return _bot_env(
        EMBEDDING_BACKEND="openai",
        EMBEDDING_BASE_URL=scripted_llm.base_url,
        OPENAI_BASE_URL=scripted_llm.base_url,  # the digest command's LLM: never the embedded server
    )


def _prepare_data_dir(data_dir: Path, *, with_store: bool) -> None:
    """What an earlier run left: the tokenizer cache, and optionally an empty embedded store."""
    ensure_tiktoken_cache("cl100k_base", data_dir / "cache" / "tiktoken")
    if with_store:

        async def create() -> None:
            index = EdgePaperIndex(data_dir / "qdrant")
            await index.ensure_collection(384)
            await index.close()

        asyncio.run(create())


def assert_disk_full_reported(code: int, err: str, data_dir: Path) -> str:
    assert code == 3, err
    assert "Traceback" not in err
    [line] = _error_lines(err)
    assert str(data_dir.resolve()) in line and "full" in line, line
    return line


FULL_DISK_LIMIT = 64 * 1024  # bytes per file: far less than any store needs


async def test_a_full_disk_while_writing_the_tokenizer_cache(
    clean_settings_env: Path, disk_env: dict[str, str]
) -> None:
    data_dir = clean_settings_env
    code, _, err = await run_bot(
        "ingest", "--no-progress", str(SEED_PAGE), env=disk_env, file_size_limit=FULL_DISK_LIMIT
    )
    line = assert_disk_full_reported(code, err, data_dir)
    assert line == f"error: the disk holding {data_dir.resolve()} is full (File too large); " + (
        "free some space and run again"
    )
    assert "cli.disk_full" in err
    assert list((data_dir / "cache" / "tiktoken").iterdir()) == []  # no half-written file left


async def test_a_full_disk_while_creating_the_embedded_store(
    clean_settings_env: Path, disk_env: dict[str, str]
) -> None:
    data_dir = clean_settings_env
    await asyncio.to_thread(_prepare_data_dir, data_dir, with_store=False)
    code, _, err = await run_bot(
        "ingest", "--no-progress", str(SEED_PAGE), env=disk_env, file_size_limit=FULL_DISK_LIMIT
    )
    assert_disk_full_reported(code, err, data_dir)
    assert "another paperbot process" not in err  # not the misleading hint of a locked store


async def test_a_full_disk_while_writing_papers_to_the_embedded_store_then_a_rerun_completes(
    clean_settings_env: Path, disk_env: dict[str, str], scripted_llm: ScriptedLLMServer
) -> None:
    data_dir = clean_settings_env
    await asyncio.to_thread(_prepare_data_dir, data_dir, with_store=True)
    code, _, err = await run_bot(
        "ingest", "--no-progress", str(SEED_PAGE), env=disk_env, file_size_limit=FULL_DISK_LIMIT
    )
    assert_disk_full_reported(code, err, data_dir)

    # Space again: the store opens (not corrupted) and a second ingest leaves every paper stored.
    index = EdgePaperIndex(data_dir / "qdrant")
    embedder = OpenAIEmbedder(EmbeddingSettings(backend="openai", base_url=scripted_llm.base_url))
    try:
        await index.ensure_collection(embedder.dimensions)
        await Ingestor(index, embedder, TokenizerSettings()).ingest(parse_path(SEED_PAGE).papers)
        assert await index.count_papers() == 48
    finally:
        await index.close()
        await embedder.aclose()


async def test_a_full_disk_while_writing_the_sqlite_database(
    clean_settings_env: Path, disk_env: dict[str, str]
) -> None:
    data_dir = clean_settings_env
    await asyncio.to_thread(_prepare_data_dir, data_dir, with_store=True)
    args = ("digest", "--date", SAMPLE_DAY.isoformat(), "--max-papers", "2")
    code, _, err = await run_bot(*args, env=disk_env, file_size_limit=16 * 1024)
    line = assert_disk_full_reported(code, err, data_dir)
    assert f"the state database {data_dir.resolve() / 'paperbot.db'}" in line

    # Space again: the same database file opens, is brought up to date and takes writes.
    database = Database(f"sqlite:///{data_dir / 'paperbot.db'}")
    try:
        await upgrade_schema(database.engine)
        repo = Repository(database)
        await repo.save_subscription(_subscription(100))
        assert [s.channel_id for s in await repo.list_subscriptions()] == [100]
    finally:
        await database.close()
