"""Source parsers on the real shared data and on malformed inputs."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from bot.core.papers import Paper, title_paper_id
from bot.ingest.sources import ParseResult, Rejected, parse_bytes, parse_path
from bot.ingest.sources.sniff import detect_format

SHARED = Path(__file__).parents[2] / "shared" / "data"
FIXTURES = Path(__file__).parent / "fixtures"
HF_RAW = SHARED / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"
ATOM_CURRENT = SHARED / "arxiv" / "arxiv_api_search_testing_m100.xml"
ATOM_2016 = SHARED / "arxiv" / "arxiv_api_au_del_maestro_2016.xml"
LISTING_0629 = SHARED / "arxiv" / "arxiv_cs_2026-06-29.jsonl"
SEED_PAGE = SHARED / "seed" / "000_c48a4a4dc127d178.txt"


def by_id(result: ParseResult) -> dict[str, Paper]:
    return {paper.paper_id: paper for paper in result.papers}


def assert_rejects_located(result: ParseResult, path: Path) -> None:
    assert result.rejected, "expected rejects"
    for rejected in result.rejected:
        assert rejected.source == str(path)
        assert isinstance(rejected.line, int) and rejected.line >= 1, rejected


# --- format detection ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (HF_RAW, "hf_json"),
        (SHARED / "hf_daily_papers" / "hf_daily_papers_slim_part7.jsonl", "hf_jsonl"),
        (ATOM_CURRENT, "arxiv_atom"),
        (ATOM_2016, "arxiv_atom"),
        (LISTING_0629, "arxiv_listing"),
        (SEED_PAGE, "page"),
        (FIXTURES / "papers_generic.jsonl", "jsonl"),
    ],
)
def test_detects_each_shared_format(path: Path, expected: str) -> None:
    assert detect_format(path.read_bytes()).fmt == expected


def test_format_is_detected_from_content_when_the_first_line_is_bad(tmp_path: Path) -> None:
    slice_lines = (FIXTURES / "hf_daily_slice.jsonl").read_text().splitlines()
    path = tmp_path / "papers.jsonl"
    path.write_text("{not json\n" + "\n".join(slice_lines) + "\n")
    result = parse_path(path)
    assert len(result.papers) == 3
    assert result.rejected == [Rejected(str(path), 1, result.rejected[0].reason)]
    assert result.rejected[0].reason.startswith("invalid JSON")


# --- Hugging Face daily papers ------------------------------------------------------------------


def test_hf_api_response_maps_every_field() -> None:
    result = parse_path(HF_RAW)
    assert (result.records, len(result.papers), result.rejected) == (29, 29, [])
    paper = by_id(result)["2608.15265"]
    assert paper.title == "VibeWorlding: Can Multimodal Agents Construct 3D Open Worlds End-to-End?"
    assert paper.arxiv_id == "2608.15265" and paper.version is None
    assert paper.upvotes == 39
    assert paper.authors[:2] == ["Yansong Ning", "Jingwen Ye"] and len(paper.authors) == 8
    assert paper.published == dt.date(2026, 8, 15)
    assert paper.hf_date == dt.date(2026, 8, 18)  # the list's day, not the outer publishedAt (08-14)
    assert paper.github_url == "https://github.com/usail-hkust/VibeWorlding-Gym"
    assert paper.project_url == "https://huggingface.co/collections/usail-hkust/vibeworlder"
    assert paper.ai_summary and paper.ai_summary.startswith("A unified framework benchmarks")
    assert paper.abstract.startswith("Constructing an interactive 3D open world")
    assert paper.sources == ["hf"] and paper.categories == []
    assert [p.upvotes for p in result.papers][:3] == [39, 36, 30]
    assert all(p.hf_date == dt.date(2026, 8, 18) for p in result.papers)


def test_hf_jsonl_titles_with_line_breaks_are_cleaned() -> None:
    result = parse_path(FIXTURES / "hf_daily_slice.jsonl")
    paper = by_id(result)["2405.15738"]
    assert paper.title == "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    assert paper.upvotes == 32
    assert paper.published == dt.date(2024, 5, 24)
    assert paper.hf_date == dt.date(2024, 5, 27)
    assert "\n" not in paper.abstract and "  " not in paper.abstract
    assert paper.abstract.endswith("publicly available at https://github.com/alibaba/conv-llava.")
    assert paper.ai_summary is None and paper.github_url is None


def test_all_hf_dumps_parse_without_rejects() -> None:
    papers = []
    for path in sorted((SHARED / "hf_daily_papers").glob("hf_daily_papers_slim_part*.jsonl")):
        result = parse_path(path)
        assert result.rejected == [] and result.records == len(result.papers)
        papers.extend(result.papers)
    assert len(papers) == 9577
    assert len({p.paper_id for p in papers}) == 9577
    assert sum(p.ai_summary is None for p in papers) == 3866  # documented quirk
    assert all(p.hf_date and p.published and p.upvotes is not None for p in papers)
    assert not any("\n" in p.title or "  " in p.title for p in papers)
    assert all(p.paper_id == p.arxiv_id and p.version is None for p in papers)


def test_hf_list_of_strings_is_rejected_per_element_with_its_line() -> None:
    path = FIXTURES / "hf_daily_list_of_strings.json"
    result = parse_path(path)
    assert result.papers == [] and result.records == 3
    assert [r.line for r in result.rejected] == [2, 3, 4]
    assert all("got a JSON string" in r.reason for r in result.rejected)
    assert_rejects_located(result, path)


def test_hf_malformed_jsonl_keeps_good_records_and_locates_bad_ones() -> None:
    path = FIXTURES / "hf_daily_malformed.jsonl"
    result = parse_path(path)
    assert [p.paper_id for p in result.papers] == ["2405.15032", "2405.15682"]
    assert result.records == 6  # the blank line is not a record
    reasons = {r.line: r.reason for r in result.rejected}
    assert set(reasons) == {2, 3, 4, 5}
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == "expected a daily-papers object, got a JSON string"
    assert reasons[4] == "missing title"
    assert reasons[5] == "paper.id 'not-an-id' is not an arXiv id"
    assert_rejects_located(result, path)


def test_hf_json_array_with_a_syntax_error_keeps_what_came_before(tmp_path: Path) -> None:
    first_item = (FIXTURES / "hf_daily_slice.jsonl").read_text().splitlines()[0]
    path = tmp_path / "daily_2024-05-27.json"
    path.write_text(f'[\n{first_item},\n{{"paper": {{"id": \n')
    result = parse_path(path)
    assert [p.paper_id for p in result.papers] == ["2405.15738"]
    assert len(result.rejected) == 1 and result.rejected[0].reason.startswith("invalid JSON")
    assert result.rejected[0].line == 4
    assert_rejects_located(result, path)


def test_hf_record_without_paper_object_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "daily.json"
    path.write_text('[{"title": "outer only", "paper": null}]')
    result = parse_path(path)
    assert result.papers == []
    assert result.rejected == [Rejected(str(path), 1, "record has no 'paper' object")]


# --- arXiv Atom API -----------------------------------------------------------------------------


def test_atom_current_format() -> None:
    result = parse_path(ATOM_CURRENT)
    assert (result.records, len(result.papers), result.rejected) == (100, 100, [])
    papers = by_id(result)
    first = papers["2202.12139"]
    assert first.title == (
        "Testing Deep Learning Models: A First Comparative Study of Multiple Testing Techniques"
    )
    assert first.version == 1 and first.arxiv_id == "2202.12139"
    assert first.categories == ["cs.SE", "cs.LG"]
    assert first.authors == ["Mohit Kumar Ahuja", "Arnaud Gotlieb", "Helge Spieker"]
    assert first.comment == "Artificial Intelligence in Software Testing 2022 workshop @ ICST 2022"
    assert first.published == dt.date(2022, 2, 24)
    assert first.sources == ["arxiv"]
    ninth = papers["2409.05654"]
    assert ninth.version == 9 and ninth.title == "Continuous Testing: Unifying Tests and E-values"
    assert ninth.categories == ["math.ST"]
    old_style = papers["hep-ph/0301050"]
    assert old_style.version == 2 and old_style.title == "Statistical Test of Anarchy"
    assert all(p.version is not None and "v" not in p.paper_id.split("/")[-1] for p in result.papers)


def test_atom_2016_format() -> None:
    result = parse_path(ATOM_2016)
    assert (len(result.papers), result.rejected) == (10, [])
    papers = by_id(result)
    luttinger = papers["1201.4869"]
    assert luttinger.categories == ["cond-mat.mes-hall", "cond-mat.other"]  # primary first
    assert luttinger.comment == "26 pages, 10 figures"
    assert luttinger.abstract.startswith("As helium-4 is cooled below 2.17 K")
    assert papers["cond-mat/0412498"].title == "Thermal melting of density waves on the square lattice"
    assert not any("\n" in p.title or "  " in p.title or "\n" in p.abstract for p in result.papers)


def test_atom_error_entry_is_rejected_with_its_line() -> None:
    feed = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>ArXiv Query: search_query=&amp;id_list=1234.12345</title>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1234.12345</id>
    <title>Error</title>
    <summary>incorrect id format for 1234.12345</summary>
  </entry>
</feed>
"""
    result = parse_bytes(feed, source_name="arxiv:query")
    assert result.papers == [] and result.records == 1
    assert result.rejected == [
        Rejected("arxiv:query", 4, "arXiv API error: incorrect id format for 1234.12345")
    ]


