"""Qdrant server or cluster through qdrant-client (async). Also runs against `:memory:` in tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from bot.core.config import QdrantSettings
from bot.core.papers import Paper, point_id
from bot.retrieval.index.base import (
    DENSE_VECTOR,
    PAYLOAD_INDEXES,
    SPARSE_VECTOR,
    ChunkHit,
    Condition,
    FieldRange,
    IndexedChunk,
    IndexUnavailableError,
    PaperIndex,
    SearchFilter,
    SparseVec,
    day_number,
    hit_from_payload,
)

log = structlog.get_logger(__name__)

_SCHEMA = {"keyword": models.PayloadSchemaType.KEYWORD, "integer": models.PayloadSchemaType.INTEGER}
_READ_CONSISTENCY: dict[str, Any] = {
    "all": models.ReadConsistencyType.ALL,
    "majority": models.ReadConsistencyType.MAJORITY,
    "quorum": models.ReadConsistencyType.QUORUM,
    "1": 1,
}


def build_filter(
    search_filter: SearchFilter | None, *, first_chunk_only: bool = False
) -> models.Filter | None:
    must, must_not = (search_filter or SearchFilter()).conditions(first_chunk_only=first_chunk_only)
    if not must and not must_not:
        return None
    return models.Filter(
        must=[_condition(c) for c in must] or None, must_not=[_condition(c) for c in must_not] or None
    )


def _condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, FieldRange):
        return models.FieldCondition(
            key=condition.key, range=models.Range(gte=condition.gte, lte=condition.lte)
        )
    values = condition.values
    match: Any = models.MatchValue(value=values[0]) if len(values) == 1 else models.MatchAny(any=values)
    return models.FieldCondition(key=condition.key, match=match)


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split()) or type(value).__name__
    return text if len(text) <= limit else text[:limit] + "…"


# 404: the collection is gone (a restart on empty storage); 429/5xx: overloaded or failing. Other
# 4xx mean our request is wrong, a bug that must not pass for an outage.
_OUTAGE_STATUSES = frozenset({404, 408, 429})


class ServerPaperIndex(PaperIndex):
    backend = "server"

    def __init__(self, settings: QdrantSettings, client: AsyncQdrantClient | None = None) -> None:
        super().__init__(fusion=settings.hybrid_fusion)
        self._settings = settings
        self._collection = settings.collection
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        self._client = client or AsyncQdrantClient(
            url=settings.url, api_key=api_key, timeout=int(settings.timeout_s), check_compatibility=False
        )
        self._read_consistency = _READ_CONSISTENCY[settings.read_consistency]

    @contextmanager
    def _reachable(self, action: str) -> Iterator[None]:
        """Connection failures, timeouts and server errors become IndexUnavailableError, mid-run as at
        start, so callers (Discord, CLI) say "unavailable" instead of crashing; the client reconnects
        by itself once Qdrant is back."""
        try:
            yield
        except ResponseHandlingException as exc:
            log.warning("index.unavailable", backend=self.backend, action=action, error=_one_line(exc))
            raise IndexUnavailableError(
                f"Qdrant at {self._settings.url} is unreachable ({action}): {_one_line(exc)}"
            ) from exc
        except UnexpectedResponse as exc:
            status = exc.status_code or 0
            if status not in _OUTAGE_STATUSES and status < 500:
                raise
            log.warning("index.unavailable", backend=self.backend, action=action, status=status)
            raise IndexUnavailableError(
                f"Qdrant at {self._settings.url} failed ({action}): HTTP {status} "
                f"{_one_line(exc.content.decode('utf-8', 'replace'), 200)}"
            ) from exc

    async def ensure_collection(self, dense_size: int) -> None:
        try:
            if await self._client.collection_exists(self._collection):
                return
            await self._client.create_collection(
                self._collection,
                vectors_config={
                    DENSE_VECTOR: models.VectorParams(size=dense_size, distance=models.Distance.COSINE)
                },
                sparse_vectors_config={
                    SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)
                },
                shard_number=self._settings.shard_number,
                replication_factor=self._settings.replication_factor,
                write_consistency_factor=self._settings.write_consistency_factor,
            )
            for name, kind in PAYLOAD_INDEXES.items():
                await self._client.create_payload_index(self._collection, name, field_schema=_SCHEMA[kind])
        except (ResponseHandlingException, UnexpectedResponse, OSError) as exc:
            raise IndexUnavailableError(
                f"Qdrant at {self._settings.url} is not usable: {_one_line(exc)}"
            ) from exc
        log.info("index.collection_created", backend=self.backend, collection=self._collection)

    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        if not chunks:
            return
        points = [
            models.PointStruct(
                id=chunk.point_id,
                vector={
                    DENSE_VECTOR: chunk.dense,
                    SPARSE_VECTOR: models.SparseVector(
                        indices=chunk.sparse.indices, values=chunk.sparse.values
                    ),
                },
                payload=chunk.payload(),
            )
            for chunk in chunks
        ]
        with self._reachable("upsert"):
            await self._client.upsert(self._collection, points=points, wait=True)

    async def fetch_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        with self._reachable("retrieve"):
            records = await self._client.retrieve(
                self._collection,
                ids=[point_id(pid, 0) for pid in paper_ids],
                with_payload=True,
                consistency=self._read_consistency,
            )
        papers = [Paper.from_payload(dict(r.payload or {})) for r in records]
        return {p.paper_id: p for p in papers}

    async def set_paper_metadata(self, papers: Sequence[Paper]) -> None:
        for paper in papers:
            payload = paper.to_payload()
            payload.update(published_day=day_number(paper.published), hf_day=day_number(paper.hf_date))
            flt = models.Filter(
                must=[models.FieldCondition(key="paper_id", match=models.MatchValue(value=paper.paper_id))]
            )
            with self._reachable("set payload"):
                await self._client.set_payload(self._collection, payload=payload, points=flt, wait=True)

    async def delete_chunks(self, paper_id: str, from_chunk: int, until_chunk: int | None = None) -> None:
        below = until_chunk - 1 if until_chunk is not None else None
        flt = models.Filter(
            must=[
                models.FieldCondition(key="paper_id", match=models.MatchValue(value=paper_id)),
                models.FieldCondition(key="chunk_no", range=models.Range(gte=from_chunk, lte=below)),
            ]
        )
        with self._reachable("delete"):
            await self._client.delete(
                self._collection, points_selector=models.FilterSelector(filter=flt), wait=True
            )

    async def ranking(
        self, *, dense: list[float] | None, sparse: SparseVec | None, limit: int, search_filter: SearchFilter
    ) -> list[ChunkHit]:
        if dense is not None:
            query: Any = dense
        else:
            assert sparse is not None
            query = models.SparseVector(indices=sparse.indices, values=sparse.values)
        with self._reachable("query"):
            response = await self._client.query_points(
                self._collection,
                query=query,
                using=DENSE_VECTOR if dense is not None else SPARSE_VECTOR,
                query_filter=build_filter(search_filter),
                limit=limit,
                with_payload=True,
                consistency=self._read_consistency,
            )
        return [hit_from_payload(dict(p.payload or {}), p.score) for p in response.points]

    async def count_papers(self, search_filter: SearchFilter | None = None) -> int:
        with self._reachable("count"):
            result = await self._client.count(
                self._collection, count_filter=build_filter(search_filter, first_chunk_only=True), exact=True
            )
        return int(result.count)

    async def ping(self) -> None:
        try:
            await self._client.get_collections()
        except Exception as exc:
            raise IndexUnavailableError(
                f"Qdrant at {self._settings.url} is unreachable: {_one_line(exc)}"
            ) from exc

    async def close(self) -> None:
        await self._client.close()
