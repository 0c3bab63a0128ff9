"""What `/library`, `/follow`, the Save button and `python -m bot cite` do, without Discord.

Every error is a `UserInputError` worded for the person who typed the command. A user's library is
theirs alone: every method takes the user's id and reads or writes only their rows.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from bot.core.config import LibrarySettings
from bot.core.errors import UserInputError
from bot.core.papers import Paper, clean_user_text
from bot.db.library import LibraryRepository
from bot.library.bibimport import BibEntry, parse_bib
from bot.library.citations import (
    CITATION_FORMATS,
    FILE_SUFFIX,
    CitedPaper,
    format_citations,
    normalize_paper_id,
)
from bot.library.records import (
    FOLLOW_KINDS,
    MAX_NOTE_CHARS,
    Follow,
    PersonalSettings,
    SavedPaper,
    clean_follow,
    fold,
)
from bot.retrieval.index import PaperIndex, SearchFilter
from bot.retrieval.search import SearchService

log = structlog.get_logger(__name__)

PAGE_SIZE = 10
DM_CLOSED_NOTICE = (
    "I couldn't send you your paper digest: your direct messages are closed to me. Your follows are "
    "kept; allow direct messages from this server's members (Privacy Settings) to get the next one, "
    "or turn the digest off with `/follow settings delivery:off`."
)


class LibraryLimitError(UserInputError):
    """Over one of the caps (saved papers, follows, .bib size)."""


@dataclass(frozen=True)
class SaveOutcome:
    paper: Paper
    added: bool  # False: it was already in the library
    total: int


@dataclass(frozen=True)
class LibraryPage:
    items: list[SavedPaper]
    page: int  # 1-based
    pages: int
    total: int


@dataclass(frozen=True)
class Export:
    filename: str
    text: str
    count: int


@dataclass
class ImportReport:
    entries: int = 0
    saved: list[str] = field(default_factory=list)
    already: int = 0
    unmatched: list[str] = field(default_factory=list)  # entry keys or titles not found in the index
    over_limit: int = 0


async def cite_papers(index: PaperIndex, paper_refs: Sequence[str], fmt: str) -> str:
    """Citations of papers in the index (`python -m bot cite`, the same formatter as `/library
    export`); an unknown id is a UserInputError naming it."""
    if fmt not in CITATION_FORMATS:
        raise UserInputError(f"format must be one of {', '.join(CITATION_FORMATS)}")
    if not paper_refs:
        raise UserInputError("give at least one paper id")
    ids = [normalize_paper_id(ref) for ref in paper_refs]
    found = await index.fetch_papers(ids)
    unknown = [ref for ref, pid in zip(paper_refs, ids, strict=True) if pid not in found]
    if unknown:
        raise UserInputError(f"not in the index: {', '.join(unknown)}")
    return format_citations([CitedPaper(found[pid]) for pid in dict.fromkeys(ids)], fmt)


class LibraryService:
    def __init__(
        self, repo: LibraryRepository, index: PaperIndex, search: SearchService, settings: LibrarySettings
    ) -> None:
        self.repo = repo
        self.index = index
        self.search = search
        self.settings = settings

    async def _paper(self, paper_ref: str) -> Paper:
        paper_id = normalize_paper_id(paper_ref)
        paper = (await self.index.fetch_papers([paper_id])).get(paper_id)
        if paper is None:
            raise UserInputError(f"`{clean_user_text(paper_ref)[:80]}` is not a paper in paperbot's index.")
        return paper

    async def save(self, user_id: int, paper_ref: str) -> SaveOutcome:
        paper = await self._paper(paper_ref)
        if await self.repo.get_saved(user_id, [paper.paper_id]):
            return SaveOutcome(paper, False, await self.repo.count_saved(user_id))
        added = await self.repo.save_papers(user_id, [paper], limit=self.settings.max_saved)
        if not added:
            raise LibraryLimitError(
                f"Your library is full ({self.settings.max_saved} papers); "
                "remove some with `/library remove`."
            )
        log.info("library.saved", user_id=user_id, paper_id=paper.paper_id)
        return SaveOutcome(paper, True, await self.repo.count_saved(user_id))

    async def page(self, user_id: int, page: int = 1) -> LibraryPage:
        total = await self.repo.count_saved(user_id)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        if page < 1 or page > pages:
            raise UserInputError(
                f"Your library has {pages} page{'s' if pages != 1 else ''}; page {page} does not exist."
            )
        items = await self.repo.list_saved(user_id, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
        return LibraryPage(items, page, pages, total)

    async def _saved_one(self, user_id: int, paper_ref: str) -> str:
        paper_id = normalize_paper_id(paper_ref)
        if not await self.repo.get_saved(user_id, [paper_id]):
            raise UserInputError(f"`{clean_user_text(paper_ref)[:80]}` is not in your library.")
        return paper_id

    async def note(self, user_id: int, paper_ref: str, text: str) -> str:
        """Set (or, with empty text, clear) the note on a saved paper; returns its id."""
        note = clean_user_text(text)
        if len(note) > MAX_NOTE_CHARS:
            raise UserInputError(f"A note is at most {MAX_NOTE_CHARS} characters ({len(note)} given).")
        paper_id = await self._saved_one(user_id, paper_ref)
        await self.repo.set_note(user_id, paper_id, note or None)
        return paper_id

    async def remove(self, user_id: int, paper_ref: str) -> str:
        paper_id = await self._saved_one(user_id, paper_ref)
        await self.repo.remove_saved(user_id, paper_id)
        log.info("library.removed", user_id=user_id, paper_id=paper_id)
        return paper_id

    async def export(self, user_id: int, fmt: str) -> Export:
        if fmt not in CITATION_FORMATS:
            raise UserInputError(f"format must be one of {', '.join(CITATION_FORMATS)}.")
        items = await self.repo.list_saved(user_id)
        if not items:
            raise UserInputError("Your library is empty; save papers with the 🔖 Save button first.")
        cited = [CitedPaper(s.paper, s.note) for s in reversed(items)]  # oldest first, like a reading list
        return Export(f"paperbot-library.{FILE_SUFFIX[fmt]}", format_citations(cited, fmt), len(cited))

    async def import_bib(self, user_id: int, data: bytes) -> ImportReport:
        """Save the .bib's papers that are in the index (by arXiv id, arXiv DOI, else exact title)."""
        entries = await asyncio.to_thread(parse_bib, data, max_bytes=self.settings.max_bib_bytes)
        report = ImportReport(entries=len(entries))
        matched = await self._match(entries, report)
        if matched:
            have = await self.repo.get_saved(user_id, [p.paper_id for p in matched])
            report.already = len(have)
            new = [p for p in matched if p.paper_id not in have]
            report.saved = await self.repo.save_papers(user_id, new, limit=self.settings.max_saved)
            report.over_limit = len(new) - len(report.saved)
        log.info(
            "library.imported", user_id=user_id, entries=report.entries, saved=len(report.saved),
            already=report.already, unmatched=len(report.unmatched), over_limit=report.over_limit,
        )  # fmt: skip
        return report

    async def _match(self, entries: list[BibEntry], report: ImportReport) -> list[Paper]:
        by_id = await self.index.fetch_papers(list({e.arxiv_id for e in entries if e.arxiv_id}))
        matched: dict[str, Paper] = {}
        for entry in entries:
            paper = by_id.get(entry.arxiv_id) if entry.arxiv_id else None
            if paper is None and entry.title_key and len(matched) < self.settings.max_saved:
                hits = await self.search.search(entry.title, limit=3)
                paper = next((h.paper for h in hits.hits if fold(h.paper.title) == entry.title_key), None)
            if paper is None:
                report.unmatched.append(entry.label)
            else:
                matched.setdefault(paper.paper_id, paper)
        return list(matched.values())

    async def library_filter(self, user_id: int) -> SearchFilter:
        """Restricts a search (and `/ask scope:library`) to the user's saved papers."""
        saved = await self.repo.list_saved(user_id)
        if not saved:
            raise UserInputError("Your library is empty: save papers with 🔖 Save, then ask them.")
        return SearchFilter(paper_ids=tuple(s.paper.paper_id for s in saved))

    async def forget_me(self, user_id: int) -> int:
        """Delete every row about the user; returns how many were removed."""
        counts = await self.repo.forget_user(user_id)
        log.info("library.forgot_user", user_id=user_id, **counts)
        return sum(counts.values())

    async def matching_saved(self, user_id: int, typed: str, limit: int = 25) -> list[Paper]:
        """The user's saved papers whose title or id contains `typed` (autocomplete), newest first."""
        typed = typed.lower().strip()
        saved = await self.repo.list_saved(user_id, limit=200)
        return [s.paper for s in saved if typed in s.paper.title.lower() or typed in s.paper.paper_id][:limit]

    async def has_dm_notice(self, user_id: int) -> bool:
        """Whether the user's last digest DM failed with 50007 and they have not been told yet."""
        return (await self.repo.get_settings(user_id)).dm_closed

    async def dm_notice(self, user_id: int) -> str | None:
        """The one-time notice that their DMs are closed, if the last digest DM failed (then cleared)."""
        return DM_CLOSED_NOTICE if await self.repo.take_dm_closed(user_id) else None


