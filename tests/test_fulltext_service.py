"""Full texts through the services (issue 14): ingest from files and the CLI, on-demand arXiv fetch
against a local arXiv (HTML, then e-print, then PDF; 404 and 429 handled; arXiv's pace kept),
passages retrieved by answers with their section, /search still one result per paper."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.cli import EXIT_REJECTED, main
from bot.app.services import Services, build_services
from bot.core.config import CoreSettings, FulltextSettings, RagSettings, Settings
from bot.core.papers import Paper
from bot.retrieval.index.base import FULLTEXT_FIRST_CHUNK
from bot.retrieval.index.edge import EdgePaperIndex
from tests.support.fake_arxiv import FULLTEXT, FakeArxiv

pytest_plugins = ["tests.support.fake_arxiv"]

MISTRAL_PDF = FULLTEXT / "mistral-7b" / "pdf" / "2310.06825.pdf"
TELL_ME = "2501.11120"


@pytest.fixture
async def make_services(tmp_path: Path, embedder: Any) -> AsyncIterator[Any]:
    indexes: list[EdgePaperIndex] = []

    async def make(rag: RagSettings | None = None, **fulltext: Any) -> Services:
        index = EdgePaperIndex(tmp_path / f"qdrant{len(indexes)}")
        await index.ensure_collection(embedder.dimensions)
        indexes.append(index)
        settings = Settings(
            core=CoreSettings(data_dir=tmp_path / f"data{len(indexes)}"),
            fulltext=FulltextSettings(**fulltext),
            rag=rag or RagSettings(),
        )
        return build_services(settings, index=index, embedder=embedder, llm=None)

    yield make
    for index in indexes:
        await index.close()


async def test_a_pdf_adds_its_full_text_to_the_stored_paper_and_answers_cite_the_section(
    make_services: Any,
) -> None:
    services = await make_services(mode="off")
    stored = Paper(paper_id="2310.06825", arxiv_id="2310.06825", title="Mistral 7B", abstract="A 7B model.")
    await services.ingestor.ingest([stored])
    result = await services.fulltext.ingest_path(MISTRAL_PDF)
    assert not result.new_paper and result.paper.paper_id == "2310.06825"  # matched by the arXiv stamp
    assert result.record.source_format == "pdf" and result.record.passages > 30
    assert services.fulltext.status("2310.06825").sections[:2] == [
        "§1 Introduction",
        "§2 Architectural details",
    ]

    answer = await services.answers.answer(
        "What window size does Mistral 7B use for sliding window attention?"
    )
    assert answer.fallback  # no LLM here: the cited passages themselves
    cited = answer.to_json()["citations"]
    assert cited and all(c["section"] for c in cited)
    assert any(
        "sliding window" in c["passage"].lower() and c["section"].startswith("§2 Architectural details")
        for c in cited
    )

    # /search stays one result per paper, over title + abstract.
    found = await services.search.search("rolling buffer cache sliding window attention", limit=5)
    assert [h.paper.paper_id for h in found.hits].count("2310.06825") <= 1
    assert all(h.chunk_no < FULLTEXT_FIRST_CHUNK for h in found.hits)

    # A new abstract re-embeds the paper's own chunks and leaves its passages alone.
    await services.ingestor.ingest([stored.model_copy(update={"abstract": "A 7B model, now described."})])
    again = await services.search.search_chunks("rolling buffer cache", limit=5)
    assert any(h.chunk_no >= FULLTEXT_FIRST_CHUNK and h.paper.paper_id == "2310.06825" for h in again)


async def test_a_full_text_without_a_stored_record_becomes_a_paper_and_matches_by_title_next_time(
    make_services: Any,
) -> None:
    services = await make_services(mode="off")
    latex = await services.fulltext.ingest_path(FULLTEXT / "attention-is-all-you-need" / "latex")
    assert latex.new_paper and latex.paper.title == "Attention Is All You Need"
    assert latex.paper.paper_id.startswith("title:")  # the source has no arXiv id
    pdf = await services.fulltext.ingest_path(
        FULLTEXT / "attention-is-all-you-need" / "pdf" / "attention.pdf"
    )
    assert not pdf.new_paper and pdf.paper.paper_id == latex.paper.paper_id  # same normalized title
    assert await services.index.count_papers() == 1


async def test_on_demand_fetch_takes_html_first_and_citations_link_to_the_section(
    make_services: Any, fake_arxiv: FakeArxiv
) -> None:
    fake_arxiv.serve_real_papers()
    services = await make_services(arxiv_base_url=fake_arxiv.base_url, request_interval_s=0.05)
    paper = Paper(paper_id=TELL_ME, arxiv_id=TELL_ME, title="Tell me about yourself", abstract="Awareness.")
    await services.ingestor.ingest([paper])
    record = await services.fulltext.ensure(paper)
    assert (
        record is not None and record.source_format == "html" and fake_arxiv.paths() == [f"/html/{TELL_ME}"]
    )
    assert await services.fulltext.ensure(paper) == record and len(fake_arxiv.requests) == 1  # once only

    answer = await services.answers.answer("Which codewords were used in the Make Me Say game?")
    urls = [c.url for c in answer.citations if c.paper_id == TELL_ME]
    assert any(u and u.startswith(f"https://arxiv.org/html/{TELL_ME}#S") for u in urls), urls


async def test_arxiv_404_everywhere_429_with_retry_after_and_the_pace(
    make_services: Any, fake_arxiv: FakeArxiv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_arxiv.serve_real_papers()
    services = await make_services(arxiv_base_url=fake_arxiv.base_url, request_interval_s=0.3, retries=2)
    missing = Paper(paper_id="2401.00001", arxiv_id="2401.00001", title="Not on arXiv", abstract="Nothing.")
    assert await services.fulltext.ensure(missing) is None  # a paper without full text is still a paper
    assert fake_arxiv.paths() == ["/html/2401.00001", "/e-print/2401.00001", "/pdf/2401.00001"]
    assert "arXiv has no full text for 2401.00001 (HTML, e-print and PDF all 404)" in capsys.readouterr().out

    fake_arxiv.requests.clear()
    fake_arxiv.answer_first(f"/html/{TELL_ME}", (429, {"Retry-After": "0.5"}))
    paper = Paper(paper_id=TELL_ME, arxiv_id=TELL_ME, title="Tell me about yourself", abstract="Awareness.")
    assert (await services.fulltext.ensure(paper)) is not None
    (first, _), (second, _) = fake_arxiv.requests
    assert second - first >= 0.5  # Retry-After honoured

    # Every request keeps arXiv's pace, across papers.
    gaps = [b - a for (a, _), (b, _) in zip(fake_arxiv.requests, fake_arxiv.requests[1:], strict=False)]
    assert all(gap >= 0.29 for gap in gaps)

    fake_arxiv.requests.clear()
    stuck = Paper(paper_id="2310.06825", arxiv_id="2310.06825", title="Mistral 7B", abstract="A 7B model.")
    for _ in range(3):
        fake_arxiv.answer_first("/html/2310.06825", (429, {"Retry-After": "0"}))
    assert await services.fulltext.ensure(stuck) is None  # gives up after the retries, says why
    assert "arXiv is rate-limiting requests (429)" in capsys.readouterr().out
    assert fake_arxiv.paths() == ["/html/2310.06825"] * 3


def test_cli_ingests_full_texts_one_line_each_and_a_bad_one_loses_nothing_else(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\n" + b"\x00not really" * 40)
    code = main(["ingest", "--no-progress", str(broken), str(MISTRAL_PDF)])
    out, err = capsys.readouterr()
    assert code == EXIT_REJECTED
    assert f"rejected {broken}: not a readable PDF (corrupt or truncated" in err
    assert "Traceback" not in err
    assert f"full text {MISTRAL_PDF}: new paper 2310.06825 (Mistral 7B) — pdf, 9 sections" in out

    code = main(["ask", "--json", "How does Mistral 7B limit its cache size?"])
    answer = json.loads(capsys.readouterr().out)
    assert {"section", "passage"} <= set(answer["citations"][0])
    assert any(c["section"].startswith("§") for c in answer["citations"])


async def test_a_question_that_names_a_paper_by_arxiv_id_fetches_its_full_text_first(
    make_services: Any, fake_arxiv: FakeArxiv
) -> None:
    fake_arxiv.serve_real_papers()
    services = await make_services(arxiv_base_url=fake_arxiv.base_url, request_interval_s=0.05)
    mistral = Paper(paper_id="2310.06825", arxiv_id="2310.06825", title="Mistral 7B", abstract="A 7B model.")
    await services.ingestor.ingest([mistral])
    assert await services.fulltext.ensure_for_question("What is new in attention lately?") == []
    assert fake_arxiv.requests == []  # nothing named, nothing fetched
    records = await services.fulltext.ensure_for_question("How does arXiv:2310.06825v1 cache keys?")
    assert [r.paper_id for r in records] == ["2310.06825"] and records[0].source_format == "latex"
    again = await services.fulltext.ensure_for_question(
        "more on it", context="https://arxiv.org/abs/2310.06825"
    )
    assert again == records and fake_arxiv.paths() == ["/html/2310.06825", "/e-print/2310.06825"]


async def test_a_section_cap_spreads_an_answers_excerpts_over_the_paper(make_services: Any) -> None:
    """RAG_MAX_PER_SECTION on Mistral 7B's real PDF: uncapped, one section gives several of the
    excerpts; capped at 1, each comes from another section, the best passage still first."""
    question = "How does the rolling buffer cache of sliding window attention save memory?"

    async def sections(cap: int) -> list[tuple[str, str | None]]:
        services = await make_services(mode="off", rag=RagSettings(max_per_section=cap))
        await services.fulltext.ingest_path(MISTRAL_PDF)
        answer = await services.answers.answer(question)
        return [(s.paper.paper_id, s.section or s.kind) for s in answer.sources]

    uncapped, capped = await sections(0), await sections(1)
    assert len(capped) >= 4 and len(uncapped) >= 4  # as many as fit the prompt's budget
    assert len(set(uncapped)) < len(uncapped)  # neighbours from one section
    assert len(set(capped)) == len(capped)
    assert capped[0] == uncapped[0] and capped[0][0] == "2310.06825"
