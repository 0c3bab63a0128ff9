"""Readiness checks for /readyz, built from the running parts (duck-typed: no discord import here)."""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from bot.ops.health import CheckResult, ReadinessCheck


class GatewayClient(Protocol):
    """What `discord.Client` offers (and `AutoShardedClient`, whose `shards` maps id → ShardInfo)."""

    @property
    def latency(self) -> float: ...

    def is_ready(self) -> bool: ...

    def is_closed(self) -> bool: ...


class Pingable(Protocol):
    async def ping(self) -> None: ...


def gateway_check(client: GatewayClient) -> ReadinessCheck:
    """Ready once the client has received READY for all its shards and no shard is disconnected."""

    async def check() -> CheckResult:
        if client.is_closed():
            return CheckResult(False, "the gateway connection is closed")
        if not client.is_ready():
            return CheckResult(False, "waiting for READY from the gateway")
        shards: dict[Any, Any] = getattr(client, "shards", None) or {}
        down = sorted(shard_id for shard_id, info in shards.items() if info.is_closed())
        if down:
            return CheckResult(False, f"shards disconnected: {down}")
        latency = client.latency
        shown = f"{latency * 1000:.0f} ms" if latency == latency and latency != float("inf") else "n/a"
        return CheckResult(True, f"heartbeat latency {shown}" + (f", {len(shards)} shards" if shards else ""))

    return check


def index_check(index: Pingable) -> ReadinessCheck:
    """Qdrant answers (`PaperIndex.ping`: the Edge shard's info, or the server's collection list)."""

    async def check() -> CheckResult:
        await index.ping()
        return CheckResult(True, f"{getattr(index, 'backend', 'qdrant')} reachable")

    return check


def database_check(engine: Any) -> ReadinessCheck:
    """`SELECT 1` on the state database (`Database.engine`, an SQLAlchemy `AsyncEngine`)."""
    from sqlalchemy import text

    async def check() -> CheckResult:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return CheckResult(True, f"{engine.url.get_backend_name()} reachable")

    return check


def llm_check(base_url: str | None, *, timeout_s: float = 3.0) -> ReadinessCheck:
    """The LLM server answers HTTP at all (any status below 500, so no key is needed), or the bot is
    already on its extractive fallback. Either way the bot can answer: this check never fails
    readiness, it reports `degraded` so dashboards and `doctor` show it."""

    async def check() -> CheckResult:
        if not base_url:
            return CheckResult(True, "no LLM; extractive answers (fallback active)", degraded=True)
        url = base_url.rstrip("/") + "/models"
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as http:
                response = await http.get(url)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            return CheckResult(True, f"unreachable ({reason}); extractive fallback active", degraded=True)
        if response.status_code >= 500:
            return CheckResult(
                True, f"answers {response.status_code}; extractive fallback active", degraded=True
            )
        return CheckResult(True, "reachable")

    return check


def readiness_checks(
    client: GatewayClient, *, index: Pingable, llm_base_url: str | None, database: Any | None = None
) -> dict[str, ReadinessCheck]:
    """The daemon's /readyz: gateway, Qdrant, the state database (when one is open) and the LLM."""
    checks = {"gateway": gateway_check(client), "qdrant": index_check(index)}
    if database is not None:
        checks["database"] = database_check(database.engine)
    checks["llm"] = llm_check(llm_base_url)
    return checks
