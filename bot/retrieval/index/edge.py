"""Embedded default: Qdrant Edge, Qdrant's own engine in-process, persisted under the data dir."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import qdrant_edge as qe
import structlog

from bot.core.papers import Paper, point_id
from bot.retrieval.index.base import (
    DEFAULT_FUSION,
    DENSE_VECTOR,
    HYBRID_DEPTH,
    PAYLOAD_INDEXES,
    SPARSE_VECTOR,
    ChunkHit,
    Condition,
    FieldRange,
    Fusion,
    IndexedChunk,
    IndexUnavailableError,
    PaperIndex,
    SearchFilter,
    SparseVec,
    day_number,
    fused_ranking,
    hit_from_payload,
)

log = structlog.get_logger(__name__)

_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "integer": qe.PayloadSchemaType.Integer}
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# Rust's io::Error as Display ("… (os error 28)") and as Debug ("Os { code: 28, kind: … }").
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)|\bOs \{ code: (\d+)")


def os_error_of(exc: BaseException) -> OSError | None:
    """qdrant_edge raises a bare Exception whose text carries Rust's OS error number; recover the
    OSError so callers can tell a full disk (ENOSPC, EFBIG, EDQUOT) from a locked or corrupt store."""
    if isinstance(exc, OSError):
        return exc
    match = _RUST_OS_ERROR.search(str(exc))
    if match is None:
        return None
    code = int(match.group(1) or match.group(2))
    return OSError(code, os.strerror(code))


def open_shard(path: Path, dense_size: int, payload_indexes: Mapping[str, str], *, what: str) -> qe.EdgeShard:
    """The Qdrant Edge shard at `path` (dense + sparse vectors), created with `payload_indexes`
    when new; a locked, corrupt or full store is an IndexUnavailableError naming `what`."""
    config = qe.EdgeConfig(
        vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=dense_size, distance=qe.Distance.Cosine)},
        sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    try:
        if path.exists() and any(path.iterdir()):
            return qe.EdgeShard.load(str(path), config)
        path.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(str(path), config)
        for name, kind in payload_indexes.items():
            shard.update(qe.UpdateOperation.create_field_index(name, _SCHEMA[kind]))
        return shard
    except Exception as exc:  # qdrant_edge raises a bare Exception for a locked or corrupt store
        os_error = os_error_of(exc)
        if os_error is not None and os_error.errno in DISK_FULL_ERRNOS:
            raise IndexUnavailableError(f"cannot write {what} at {path}: {os_error.strerror}") from os_error
        raise IndexUnavailableError(
            f"cannot open {what} at {path}: {exc} "
            "(is another paperbot process using it, or was it created with another embedding size?)"
        ) from exc


def build_filter(search_filter: SearchFilter | None, *, first_chunk_only: bool = False) -> qe.Filter | None:
    must, must_not = (search_filter or SearchFilter()).conditions(first_chunk_only=first_chunk_only)
    if not must and not must_not:
        return None
    return qe.Filter(
        must=[_condition(c) for c in must] or None, must_not=[_condition(c) for c in must_not] or None
    )


def _condition(condition: Condition) -> qe.FieldCondition:
    if isinstance(condition, FieldRange):
        return qe.FieldCondition(key=condition.key, range=qe.RangeFloat(gte=condition.gte, lte=condition.lte))
    values = condition.values
    match = qe.MatchValue(values[0]) if len(values) == 1 else qe.MatchAny(values)
    return qe.FieldCondition(key=condition.key, match=match)


class EdgePaperIndex(PaperIndex):
    backend = "edge"

    def __init__(self, path: Path, *, fusion: Fusion = DEFAULT_FUSION) -> None:
        super().__init__(fusion=fusion)
        self._path = path
        self._shard: qe.EdgeShard | None = None
        # Edge calls are synchronous Rust; they run in worker threads, one writer at a time.
        self._write_lock = threading.Lock()

    @property
    def shard(self) -> qe.EdgeShard:
        if self._shard is None:
            raise IndexUnavailableError("the embedded index is not open; call ensure_collection() first")
        return self._shard

    async def ensure_collection(self, dense_size: int) -> None:
        await asyncio.to_thread(self._open, dense_size)

    def _open(self, dense_size: int) -> None:
        if self._shard is not None:
            return
        self._shard = open_shard(self._path, dense_size, PAYLOAD_INDEXES, what="the embedded Qdrant store")
        log.info("index.opened", backend=self.backend, path=str(self._path))

    async def upsert(self, chunks: Sequence[IndexedChunk]) -> None:
        if not chunks:
            return
        points = [
            qe.Point(
                id=chunk.point_id,
                vector={
                    DENSE_VECTOR: chunk.dense,
                    SPARSE_VECTOR: qe.SparseVector(chunk.sparse.indices, chunk.sparse.values),
                },
                payload=chunk.payload(),
            )
            for chunk in chunks
        ]
        await asyncio.to_thread(self._update, qe.UpdateOperation.upsert_points(points))

    def _update(self, operation: qe.UpdateOperation) -> None:
        with self._write_lock:
            shard = self.shard
            try:
                shard.update(operation)
            except Exception as exc:  # a bare Exception from Rust, e.g. "... (os error 28)"
                raise IndexUnavailableError(
                    f"writing the embedded Qdrant store at {self._path} failed: {exc}"
                ) from (os_error_of(exc) or exc)

    async def flush(self) -> None:
        await asyncio.to_thread(self.shard.flush)

    async def fetch_papers(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        ids: list[qe.PointId] = [point_id(pid, 0) for pid in paper_ids]
        records = await asyncio.to_thread(self.shard.retrieve, ids, True, False)
        papers = [Paper.from_payload(dict(r.payload or {})) for r in records]
        return {p.paper_id: p for p in papers}

    async def set_paper_metadata(self, papers: Sequence[Paper]) -> None:
        for paper in papers:
            flt = qe.Filter(must=[qe.FieldCondition(key="paper_id", match=qe.MatchValue(paper.paper_id))])
            payload = paper.to_payload()
            payload.update(published_day=day_number(paper.published), hf_day=day_number(paper.hf_date))
            await asyncio.to_thread(self._update, qe.UpdateOperation.set_payload_by_filter(flt, payload))

    async def delete_chunks(self, paper_id: str, from_chunk: int, until_chunk: int | None = None) -> None:
        below = until_chunk - 1 if until_chunk is not None else None
        flt = qe.Filter(
            must=[
                qe.FieldCondition(key="paper_id", match=qe.MatchValue(paper_id)),
                qe.FieldCondition(key="chunk_no", range=qe.RangeFloat(gte=from_chunk, lte=below)),
            ]
        )
        await asyncio.to_thread(self._update, qe.UpdateOperation.delete_points_by_filter(flt))

    async def ranking(
        self, *, dense: list[float] | None, sparse: SparseVec | None, limit: int, search_filter: SearchFilter
    ) -> list[ChunkHit]:
        if dense is not None:
            query = qe.Query.Nearest(dense, using=DENSE_VECTOR)
        else:
            assert sparse is not None
            query = qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE_VECTOR)
        flt = build_filter(search_filter)
        request = qe.QueryRequest(limit=limit, query=query, filter=flt, with_payload=True)
        points = await asyncio.to_thread(self.shard.query, request)
        return [hit_from_payload(dict(p.payload or {}), p.score) for p in points]

    async def hybrid_query(
        self, *, dense: list[float], sparse: SparseVec, limit: int, search_filter: SearchFilter
    ) -> list[ChunkHit]:
        """Both rankings in one batch without payloads, fused, then the payloads of the winners only
        (loading 2 × 50 payloads cost more than the two searches)."""
        depth = max(limit, HYBRID_DEPTH)
        flt = build_filter(search_filter)
        bm25 = qe.SparseVector(sparse.indices, sparse.values)
        rankings = qe.QueryBatchRequest(
            [
                qe.QueryRequest(limit=depth, query=qe.Query.Nearest(dense, using=DENSE_VECTOR), filter=flt),
                qe.QueryRequest(limit=depth, query=qe.Query.Nearest(bm25, using=SPARSE_VECTOR), filter=flt),
            ]
        )
        dense_points, sparse_points = await asyncio.to_thread(self.shard.query_batch, rankings)
        ranked = fused_ranking(
            [(p.id, p.score) for p in dense_points],
            [(p.id, p.score) for p in sparse_points],
            limit=limit,
            fusion=self.fusion,
        )
        records = await asyncio.to_thread(self.shard.retrieve, [key for key, _ in ranked], True, False)
        payloads = {record.id: dict(record.payload or {}) for record in records}
        return [hit_from_payload(payloads[key], score) for key, score in ranked if key in payloads]

    async def count_papers(self, search_filter: SearchFilter | None = None) -> int:
        request = qe.CountRequest(exact=True, filter=build_filter(search_filter, first_chunk_only=True))
        return int(await asyncio.to_thread(self.shard.count, request))

    async def ping(self) -> None:
        await asyncio.to_thread(self.shard.info)

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            await asyncio.to_thread(shard.flush)
            await asyncio.to_thread(shard.close)
