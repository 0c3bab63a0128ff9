"""Live fetchers against a local HTTP server that serves the shared fixtures."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.core.config import SourceSettings
from bot.ingest.fetch import FetchError, RetryPolicy, fetch_source, is_live_source, parse_live_source

SHARED = Path(__file__).parents[2] / "shared" / "data"
HF_RAW = SHARED / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"
ATOM = SHARED / "arxiv" / "arxiv_api_search_testing_m100.xml"
FAST_RETRY = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)


@dataclass
class PlannedReply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class RecordedRequest:
    path: str
    query: dict[str, str]
    user_agent: str | None


@dataclass
class FakeSourceServer:
    """Serves HF and arXiv API paths; replies from `planned` first (one per request), then fixtures."""

    base_url: str = ""
    requests: list[RecordedRequest] = field(default_factory=list)
    planned: list[PlannedReply] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            RecordedRequest(request.path, dict(request.query), request.headers.get("User-Agent"))
        )
        if self.planned:
            reply = self.planned.pop(0)
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.status != 200 or reply.body:
                return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        if request.path == "/api/daily_papers":
            return web.Response(body=HF_RAW.read_bytes(), content_type="application/json")
        return web.Response(body=ATOM.read_bytes(), content_type="application/atom+xml")


@pytest.fixture
async def server() -> AsyncIterator[FakeSourceServer]:
    fake = FakeSourceServer()
    app = web.Application()
    app.router.add_get("/api/daily_papers", fake.handle)
    app.router.add_get("/api/query", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}"
    yield fake
    await runner.cleanup()


def settings_for(base_url: str, timeout_s: float = 5.0) -> SourceSettings:
    return SourceSettings(
        hf_api_base=base_url,
        arxiv_api_base=base_url,
        http_timeout_s=timeout_s,
        user_agent="paperbot-test/1.0",
    )


async def test_hf_daily_papers_fetch(server: FakeSourceServer) -> None:
    result = await fetch_source("hf:2026-08-18", settings_for(server.base_url), retry=FAST_RETRY)
    assert (result.records, len(result.papers), result.rejected) == (29, 29, [])
    first = result.papers[0]
    assert (first.paper_id, first.upvotes, first.hf_date) == ("2608.15265", 39, dt.date(2026, 8, 18))
    assert server.requests == [
        RecordedRequest("/api/daily_papers", {"date": "2026-08-18"}, "paperbot-test/1.0")
    ]


async def test_arxiv_category_fetch(server: FakeSourceServer) -> None:
    result = await fetch_source(
        "arxiv:cs.CL", settings_for(server.base_url), max_results=50, retry=FAST_RETRY
    )
    assert len(result.papers) == 100 and result.rejected == []  # the fixture holds 100 entries
    assert {p.version for p in result.papers if p.paper_id == "2409.05654"} == {9}
    [request] = server.requests
    assert request.path == "/api/query"
    assert request.query == {
        "search_query": "cat:cs.CL",
        "sortBy": "submittedDate",
        "sortOrder": "descending",
        "max_results": "50",
    }
    assert request.user_agent == "paperbot-test/1.0"


async def test_503_once_is_retried(server: FakeSourceServer) -> None:
    server.planned = [PlannedReply(status=503, body=b"busy")]
    result = await fetch_source("hf:2026-08-18", settings_for(server.base_url), retry=FAST_RETRY)
    assert len(result.papers) == 29
    assert len(server.requests) == 2


async def test_429_honours_retry_after(server: FakeSourceServer) -> None:
    server.planned = [PlannedReply(status=429, body=b"slow down", headers={"Retry-After": "0"})]
    result = await fetch_source("arxiv:hep-th", settings_for(server.base_url), retry=FAST_RETRY)
    assert len(result.papers) == 100 and len(server.requests) == 2


async def test_404_is_not_retried(server: FakeSourceServer) -> None:
    server.planned = [PlannedReply(status=404, body=b"no daily papers for that date")]
    with pytest.raises(FetchError, match="HTTP 404") as caught:
        await fetch_source("hf:2026-08-18", settings_for(server.base_url), retry=FAST_RETRY)
    assert caught.value.status == 404
    assert "no daily papers for that date" in str(caught.value)
    assert len(server.requests) == 1


async def test_persistent_5xx_gives_up_after_all_attempts(server: FakeSourceServer) -> None:
    server.planned = [PlannedReply(status=502, body=b"bad gateway") for _ in range(10)]
    with pytest.raises(FetchError, match="failed after 4 attempts: HTTP 502") as caught:
        await fetch_source("hf:2026-08-18", settings_for(server.base_url), retry=FAST_RETRY)
    assert caught.value.status == 502
    assert len(server.requests) == 4


async def test_timeout_is_retried(server: FakeSourceServer) -> None:
    server.planned = [PlannedReply(delay_s=1.0)]
    result = await fetch_source(
        "hf:2026-08-18", settings_for(server.base_url, timeout_s=0.2), retry=FAST_RETRY
    )
    assert len(result.papers) == 29
    assert len(server.requests) == 2


async def test_connection_refused_becomes_fetch_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(FetchError, match="failed after 4 attempts: ConnectError") as caught:
        await fetch_source("hf:2026-08-18", settings_for(f"http://127.0.0.1:{port}"), retry=FAST_RETRY)
    assert caught.value.status is None


async def test_base_url_without_scheme_fails_fast() -> None:
    with pytest.raises(FetchError, match="bad source URL"):
        await fetch_source("hf:2026-08-18", settings_for("127.0.0.1:9"), retry=FAST_RETRY)


async def test_non_json_body_is_rejected_not_raised(server: FakeSourceServer) -> None:
    server.planned = [PlannedReply(status=200, body=b"<html>Sign in</html>")]
    result = await fetch_source("hf:2026-08-18", settings_for(server.base_url), retry=FAST_RETRY)
    assert result.papers == []
    assert [(r.source, r.line, r.reason) for r in result.rejected] == [
        ("hf:2026-08-18", 1, "expected a JSON array")
    ]


async def test_caller_client_is_used_and_left_open(server: FakeSourceServer) -> None:
    async with httpx.AsyncClient() as client:
        result = await fetch_source(
            "arxiv:cs.CL", settings_for(server.base_url), client=client, retry=FAST_RETRY
        )
        assert len(result.papers) == 100
        assert not client.is_closed
    assert server.requests[0].user_agent == "paperbot-test/1.0"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hf:2026-13-01", "bad date"),
        ("hf:yesterday", "expected hf:YYYY-MM-DD"),
        ("hf:", "expected hf:YYYY-MM-DD"),
        ("arxiv:", "bad arXiv category"),
        ("arxiv:cs CL", "bad arXiv category"),
        ("arxiv:cat:cs.CL", "bad arXiv category"),
        ("rss:https://example.org", "unknown live source"),
    ],
)
async def test_invalid_specs_raise_value_error(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await fetch_source(spec, settings_for("http://127.0.0.1:9"), retry=FAST_RETRY)


async def test_max_results_bounds() -> None:
    with pytest.raises(ValueError, match="max_results"):
        await fetch_source("arxiv:cs.CL", settings_for("http://127.0.0.1:9"), max_results=0)


def test_is_live_source_and_spec_parsing() -> None:
    assert (
        is_live_source("hf:2026-08-18") and is_live_source("arxiv:cs.CL") and is_live_source("HF:2026-08-18")
    )
    assert not is_live_source("data/papers.jsonl")
    assert not is_live_source("/work/shared/data/seed/000_c48a4a4dc127d178.txt")
    assert str(parse_live_source(" arxiv:cond-mat.mes-hall ")) == "arxiv:cond-mat.mes-hall"
    assert str(parse_live_source("arxiv:astro-ph.CO")) == "arxiv:astro-ph.CO"
    assert parse_live_source("hf:2024-02-29").argument == "2024-02-29"


def test_retry_delays_grow_and_are_capped() -> None:
    policy = RetryPolicy(base_delay_s=1.0, max_delay_s=3.0)
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert policy.delay(1, retry_after=120) == 3.0