class FollowService:
    def __init__(self, repo: LibraryRepository, settings: LibrarySettings) -> None:
        self.repo = repo
        self.settings = settings

    async def add(self, user_id: int, kind: str, value: str) -> tuple[Follow, bool]:
        """(the follow, True) when new; (the existing one, False) when already followed."""
        try:
            kind_, text = clean_follow(kind, value)
        except ValueError as exc:
            raise UserInputError(f"Can't follow that: {exc}.") from None
        try:
            follow = await self.repo.add_follow(user_id, kind_, text, limit=self.settings.max_follows)
        except ValueError:
            raise LibraryLimitError(
                f"You follow {self.settings.max_follows} things already, the most allowed; "
                "remove one with `/follow remove`."
            ) from None
        if follow is None:
            existing = next(
                f
                for f in await self.repo.list_follows(user_id)
                if f.kind == kind_ and fold(f.value) == fold(text)
            )
            return existing, False
        log.info("follow.added", user_id=user_id, kind=kind_)
        return follow, True

    async def list(self, user_id: int) -> tuple[list[Follow], PersonalSettings]:
        return await self.repo.list_follows(user_id), await self.repo.get_settings(user_id)

    async def remove(self, user_id: int, which: str) -> Follow:
        """By the number `/follow list` shows (`3` or `#3`), or by value (`Tri Dao`)."""
        follows = await self.repo.list_follows(user_id)
        text = clean_user_text(which).lstrip("#")
        chosen: Follow | None = None
        if text.isdigit() and 1 <= int(text) <= len(follows):
            chosen = follows[int(text) - 1]
        else:
            matches = [f for f in follows if fold(f.value) == fold(text) or f.value.lower() == text.lower()]
            chosen = matches[0] if len(matches) == 1 else None
            if len(matches) > 1:
                raise UserInputError(
                    f"You follow `{text}` as several kinds; give its number from `/follow list`."
                )
        if chosen is None:
            raise UserInputError(f"You don't follow `{text[:80]}`; see `/follow list`.")
        await self.repo.remove_follow(user_id, chosen.id)
        return chosen

    async def configure(self, user_id: int, *, delivery: str | None, cadence: str | None) -> PersonalSettings:
        values: dict[str, Any] = {}
        if delivery is not None:
            if delivery not in ("dm", "off"):
                raise UserInputError("delivery must be dm or off.")
            values["delivery"] = delivery
            values["dm_closed"] = False  # they chose again: try DMs again
        if cadence is not None:
            if cadence not in ("daily", "weekly"):
                raise UserInputError("cadence must be daily or weekly.")
            values["cadence"] = cadence
        if not values:
            return await self.repo.get_settings(user_id)
        return await self.repo.set_settings(user_id, **values)

    async def feedback(self, user_id: int, paper_id: str, value: int) -> None:
        """👍 (+1) / 👎 (-1) on a paper of the user's own digest: steers their next picks."""
        await self.repo.set_feedback(user_id, paper_id, 1 if value > 0 else -1)
        log.info("follow.feedback", user_id=user_id, paper_id=paper_id, value=value)


__all__ = ["FOLLOW_KINDS", "FollowService", "LibraryService"]
