"""arXiv Atom API responses (`export.arxiv.org/api/query`), current and 2016 formats, via feedparser."""

from __future__ import annotations

import datetime as dt
import re
import xml.sax
from typing import Any

import feedparser
import structlog

from bot.core.papers import Paper, clean_text, parse_arxiv_id
from bot.ingest.sources.base import (
    ParseResult,
    RecordError,
    Rejected,
    author_names,
    optional_text,
    ordered_union,
    require_title,
)

log = structlog.get_logger(__name__)

_ENTRY_TAG = re.compile(rb"<(?:\w+:)?entry[\s>]")
_ENTRY_END = re.compile(rb"</(?:\w+:)?entry\s*>")
_API_ERROR_ID = "arxiv.org/api/errors"


def parse_atom(data: bytes, source: str) -> ParseResult:
    feed = feedparser.parse(data)
    result = ParseResult()
    if not feed.entries and (feed.bozo or not feed.get("version")):
        problem = feed.get("bozo_exception") or "no feed element"
        result.rejected.append(Rejected(source, None, f"not a readable Atom feed: {problem}"))
        return result
    if feed.bozo:
        log.warning("ingest.atom_feed_malformed", source=source, error=str(feed.get("bozo_exception")))
    # A feed cut off mid-way (a dropped connection, a proxy's size limit) still yields the entries
    # before the cut: keep the complete ones, reject the one the cut ran through, and say so.
    error = feed.get("bozo_exception")
    cut = error if isinstance(error, xml.sax.SAXParseException) else None
    complete = len(_ENTRY_END.findall(data)) if cut is not None else len(feed.entries)
    entry_lines = _entry_lines(data)
    if len(entry_lines) != len(feed.entries):
        entry_lines = [None] * len(feed.entries)  # cannot map entries to lines reliably
    for number, (entry, line) in enumerate(zip(feed.entries, entry_lines, strict=True)):
        result.records += 1
        if number >= complete:
            result.rejected.append(Rejected(source, line, "entry cut off: the feed breaks inside it"))
            continue
        try:
            result.papers.append(atom_entry_to_paper(entry))
        except RecordError as exc:
            result.rejected.append(Rejected(source, line, str(exc)))
    if cut is not None:
        reason = f"malformed Atom feed ({cut.getMessage()}): read only the {complete} entries before it"
        result.rejected.append(Rejected(source, cut.getLineNumber(), reason))
    return result


def atom_entry_to_paper(entry: Any) -> Paper:
    raw_id = entry.get("id") or ""
    if _API_ERROR_ID in raw_id:
        raise RecordError(f"arXiv API error: {clean_text(entry.get('summary')) or raw_id}")
    parsed = parse_arxiv_id(raw_id) or _id_from_links(entry)
    if parsed is None:
        raise RecordError(f"missing arXiv id (entry id {raw_id!r})")
    arxiv_id, version = parsed
    primary = (entry.get("arxiv_primary_category") or {}).get("term")
    tags = [tag.get("term") or "" for tag in entry.get("tags", [])]
    return Paper(
        paper_id=arxiv_id,
        arxiv_id=arxiv_id,
        version=version,
        title=require_title(entry.get("title")),
        abstract=clean_text(entry.get("summary")),
        authors=author_names(entry.get("authors")),
        published=_struct_date(entry.get("published_parsed")),
        categories=ordered_union([primary] if primary else [], tags),
        comment=optional_text(entry.get("arxiv_comment")),
        sources=["arxiv"],
    )


def _id_from_links(entry: Any) -> tuple[str, int | None] | None:
    for link in entry.get("links", []):
        parsed = parse_arxiv_id(link.get("href") or "")
        if parsed:
            return parsed
    return None


def _struct_date(value: Any) -> dt.date | None:
    return dt.date(value.tm_year, value.tm_mon, value.tm_mday) if value else None


def _entry_lines(data: bytes) -> list[int | None]:
    return [data.count(b"\n", 0, match.start()) + 1 for match in _ENTRY_TAG.finditer(data)]
