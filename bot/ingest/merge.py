"""Fold records of the same paper from different sources (or repeated in one) into one `Paper`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from bot.core.papers import Paper, is_title_id, title_paper_id
from bot.ingest.sources.base import ordered_union
from bot.retrieval.index import PaperIndex, SearchFilter
from bot.retrieval.sparse import sparse_query

T = TypeVar("T")


def merge_papers(old: Paper, new: Paper) -> Paper:
    """Combine two records of one paper.

    Text (title, abstract, authors, comment) comes from the higher arXiv version; with equal or
    unknown versions the old record's text stays and only its gaps are filled from the new one.
    Counters and links take the best known value; lists are ordered unions.
    """
    if old.paper_id != new.paper_id:
        raise ValueError(f"cannot merge different papers: {old.paper_id!r} and {new.paper_id!r}")
    newer_text = old.version is not None and new.version is not None and new.version > old.version
    primary, secondary = (new, old) if newer_text else (old, new)
    return Paper(
        paper_id=old.paper_id,
        title=primary.title or secondary.title,
        abstract=primary.abstract or secondary.abstract,
        authors=list(primary.authors or secondary.authors),
        comment=_first(primary.comment, secondary.comment),
        arxiv_id=_first(old.arxiv_id, new.arxiv_id),
        version=_max(old.version, new.version),
        published=_earliest(old.published, new.published),
        categories=ordered_union(old.categories, new.categories),
        upvotes=_max(old.upvotes, new.upvotes),
        ai_summary=_first(old.ai_summary, new.ai_summary),
        github_url=_first(old.github_url, new.github_url),
        project_url=_first(old.project_url, new.project_url),
        hf_date=_first(old.hf_date, new.hf_date),
        sources=ordered_union(old.sources, new.sources),
    )


def dedupe(papers: Iterable[Paper]) -> tuple[list[Paper], int]:
    """Distinct papers in first-seen order, and how many duplicate records were merged into them.

    A record known only by its title (a saved page's: `title:` id) merges into a record of the same
    normalized title that has a real id, which it then takes."""
    papers = list(papers)
    real_ids = real_ids_by_title(papers)
    by_id: dict[str, Paper] = {}
    merged = 0
    for paper in papers:
        if paper.paper_id in real_ids:
            paper = paper.model_copy(update={"paper_id": real_ids[paper.paper_id]})
        seen = by_id.get(paper.paper_id)
        if seen is None:
            by_id[paper.paper_id] = paper
        else:
            by_id[paper.paper_id] = merge_papers(seen, paper)
            merged += 1
    return list(by_id.values()), merged


def real_ids_by_title(papers: Iterable[Paper]) -> dict[str, str]:
    """`title:` id → the first real id among `papers` with that normalized title."""
    found: dict[str, str] = {}
    for paper in papers:
        if not is_title_id(paper.paper_id):
            found.setdefault(title_paper_id(paper.title), paper.paper_id)
    return found


@dataclass
class StoredTitleMatches:
    """What `match_stored_titles` found: the batch with ids adopted, and stored title-only records
    that now live on under a real id (to delete once the batch is stored)."""

    papers: list[Paper]
    superseded: list[str] = field(default_factory=list)


async def match_stored_titles(index: PaperIndex, papers: Sequence[Paper]) -> StoredTitleMatches:
    """Merge by normalized title across ingests, in both orders.

    A title-only record (a saved page's) takes the id of a stored record with the same normalized
    title (found by a BM25 search of its title). A record with a real id absorbs a stored title-only
    record of its title (looked up by its `title:` id), which is then superseded."""
    result = StoredTitleMatches(papers=[])
    title_ids = [title_paper_id(p.title) for p in papers if not is_title_id(p.paper_id)]
    stored_title_only = await index.fetch_papers(title_ids) if title_ids else {}
    for paper in papers:
        if is_title_id(paper.paper_id):
            hits = await index.ranking(
                dense=None, sparse=sparse_query(paper.title), limit=5, search_filter=SearchFilter()
            )
            real = next(
                (h.paper for h in hits
                 if not is_title_id(h.paper.paper_id) and title_paper_id(h.paper.title) == paper.paper_id),
                None,
            )  # fmt: skip
            if real is not None:
                paper = paper.model_copy(update={"paper_id": real.paper_id})
        else:
            page = stored_title_only.get(title_paper_id(paper.title))
            if page is not None:
                paper = merge_papers(paper, page.model_copy(update={"paper_id": paper.paper_id}))
                result.superseded.append(page.paper_id)
        result.papers.append(paper)
    return result


def _first(*values: T | None) -> T | None:
    return next((value for value in values if value is not None), None)


def _max(a: int | None, b: int | None) -> int | None:
    known = [value for value in (a, b) if value is not None]
    return max(known) if known else None


def _earliest(a: dt.date | None, b: dt.date | None) -> dt.date | None:
    known = [value for value in (a, b) if value is not None]
    return min(known) if known else None
