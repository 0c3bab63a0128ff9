"""A paper's full text from arXiv on demand: the HTML page first (LaTeXML: sections with anchors),
then the e-print (LaTeX source), then the PDF. One request every `request_interval_s` (arXiv asks
for 3 s) across the process, retries on 429/5xx and timeouts (honouring Retry-After), a 404 moves to
the next format. Downloads are cached on disk under a size cap, oldest first out."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from bot.core.config import FulltextSettings
from bot.core.errors import DependencyUnavailableError
from bot.core.papers import parse_arxiv_id
from bot.fulltext.document import Format, FullTextError

log = structlog.get_logger(__name__)

FORMAT_PATHS: tuple[tuple[Format, str], ...] = (("html", "html"), ("latex", "e-print"), ("pdf", "pdf"))
MAX_RETRY_AFTER_S = 60.0


class ArxivUnavailableError(DependencyUnavailableError):
    """arXiv kept refusing (429) or failing (5xx, timeouts) after the retries."""

    what = "arXiv"


@dataclass(frozen=True)
class Download:
    arxiv_id: str
    source_format: Format
    url: str
    data: bytes
    cached: bool = False


class DiskCache:
    """Raw downloads by (id, format); when the total passes `max_bytes`, the oldest files go."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self._directory = directory
        self._max_bytes = max_bytes

    def _path(self, arxiv_id: str, source_format: str) -> Path:
        return self._directory / f"{re.sub(r'[^A-Za-z0-9.]', '_', arxiv_id)}.{source_format}"

    def get(self, arxiv_id: str, source_format: str) -> bytes | None:
        path = self._path(arxiv_id, source_format)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        path.touch()  # recently used
        return data

    def put(self, arxiv_id: str, source_format: str, data: bytes) -> None:
        if self._max_bytes <= 0 or len(data) > self._max_bytes:
            return
        self._directory.mkdir(parents=True, exist_ok=True)
        path = self._path(arxiv_id, source_format)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
        self._evict()

    def _evict(self) -> None:
        files = sorted(
            (p for p in self._directory.iterdir() if p.is_file() and not p.name.endswith(".tmp")),
            key=lambda p: p.stat().st_mtime,
        )
        total = sum(p.stat().st_size for p in files)
        for path in files:
            if total <= self._max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)


class ArxivFullTextFetcher:
    def __init__(
        self,
        settings: FulltextSettings,
        cache_dir: Path,
        *,
        user_agent: str = "paperbot/0.1",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._base = settings.arxiv_base_url.rstrip("/")
        self._cache = DiskCache(cache_dir, int(settings.cache_mb * 2**20))
        self._max_bytes = int(settings.max_file_mb * 2**20)
        self._pace = asyncio.Lock()
        self._last_request = 0.0
        self._user_agent = user_agent
        self._transport = transport

    async def fetch(self, arxiv_id: str, *, skip: tuple[Format, ...] = ()) -> Download:
        """The first format arXiv has for `arxiv_id` (HTML, e-print, PDF), `skip` left out (one that
        failed to parse). A 404 for all is a FullTextError; 429s and 5xx past the retries are
        ArxivUnavailableError."""
        parsed = parse_arxiv_id(arxiv_id)
        if parsed is None:
            raise FullTextError(f"{arxiv_id!r} is not an arXiv id")
        base_id = parsed[0]
        # A client per fetch (a few requests, seconds apart): nothing to close when the bot stops.
        async with httpx.AsyncClient(
            timeout=self._settings.timeout_s,
            follow_redirects=True,
            headers={"User-Agent": self._user_agent},
            transport=self._transport,
        ) as client:
            return await self._first_format(client, base_id, skip)

    async def _first_format(
        self, client: httpx.AsyncClient, base_id: str, skip: tuple[Format, ...]
    ) -> Download:
        for source_format, path in FORMAT_PATHS:
            if source_format in skip:
                continue
            cached = self._cache.get(base_id, source_format)
            if cached is not None:
                return Download(base_id, source_format, f"{self._base}/{path}/{base_id}", cached, cached=True)
            url = f"{self._base}/{path}/{base_id}"
            data = await self._get(client, url)
            if data is None:
                continue
            self._cache.put(base_id, source_format, data)
            return Download(base_id, source_format, url, data)
        raise FullTextError(f"arXiv has no full text for {base_id} (HTML, e-print and PDF all 404)")

    async def _get(self, client: httpx.AsyncClient, url: str) -> bytes | None:
        """The body, or None on 404 (and on 200 HTML pages that are arXiv's "no HTML" notice)."""
        attempts = self._settings.retries + 1
        error: Exception | None = None
        response: tuple[int, bytes, float | None] | None = None
        for attempt in range(attempts):
            async with self._pace:  # one request at a time, at arXiv's pace
                wait = self._last_request + self._settings.request_interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    response = await self._send(client, url)
                except httpx.TransportError as exc:  # timeouts included
                    response, error = None, exc
                finally:
                    self._last_request = time.monotonic()
            if response is not None:
                status, body, retry_after = response
                if status == 200:
                    return body
                if status in (404, 410):
                    log.info("fulltext.fetch_missing", url=url, status=status)
                    return None
                if status not in (429, 500, 502, 503, 504):
                    raise FullTextError(f"arXiv answered {status} for {url}")
                error = None
                log.warning("fulltext.fetch_retry", url=url, status=status, attempt=attempt + 1)
            else:
                retry_after = None
                log.warning("fulltext.fetch_retry", url=url, error=str(error), attempt=attempt + 1)
            if attempt + 1 < attempts:
                delay = (
                    retry_after if retry_after is not None else self._settings.request_interval_s * 2**attempt
                )
                await asyncio.sleep(min(delay, MAX_RETRY_AFTER_S))
        what = (
            "rate-limiting requests (429)" if response is not None and response[0] == 429 else "not answering"
        )
        raise ArxivUnavailableError(f"arXiv is {what} for {url} after {attempts} attempts; try again later")

    async def _send(self, client: httpx.AsyncClient, url: str) -> tuple[int, bytes, float | None]:
        async with client.stream("GET", url) as response:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            if response.status_code != 200:
                return response.status_code, b"", retry_after
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > self._max_bytes:
                raise FullTextError(f"{url}: {declared / 2**20:.1f} MiB is over the full-text size cap")
            body = bytearray()
            async for piece in response.aiter_bytes():
                body.extend(piece)
                if len(body) > self._max_bytes:
                    raise FullTextError(f"{url}: the download passed the full-text size cap")
            return 200, bytes(body), retry_after


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
