"""The operator's HTTP endpoint: /healthz (liveness), /readyz (readiness, JSON), /metrics (Prometheus).

Off unless `HEALTH_PORT` is set. Readiness checks are injected as async callables (see
`bot.ops.checks`), so this module knows nothing about Discord, Qdrant or the database. Each check
returns None or True (ready), False or a `CheckResult`, or raises (not ready, with the error as
detail); a check slower than `HEALTH_CHECK_TIMEOUT_S` counts as failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from bot.core.config import OpsSettings
from bot.core.logs import SecretScrubber
from bot.core.metrics import render_metrics

log = structlog.get_logger(__name__)

_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str = ""
    # Ready, but on a fallback (e.g. extractive answers while the LLM is unreachable).
    degraded: bool = False


ReadinessCheck = Callable[[], Awaitable["CheckResult | bool | None"]]


async def run_check(check: ReadinessCheck, timeout_s: float) -> CheckResult:
    try:
        outcome = await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return CheckResult(False, f"no answer within {timeout_s:g}s")
    except Exception as exc:
        return CheckResult(False, f"{type(exc).__name__}: {exc}")
    if isinstance(outcome, CheckResult):
        return outcome
    return CheckResult(outcome is None or bool(outcome))


class HealthServer:
    """`async with HealthServer(port=8080, checks={...}) as server:`; port 0 picks a free port (tests)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        checks: Mapping[str, ReadinessCheck] | None = None,
        check_timeout_s: float = 5.0,
        secrets: Iterable[str] = (),
    ) -> None:
        self.host = host
        self._requested_port = port
        self.checks: dict[str, ReadinessCheck] = dict(checks or {})
        self.check_timeout_s = check_timeout_s
        self._scrubber = SecretScrubber(secrets)
        self._stopping = False
        self._started_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/livez", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("HealthServer already started")
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("health.listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def set_check(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check

    def mark_stopping(self) -> None:
        """From now on /readyz answers 503, so load balancers and Kubernetes stop routing here."""
        self._stopping = True

    # -- handlers ----------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        # Answering at all is the liveness signal: the event loop is not blocked or dead.
        return web.json_response({"status": "ok", "uptime_s": round(time.monotonic() - self._started_at, 1)})

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        if self._stopping:
            return False, {"status": "stopping", "checks": {}}
        if not self.checks:
            return False, {"status": "starting", "checks": {}}
        names = list(self.checks)
        started = time.monotonic()
        results = await asyncio.gather(*(self._timed(self.checks[name]) for name in names))
        report = {}
        for name, (result, seconds) in zip(names, results, strict=True):
            detail = self._scrubber.scrub_text(result.detail)
            if len(detail) > _DETAIL_LIMIT:
                detail = detail[:_DETAIL_LIMIT] + "…"
            report[name] = {
                "ok": result.ok,
                "degraded": result.degraded,
                "detail": detail,
                "seconds": round(seconds, 4),
            }
        ready = all(item["ok"] for item in report.values())
        body = {
            "status": "ready" if ready else "not_ready",
            "checks": report,
            "seconds": round(time.monotonic() - started, 4),
        }
        return ready, body

    async def _timed(self, check: ReadinessCheck) -> tuple[CheckResult, float]:
        started = time.monotonic()
        result = await run_check(check, self.check_timeout_s)
        return result, time.monotonic() - started

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, body = await self.readiness()
        if not ready and body["status"] == "not_ready":
            failed = sorted(name for name, item in body["checks"].items() if not item["ok"])
            log.warning("health.not_ready", failed=failed)
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        payload, content_type = render_metrics()
        return web.Response(body=payload, headers={"Content-Type": content_type})


@asynccontextmanager
async def health_server(
    settings: OpsSettings, *, secrets: Iterable[str] = ()
) -> AsyncIterator[HealthServer | None]:
    """The configured server, started; None when `HEALTH_PORT` is 0 (the default)."""
    if not settings.enabled:
        yield None
        return
    server = HealthServer(
        host=settings.host,
        port=settings.port,
        check_timeout_s=settings.check_timeout_s,
        secrets=secrets,
    )
    async with server:
        yield server