def test_html_instead_of_atom_is_rejected() -> None:
    result = parse_bytes(b"<html><body>Service unavailable</body></html>", source_name="x.xml")
    assert result.papers == [] and len(result.rejected) == 1
    assert result.rejected[0].reason.startswith("not a readable Atom feed")


# --- arXiv daily listings -----------------------------------------------------------------------


def test_arxiv_listing_uses_file_date_and_keeps_repeats_for_dedupe() -> None:
    result = parse_path(LISTING_0629)
    assert (result.records, len(result.papers), result.rejected) == (230, 230, [])
    assert len({p.paper_id for p in result.papers}) == 166  # cross-lists repeat inside the file
    assert {p.published for p in result.papers} == {dt.date(2026, 6, 29)}
    paper = by_id(result)["2606.27531"]
    assert paper.title == "Doppler Tracking of the Artemis II Mission (and Other Spacecraft)"
    assert paper.categories == ["cs.CE"]
    assert paper.authors[0] == "Ankur Purao" and len(paper.authors) == 5
    assert paper.comment is None and paper.version is None
    assert paper.sources == ["arxiv"]
    assert "``Integrity''" in paper.abstract


def test_arxiv_listing_date_comes_from_the_file_name(tmp_path: Path) -> None:
    copy = tmp_path / "arxiv_cs_2026-07-04.jsonl"  # e.g. a weekend copy of Friday's file
    shutil.copy(FIXTURES / "arxiv_cs_2026-06-29_slice.jsonl", copy)
    result = parse_path(copy)
    assert len(result.papers) == 25
    assert {p.published for p in result.papers} == {dt.date(2026, 7, 4)}


