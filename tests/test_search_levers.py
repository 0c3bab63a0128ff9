"""Search as configured (issue 13): BM25 reads the question without its asking frame, through the
real embedder and a real Qdrant Edge index."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.config import Settings, TokenizerSettings
from bot.core.papers import Paper
from bot.ingest.pipeline import Ingestor
from bot.retrieval.index.edge import EdgePaperIndex
from bot.retrieval.query_text import clean_question
from bot.retrieval.search import SearchService, build_search_service
from bot.retrieval.sparse import sparse_query

QUESTION = "Which paper feeds the model's own draft answer back into retrieval?"


@pytest.fixture
async def index(tmp_path: Path, embedder):  # type: ignore[no-untyped-def]
    index = EdgePaperIndex(tmp_path / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    yield index
    await index.close()


async def test_by_default_bm25_reads_the_cleaned_question(index, embedder) -> None:  # type: ignore[no-untyped-def]
    search = build_search_service(Settings(), index, embedder)
    assert search.clean_questions
    dense, sparse = await search.query_vectors(QUESTION, "hybrid")
    assert sparse == sparse_query(clean_question(QUESTION))
    assert sparse != sparse_query(QUESTION)  # "paper" is not searched for
    assert dense == pytest.approx(await embedder.embed_query(QUESTION))  # MiniLM reads it whole
    dense_only, no_sparse = await search.query_vectors(QUESTION, "dense")
    assert no_sparse is None and dense_only == pytest.approx(dense)
    assert "question cleaning on" in search.describe()


async def test_the_setting_turns_cleaning_off(index, embedder, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RETRIEVAL_CLEAN_QUESTIONS", "false")
    search = build_search_service(Settings(), index, embedder)
    assert not search.clean_questions
    _, sparse = await search.query_vectors(QUESTION, "sparse")
    assert sparse == sparse_query(QUESTION)


async def test_bm25_no_longer_ranks_a_paper_for_saying_paper(index, embedder) -> None:  # type: ignore[no-untyped-def]
    """Two abstracts: one says "paper" three times, the other is about the question's topic. With the
    raw question BM25 puts the first one first; with the asking frame dropped, the second."""
    wordy = Paper(
        paper_id="2401.00001",
        title="A paper on papers",
        abstract="This paper, a position paper, surveys papers.",
    )
    topical = Paper(
        paper_id="2401.00002", title="Graph search", abstract="Transformers learn reachability over graphs."
    )
    await Ingestor(index, embedder, TokenizerSettings()).ingest([wordy, topical])
    question = "Which paper covers reachability?"
    raw = await SearchService(index, embedder).search(question, limit=2, mode="sparse")
    assert raw.hits[0].paper.paper_id == "2401.00001"
    cleaned = await build_search_service(Settings(), index, embedder).search(question, limit=2, mode="sparse")
    assert [h.paper.paper_id for h in cleaned.hits] == ["2401.00002"]
