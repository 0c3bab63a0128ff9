"""arXiv daily listing dumps: one JSON object per line (id, categories, pdf, abs, authors, title,
comment, summary). Cross-listed papers repeat inside a file; `dedupe` folds them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.core.papers import Paper, clean_text, parse_arxiv_id
from bot.ingest.sources.base import (
    ParseResult,
    RecordError,
    author_names,
    collect,
    iter_json_lines,
    optional_text,
    parse_date,
    require_title,
    string_list,
    type_name,
)


def parse_arxiv_listing(text: str, source: str, listing_date: dt.date | None = None) -> ParseResult:
    """`listing_date` (from the file name) stands in for `published` when a record has no date."""
    return collect(iter_json_lines(text), source, lambda item: listing_item_to_paper(item, listing_date))


def listing_item_to_paper(item: Any, listing_date: dt.date | None = None) -> Paper:
    if not isinstance(item, dict):
        raise RecordError(f"expected a listing object, got a JSON {type_name(item)}")
    parsed = None
    for key in ("id", "abs", "pdf"):
        value = item.get(key)
        if isinstance(value, str) and (parsed := parse_arxiv_id(value)):
            break
    if parsed is None:
        raise RecordError(f"missing arXiv id (id={item.get('id')!r})")
    arxiv_id, version = parsed
    return Paper(
        paper_id=arxiv_id,
        arxiv_id=arxiv_id,
        version=version,
        title=require_title(item.get("title")),
        abstract=clean_text(item.get("summary") or item.get("abstract")),
        authors=author_names(item.get("authors")),
        published=parse_date(item.get("published")) or listing_date,
        categories=string_list(item.get("categories")),
        comment=optional_text(item.get("comment")),
        sources=["arxiv"],
    )
