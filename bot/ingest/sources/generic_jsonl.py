"""Generic JSON lines: `{"id", "title", "abstract"}` plus optional authors, published/date, url,
categories. The id is used as the arXiv id when it is one."""

from __future__ import annotations

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


def parse_generic_jsonl(text: str, source: str) -> ParseResult:
    return collect(iter_json_lines(text), source, generic_item_to_paper)


def generic_item_to_paper(item: Any) -> Paper:
    if not isinstance(item, dict):
        raise RecordError(f"expected a paper object, got a JSON {type_name(item)}")
    raw_id = item.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    given_id = optional_text(raw_id)
    url = optional_text(item.get("url"))
    parsed = parse_arxiv_id(given_id or "") or parse_arxiv_id(url or "")
    if parsed:
        paper_id, version = parsed
        arxiv_id: str | None = paper_id
    elif given_id:
        paper_id, arxiv_id, version = given_id, None, None
    else:
        raise RecordError("missing id (and no arXiv url to take one from)")
    title = require_title(item.get("title"))
    raw_date = item.get("published", item.get("date"))
    published = parse_date(raw_date)
    if raw_date not in (None, "") and published is None:
        raise RecordError(f"invalid date {raw_date!r} (expected YYYY-MM-DD)")
    return Paper(
        paper_id=paper_id,
        arxiv_id=arxiv_id,
        version=version,
        title=title,
        abstract=clean_text(item.get("abstract")),
        authors=author_names(item.get("authors")),
        published=published,
        categories=string_list(item.get("categories")),
        github_url=url if _link_kind(url) == "github" else None,
        project_url=url if _link_kind(url) == "project" else None,
        sources=["jsonl"],
    )


def _link_kind(url: str | None) -> str | None:
    """A non-arXiv url is the code (GitHub) or the project page; arXiv urls are derived, not stored."""
    if url is None or parse_arxiv_id(url):
        return None
    return "github" if "github.com/" in url else "project"
