"""One small interface over the two Qdrant back ends (embedded Edge, and server via qdrant-client)."""

from __future__ import annotations

import asyncio
import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bot.models import Paper

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
Fusion = Literal["convex", "rrf"]

# Payload fields with an index, and their kind.
PAYLOAD_INDEXES: dict[str, Literal["keyword", "integer"]] = {
    "paper_id": "keyword",
    "categories": "keyword",
    "sources": "keyword",
    "chunk_no": "integer",
    "published_day": "integer",
    "hf_day": "integer",
}


class IndexUnavailableError(RuntimeError):
    """Qdrant cannot be reached or opened; the message says what to check."""


def day_number(value: dt.date | None) -> int | None:
    """Dates are stored as day ordinals so both back ends can range-filter them as integers."""
    return value.toordinal() if value else None


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class SearchFilter:
    since: dt.date | None = None
    until: dt.date | None = None
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    paper_ids: tuple[str, ...] = ()
    exclude_paper_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.since
            or self.until
            or self.categories
            or self.sources
            or self.paper_ids
            or self.exclude_paper_ids
        )


@dataclass
class IndexedChunk:
    point_id: str
    paper: Paper
    chunk_no: int
    text: str
    dense: list[float]
    sparse: SparseVec

    def payload(self) -> dict[str, Any]:
        data = self.paper.to_payload()
        data.update(
            chunk_no=self.chunk_no,
            chunk_text=self.text,
            published_day=day_number(self.paper.published),
            hf_day=day_number(self.paper.hf_date),
        )
        return data


@dataclass
class ChunkHit:
    paper: Paper
    chunk_no: int
    text: str
    score: float
    extra: dict[str, Any] = field(default_factory=dict)


def fuse_hybrid(
    dense_hits: Sequence[ChunkHit], sparse_hits: Sequence[ChunkHit], *, limit: int,
    bm25_weight: float = HYBRID_BM25_WEIGHT,
) -> list[ChunkHit]:  # fmt: skip
    """Convex combination of the two rankings' min-max-normalized scores; a chunk missing from one
    ranking gets 0 from it. Ties keep BM25's order."""

    def normalized(hits: Sequence[ChunkHit]) -> dict[tuple[str, int], float]:
        if not hits:
            return {}
        low, high = min(h.score for h in hits), max(h.score for h in hits)
        span = high - low
        return {(h.paper.paper_id, h.chunk_no): (h.score - low) / span if span else 1.0 for h in hits}

    sparse_norm, dense_norm = normalized(sparse_hits), normalized(dense_hits)
    chunks = {(h.paper.paper_id, h.chunk_no): h for h in [*sparse_hits, *dense_hits]}
    scores = {
        key: bm25_weight * sparse_norm.get(key, 0.0) + (1 - bm25_weight) * dense_norm.get(key, 0.0)
        for key in chunks
    }
    best = sorted(scores, key=lambda key: -scores[key])[:limit]
    return [replace(chunks[key], score=scores[key]) for key in best]


def fuse_rrf(
    dense_hits: Sequence[ChunkHit], sparse_hits: Sequence[ChunkHit], *, limit: int
) -> list[ChunkHit]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings (rank from 1)."""
    scores: dict[tuple[str, int], float] = {}
    chunks: dict[tuple[str, int], ChunkHit] = {}
    for ranking in (sparse_hits, dense_hits):
        for rank, hit in enumerate(ranking, start=1):
            key = (hit.paper.paper_id, hit.chunk_no)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            chunks.setdefault(key, hit)
    best = sorted(scores, key=lambda key: -scores[key])[:limit]
    return [replace(chunks[key], score=scores[key]) for key in best]


def hit_from_payload(payload: dict[str, Any], score: float) -> ChunkHit:
    return ChunkHit(
        paper=Paper.from_payload(payload),
        chunk_no=int(payload.get("chunk_no", 0)),
        text=str(payload.get("chunk_text", "")),
        score=float(score),
    )


class PaperIndex(ABC):
    """Chunks of papers with a dense and a BM25 vector each; payload = paper metadata."""

    backend: str
    fusion: Fusion = "convex"  # set from QDRANT_HYBRID_FUSION by open_index

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
    async def delete_chunks(self, paper_id: str, from_chunk: int) -> None:
        """Delete chunks numbered >= from_chunk (after a new version got shorter)."""

    @abstractmethod
    async def query(
        self,
        *,
        dense: list[float] | None,
        sparse: SparseVec | None,
        mode: SearchMode,
        limit: int,
        search_filter: SearchFilter,
    ) -> list[ChunkHit]:
        """Best chunks first. `hybrid` (both vectors given) is `hybrid_query`."""

    async def hybrid_query(
        self, *, dense: list[float], sparse: SparseVec, limit: int, search_filter: SearchFilter
    ) -> list[ChunkHit]:
        """Both rankings, then `fuse_hybrid` (the same on every back end)."""
        depth = max(limit, HYBRID_DEPTH)
        dense_hits, sparse_hits = await asyncio.gather(
            self.query(dense=dense, sparse=None, mode="dense", limit=depth, search_filter=search_filter),
            self.query(dense=None, sparse=sparse, mode="sparse", limit=depth, search_filter=search_filter),
        )
        if self.fusion == "rrf":
            return fuse_rrf(dense_hits, sparse_hits, limit=limit)
        return fuse_hybrid(dense_hits, sparse_hits, limit=limit)

    @abstractmethod
    async def count_papers(self, search_filter: SearchFilter | None = None) -> int: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise IndexUnavailableError when the store is not usable."""

    @abstractmethod
    async def close(self) -> None: ...
