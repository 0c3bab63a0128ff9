"""Live paper sources over HTTP: `hf:YYYY-MM-DD` (Hugging Face Daily Papers) and `arxiv:CATEGORY`
(the arXiv Atom API, newest submissions first)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Literal

import httpx
import structlog

from bot.core.config import SourceSettings
from bot.core.errors import DependencyUnavailableError
from bot.core.papers import clean_text
from bot.ingest.sources import ParseResult, parse_bytes

log = structlog.get_logger(__name__)

LIVE_SCHEMES = ("hf", "arxiv")
ARXIV_MAX_RESULTS = 2000  # the arXiv API's per-request ceiling
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# cs.CL, hep-th, astro-ph.CO, cond-mat.mes-hall, q-bio.NC, math-ph, ...
_ARXIV_CATEGORY = re.compile(r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]+(?:-[a-z]+)?)?$")


class FetchError(DependencyUnavailableError):
    """A live source could not be fetched: a non-retryable HTTP status, or retries exhausted."""

    what = "The paper source"

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


@dataclass(frozen=True)
class LiveSource:
    scheme: Literal["hf", "arxiv"]
    argument: str  # the ISO date for `hf`, the category for `arxiv`

    def __str__(self) -> str:
        return f"{self.scheme}:{self.argument}"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # the first try and 3 retries
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed `attempt` (1-based); a server's Retry-After wins, capped."""
        wanted = retry_after if retry_after is not None else self.base_delay_s * 2 ** (attempt - 1)
        return min(wanted, self.max_delay_s)


DEFAULT_RETRY = RetryPolicy()


def is_live_source(spec: str) -> bool:
    """True for `hf:...` and `arxiv:...` specs (valid or not); False for file paths."""
    scheme, sep, _ = spec.strip().partition(":")
    return bool(sep) and scheme.lower() in LIVE_SCHEMES


def parse_live_source(spec: str) -> LiveSource:
    """Validate a live source spec; raises ValueError with what was expected."""
    scheme, sep, argument = spec.strip().partition(":")
    scheme, argument = scheme.lower(), argument.strip()
    if not sep or scheme not in LIVE_SCHEMES:
        raise ValueError(
            f"unknown live source {spec!r}: expected hf:YYYY-MM-DD or arxiv:CATEGORY (e.g. arxiv:cs.CL)"
        )
    if scheme == "hf":
        if not _ISO_DATE.match(argument):
            raise ValueError(f"bad date in {spec!r}: expected hf:YYYY-MM-DD, e.g. hf:2026-08-18")
        try:
            dt.date.fromisoformat(argument)
        except ValueError as exc:
            raise ValueError(f"bad date in {spec!r}: {exc}") from None
        return LiveSource("hf", argument)
    if not _ARXIV_CATEGORY.match(argument):
        raise ValueError(f"bad arXiv category in {spec!r}: expected a category such as cs.CL or hep-th")
    return LiveSource("arxiv", argument)


def source_request(
    source: LiveSource, settings: SourceSettings, max_results: int
) -> tuple[str, dict[str, str]]:
    """The URL and query parameters that fetch `source`."""
    if source.scheme == "hf":
        return f"{settings.hf_api_base.rstrip('/')}/api/daily_papers", {"date": source.argument}
    params = {
        "search_query": f"cat:{source.argument}",
        "sortBy": "submittedDate",
        "sortOrder": "descending",
        "max_results": str(max_results),
    }
    return f"{settings.arxiv_api_base.rstrip('/')}/api/query", params


async def fetch_source(
    spec: str,
    settings: SourceSettings,
    client: httpx.AsyncClient | None = None,
    max_results: int = 200,
    *,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ParseResult:
    """Fetch and parse one live source. Invalid specs raise ValueError; HTTP failures FetchError."""
    source = parse_live_source(spec)
    if not 1 <= max_results <= ARXIV_MAX_RESULTS:
        raise ValueError(f"max_results must be between 1 and {ARXIV_MAX_RESULTS}, got {max_results}")
    url, params = source_request(source, settings, max_results)
    if client is None:
        async with httpx.AsyncClient(follow_redirects=True) as own_client:
            body = await _get_with_retries(own_client, url, params, settings, retry)
    else:
        body = await _get_with_retries(client, url, params, settings, retry)
    fmt = "hf_json" if source.scheme == "hf" else "arxiv_atom"
    return parse_bytes(body, source_name=str(source), fmt=fmt)


async def _get_with_retries(
    client: httpx.AsyncClient,
    url: str,
    params: dict[str, str],
    settings: SourceSettings,
    retry: RetryPolicy,
) -> bytes:
    headers = {"User-Agent": settings.user_agent}
    timeout = httpx.Timeout(settings.http_timeout_s)
    for attempt in range(1, retry.attempts + 1):
        started = time.perf_counter()
        retry_after: float | None = None
        try:
            response = await client.get(
                url, params=params, headers=headers, timeout=timeout, follow_redirects=True
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise FetchError(f"bad source URL {url!r} (check SOURCES_*_API_BASE): {exc}", url=url) from exc
        except httpx.TransportError as exc:  # connect/read errors and timeouts: worth another try
            problem, status = f"{type(exc).__name__}: {exc}".rstrip(": "), None
        except httpx.HTTPError as exc:  # redirect loops, undecodable bodies: retrying will not help
            raise FetchError(f"{url} failed: {type(exc).__name__}: {exc}", url=url) from exc
        else:
            status = response.status_code
            if response.is_success:
                log.info(
                    "ingest.fetch_done",
                    url=str(response.url),
                    status=status,
                    bytes=len(response.content),
                    attempt=attempt,
                    elapsed_s=round(time.perf_counter() - started, 3),
                )
                return response.content
            problem = f"HTTP {status} {response.reason_phrase}".strip()
            if not _is_retryable(status):
                raise FetchError(
                    f"{response.url} answered {problem}{_body_hint(response)}",
                    url=str(response.url),
                    status=status,
                )
            retry_after = _retry_after_s(response)
        if attempt == retry.attempts:
            raise FetchError(f"{url} failed after {attempt} attempts: {problem}", url=url, status=status)
        delay = retry.delay(attempt, retry_after)
        log.warning("ingest.fetch_retry", url=url, attempt=attempt, problem=problem, retry_in_s=delay)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")


def _is_retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _body_hint(response: httpx.Response, limit: int = 200) -> str:
    text = clean_text(response.text)[:limit]
    return f": {text}" if text else ""
