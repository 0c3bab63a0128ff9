"""Merging records of one paper, and deduplicating the real HF dumps with the arXiv listings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.core.papers import Paper
from bot.ingest.merge import dedupe, merge_papers
from bot.ingest.sources import parse_path

SHARED = Path(__file__).parents[2] / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"


def paper(**fields: object) -> Paper:
    base: dict[str, object] = {"paper_id": "2606.27378", "arxiv_id": "2606.27378", "title": "T"}
    return Paper.model_validate(base | fields)


@pytest.fixture(scope="module")
def hf_and_listings() -> tuple[list[Paper], list[Paper]]:
    hf: list[Paper] = []
    for path in sorted((SHARED / "hf_daily_papers").glob("hf_daily_papers_slim_part*.jsonl")):
        hf.extend(parse_path(path).papers)
    listings: list[Paper] = []
    for path in sorted((SHARED / "arxiv").glob("arxiv_cs_*.jsonl")):
        listings.extend(parse_path(path).papers)
    return hf, listings


def test_hf_dumps_and_arxiv_listings_dedupe_to_10524(
    hf_and_listings: tuple[list[Paper], list[Paper]],
) -> None:
    hf, listings = hf_and_listings
    assert (len(hf), len(listings)) == (9577, 1275)
    distinct, merged = dedupe([*hf, *listings])
    assert len(distinct) == 10524
    # 1,275 listing lines hold 997 papers (278 repeats), and 50 of those are also on HF.
    assert merged == 278 + 50
    assert len({p.paper_id for p in distinct}) == len(distinct)
    in_both = [p for p in distinct if {"hf", "arxiv"} <= set(p.sources)]
    assert len(in_both) == 50
    assert all(p.upvotes is not None and p.categories for p in in_both)
    # Listed on 06-29 as cs.AI, again on 06-30 with a cross-list to cs.CL: one paper, both categories.
    relisted = {p.paper_id: p for p in distinct}["2606.27443"]
    assert relisted.categories == ["cs.AI", "cs.CL"]
    assert relisted.published == dt.date(2026, 6, 29)


def test_merge_is_symmetric_for_hf_and_listing(hf_and_listings: tuple[list[Paper], list[Paper]]) -> None:
    hf, listings = hf_and_listings
    hf_first, _ = dedupe([*hf, *listings])
    listing_first, _ = dedupe([*listings, *hf])
    assert len(hf_first) == len(listing_first) == 10524
    a = {p.paper_id: p for p in hf_first}["2606.27378"]
    b = {p.paper_id: p for p in listing_first}["2606.27378"]
    for merged in (a, b):
        assert merged.title == "Formalizing Latent Thoughts: Four Axioms of Thought Representation in LLMs"
        assert merged.upvotes == 11  # from HF
        assert merged.categories == ["cs.CL", "cs.LG"]  # from the listing
        assert merged.comment == "44 pages, 27 tables, 14 figures"
        assert merged.github_url == "https://github.com/fard-lab/formalize-thoughts"
        assert merged.ai_summary and merged.ai_summary.startswith("An axiomatic evaluation framework")
        assert merged.hf_date == dt.date(2026, 6, 29)
        assert merged.published == dt.date(2026, 5, 7)  # HF's submission date beats the listing day
    assert a.sources == ["hf", "arxiv"] and b.sources == ["arxiv", "hf"]
    assert a.model_dump(exclude={"sources"}) == b.model_dump(exclude={"sources"})


def test_listing_repeats_inside_one_file_fold_into_one() -> None:
    result = parse_path(FIXTURES / "arxiv_cs_2026-06-29_slice.jsonl")
    distinct, merged = dedupe(result.papers)
    assert (len(result.papers), len(distinct), merged) == (25, 24, 1)
    assert [p.paper_id for p in distinct].count("2606.27412") == 1


def test_seed_page_dedupes_against_itself() -> None:
    page = SHARED / "seed" / "000_c48a4a4dc127d178.txt"
    distinct, merged = dedupe([*parse_path(page).papers, *parse_path(page).papers])
    assert (len(distinct), merged) == (48, 48)


def test_higher_version_wins_the_text_either_way() -> None:
    v1 = paper(version=1, title="Old title", abstract="Old abstract", authors=["A"], comment="v1 note")
    v3 = paper(version=3, title="New title", abstract="", authors=["A", "B"], comment=None)
    for merged in (merge_papers(v1, v3), merge_papers(v3, v1)):
        assert merged.title == "New title"
        assert merged.authors == ["A", "B"]
        assert merged.version == 3
        assert merged.abstract == "Old abstract"  # gap in the winner filled from the loser
        assert merged.comment == "v1 note"


def test_equal_or_unknown_versions_keep_old_text_and_fill_gaps() -> None:
    old = paper(version=None, title="Old title", abstract="", authors=[])
    new = paper(version=2, title="New title", abstract="New abstract", authors=["B"], comment="c")
    merged = merge_papers(old, new)
    assert (merged.title, merged.abstract, merged.authors, merged.comment) == (
        "Old title",
        "New abstract",
        ["B"],
        "c",
    )
    assert merged.version == 2
    same = merge_papers(paper(version=2, title="First"), paper(version=2, title="Second"))
    assert same.title == "First"


def test_scalar_and_list_fields() -> None:
    old = paper(
        upvotes=None,
        categories=["cs.CL"],
        sources=["arxiv"],
        published=dt.date(2026, 6, 29),
        hf_date=None,
        project_url="https://old.example",
    )
    new = paper(
        upvotes=7,
        categories=["cs.LG", "cs.CL"],
        sources=["hf", "arxiv"],
        published=dt.date(2026, 5, 7),
        hf_date=dt.date(2026, 7, 3),
        project_url="https://new.example",
        ai_summary="Short.",
        github_url="https://github.com/x/y",
    )
    merged = merge_papers(old, new)
    assert merged.upvotes == 7
    assert merged.categories == ["cs.CL", "cs.LG"]
    assert merged.sources == ["arxiv", "hf"]
    assert merged.published == dt.date(2026, 5, 7)
    assert merged.hf_date == dt.date(2026, 7, 3)
    assert merged.project_url == "https://old.example"
    assert (merged.ai_summary, merged.github_url) == ("Short.", "https://github.com/x/y")
    assert merge_papers(paper(upvotes=12), paper(upvotes=3)).upvotes == 12


def test_merge_refuses_different_papers() -> None:
    with pytest.raises(ValueError, match="different papers"):
        merge_papers(paper(), paper(paper_id="2405.15738", arxiv_id="2405.15738"))


def test_dedupe_keeps_first_seen_order() -> None:
    a, b, c = (
        paper(paper_id=pid, arxiv_id=pid, title=pid) for pid in ("2401.00001", "2401.00002", "2401.00003")
    )
    distinct, merged = dedupe([b, a, b, c, a])
    assert [p.paper_id for p in distinct] == ["2401.00002", "2401.00001", "2401.00003"]
    assert merged == 2
    assert dedupe([]) == ([], 0)


def test_a_saved_page_paper_merges_into_its_hf_record_by_normalized_title(
    hf_and_listings: tuple[list[Paper], list[Paper]],
) -> None:
    """The seed page has no ids; its two papers that are also HF daily papers take the HF id, in
    either order of ingestion, and keep the page as a source."""
    hf, _ = hf_and_listings
    page = parse_path(SHARED / "seed" / "000_c48a4a4dc127d178.txt").papers
    for records in ([*hf, *page], [*page, *hf]):
        distinct, merged = dedupe(records)
        assert merged == 2
        assert len(distinct) == len(hf) + len(page) - 2
        by_id = {p.paper_id: p for p in distinct}
        sherl = by_id["2407.07523"]
        assert sherl.title.startswith("SHERL")
        assert set(sherl.sources) == {"hf", "page"}
        assert sherl.hf_date is not None
        assert "2407.02880" in by_id and "page" in by_id["2407.02880"].sources
        assert sum(p.paper_id.startswith("title:") for p in distinct) == len(page) - 2


def test_title_only_records_merge_only_on_the_same_normalized_title() -> None:
    from bot.core.papers import title_paper_id

    real = paper(title="Pointer  Networks\n")
    same = Paper(paper_id=title_paper_id("pointer networks!"), title="pointer networks!", sources=["page"])
    other = Paper(paper_id=title_paper_id("Pointer Networks 2"), title="Pointer Networks 2", sources=["page"])
    distinct, merged = dedupe([same, other, real])
    assert merged == 1
    assert [p.paper_id for p in distinct] == ["2606.27378", other.paper_id]
    assert distinct[0].sources == ["page"]
    assert distinct[0].arxiv_id == "2606.27378"
