"""The health/metrics endpoint over real HTTP: liveness, readiness (503/200), Prometheus text, the probe.

Readiness runs against real parts: discord.py connected to the fake Discord, Qdrant Edge, SQLite
through bot.db, and the scripted OpenAI-compatible server for the LLM.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import discord
import pytest
from discord.ext import commands
from prometheus_client.parser import text_string_to_metric_families

from bot.core import metrics
from bot.core.config import OpsSettings
from bot.discord.instrumentation import instrument_bot
from bot.llm import LLMClient
from bot.ops.checks import database_check, gateway_check, index_check, llm_check, readiness_checks
from bot.ops.health import CheckResult, HealthServer, health_server
from bot.ops.probe import main as probe_main
from tests.fakediscord.client import run_client
from tests.fakediscord.server import FakeDiscord
from tests.support.scripted_llm import ScriptedLLMServer, ScriptedReply


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as response:
        return response.status, await response.json()


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in Prometheus text format, None if absent."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and (labels is None or item.labels == labels):
                return float(item.value)
    return None


def registry_value(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def wait_until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):  # 5 s
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 5 s")


# --- liveness and readiness ----------------------------------------------------------------------


async def test_healthz_answers_while_readyz_reports_starting_then_stopping(
    http: aiohttp.ClientSession,
) -> None:
    async with HealthServer(port=0) as server:
        status, body = await get_json(http, f"{server.url}/healthz")
        assert (status, body["status"]) == (200, "ok")
        status, body = await get_json(http, f"{server.url}/readyz")
        assert (status, body["status"]) == (503, "starting")  # no checks registered yet

        server.set_check("always", _ok)
        status, body = await get_json(http, f"{server.url}/readyz")
        assert (status, body["status"]) == (200, "ready")

        server.mark_stopping()
        status, body = await get_json(http, f"{server.url}/readyz")
        assert (status, body["status"]) == (503, "stopping")
        status, _ = await get_json(http, f"{server.url}/healthz")
        assert status == 200  # still alive while draining


async def _ok() -> None:
    return None


async def test_readyz_is_503_with_the_failing_check_named_and_200_once_all_pass(
    http: aiohttp.ClientSession,
) -> None:
    qdrant_up = False

    async def qdrant() -> None:
        if not qdrant_up:
            raise ConnectionRefusedError("Qdrant at http://qdrant:6333 refused the connection")

    async def slow() -> None:
        await asyncio.sleep(5)

    async def gateway() -> bool:
        return True

    checks = {"gateway": gateway, "qdrant": qdrant, "llm": _ok}
    async with HealthServer(port=0, checks=checks, check_timeout_s=0.2) as server:
        status, body = await get_json(http, f"{server.url}/readyz")
        assert status == 503
        assert body["status"] == "not_ready"
        assert set(body["checks"]) == {"gateway", "qdrant", "llm"}
        assert body["checks"]["gateway"]["ok"] is True
        assert body["checks"]["qdrant"]["ok"] is False
        assert "refused the connection" in body["checks"]["qdrant"]["detail"]

        qdrant_up = True
        status, body = await get_json(http, f"{server.url}/readyz")
        assert (status, body["status"]) == (200, "ready")
        assert all(item["ok"] for item in body["checks"].values())

        server.set_check("database", slow)
        status, body = await get_json(http, f"{server.url}/readyz")
        assert status == 503
        assert body["checks"]["database"] == {
            "ok": False,
            "degraded": False,
            "detail": "no answer within 0.2s",
            "seconds": body["checks"]["database"]["seconds"],
        }

        async def says_no() -> bool:
            return False

        server.set_check("database", says_no)
        status, body = await get_json(http, f"{server.url}/readyz")
        assert status == 503 and body["checks"]["database"]["ok"] is False


async def test_readiness_details_never_show_secrets(http: aiohttp.ClientSession) -> None:
    secret = "postgres-pa55word-xyz"

    async def database() -> None:
        raise OSError(f"could not connect to postgresql://paperbot:{secret}@db:5432/paperbot")

    server = HealthServer(port=0, checks={"database": database}, secrets=[secret])
    async with server, http.get(f"{server.url}/readyz") as response:
        text = await response.text()
    assert response.status == 503
    assert secret not in text
    assert "paperbot:***@db" in text


async def test_health_server_is_off_unless_a_port_is_set() -> None:
    async with health_server(OpsSettings()) as server:
        assert server is None
    assert OpsSettings().enabled is False


async def test_probe_exit_status_follows_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    async def down() -> None:
        raise RuntimeError("down")

    async with HealthServer(port=0, checks={"qdrant": down}) as server:
        port = str(server.port)
        assert await asyncio.to_thread(probe_main, ["/healthz", "--port", port]) == 0
        assert await asyncio.to_thread(probe_main, ["/readyz", "--port", port]) == 1
    # Nothing listens any more, and HEALTH_PORT unset means the endpoint is off: both fail.
    assert await asyncio.to_thread(probe_main, ["/healthz", "--port", port, "--timeout", "1"]) == 1
    monkeypatch.delenv("HEALTH_PORT", raising=False)
    assert await asyncio.to_thread(probe_main, ["/healthz"]) == 1


# --- real parts behind the checks ------------------------------------------------------------------


async def test_readiness_over_discord_py_qdrant_edge_and_sqlite(
    fake_discord: FakeDiscord, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    from bot.db import Database
    from bot.retrieval.index.edge import EdgePaperIndex

    index = EdgePaperIndex(tmp_path / "qdrant")
    await index.ensure_collection(8)
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    intents = discord.Intents.none()
    intents.guilds = True
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05)
    instrument_bot(bot)
    checks = readiness_checks(bot, index=index, llm_base_url=None, database=database)
    assert list(checks) == ["gateway", "qdrant", "database", "llm"]
    reconnects_before = registry_value("paperbot_gateway_reconnects_total", {"shard": "0"})
    try:
        async with HealthServer(port=0, checks=checks) as server:
            status, body = await get_json(http, f"{server.url}/readyz")
            assert status == 503  # not connected yet
            assert "READY" in body["checks"]["gateway"]["detail"]

            async with run_client(bot, fake_discord):
                status, body = await get_json(http, f"{server.url}/readyz")
                assert (status, body["status"]) == (200, "ready"), body
                assert body["checks"]["llm"]["degraded"] is True  # no LLM: extractive answers
                assert registry_value("paperbot_gateway_connected", {"shard": "0"}) == 1

                # Discord asks for a reconnect: discord.py RESUMEs, and the metric counts it.
                resumes = len(fake_discord.gateway.resumes)
                await fake_discord.gateway.request_reconnect()
                await wait_until(lambda: len(fake_discord.gateway.resumes) > resumes)
                await wait_until(
                    lambda: (
                        registry_value("paperbot_gateway_reconnects_total", {"shard": "0"})
                        == reconnects_before + 1
                    )
                )

            status, body = await get_json(http, f"{server.url}/readyz")
            assert status == 503
            assert body["checks"]["gateway"]["detail"] == "the gateway connection is closed"
            assert body["checks"]["qdrant"]["ok"] and body["checks"]["database"]["ok"]
            assert registry_value("paperbot_gateway_connected", {"shard": "0"}) == 0
    finally:
        await index.close()
        await database.close()


async def _aiosqlite_workers_stopped() -> None:
    """Wait, with this test's loop still running, for aiosqlite's worker threads to end.

    When SQLite cannot open the file, aiosqlite stops its worker with a future it never awaits; the
    worker later hands the result to that loop and, if the loop is closed by then, raises in its
    thread (a warning in a later test)."""
    workers = [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
    await asyncio.gather(*(asyncio.to_thread(worker.join, 5.0) for worker in workers))
    assert not any(worker.is_alive() for worker in workers)


async def test_index_and_database_checks_fail_when_their_store_is_gone(tmp_path: Path) -> None:
    from bot.core.config import QdrantSettings
    from bot.db import Database
    from bot.ops.health import run_check
    from bot.retrieval.index.server import ServerPaperIndex

    index = ServerPaperIndex(QdrantSettings(url="http://127.0.0.1:9", timeout_s=1))
    not_a_file = tmp_path / "state.db"
    not_a_file.mkdir()  # SQLite cannot open a directory: the database is unusable
    database = Database(f"sqlite+aiosqlite:///{not_a_file}")
    try:
        qdrant = await run_check(index_check(index), 5.0)
        db = await run_check(database_check(database.engine), 5.0)
    finally:
        await index.close()
        await database.close()
        await _aiosqlite_workers_stopped()
    assert qdrant.ok is False and "unreachable" in qdrant.detail
    assert db.ok is False and db.detail


async def test_llm_check_reports_reachable_or_degraded_never_down(scripted_llm: ScriptedLLMServer) -> None:
    from bot.ops.health import run_check

    reachable = await run_check(llm_check(scripted_llm.base_url), 5.0)
    assert reachable == CheckResult(True, "reachable")
    unreachable = await run_check(llm_check("http://127.0.0.1:9/v1", timeout_s=1), 5.0)
    assert unreachable.ok and unreachable.degraded
    assert "extractive fallback active" in unreachable.detail


async def test_gateway_check_names_disconnected_shards() -> None:
    class Shard:
        def __init__(self, closed: bool) -> None:
            self.closed = closed

        def is_closed(self) -> bool:
            return self.closed

    class ShardedClient:
        latency = 0.042
        shards: ClassVar[dict[int, Shard]] = {0: Shard(False), 1: Shard(True)}

        def is_ready(self) -> bool:
            return True

        def is_closed(self) -> bool:
            return False

    result = await gateway_check(ShardedClient())()
    assert result == CheckResult(False, "shards disconnected: [1]")
    ShardedClient.shards[1].closed = False
    result = await gateway_check(ShardedClient())()
    assert result.ok and "42 ms" in result.detail and "2 shards" in result.detail


# --- metrics ------------------------------------------------------------------------------------


async def test_metrics_endpoint_exposes_our_metrics(http: aiohttp.ClientSession) -> None:
    labels = {"command": "search", "outcome": "ok"}
    before = registry_value("paperbot_commands_total", labels)
    slow_before = registry_value(
        "paperbot_command_duration_seconds_bucket", {"command": "search", "le": "0.25"}
    )
    posted_before = registry_value("paperbot_digest_papers_total", {"stage": "posted"})
    runs_before = registry_value("paperbot_digest_runs_total", {"status": "posted", "trigger": "schedule"})
    failed_before = registry_value("paperbot_digest_papers_total", {"stage": "failed"})

    metrics.observe_command("search", 0.2, "ok")
    metrics.observe_command("search", 3.0, "ok")
    metrics.observe_command("ask", 12.0, "no-such-outcome")  # unknown outcomes are counted as errors
    metrics.observe_retrieval(0.03, "hybrid")
    metrics.observe_digest_run(
        "posted", {"fetched": 29, "new": 20, "filtered": 15, "posted": 5, "failed": 0}, seconds=42.0
    )

    async with HealthServer(port=0) as server, http.get(f"{server.url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()

    for name in (
        "paperbot_commands_total",
        "paperbot_command_duration_seconds",
        "paperbot_retrieval_duration_seconds",
        "paperbot_digest_runs_total",
        "paperbot_digest_papers_total",
        "paperbot_digest_run_duration_seconds",
        "paperbot_gateway_reconnects_total",
        "paperbot_llm_calls_total",
        "paperbot_llm_tokens_total",
        "paperbot_llm_errors_total",
        "paperbot_llm_retries_total",
        "paperbot_build_info",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
    assert sample(text, "paperbot_commands_total", labels) == before + 2
    assert sample(text, "paperbot_commands_total", {"command": "ask", "outcome": "error"}) is not None
    # the 0.2 s search fell in the 0.25 bucket, the 3 s one did not
    bucket = sample(text, "paperbot_command_duration_seconds_bucket", {"command": "search", "le": "0.25"})
    assert bucket == slow_before + 1
    assert sample(text, "paperbot_digest_papers_total", {"stage": "posted"}) == posted_before + 5
    assert (
        sample(text, "paperbot_digest_runs_total", {"status": "posted", "trigger": "schedule"})
        == runs_before + 1
    )
    # a stage with nothing in it adds nothing
    assert registry_value("paperbot_digest_papers_total", {"stage": "failed"}) == failed_before


async def test_llm_usage_of_a_real_client_is_exported(
    scripted_llm: ScriptedLLMServer, http: aiohttp.ClientSession
) -> None:
    calls_before = registry_value("paperbot_llm_calls_total")
    prompt_before = registry_value("paperbot_llm_tokens_total", {"kind": "prompt"})
    errors_before = registry_value("paperbot_llm_errors_total")
    client = LLMClient(
        base_url=scripted_llm.base_url,
        api_key=None,
        model="scripted-model",
        api_mode="chat",
        timeout_s=5,
        max_retries=0,
    )
    metrics.track_llm_usage(client.usage)
    metrics.track_llm_usage(client.usage)  # tracking twice must not double-count
    try:
        scripted_llm.script(ScriptedReply("Transformers use attention."))
        completion = await client.generate(
            system="Be brief.", user="What do transformers use?", max_tokens=16
        )
    finally:
        await client.aclose()

    async with HealthServer(port=0) as server, http.get(f"{server.url}/metrics") as response:
        text = await response.text()
    assert sample(text, "paperbot_llm_calls_total") == calls_before + 1
    assert (
        sample(text, "paperbot_llm_tokens_total", {"kind": "prompt"})
        == prompt_before + completion.prompt_tokens
    )
    assert sample(text, "paperbot_llm_errors_total") == errors_before


def test_each_bot_counts_its_own_reconnects() -> None:
    labels = {"shard": "7"}
    first, second = metrics.GatewayTracker(), metrics.GatewayTracker()
    before = registry_value("paperbot_gateway_reconnects_total", labels)
    first.connected(7)
    first.disconnected(7)
    assert registry_value("paperbot_gateway_connected", labels) == 0
    second.connected(7)  # a new bot's first connect is not a reconnect, whatever an older bot did
    assert registry_value("paperbot_gateway_reconnects_total", labels) == before
    first.connected(7)  # the first bot reconnects after a fresh IDENTIFY
    second.resumed(7)  # the second RESUMEs
    assert registry_value("paperbot_gateway_reconnects_total", labels) == before + 2
    assert registry_value("paperbot_gateway_connected", labels) == 1 and second.shards_up == ["7"]
