"""The boundary between the digest service and whatever posts messages (the Discord layer).

Every message of a digest carries a marker (e.g. in the embed footer):
`paperbot digest 2026-08-18 · 2408.12345`. After a crash between sending a message and recording its
id, the service asks the poster for the channel's recent bot messages with the digest's marker
prefix, and records the ids it finds instead of posting again.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from bot.core.papers import Paper
from bot.digest.records import DigestCounts, Layout

MARKER_PREFIX = "paperbot digest"
HEADER_ITEM = "#header"
NOTICE_ITEM = "#notice"
_MARKER = re.compile(rf"{MARKER_PREFIX} (\d{{4}}-\d{{2}}-\d{{2}}) · (\S+)")


def digest_marker(digest_date: dt.date) -> str:
    """The prefix shared by every message of one day's digest."""
    return f"{MARKER_PREFIX} {digest_date.isoformat()}"


def item_marker(digest_date: dt.date, item: str) -> str:
    """The marker of one message: the digest marker and the paper id (or header/notice)."""
    return f"{digest_marker(digest_date)} · {item.lstrip('#')}"


def parse_marker(text: str) -> tuple[dt.date, str] | None:
    """(digest date, item) from a text containing a marker, else None."""
    match = _MARKER.search(text)
    if not match:
        return None
    try:
        return dt.date.fromisoformat(match.group(1)), match.group(2)
    except ValueError:
        return None


POLL_ANSWER_CHARS = 55  # Discord's limit on a poll answer's text
POLL_QUESTION = "Paper of the week?"


@dataclass(frozen=True)
class DigestPoll:
    """The weekly roundup's native poll: one answer per top paper, open for `hours`."""

    answers: tuple[tuple[str, str], ...]  # (paper id, answer text of at most 55 characters)
    hours: int
    question: str = POLL_QUESTION

    @classmethod
    def for_papers(cls, papers: list[Paper], hours: int) -> DigestPoll:
        answers = []
        for rank, paper in enumerate(papers, 1):
            text = f"{rank}. {' '.join(paper.title.split())}"
            if len(text) > POLL_ANSWER_CHARS:
                text = text[: POLL_ANSWER_CHARS - 1].rstrip() + "…"
            answers.append((paper.paper_id, text))
        return cls(tuple(answers), hours)

    @property
    def paper_ids(self) -> list[str]:
        return [paper_id for paper_id, _ in self.answers]

    def to_content(self) -> dict[str, Any]:
        return {"answers": [list(a) for a in self.answers], "hours": self.hours, "question": self.question}

    @classmethod
    def from_content(cls, data: dict[str, Any] | None) -> DigestPoll | None:
        if not data:
            return None
        answers = tuple((str(a[0]), str(a[1])) for a in data.get("answers", []))
        return cls(answers, int(data.get("hours", 24)), str(data.get("question", POLL_QUESTION)))


@dataclass(frozen=True)
class DigestHeader:
    """The first message of a digest, or (with `empty_message`) the one line of an empty day."""

    subscription_id: int | None
    digest_date: dt.date
    sources: tuple[str, ...]
    counts: DigestCounts
    paper_count: int
    layout: Layout
    marker: str
    empty_message: str | None = None
    weekly: bool = False  # a weekly roundup: the week up to `digest_date`
    poll: DigestPoll | None = None  # the roundup's "paper of the week" poll

    @property
    def title(self) -> str:
        """`Paper digest · Tuesday 18 August 2026 · 5 papers` (no count on an empty day)."""
        date = self.digest_date.strftime("%A %d %B %Y")
        if self.weekly:
            count = f" · {self.paper_count} {'paper' if self.paper_count == 1 else 'papers'}"
            return f"Weekly roundup · week to {date}" + ("" if self.empty_message is not None else count)
        if self.empty_message is not None:
            return f"Paper digest · {date}"
        return f"Paper digest · {date} · {self.paper_count} {'paper' if self.paper_count == 1 else 'papers'}"

    @property
    def tally(self) -> str:
        """How the picks were made: `Picked 5 of 29 new papers (29 fetched, …)`."""
        counts = self.counts
        return (
            f"Picked {self.paper_count} of {counts.new} new papers "
            f"({counts.fetched} fetched, {counts.duplicates} duplicates, {counts.filtered} filtered out)."
        )


@dataclass(frozen=True)
class PaperPost:
    """One paper of a digest: title → link, authors, upvotes, summary, and why it was picked."""

    subscription_id: int | None
    digest_date: dt.date
    rank: int
    paper: Paper
    summary: str
    summary_note: str | None  # why the summary is not the LLM's (a label to show with it); None when it is
    why: str
    layout: Layout
    marker: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def summary_is_fallback(self) -> bool:
        return self.summary_note is not None


@runtime_checkable
class DigestPoster(Protocol):
    """Posts digest messages; implemented by the Discord layer. Must not ping anyone."""

    async def post_header(self, channel_id: int, header: DigestHeader) -> int:
        """Send the header (or the empty-day line); return its message id."""
        ...

    async def post_paper(self, channel_id: int, post: PaperPost, parent_message_id: int | None) -> int:
        """Send one paper per `post.layout` (a thread or a message under the header); return the id of
        the message that carries the paper (reactions on it are feedback)."""
        ...

    async def find_recent_digest_messages(self, channel_id: int, marker: str) -> list[tuple[int, str]]:
        """(message id, full marker) of the bot's recent messages in the channel (and its digest
        threads) whose marker starts with `marker`."""
        ...


@dataclass(frozen=True)
class GuideSource:
    """An excerpt of the winning paper a reading-guide question is grounded in."""

    number: int
    label: str  # where in the paper: "Abstract", a section title, or the chunk's place
    text: str
    url: str | None


@dataclass(frozen=True)
class GuideQuestion:
    text: str
    source: int  # the GuideSource number it cites


@dataclass(frozen=True)
class ReadingGuide:
    """The discussion thread opened on the poll's winner: 3 questions, each citing its excerpt."""

    paper: Paper
    votes: int
    total_votes: int
    questions: tuple[GuideQuestion, ...]
    sources: tuple[GuideSource, ...]
    marker: str
    note: str | None = None  # e.g. that the questions are quotes because the LLM was unavailable


@runtime_checkable
class DiscussionPoster(Protocol):
    """Opens the paper-of-the-week discussion; implemented by the Discord layer. Must not ping anyone."""

    async def open_discussion(self, channel_id: int, poll_message_id: int, guide: ReadingGuide) -> int:
        """Start a thread on the poll message with the reading guide in it; return the thread's id."""
        ...
