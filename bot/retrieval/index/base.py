"""One small interface over the two Qdrant back ends (embedded Edge, and server via qdrant-client)."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from bot.core.errors import DependencyUnavailableError
from bot.core.papers import Paper

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
SearchMode = Literal["hybrid", "dense", "sparse"]
# Hybrid search: BM25 and dense rankings (each HYBRID_DEPTH deep), fused as a convex combination of
# min-max-normalized scores (Bruch et al., 2023, "An Analysis of Fusion Functions for Hybrid
# Retrieval"), the same on both back ends. The weight was picked on a dev sample of queries, then
# checked on the benchmark's own (bench/fusion_study.py, bench/README.md); RRF lost to BM25 alone.
HYBRID_BM25_WEIGHT = 0.7
HYBRID_DEPTH = 50
# The alternative (QDRANT_HYBRID_FUSION=rrf): reciprocal rank fusion with Qdrant's default k.
RRF_K = 2
# The default (QDRANT_HYBRID_FUSION=adaptive, issue 13): the convex combination with a BM25 weight
# set per query by how clearly each ranking's first result stands out (`adaptive_bm25_weight`). An
# ai_summary reuses its abstract's words, so BM25's leader stands far above the rest and BM25 keeps
# most of the weight; a question in other words leaves BM25 unsure and the dense ranking gets more.
# Chosen on dev sets among fixed weights, RRF and two adaptive rules (bench/paraphrase_study.py).
Fusion = Literal["convex", "rrf", "adaptive"]
DEFAULT_FUSION: Fusion = "adaptive"

# Chunks numbered from here are full-text passages (bot/fulltext); below it, title + abstract windows.
# /search ranks only the latter (one result per paper, as before full texts); answers rank both.
FULLTEXT_FIRST_CHUNK = 1000
# Payload fields a full-text passage adds (ChunkHit.extra): section label, kind, page, HTML anchor.
PASSAGE_FIELDS = ("section", "kind", "page", "anchor")

# Payload fields with an index, and their kind.
PAYLOAD_INDEXES: dict[str, Literal["keyword", "integer"]] = {
    "paper_id": "keyword",
    "categories": "keyword",
    "sources": "keyword",
    "chunk_no": "integer",
    "published_day": "integer",
    "hf_day": "integer",
}


class IndexUnavailableError(DependencyUnavailableError):
    """Qdrant cannot be reached or opened; the message says what to check."""

    what = "The paper index"


def day_number(value: dt.date | None) -> int | None:
    """Dates are stored as day ordinals so both back ends can range-filter them as integers."""
    return value.toordinal() if value else None


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class FieldRange:
    key: str
    gte: float | None
    lte: float | None


@dataclass(frozen=True)
class FieldIn:
    key: str
    values: list[str] | list[int]


Condition = FieldRange | FieldIn


@dataclass(frozen=True)
class SearchFilter:
    since: dt.date | None = None
    until: dt.date | None = None
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    paper_ids: tuple[str, ...] = ()
    exclude_paper_ids: tuple[str, ...] = ()
    abstracts_only: bool = False  # title + abstract chunks only, no full-text passages

    @property
    def empty(self) -> bool:
        return not (
            self.since
            or self.until
            or self.categories
            or self.sources
            or self.paper_ids
            or self.exclude_paper_ids
            or self.abstracts_only
        )

    def conditions(self, *, first_chunk_only: bool = False) -> tuple[list[Condition], list[Condition]]:
        """(must, must_not) as back-end-neutral conditions; each back end spells them in its own
        client's types (`FieldRange`: published day numbers; `FieldIn`: any of the values)."""
        must: list[Condition] = []
        if self.since or self.until:
            must.append(FieldRange("published_day", day_number(self.since), day_number(self.until)))
        for key, values in (("categories", self.categories), ("sources", self.sources),
                            ("paper_id", self.paper_ids)):  # fmt: skip
            if values:
                must.append(FieldIn(key, list(values)))
        if first_chunk_only:
            must.append(FieldIn("chunk_no", [0]))
        elif self.abstracts_only:
            must.append(FieldRange("chunk_no", None, FULLTEXT_FIRST_CHUNK - 1))
        excluded = self.exclude_paper_ids
        must_not: list[Condition] = [FieldIn("paper_id", list(excluded))] if excluded else []
        return must, must_not


