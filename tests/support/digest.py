"""Test parts for digests: an HTTP server standing in for Hugging Face and arXiv, an in-memory
`DigestPoster` (our own interface boundary, not Discord), and a summary responder for the scripted LLM.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from bot.digest.delivery import DigestHeader, PaperPost
from tests.conftest import SHARED_DATA

HF_DAY = dt.date(2026, 8, 18)  # a Tuesday
HF_RAW = SHARED_DATA / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"
HF_SLIM = SHARED_DATA / "hf_daily_papers" / "hf_daily_papers_slim_part7.jsonl"
ARXIV_LISTING = SHARED_DATA / "arxiv" / "arxiv_cs_2026-06-29.jsonl"


# --------------------------------------------------------------------------- sources


def hf_day_from_slim(day: dt.date, limit: int | None = None) -> bytes:
    """The Hugging Face API response of another day, rebuilt from the slim daily records."""
    items = [json.loads(line) for line in HF_SLIM.read_text().splitlines()]
    return json.dumps([item for item in items if item.get("daily_date") == day.isoformat()][:limit]).encode()


def arxiv_listing(category: str, count: int) -> list[dict[str, Any]]:
    """Distinct real listing records of `category`."""
    records: dict[str, dict[str, Any]] = {}
    for line in ARXIV_LISTING.read_text().splitlines():
        record = json.loads(line)
        if category in record["categories"] and record["id"] not in records:
            records[record["id"]] = record
        if len(records) == count:
            break
    return list(records.values())


def atom_feed(records: Sequence[dict[str, Any]], published: Sequence[dt.date]) -> bytes:
    """An arXiv Atom API response for `records`, each first submitted on the matching date."""
    entries = []
    for record, day in zip(records, published, strict=True):
        stamp = f"{day.isoformat()}T12:00:00Z"
        authors = "".join(f"<author><name>{escape(a)}</name></author>" for a in record["authors"])
        categories = "".join(
            f'<category term="{c}" scheme="http://arxiv.org/schemas/atom"/>' for c in record["categories"]
        )
        entries.append(
            f"<entry><id>http://arxiv.org/abs/{record['id']}v1</id><title>{escape(record['title'])}</title>"
            f"<updated>{stamp}</updated><published>{stamp}</published>"
            f"<summary>{escape(record['summary'])}</summary>{authors}"
            f'<link href="https://arxiv.org/abs/{record["id"]}v1" rel="alternate" type="text/html"/>'
            f'{categories}<arxiv:primary_category term="{record["categories"][0]}"/></entry>'
        )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">'
        "<id>https://arxiv.org/api/test</id><title>arXiv Query</title>" + "".join(entries) + "</feed>"
    ).encode()


@dataclass
class FakeSources:
    """Serves `/api/daily_papers?date=` (the real 2026-08-18 list, `[]` for other days) and
    `/api/query` (Atom feeds registered per category). `fail_next` answers that many requests 503."""

    base_url: str = ""
    hf_days: dict[str, bytes] = field(default_factory=lambda: {HF_DAY.isoformat(): HF_RAW.read_bytes()})
    arxiv: dict[str, bytes] = field(default_factory=dict)
    fail_next: int = 0
    requests: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.path_qs)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, text="upstream unavailable")
        if request.path == "/api/daily_papers":
            body = self.hf_days.get(request.query.get("date", ""), b"[]")
            return web.Response(body=body, content_type="application/json")
        match = re.search(r"cat:(\S+)", request.query.get("search_query", ""))
        body = self.arxiv.get(match.group(1) if match else "", atom_feed([], []))
        return web.Response(body=body, content_type="application/atom+xml")


@asynccontextmanager
async def fake_sources() -> AsyncIterator[FakeSources]:
    fake = FakeSources()
    app = web.Application()
    app.router.add_get("/api/daily_papers", fake.handle)
    app.router.add_get("/api/query", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- poster


class SimulatedCrash(BaseException):
    """Stands for the process being killed: no `except Exception` in the service catches it."""


@dataclass
class SentMessage:
    message_id: int
    channel_id: int
    kind: str  # header or paper
    marker: str
    parent_id: int | None
    header: DigestHeader | None = None
    post: PaperPost | None = None


@dataclass
class MemoryPoster:
    """Keeps messages per channel like a chat service would; can crash or fail at a chosen item.

    `crash_after_sending`: the message is sent, then the "process dies" before the id is returned.
    `crash_before_sending`: the process dies just before sending. `fail`: items whose send raises.
    """

    messages: list[SentMessage] = field(default_factory=list)
    crash_after_sending: str | None = None
    crash_before_sending: str | None = None
    fail: set[str] = field(default_factory=set)
    lookups: int = 0
    _next_id: int = 1_000_000_000_000_000_000

    def _send(self, channel_id: int, kind: str, marker: str, parent_id: int | None, **payload: Any) -> int:
        item = marker.rsplit(" · ", 1)[-1]
        if item in self.fail:
            raise RuntimeError(f"cannot post {item}: 403 Missing Permissions")
        if self.crash_before_sending == item:
            self.crash_before_sending = None
            raise SimulatedCrash(f"killed before sending {item}")
        self._next_id += 1
        self.messages.append(SentMessage(self._next_id, channel_id, kind, marker, parent_id, **payload))
        if self.crash_after_sending == item:
            self.crash_after_sending = None
            raise SimulatedCrash(f"killed after sending {item}")
        return self._next_id

    async def post_header(self, channel_id: int, header: DigestHeader) -> int:
        return self._send(channel_id, "header", header.marker, None, header=header)

    async def post_paper(self, channel_id: int, post: PaperPost, parent_message_id: int | None) -> int:
        return self._send(channel_id, "paper", post.marker, parent_message_id, post=post)

    async def find_recent_digest_messages(self, channel_id: int, marker: str) -> list[tuple[int, str]]:
        self.lookups += 1
        return [
            (m.message_id, m.marker)
            for m in self.messages
            if m.channel_id == channel_id and m.marker.startswith(marker)
        ]

    def in_channel(self, channel_id: int) -> list[SentMessage]:
        return [m for m in self.messages if m.channel_id == channel_id]

    def paper_ids(self, channel_id: int) -> list[str]:
        return [m.post.paper.paper_id for m in self.in_channel(channel_id) if m.post is not None]


# --------------------------------------------------------------------------- LLM


def key_contribution(abstract: str) -> str:
    """The start of the abstract's first sentence (at most 16 words): a line the abstract supports."""
    first = re.split(r"(?<=[.!?])\s", " ".join(abstract.split()), maxsplit=1)[0]
    return " ".join(first.split()[:16]).rstrip(".,;:")


def summary_responder(body: dict[str, Any]) -> str:
    """A summary that names the paper it was asked about (the last `Title:` of the prompt) and
    repeats the start of its abstract, so the check against the abstract keeps both lines."""
    messages = body.get("messages") or []
    prompt = messages[-1]["content"] if messages else str(body.get("prompt", ""))
    titles = re.findall(r"^Title: (.*)$", prompt, flags=re.MULTILINE)
    abstracts = re.findall(r"^Abstract: (.*)$", prompt, flags=re.MULTILINE)
    contribution = key_contribution(abstracts[-1]) if abstracts else "?"
    return f" Summary of {titles[-1] if titles else '?'}.\nKey contribution: {contribution}."
