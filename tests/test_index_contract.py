"""One contract, two back ends: Qdrant Edge (embedded default) and qdrant-client (server path)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import statistics
from collections.abc import Callable

import pytest

from bot.core.papers import Paper, point_id
from bot.retrieval.index import ChunkHit, IndexedChunk, PaperIndex, SearchFilter
from bot.retrieval.index.base import adaptive_bm25_weight, fuse_hits, lead
from bot.retrieval.sparse import sparse_document, sparse_query

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect")

DIM = 8


def fake_vector(text: str) -> list[float]:
    """Deterministic unit vector: texts sharing words get similar vectors."""
    vec = [0.0] * DIM
    for word in text.lower().split():
        vec[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


PAPERS = [
    Paper(
        paper_id="2401.00001",
        arxiv_id="2401.00001",
        title="Graph neural networks for molecules",
        abstract="We predict molecular properties with message passing.",
        categories=["cs.LG"],
        published=dt.date(2024, 1, 2),
    ),
    Paper(
        paper_id="2402.00002",
        arxiv_id="2402.00002",
        title="Reasoning in large language models",
        abstract="Chain of thought prompting improves arithmetic reasoning.",
        categories=["cs.CL"],
        published=dt.date(2024, 2, 3),
        sources=["hf", "arxiv"],
    ),
    Paper(
        paper_id="2403.00003",
        arxiv_id="2403.00003",
        title="Diffusion models for video generation",
        abstract="A video diffusion transformer generates long clips.",
        categories=["cs.CV"],
        published=dt.date(2024, 3, 4),
    ),
]


def chunks_for(paper: Paper, n_chunks: int = 1) -> list[IndexedChunk]:
    text = f"{paper.title}\n\n{paper.abstract}"
    return [
        IndexedChunk(point_id(paper.paper_id, i), paper, i, text, fake_vector(text), sparse_document(text))
        for i in range(n_chunks)
    ]


async def load(index: PaperIndex) -> None:
    await index.ensure_collection(DIM)
    await index.upsert([c for p in PAPERS for c in chunks_for(p)])


async def ask(index: PaperIndex, text: str, mode: str = "hybrid", **flt: object) -> list[str]:
    hits = await index.query(
        dense=fake_vector(text),
        sparse=sparse_query(text),
        mode=mode,
        limit=3,  # type: ignore[arg-type]
        search_filter=SearchFilter(**flt),  # type: ignore[arg-type]
    )
    return [h.paper.paper_id for h in hits]


async def test_upsert_is_idempotent(paper_index: PaperIndex) -> None:
    await load(paper_index)
    await load(paper_index)
    assert await paper_index.count_papers() == 3


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
async def test_each_mode_finds_the_matching_paper_first(paper_index: PaperIndex, mode: str) -> None:
    await load(paper_index)
    assert (await ask(paper_index, "arithmetic reasoning chain of thought", mode))[0] == "2402.00002"


async def test_filters_by_date_range_and_category(paper_index: PaperIndex) -> None:
    await load(paper_index)
    since = await ask(paper_index, "models", since=dt.date(2024, 2, 1))
    assert set(since) == {"2402.00002", "2403.00003"}
    until = await ask(paper_index, "models", until=dt.date(2024, 1, 31))
    assert until == ["2401.00001"]
    assert await ask(paper_index, "models", categories=("cs.CV",)) == ["2403.00003"]
    assert await paper_index.count_papers(SearchFilter(categories=("cs.CL", "cs.CV"))) == 2
    assert await paper_index.count_papers(SearchFilter(sources=("hf",))) == 1


async def test_fetch_papers_round_trips_metadata(paper_index: PaperIndex) -> None:
    await load(paper_index)
    stored = await paper_index.fetch_papers(["2401.00001", "9999.99999"])
    assert list(stored) == ["2401.00001"]
    assert stored["2401.00001"] == PAPERS[0]


async def test_metadata_update_reaches_every_chunk(paper_index: PaperIndex) -> None:
    await paper_index.ensure_collection(DIM)
    await paper_index.upsert(chunks_for(PAPERS[0], n_chunks=3))
    updated = PAPERS[0].model_copy(update={"upvotes": 42, "categories": ["cs.LG", "q-bio.BM"]})
    await paper_index.set_paper_metadata([updated])
    hits = await paper_index.query(
        dense=fake_vector("molecules"), sparse=None, mode="dense", limit=10, search_filter=SearchFilter()
    )
    assert len(hits) == 3
    assert {h.paper.upvotes for h in hits} == {42}
    assert await paper_index.count_papers(SearchFilter(categories=("q-bio.BM",))) == 1


async def test_delete_chunks_drops_only_the_tail(paper_index: PaperIndex) -> None:
    await paper_index.ensure_collection(DIM)
    await paper_index.upsert(chunks_for(PAPERS[0], n_chunks=4))
    await paper_index.delete_chunks(PAPERS[0].paper_id, from_chunk=2)
    hits = await paper_index.query(
        dense=fake_vector("molecules"), sparse=None, mode="dense", limit=10, search_filter=SearchFilter()
    )
    assert sorted(h.chunk_no for h in hits) == [0, 1]


async def test_exclusion_filter(paper_index: PaperIndex) -> None:
    await load(paper_index)
    found = await ask(paper_index, "models", exclude_paper_ids=("2401.00001", "2402.00002"))
    assert found == ["2403.00003"]


async def test_a_second_process_on_the_same_embedded_store_gets_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.retrieval.index import IndexUnavailableError
    from bot.retrieval.index.edge import EdgePaperIndex

    first = EdgePaperIndex(tmp_path / "store")
    await first.ensure_collection(DIM)
    second = EdgePaperIndex(tmp_path / "store")
    with pytest.raises(IndexUnavailableError, match="another paperbot process"):
        await second.ensure_collection(DIM)
    await first.close()
    await second.ensure_collection(DIM)  # usable once the first one closed
    await second.close()


def test_hybrid_fusion_is_a_weighted_sum_of_min_max_normalized_scores() -> None:
    def hits(scored: str, scores: list[float]) -> list[ChunkHit]:
        return [
            ChunkHit(paper=Paper(paper_id=p, title=p, abstract=""), chunk_no=0, text="", score=s)
            for p, s in zip(scored, scores, strict=True)
        ]

    sparse = hits("ABC", [12.0, 11.0, 2.0])  # BM25: A and B close, C far behind
    dense = hits("BDA", [0.9, 0.5, 0.4])  # dense prefers B; A last
    fused = fuse_hits(dense, sparse, limit=4, fusion="convex", bm25_weight=0.7)
    # A: 0.7*1 + 0.3*0 = 0.70; B: 0.7*0.9 + 0.3*1 = 0.93; C: 0; D: 0.3*0.2 = 0.06
    assert [h.paper.paper_id for h in fused] == ["B", "A", "D", "C"]
    assert [round(h.score, 3) for h in fused] == [0.93, 0.7, 0.06, 0.0]
    bm25_only = fuse_hits(dense, sparse, limit=2, fusion="convex", bm25_weight=1.0)
    assert [h.paper.paper_id for h in bm25_only] == ["A", "B"]
    # one empty ranking is fine
    assert fuse_hits([], sparse, limit=1, fusion="convex")[0].paper.paper_id == "A"


def test_adaptive_fusion_weights_the_ranking_whose_leader_stands_out() -> None:
    def hits(scored: str, scores: list[float]) -> list[ChunkHit]:
        return [
            ChunkHit(paper=Paper(paper_id=p, title=p, abstract=""), chunk_no=0, text="", score=s)
            for p, s in zip(scored, scores, strict=True)
        ]

    def pairs(ranking: list[ChunkHit]) -> list[tuple[str, float]]:
        return [(h.paper.paper_id, h.score) for h in ranking]

    confident_bm25 = hits("ABCDE", [30.0, 6.0, 5.0, 4.0, 3.0])  # A far ahead of an even field
    unsure_bm25 = hits("ABCDE", [6.2, 6.0, 5.0, 4.0, 3.0])
    dense = hits("BADCE", [0.62, 0.60, 0.48, 0.46, 0.44])  # B first, A close behind
    # lead = (first − mean of the rest) / their standard deviation
    assert lead(pairs(confident_bm25)) == pytest.approx((30 - 4.5) / statistics.pstdev([6, 5, 4, 3]))
    assert lead(pairs(hits("AB", [2.0, 1.0]))) == 0.0  # too few scores to tell
    assert adaptive_bm25_weight([], []) == 0.5
    high = adaptive_bm25_weight(pairs(confident_bm25), pairs(dense))
    low = adaptive_bm25_weight(pairs(unsure_bm25), pairs(dense))
    assert 0.5 < high < 1.0 and 0.0 < low < 0.5
    # BM25's clear leader wins when BM25 is sure; the dense leader wins when BM25 is not.
    assert fuse_hits(dense, confident_bm25, limit=2, fusion="adaptive")[0].paper.paper_id == "A"
    assert fuse_hits(dense, unsure_bm25, limit=2, fusion="adaptive")[0].paper.paper_id == "B"
    # and a fixed convex 0.7 would have kept A first in the unsure case too
    assert fuse_hits(dense, unsure_bm25, limit=2, fusion="convex", bm25_weight=0.7)[0].paper.paper_id == "A"


def test_rrf_fusion_is_available_by_configuration() -> None:
    def hits(order: str) -> list[ChunkHit]:
        return [
            ChunkHit(paper=Paper(paper_id=p, title=p, abstract=""), chunk_no=0, text="", score=9.0)
            for p in order
        ]

    fused = fuse_hits(hits("BDA"), hits("ABC"), limit=4, fusion="rrf")  # dense, sparse
    # A: 1/3 + 1/5, B: 1/4 + 1/3, D: 1/4, C: 1/5 (k = 2, ranks from 1)
    assert [h.paper.paper_id for h in fused] == ["B", "A", "D", "C"]
    assert fused[0].score == pytest.approx(1 / 4 + 1 / 3)


@pytest.mark.parametrize("fusion", ["adaptive", "convex", "rrf"])
async def test_every_back_end_fuses_like_the_reference_two_query_path(
    make_paper_index: Callable[..., PaperIndex], fusion: str
) -> None:
    """Qdrant Edge fuses payload-free rankings and then loads the winners' payloads; the result must
    equal the generic path (both full rankings, then `fuse_hits` with the index's fusion), scores included."""
    paper_index = make_paper_index(fusion=fusion)
    assert paper_index.fusion == fusion
    await paper_index.ensure_collection(DIM)
    await paper_index.upsert([c for p in PAPERS for c in chunks_for(p, n_chunks=2)])
    for text in ("arithmetic reasoning", "video diffusion models", "molecules graph reasoning"):
        vectors = {"dense": fake_vector(text), "sparse": sparse_query(text), "search_filter": SearchFilter()}
        reference = await PaperIndex.hybrid_query(paper_index, limit=4, **vectors)  # type: ignore[arg-type]
        actual = await paper_index.query(mode="hybrid", limit=4, **vectors)  # type: ignore[arg-type]
        assert [(h.paper.paper_id, h.chunk_no) for h in actual] == [
            (h.paper.paper_id, h.chunk_no) for h in reference
        ]
        assert [h.score for h in actual] == pytest.approx([h.score for h in reference])
        assert actual[0].paper.title  # payloads were loaded
