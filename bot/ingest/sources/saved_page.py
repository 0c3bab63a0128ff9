"""The text of a saved Hugging Face papers page: a header, then per paper a title line, a blank line
and the abstract line. These papers carry no arXiv id, so they are keyed by their title."""

from __future__ import annotations

import re

from bot.core.papers import Paper, clean_text, title_paper_id
from bot.ingest.sources.base import ParseResult, Rejected

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
    blocks = _paragraphs(text)
    pos = 0
    while pos < len(blocks) and is_header_line(blocks[pos][1]):
        pos += 1
    result = ParseResult()
    while pos < len(blocks):
        title_no, title = blocks[pos]
        result.records += 1
        if not _looks_like_title(title):
            reason = f"expected a title, found a {len(title)}-character paragraph (no title before it?)"
            result.rejected.append(Rejected(source, title_no, reason))
            pos += 1
            continue
        after = blocks[pos + 1][1] if pos + 1 < len(blocks) else None
        after_next = blocks[pos + 2][1] if pos + 2 < len(blocks) else None
        # Title, title, abstract: the first title lost its abstract; pairing it would shift every pair.
        if after is None or (_looks_like_title(after) and after_next and not _looks_like_title(after_next)):
            result.rejected.append(Rejected(source, title_no, f"title {title!r} has no abstract after it"))
            pos += 1
            continue
        result.papers.append(
            Paper(paper_id=title_paper_id(title), title=title, abstract=after, sources=["page"])
        )
        pos += 2
    return result


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """Blocks of consecutive non-blank lines, joined, with the line number where each starts."""
    blocks: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for line_no, raw in enumerate([*text.splitlines(), ""], start=1):
        line = clean_text(raw)
        if line:
            start = start if current else line_no
            current.append(line)
        elif current:
            blocks.append((start, " ".join(current)))
            current = []
    return blocks


def _looks_like_title(text: str) -> bool:
    return len(text) <= MAX_TITLE_CHARS
