"""The weekly roundup's second half: when its "paper of the week" poll closes, a discussion thread on
the winner with a short reading guide — 3 questions grounded in the paper's own text, each citing the
excerpt it is about.

Questions come from the LLM (prompts/reading_guide.txt) and are each checked in code against the
excerpt they cite (enough of the excerpt's content words); a question that does not hold up, or every
question when no LLM is available, is replaced by one quoting a sentence of an excerpt. Exactly once:
the thread is a ledger item ("#guide") of the roundup's date, so a second poll-end event (or a
restart) opens nothing twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog

from bot.core.papers import Paper, clean_user_text
from bot.core.prompts import load_prompt
from bot.core.words import STOP_WORDS
from bot.db.repository import Repository
from bot.digest.delivery import (
    DigestPoll,
    DiscussionPoster,
    GuideQuestion,
    GuideSource,
    ReadingGuide,
    item_marker,
)
from bot.digest.records import LedgerEntry, PlannedItem
from bot.llm import LLMClient, Priority, llm_priority
from bot.llm.errors import LLMError
from bot.rag.packing import remove_instructions, sanitize_source_text
from bot.retrieval.index import SearchFilter
from bot.retrieval.search import SearchService

log = structlog.get_logger(__name__)

GUIDE_ITEM = "#guide"
MAX_POLL_HOURS = 768  # Discord's longest poll
POLL_CLOSE_SLACK = dt.timedelta(minutes=5)  # Discord finalizes a poll shortly after it expires
MISSED_POLL_WINDOW = dt.timedelta(days=7)  # a missed poll end is looked for this long
GUIDE_QUESTIONS = 3
MAX_EXCERPTS = 6
EXCERPT_CHARS = 700
# A question holds up when at least this share of its content words (and at least 2) are in the
# excerpt it cites.
MIN_OVERLAP = 0.4
_QUESTION_LINE = re.compile(r"^\s*(?:\d+[.)]\s*)?(?P<text>.+?)\s*\[(?P<n>\d+)\]\s*[.?]?\s*$")
_WORD = re.compile(r"[a-z0-9][a-z0-9\-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
QUOTED_NOTE = (
    "some questions quote the paper: the language model was unavailable or its questions did not hold up"
)


@dataclass(frozen=True)
class PollResult:
    winner: str  # paper id
    votes: int
    total: int


# Words any question about any paper may use: they show nothing of the paper ("What is the main focus
# of this paper?" shares "paper" and "focus" with many abstracts and asks nothing of this one).
_GENERIC = """paper papers study work authors author main focus idea ideas approach method methods propose
    proposed purpose benefit benefits using use used explain key contribution contributions novel new
    results result show shows present presents introduce introduces"""
GENERIC_WORDS = frozenset(_GENERIC.split())


def content_words(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    return {w for w in words if len(w) > 2 and w not in STOP_WORDS and w not in GENERIC_WORDS}


def whole_sentences(text: str, limit: int) -> str:
    """At most `limit` characters, cut after a sentence (so no quote ends mid-word); a first sentence
    longer than the limit is cut with "…"."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("? "), head.rfind("! "))
    return head[: end + 1] if end > 0 else head[: limit - 1].rstrip() + "…"


def grounded(question: str, excerpt: str) -> bool:
    words = content_words(question)
    shared = words & content_words(excerpt)
    return len(shared) >= 2 and len(shared) >= MIN_OVERLAP * len(words)


def poll_winner(poll: DigestPoll, counts: Mapping[int, int]) -> PollResult:
    """Answer ids are 1-based positions in the poll; ties go to the better-ranked paper; with no
    votes at all the top-ranked paper wins."""
    total = sum(max(0, c) for c in counts.values())
    best = max(range(1, len(poll.answers) + 1), key=lambda a: (counts.get(a, 0), -a))
    return PollResult(poll.answers[best - 1][0], counts.get(best, 0), total)


