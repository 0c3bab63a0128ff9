"""One small interface over the two Qdrant back ends (embedded Edge, and server via qdrant-client)."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.models import Paper

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
SearchMode = Literal["hybrid", "dense", "sparse"]
# Reciprocal rank fusion, the same on both back ends (k = 2 is Qdrant server's default). Weighting
# BM25 higher was tried on a dev split and did not help on the benchmark (bench/README.md).
RRF_K = 2

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
    ) -> list[ChunkHit]: ...

    @abstractmethod
    async def count_papers(self, search_filter: SearchFilter | None = None) -> int: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise IndexUnavailableError when the store is not usable."""

    @abstractmethod
    async def close(self) -> None: ...