@dataclass
class IndexedChunk:
    point_id: str
    paper: Paper
    chunk_no: int
    text: str
    dense: list[float]
    sparse: SparseVec
    passage: dict[str, Any] = field(default_factory=dict)  # PASSAGE_FIELDS of a full-text passage

    def payload(self) -> dict[str, Any]:
        data = self.paper.to_payload()
        data.update(
            chunk_no=self.chunk_no,
            chunk_text=self.text,
            published_day=day_number(self.paper.published),
            hf_day=day_number(self.paper.hf_date),
        )
        data.update({key: value for key, value in self.passage.items() if key in PASSAGE_FIELDS})
        return data


@dataclass
class ChunkHit:
    paper: Paper
    chunk_no: int
    text: str
    score: float
    extra: dict[str, Any] = field(default_factory=dict)


K = TypeVar("K", bound=Hashable)


def fused_ranking(
    dense: Sequence[tuple[K, float]], sparse: Sequence[tuple[K, float]], *, limit: int,
    fusion: Fusion = "convex", bm25_weight: float = HYBRID_BM25_WEIGHT, rrf_k: int = RRF_K,
) -> list[tuple[K, float]]:  # fmt: skip
    """The best `limit` keys of two (key, score) rankings, best first, with their fused scores.

    convex: bm25_weight × BM25 + (1 − bm25_weight) × dense, each min-max-normalized over its ranking;
    a key missing from one ranking gets 0 from it. rrf: Σ 1 / (rrf_k + rank), ranks from 1.
    adaptive: convex with `adaptive_bm25_weight` (bm25_weight is not used). Ties keep BM25's order."""
    if fusion == "adaptive":
        fusion, bm25_weight = "convex", adaptive_bm25_weight(sparse, dense)
    scores: dict[K, float] = {}
    for weight, ranking in ((bm25_weight, sparse), (1 - bm25_weight, dense)):
        if fusion == "rrf":
            for rank, (key, _) in enumerate(ranking, start=1):
                scores[key] = scores.get(key, 0.0) + 1.0 / (rrf_k + rank)
            continue
        values = [score for _, score in ranking]
        low, span = (min(values), max(values) - min(values)) if values else (0.0, 0.0)
        for key, score in ranking:
            normalized = (score - low) / span if span else 1.0
            scores[key] = scores.get(key, 0.0) + weight * normalized
    best = sorted(scores, key=lambda key: -scores[key])[:limit]
    return [(key, scores[key]) for key in best]


def lead(ranking: Sequence[tuple[Any, float]]) -> float:
    """How far a ranking's first score stands above the others, in their standard deviations
    (0 with fewer than three scores, or when the first does not stand above their mean)."""
    if len(ranking) < 3:
        return 0.0
    rest = [score for _, score in ranking[1:]]
    spread = statistics.pstdev(rest) or 1e-6
    return max(0.0, (ranking[0][1] - statistics.fmean(rest)) / spread)


def adaptive_bm25_weight(sparse: Sequence[tuple[Any, float]], dense: Sequence[tuple[Any, float]]) -> float:
    """BM25's share of the two rankings' leads (each ranking best first); 0.5 when neither leads."""
    sparse_lead, dense_lead = lead(sparse), lead(dense)
    total = sparse_lead + dense_lead
    return sparse_lead / total if total else 0.5


def fuse_hits(
    dense_hits: Sequence[ChunkHit], sparse_hits: Sequence[ChunkHit], *, limit: int, fusion: Fusion,
    bm25_weight: float = HYBRID_BM25_WEIGHT,
) -> list[ChunkHit]:  # fmt: skip
    """`fused_ranking` over chunk hits (keyed by paper and chunk): what `PaperIndex.hybrid_query` returns."""
    chunks = {(h.paper.paper_id, h.chunk_no): h for h in [*sparse_hits, *dense_hits]}
    ranked = fused_ranking(
        [((h.paper.paper_id, h.chunk_no), h.score) for h in dense_hits],
        [((h.paper.paper_id, h.chunk_no), h.score) for h in sparse_hits],
        limit=limit, fusion=fusion, bm25_weight=bm25_weight,
    )  # fmt: skip
    return [replace(chunks[key], score=score) for key, score in ranked]


