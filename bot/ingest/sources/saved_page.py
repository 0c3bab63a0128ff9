"""The text of a saved Hugging Face papers page: a header, then per paper a title line, a blank line
and the abstract line. These papers carry no arXiv id, so they are keyed by their title."""

from __future__ import annotations

import re

from bot.ingest.sources.base import ParseResult, Rejected
from bot.models import Paper, clean_text, title_paper_id

HEADER_LINES = frozenset(
    {
        "new",
        "get trending papers in your email inbox!",
        "subscribe",
        "byak and the research community",
        "daily papers",
        "trending papers",
    }
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_HEADER_DATE = re.compile(
    rf"^(?:{_MONTH}\s+\d{{1,2}}(?:,?\s+\d{{4}})?|\d{{4}}-\d{{2}}-\d{{2}})$", re.IGNORECASE
)
# Real titles stay well under this; a longer "title" is an abstract, meaning the page is out of step.
MAX_TITLE_CHARS = 300


def is_header_line(line: str) -> bool:
    text = clean_text(line)
    return text.lower() in HEADER_LINES or bool(_HEADER_DATE.match(text))


def parse_saved_page(text: str, source: str) -> ParseResult:
    lines = [(no, clean_text(raw)) for no, raw in enumerate(text.splitlines(), start=1)]
    content = [(no, line) for no, line in lines if line]
    start = 0
    while start < len(content) and is_header_line(content[start][1]):
        start += 1
    result = ParseResult()
    pos = start
    while pos < len(content):
        title_no, title = content[pos]
        result.records += 1
        if len(title) > MAX_TITLE_CHARS:
            reason = f"expected a title, found a {len(title)}-character paragraph (no title before it?)"
            result.rejected.append(Rejected(source, title_no, reason))
            pos += 1
            continue
        if pos + 1 >= len(content):
            result.rejected.append(Rejected(source, title_no, f"title {title!r} has no abstract after it"))
            break
        abstract = content[pos + 1][1]
        result.papers.append(
            Paper(paper_id=title_paper_id(title), title=title, abstract=abstract, sources=["page"])
        )
        pos += 2
    return result