def test_arxiv_listing_record_without_id_or_title(tmp_path: Path) -> None:
    path = tmp_path / "arxiv_cs_2026-06-29.jsonl"
    path.write_text(
        '{"id": "2606.00001", "categories": ["cs.CL"], "summary": "s", "title": "Good"}\n'
        '{"id": "", "categories": ["cs.CL"], "summary": "s", "title": "No id"}\n'
        '{"id": "2606.00003", "categories": ["cs.CL"], "summary": "s", "title": null}\n'
    )
    result = parse_path(path)
    assert [p.paper_id for p in result.papers] == ["2606.00001"]
    assert [(r.line, r.reason) for r in result.rejected] == [
        (2, "missing arXiv id (id='')"),
        (3, "missing title"),
    ]


# --- saved papers page --------------------------------------------------------------------------


def test_seed_page_yields_48_papers_and_no_header_lines() -> None:
    result = parse_path(SEED_PAGE)
    assert (result.records, len(result.papers), result.rejected) == (48, 48, [])
    titles = [p.title for p in result.papers]
    assert titles[0] == (
        "SHERL: Synthesizing High Accuracy and Efficient Memory for Resource-Limited Transfer Learning"
    )
    assert titles[-1] == "HyperAttention: Long-context Attention in Near-Linear Time"
    header = {"new", "Get trending papers in your email inbox!", "Subscribe", "Mar 18"}
    assert not header & set(titles)
    assert not any(p.abstract in header or len(p.abstract) < 200 for p in result.papers)
    assert result.papers[0].abstract.startswith("Parameter-efficient transfer learning (PETL)")
    assert all(p.paper_id == title_paper_id(p.title) and p.sources == ["page"] for p in result.papers)
    assert len({p.paper_id for p in result.papers}) == 48


def test_seed_page_ids_are_stable_across_parses() -> None:
    first = [p.paper_id for p in parse_path(SEED_PAGE).papers]
    second = [p.paper_id for p in parse_bytes(SEED_PAGE.read_bytes(), source_name="again.txt").papers]
    assert first == second