def hit_from_payload(payload: dict[str, Any], score: float) -> ChunkHit:
    chunk_no = int(payload.get("chunk_no", 0))
    extra = {key: payload[key] for key in PASSAGE_FIELDS if payload.get(key) is not None}
    if chunk_no < FULLTEXT_FIRST_CHUNK:  # a title + abstract window
        extra.update(section="Abstract", kind="abstract")
    return ChunkHit(
        paper=Paper.from_payload(payload),
        chunk_no=chunk_no,
        text=str(payload.get("chunk_text", "")),
        score=float(score),
        extra=extra,
    )


class PaperIndex(ABC):
    """Chunks of papers with a dense and a BM25 vector each; payload = paper metadata."""

    backend: str

    def __init__(self, *, fusion: Fusion = DEFAULT_FUSION) -> None:
        self._fusion: Fusion = fusion

    @property
    def fusion(self) -> Fusion:
        """How hybrid search fuses the two rankings (QDRANT_HYBRID_FUSION), fixed when the index is built."""
        return self._fusion

    @abstractmethod
    async def ensure_collection(self, dense_size: int) -> None: ...

    @abstractmethod
    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None: ...

    @abstractmethod
    async def fetch_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        """Stored papers by id (read from each paper's first chunk)."""

    @abstractmethod
    async def set_paper_metadata(self, papers: Sequence[Paper]) -> None:
        """Overwrite metadata on all chunks of each paper without re-embedding."""

    @abstractmethod
    async def delete_chunks(self, paper_id: str, from_chunk: int, until_chunk: int | None = None) -> None:
        """Delete chunks numbered >= from_chunk (after a new version got shorter), and < until_chunk
        when given (so shortening the abstract's chunks leaves the full-text passages)."""

    async def query(
        self,
        *,
        dense: list[float] | None,
        sparse: SparseVec | None,
        mode: SearchMode,
        limit: int,
        search_filter: SearchFilter,
    ) -> list[ChunkHit]:
        """Best chunks first. `hybrid` (both vectors given) is `hybrid_query`; otherwise the one
        ranking of `mode`'s vector."""
        if mode == "hybrid" and dense is not None and sparse is not None:
            return await self.hybrid_query(
                dense=dense, sparse=sparse, limit=limit, search_filter=search_filter
            )
        if mode == "dense" and dense is not None:
            return await self.ranking(dense=dense, sparse=None, limit=limit, search_filter=search_filter)
        if sparse is None:
            raise ValueError(f"a {mode} query needs its vector")
        return await self.ranking(dense=None, sparse=sparse, limit=limit, search_filter=search_filter)

    @abstractmethod
    async def ranking(
        self, *, dense: list[float] | None, sparse: SparseVec | None, limit: int, search_filter: SearchFilter
    ) -> list[ChunkHit]:
        """One ranking, by the dense vector if given, else by the sparse one; best chunks first."""

    async def hybrid_query(
        self, *, dense: list[float], sparse: SparseVec, limit: int, search_filter: SearchFilter
    ) -> list[ChunkHit]:
        """Both rankings, then `fuse_hits` with this index's fusion (the same on every back end)."""
        depth = max(limit, HYBRID_DEPTH)
        dense_hits, sparse_hits = await asyncio.gather(
            self.ranking(dense=dense, sparse=None, limit=depth, search_filter=search_filter),
            self.ranking(dense=None, sparse=sparse, limit=depth, search_filter=search_filter),
        )
        return fuse_hits(dense_hits, sparse_hits, limit=limit, fusion=self.fusion)

    @abstractmethod
    async def count_papers(self, search_filter: SearchFilter | None = None) -> int: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise IndexUnavailableError when the store is not usable."""

    @abstractmethod
    async def close(self) -> None: ...
