"""Ingest → Qdrant Edge → hybrid search with the real embedding model and the real fixtures."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from bot.core.config import TokenizerSettings
from bot.core.papers import Paper
from bot.ingest.pipeline import Ingestor
from bot.ingest.sources import parse_path
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.search import QueryError, SearchService
from tests.conftest import SEED_PAGE, SHARED_DATA


@pytest.fixture
async def services(tmp_path: Path, embedder):  # type: ignore[no-untyped-def]
    index = EdgePaperIndex(tmp_path / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    yield Ingestor(index, embedder, TokenizerSettings()), SearchService(index, embedder), index
    await index.close()


async def test_seed_page_ingests_48_papers_once(services) -> None:  # type: ignore[no-untyped-def]
    ingestor, _, index = services
    papers = parse_path(SEED_PAGE).papers
    first = await ingestor.ingest(papers)
    assert (first.new, first.updated, first.duplicates) == (48, 0, 0)
    again = await ingestor.ingest(parse_path(SEED_PAGE).papers)
    assert (again.new, again.updated, again.duplicates) == (0, 0, 48)
    assert again.chunks == 0  # nothing re-embedded
    assert await index.count_papers() == 48


async def test_search_finds_known_papers_by_their_content(services) -> None:  # type: ignore[no-untyped-def]
    ingestor, search, _ = services
    papers = parse_path(SEED_PAGE).papers
    await ingestor.ingest(papers)
    # A paraphrase of each paper's topic, not its title, must bring the paper into the top 3.
    by_title = {p.title.split(":")[0]: p for p in papers}
    probes = {
        "SHERL": "memory-efficient transfer learning for resource-limited settings",
        "Titans": "neural long-term memory module that learns to memorize at test time",
        "Attention as an RNN": "attention computed as a recurrent neural network, efficient updates",
    }
    for title, query in probes.items():
        result = await search.search(query, limit=3)
        ids = [h.paper.paper_id for h in result.hits]
        assert by_title[title].paper_id in ids, (query, [h.paper.title for h in result.hits])
        assert len(ids) == len(set(ids))


async def test_hf_and_arxiv_records_merge_into_one(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingestor, _, index = services
    hf = parse_path(SHARED_DATA / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json").papers[:3]
    target = hf[0]
    listing = tmp_path / "arxiv_cs_2026-08-18.jsonl"
    record = {
        "id": target.arxiv_id,
        "categories": ["cs.AI", "cs.CL"],
        "pdf": f"https://arxiv.org/pdf/{target.arxiv_id}",
        "abs": f"https://arxiv.org/abs/{target.arxiv_id}",
        "authors": ["A. Author"],
        "title": target.title,
        "comment": None,
        "summary": "An abstract.",
    }
    listing.write_text(json.dumps(record) + "\n")
    await ingestor.ingest(hf)
    report = await ingestor.ingest(parse_path(listing).papers)
    assert (report.new, report.updated) == (0, 1)
    stored = (await index.fetch_papers([target.paper_id]))[target.paper_id]
    assert stored.upvotes == target.upvotes and stored.upvotes is not None
    assert stored.categories == ["cs.AI", "cs.CL"]
    assert set(stored.sources) == {"hf", "arxiv"}
    assert await index.count_papers() == 3


async def test_newer_version_replaces_the_stored_text(services) -> None:  # type: ignore[no-untyped-def]
    ingestor, search, index = services
    v1 = Paper(
        paper_id="2501.00001",
        arxiv_id="2501.00001",
        version=1,
        title="Old title about cats",
        abstract="We study cats.",
        published=dt.date(2025, 1, 1),
        sources=["arxiv"],
    )
    v2 = v1.model_copy(
        update={
            "version": 2,
            "title": "New title about quantum error correction",
            "abstract": "We study surface codes for quantum error correction.",
        }
    )
    await ingestor.ingest([v1])
    report = await ingestor.ingest([v2])
    assert (report.new, report.updated) == (0, 1)
    stored = (await index.fetch_papers(["2501.00001"]))["2501.00001"]
    assert stored.version == 2 and stored.title.startswith("New title")
    hits = (await search.search("surface codes quantum error correction", limit=1)).hits
    assert hits[0].paper.paper_id == "2501.00001"
    # an older version arriving later changes nothing
    stale = await ingestor.ingest([v1])
    assert (stale.new, stale.updated, stale.duplicates) == (0, 0, 1)


async def test_date_filter_applies_to_search(services) -> None:  # type: ignore[no-untyped-def]
    ingestor, search, _ = services
    old = Paper(
        paper_id="a",
        title="Sparse attention for long documents",
        abstract="Sparse attention.",
        published=dt.date(2020, 5, 1),
    )
    new = Paper(
        paper_id="b",
        title="Sparse attention for long videos",
        abstract="Sparse attention.",
        published=dt.date(2025, 5, 1),
    )
    await ingestor.ingest([old, new])
    hits = (await search.search("sparse attention", since=dt.date(2024, 1, 1))).hits
    assert [h.paper.paper_id for h in hits] == ["b"]


async def test_bad_queries_are_refused_or_truncated(services) -> None:  # type: ignore[no-untyped-def]
    _, search, _ = services
    for empty in ["", "   ", "\n\t"]:
        with pytest.raises(QueryError, match="empty"):
            await search.search(empty)
    with pytest.raises(QueryError, match="limit"):
        await search.search("x", limit=0)
    result = await search.search("transformers " * 2000)
    assert result.truncated


@pytest.mark.parametrize("page_first", [True, False])
async def test_a_saved_page_paper_and_its_hf_record_become_one_across_ingests(
    services, page_first: bool
) -> None:  # type: ignore[no-untyped-def]
    """The seed page knows SHERL by its title only; Hugging Face knows it as 2407.07523. Ingested one
    after the other, in either order, they end as one stored paper under the real id."""
    ingestor, search, index = services
    page = parse_path(SEED_PAGE).papers
    hf = [
        p
        for p in parse_path(SHARED_DATA / "hf_daily_papers" / "hf_daily_papers_slim_part1.jsonl").papers
        if p.paper_id == "2407.07523"
    ]
    assert len(hf) == 1
    sherl_title_id = next(p.paper_id for p in page if p.title.startswith("SHERL"))
    for records in [page, hf] if page_first else [hf, page]:
        await ingestor.ingest(records)
    assert await index.count_papers() == 48
    stored = await index.fetch_papers(["2407.07523", sherl_title_id])
    assert list(stored) == ["2407.07523"]
    assert set(stored["2407.07523"].sources) == {"hf", "page"}
    assert stored["2407.07523"].hf_date is not None
    result = await search.search("memory-efficient transfer learning for resource-limited settings", limit=3)
    ids = [h.paper.paper_id for h in result.hits]
    assert "2407.07523" in ids and sherl_title_id not in ids


async def test_a_title_only_paper_keeps_its_own_id_when_no_stored_title_matches(services) -> None:  # type: ignore[no-untyped-def]
    """A near-identical title is another paper: no merge on a shared prefix or shared words."""
    from bot.core.papers import title_paper_id

    ingestor, _, index = services
    real = Paper(
        paper_id="1506.03134", arxiv_id="1506.03134", title="Pointer Networks 2", abstract="Sequels."
    )
    await ingestor.ingest([real])
    page = Paper(paper_id=title_paper_id("Pointer Networks"), title="Pointer Networks", abstract="Positions.")
    report = await ingestor.ingest([page])
    assert (report.new, report.updated) == (1, 0)
    stored = await index.fetch_papers([real.paper_id, page.paper_id])
    assert set(stored) == {"1506.03134", page.paper_id}
    assert stored["1506.03134"].sources == []
