"""Hugging Face Daily Papers: the `GET /api/daily_papers` JSON list, or the same objects one per line."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.core.papers import Paper, clean_text, parse_arxiv_id
from bot.ingest.sources.base import (
    ParseResult,
    RecordError,
    as_int,
    author_names,
    collect,
    iter_json_array,
    iter_json_lines,
    optional_text,
    parse_date,
    require_title,
    type_name,
)


def parse_hf_json(text: str, source: str, daily_date: dt.date | None = None) -> ParseResult:
    """The API response: a JSON array of `{"paper": {...}, ...}`."""
    return collect(iter_json_array(text), source, lambda item: hf_item_to_paper(item, daily_date))


def parse_hf_jsonl(text: str, source: str, daily_date: dt.date | None = None) -> ParseResult:
    """One API item per line (the slim dumps add `daily_date`)."""
    return collect(iter_json_lines(text), source, lambda item: hf_item_to_paper(item, daily_date))


def hf_item_to_paper(item: Any, daily_date: dt.date | None = None) -> Paper:
    """One API item → Paper. `daily_date` is the list's date when the caller knows it (URL, file name)."""
    if not isinstance(item, dict):
        raise RecordError(f"expected a daily-papers object, got a JSON {type_name(item)}")
    paper = item.get("paper")
    if not isinstance(paper, dict):
        raise RecordError("record has no 'paper' object")
    raw_id = paper.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise RecordError("missing paper.id")
    parsed = parse_arxiv_id(raw_id)
    if parsed is None:
        raise RecordError(f"paper.id {raw_id!r} is not an arXiv id")
    arxiv_id, version = parsed
    title = require_title(paper.get("title") or item.get("title"))
    return Paper(
        paper_id=arxiv_id,
        arxiv_id=arxiv_id,
        version=version,
        title=title,
        abstract=clean_text(paper.get("summary") or item.get("summary")),
        authors=author_names(paper.get("authors")),
        published=parse_date(paper.get("publishedAt")),
        upvotes=as_int(paper.get("upvotes")),
        ai_summary=optional_text(paper.get("ai_summary")),
        github_url=optional_text(paper.get("githubRepo")),
        project_url=optional_text(paper.get("projectPage")),
        hf_date=_hf_date(item, paper, daily_date),
        sources=["hf"],
    )


def _hf_date(item: dict[str, Any], paper: dict[str, Any], daily_date: dt.date | None) -> dt.date | None:
    # The outer `publishedAt` is only sometimes the list's day (2,089 of 9,577 in the dumps),
    # so it is the last resort.
    return (
        parse_date(item.get("daily_date"))
        or parse_date(paper.get("submittedOnDailyAt"))
        or daily_date
        or parse_date(item.get("publishedAt"))
    )