def test_page_out_of_step_is_rejected_with_lines(tmp_path: Path) -> None:
    abstract = "We study things. " * 30
    path = tmp_path / "page.txt"
    path.write_text(
        f"Subscribe\n\nMar 18\n\nA Good Title\n\n{abstract}\n\n{abstract}\n\nLost Title\n\n"
        f"Second Title\n\nA wrapped abstract, first half\n{abstract}\n\nDangling Title\n"
    )
    result = parse_path(path)
    assert [(p.title, p.abstract[:16]) for p in result.papers] == [
        ("A Good Title", "We study things."),
        ("Second Title", "A wrapped abstra"),
    ]
    assert result.papers[1].abstract == "A wrapped abstract, first half " + abstract.strip()
    assert [r.line for r in result.rejected] == [9, 11, 18]
    assert "paragraph" in result.rejected[0].reason
    assert "'Lost Title' has no abstract" in result.rejected[1].reason
    assert "'Dangling Title' has no abstract" in result.rejected[2].reason


# --- generic JSONL ------------------------------------------------------------------------------


def test_generic_jsonl() -> None:
    path = FIXTURES / "papers_generic.jsonl"
    result = parse_path(path)
    assert result.records == 8
    papers = by_id(result)
    assert list(papers) == ["2405.15738", "2024.acl-long.123", "2606.27531"]
    arxiv = papers["2405.15738"]
    assert arxiv.version == 2 and arxiv.arxiv_id == "2405.15738"
    assert arxiv.title == "ConvLLaVA: Hierarchical Backbones as Visual Encoder for Large Multimodal Models"
    assert arxiv.authors == ["Chunjiang Ge", "Sijie Cheng"]
    assert arxiv.categories == ["cs.CV", "cs.AI"]
    assert arxiv.published == dt.date(2024, 5, 24)
    assert arxiv.github_url == "https://github.com/alibaba/conv-llava" and arxiv.sources == ["jsonl"]
    acl = papers["2024.acl-long.123"]
    assert acl.arxiv_id is None and acl.title == "A Paper from the ACL Anthology"
    assert acl.authors == ["Ada Lovelace", "Alan Turing"]
    assert acl.published == dt.date(2024, 8, 1)
    assert acl.project_url == "https://aclanthology.org/2024.acl-long.123"
    assert papers["2606.27531"].version == 3  # id taken from the arXiv url
    reasons = {r.line: r.reason for r in result.rejected}
    assert reasons[4] == "missing title"
    assert reasons[5] == "missing id (and no arXiv url to take one from)"
    assert reasons[6] == "invalid date 'yesterday' (expected YYYY-MM-DD)"
    assert reasons[7].startswith("invalid JSON")
    assert reasons[8] == "expected a paper object, got a JSON array"
    assert_rejects_located(result, path)


# --- whole-input problems -----------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n  \n\t\n"])
def test_empty_file_is_one_reject_not_an_exception(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    result = parse_path(path)
    assert result.papers == [] and result.records == 0
    assert result.rejected == [Rejected(str(path), None, "empty input: no records")]


def test_unrecognized_json_lines_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    path.write_text('{"name": "x", "value": 1}\n')
    result = parse_path(path)
    assert result.papers == [] and len(result.rejected) == 1
    assert result.rejected[0].line == 1
    assert "unrecognized JSON record (keys: name, value)" in result.rejected[0].reason


@pytest.mark.parametrize(
    ("name", "content", "reason_start"),
    [
        ("paper.pdf", b"%PDF-1.7", "unsupported file type '.pdf'"),
        ("blob.txt", b"\x00\x01\x02binary", "binary content"),
        ("latin1.txt", "Caf\xe9 title\n\nabstract\n".encode("latin-1"), "not UTF-8 text"),
        ("notes.txt", b"Subscribe\n\nMar 18\n", "no papers found"),
        ("SHA256SUMS", b"2c6ffcb0e7d8ba1b  hf_daily_papers/part1.jsonl\n" * 20, "expected a title"),
    ],
)
def test_unreadable_inputs_are_rejected(tmp_path: Path, name: str, content: bytes, reason_start: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = parse_path(path)
    assert result.papers == [] and len(result.rejected) == 1
    assert result.rejected[0].source == str(path)
    assert result.rejected[0].reason.startswith(reason_start)


def test_missing_file_raises() -> None:
    with pytest.raises(FileNotFoundError):
        parse_path(FIXTURES / "does_not_exist.jsonl")


def test_parse_bytes_with_explicit_and_unknown_format() -> None:
    data = (FIXTURES / "hf_daily_slice.jsonl").read_bytes()
    assert len(parse_bytes(data, source_name="hf", fmt="hf_jsonl").papers) == 3
    forced = parse_bytes(data, source_name="hf", fmt="jsonl")  # wrong format: rejects, no crash
    assert forced.papers == []
    assert [r.reason for r in forced.rejected] == ["missing id (and no arXiv url to take one from)"] * 3
    with pytest.raises(ValueError, match="unknown format"):
        parse_bytes(data, source_name="hf", fmt="csv")