class RoundupService:
    def __init__(
        self,
        repo: Repository,
        search: SearchService,
        llm: LLMClient | None,
        *,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.repo = repo
        self._clock = clock
        self.search = search
        self.llm = llm
        self._prompt = load_prompt("reading_guide")
        self._lock = asyncio.Lock()  # both poll-end events (update, result message) may arrive at once

    async def poll_closed(
        self, *, channel_id: int, message_id: int, counts: Mapping[int, int], poster: DiscussionPoster
    ) -> int | None:
        """The poll on `message_id` closed with `counts` (answer id → votes): open the discussion
        thread on the winner, once. Returns the thread id, or None when this was no roundup poll of
        ours or its thread is already open."""
        async with self._lock:
            return await self._poll_closed(channel_id, message_id, counts, poster)

    async def _poll_closed(
        self, channel_id: int, message_id: int, counts: Mapping[int, int], poster: DiscussionPoster
    ) -> int | None:
        entry = await self.repo.find_post(message_id)
        if entry is None or entry.kind != "header" or entry.channel_id != channel_id:
            return None
        poll = DigestPoll.from_content(entry.content.get("poll"))
        if poll is None or not poll.answers:
            return None
        result = poll_winner(poll, counts)
        marker = item_marker(entry.digest_date, GUIDE_ITEM)
        entries = await self.repo.plan_digest(
            guild_id=entry.guild_id, channel_id=channel_id, digest_date=entry.digest_date,
            run_id=entry.run_id, items=[PlannedItem(GUIDE_ITEM, "guide", 0, marker, {
                "paper_id": result.winner, "votes": result.votes, "total_votes": result.total,
            })],
        )  # fmt: skip
        guide_entry = next(e for e in entries if e.item == GUIDE_ITEM)
        bound = log.bind(channel_id=channel_id, poll_message_id=message_id, paper_id=result.winner)
        if guide_entry.posted:
            bound.info("roundup.discussion_already_open", thread_id=guide_entry.message_id)
            return None
        paper = await self._paper(result.winner, entries)
        guide = await self.reading_guide(paper, marker=marker, votes=result.votes, total=result.total)
        await self.repo.mark_attempt(guide_entry.id)
        try:
            thread_id = await poster.open_discussion(channel_id, message_id, guide)
        except Exception as exc:
            await self.repo.mark_failed(guide_entry.id, f"{type(exc).__name__}: {exc}")
            raise
        await self.repo.mark_posted(guide_entry.id, thread_id)
        bound.info("roundup.discussion_opened", thread_id=thread_id, votes=result.votes, total=result.total)
        return thread_id

    async def due_polls(self, now: dt.datetime | None = None) -> list[tuple[int, int]]:
        """(channel id, poll message id) of roundup polls that should have closed by `now` and have
        no discussion thread yet: the poll ends that were missed (the bot was down), to check again."""
        now = now or self._clock()
        since = now - dt.timedelta(hours=MAX_POLL_HOURS) - MISSED_POLL_WINDOW
        due = []
        for entry, posted_at in await self.repo.posted_headers(since):
            poll = DigestPoll.from_content(entry.content.get("poll"))
            if poll is None or entry.message_id is None:
                continue
            closes = posted_at + dt.timedelta(hours=poll.hours) + POLL_CLOSE_SLACK
            if not closes <= now <= closes + MISSED_POLL_WINDOW:
                continue
            entries = await self.repo.digest_entries(entry.channel_id, entry.digest_date)
            if not any(e.item == GUIDE_ITEM and e.posted for e in entries):
                due.append((entry.channel_id, entry.message_id))
        return due

    async def _paper(self, paper_id: str, entries: list[LedgerEntry]) -> Paper:
        stored = await self.search.index.fetch_papers([paper_id])
        if paper_id in stored:
            return stored[paper_id]
        planned = next((e for e in entries if e.item == paper_id and "paper" in e.content), None)
        if planned is None:
            raise LookupError(f"paper {paper_id} is neither in the index nor in the roundup")
        return Paper.from_payload(planned.content["paper"])

    async def excerpts(self, paper: Paper) -> list[GuideSource]:
        """The paper's own passages, in reading order (the abstract, then full-text passages when the
        index holds them), at most MAX_EXCERPTS."""
        hits = await self.search.search_chunks(
            paper.title or paper.paper_id,
            limit=MAX_EXCERPTS * 2,
            search_filter=SearchFilter(paper_ids=(paper.paper_id,)),
        )
        chunks = sorted({h.chunk_no: h for h in hits}.values(), key=lambda h: h.chunk_no)[:MAX_EXCERPTS]
        sources: list[GuideSource] = []
        for hit in chunks:
            text = remove_instructions(sanitize_source_text(hit.text.removeprefix(paper.title)))
            if not text:
                continue
            label = "Abstract" if hit.chunk_no == 0 else f"Passage {hit.chunk_no + 1}"
            sources.append(
                GuideSource(len(sources) + 1, label, whole_sentences(text, EXCERPT_CHARS), paper.url)
            )
        if not sources and paper.abstract:
            text = whole_sentences(remove_instructions(sanitize_source_text(paper.abstract)), EXCERPT_CHARS)
            sources.append(GuideSource(1, "Abstract", text, paper.url))
        return sources

    async def reading_guide(
        self, paper: Paper, *, marker: str, votes: int = 0, total: int = 0
    ) -> ReadingGuide:
        sources = await self.excerpts(paper)
        questions = await self._model_questions(paper, sources)
        quoted = False
        for question in self._quoted_questions(sources, taken=questions):
            if len(questions) >= GUIDE_QUESTIONS:
                break
            questions.append(question)
            quoted = True
        return ReadingGuide(
            paper=paper, votes=votes, total_votes=total, questions=tuple(questions[:GUIDE_QUESTIONS]),
            sources=tuple(sources), marker=marker, note=QUOTED_NOTE if quoted else None,
        )  # fmt: skip

    async def _model_questions(self, paper: Paper, sources: list[GuideSource]) -> list[GuideQuestion]:
        if self.llm is None or not sources:
            return []
        rendered = "\n".join(f"[{s.number}] {s.label}\n{s.text}" for s in sources)
        prompt = self._prompt.render(title=clean_user_text(paper.title), excerpts=rendered)
        try:
            with llm_priority(Priority.BACKGROUND):
                completion = await self.llm.generate(
                    system=prompt.system, user=prompt.user, turns=prompt.turns, max_tokens=220
                )
        except LLMError as exc:
            log.warning("roundup.guide_llm_failed", error=str(exc)[:200])
            return []
        by_number = {s.number: s for s in sources}
        kept: list[GuideQuestion] = []
        for line in completion.text.splitlines():
            match = _QUESTION_LINE.match(line)
            if match is None:
                continue
            text = clean_user_text(match.group("text")).rstrip(" .")
            source = by_number.get(int(match.group("n")))
            if source is None or not text.endswith("?") or not grounded(text, source.text):
                log.info("roundup.guide_question_dropped", question=text[:120])
                continue
            if all(text.lower() != q.text.lower() for q in kept):
                kept.append(GuideQuestion(text[:300], source.number))
        return kept[:GUIDE_QUESTIONS]

    @staticmethod
    def _quoted_questions(sources: list[GuideSource], *, taken: list[GuideQuestion]) -> list[GuideQuestion]:
        """Questions quoting the excerpts' most substantial sentences, excerpts not yet cited first."""
        cited = {q.source for q in taken}
        candidates: list[tuple[bool, int, int, str]] = []
        for source in sources:
            for sentence in _SENTENCE.split(source.text):
                sentence = sentence.strip().rstrip(".")
                if 40 <= len(sentence) <= 260:
                    weight = len(content_words(sentence))
                    candidates.append((source.number in cited, -weight, source.number, sentence))
        return [
            GuideQuestion(
                f"The paper says: “{sentence}.” What supports this, and does it hold for us?", number
            )
            for _, _, number, sentence in sorted(candidates)
        ]
