"""Channel memory's own Qdrant collection: one point per Discord message, beside the paper index.

Same two back ends as the papers (Qdrant Edge embedded by default, a Qdrant server through
qdrant-client when QDRANT_URL is set), the same dense + BM25 vectors and the same fusion. Every
query and every delete is scoped by guild and channel in the filter itself, so a message can never
be found from another channel or server.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from bot.core.config import Settings
from bot.retrieval.index.base import (
    DENSE_VECTOR,
    HYBRID_DEPTH,
    SPARSE_VECTOR,
    IndexUnavailableError,
    SparseVec,
    fused_ranking,
)

log = structlog.get_logger(__name__)

_NAMESPACE = uuid.UUID("1b0f3f4e-3d43-4f55-8a1e-6d9b7c1e0a17")
MEMORY_PAYLOAD_INDEXES: dict[str, Literal["integer"]] = {
    "guild_id": "integer",
    "channel_id": "integer",
    "author_id": "integer",
    "message_id": "integer",
    "ts": "integer",
}


def message_point_id(message_id: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, str(message_id)))


@dataclass(frozen=True)
class StoredMessage:
    """One remembered message. `channel_id` is the text channel (a thread's parent); `ts` Unix seconds."""

    guild_id: int
    channel_id: int
    thread_id: int | None
    message_id: int
    author_id: int
    author_name: str
    ts: int
    jump_url: str
    text: str

    def payload(self) -> dict[str, Any]:
        return {
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "thread_id": self.thread_id,
            "message_id": self.message_id,
            "author_id": self.author_id,
            "author_name": self.author_name,
            "ts": self.ts,
            "jump_url": self.jump_url,
            "text": self.text,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StoredMessage:
        thread = payload.get("thread_id")
        return cls(
            guild_id=int(payload["guild_id"]),
            channel_id=int(payload["channel_id"]),
            thread_id=int(thread) if thread is not None else None,
            message_id=int(payload["message_id"]),
            author_id=int(payload["author_id"]),
            author_name=str(payload.get("author_name", "")),
            ts=int(payload["ts"]),
            jump_url=str(payload.get("jump_url", "")),
            text=str(payload.get("text", "")),
        )


@dataclass(frozen=True)
class MemoryPoint:
    message: StoredMessage
    dense: list[float]
    sparse: SparseVec


@dataclass(frozen=True)
class MemoryHit:
    message: StoredMessage
    score: float


@dataclass(frozen=True)
class MemoryScope:
    """Which messages a query or delete may touch: always one guild; a channel, an author and a
    time range narrow it further."""

    guild_id: int
    channel_id: int | None = None
    author_id: int | None = None
    since_ts: int | None = None
    before_ts: int | None = None

    def conditions(self) -> list[tuple[str, Any]]:
        """(key, int) equality or (key, (gte, lt)) range conditions."""
        found: list[tuple[str, Any]] = [("guild_id", self.guild_id)]
        if self.channel_id is not None:
            found.append(("channel_id", self.channel_id))
        if self.author_id is not None:
            found.append(("author_id", self.author_id))
        if self.since_ts is not None or self.before_ts is not None:
            found.append(("ts", (self.since_ts, self.before_ts)))
        return found


class MemoryIndex(ABC):
    backend: str

    @abstractmethod
    async def ensure_collection(self, dense_size: int) -> None: ...

    @abstractmethod
    async def upsert(self, points: Sequence[MemoryPoint]) -> None: ...

    @abstractmethod
    async def get(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]: ...

    @abstractmethod
    async def delete_messages(self, message_ids: Sequence[int]) -> None: ...

    @abstractmethod
    async def delete_scope(self, scope: MemoryScope) -> None: ...

    @abstractmethod
    async def count(self, scope: MemoryScope) -> int: ...

    @abstractmethod
    async def ranking(
        self, *, dense: list[float] | None, sparse: SparseVec | None, limit: int, scope: MemoryScope
    ) -> list[tuple[str, float]]:
        """(point id, score), best first, by the dense vector if given, else the sparse one."""

    @abstractmethod
    async def payloads(self, point_ids: Sequence[str]) -> dict[str, StoredMessage]: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def search(
        self, *, dense: list[float], sparse: SparseVec, limit: int, scope: MemoryScope
    ) -> list[MemoryHit]:
        """Hybrid search inside `scope`: both rankings fused as the paper index fuses them."""
        depth = max(limit, HYBRID_DEPTH)
        dense_ranked, sparse_ranked = await asyncio.gather(
            self.ranking(dense=dense, sparse=None, limit=depth, scope=scope),
            self.ranking(dense=None, sparse=sparse, limit=depth, scope=scope),
        )
        ranked = fused_ranking(dense_ranked, sparse_ranked, limit=limit)
        stored = await self.payloads([key for key, _ in ranked])
        return [MemoryHit(stored[key], score) for key, score in ranked if key in stored]


class EdgeMemoryIndex(MemoryIndex):
    backend = "edge"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._shard: Any = None
        self._write_lock = threading.Lock()

    @property
    def shard(self) -> Any:
        if self._shard is None:
            raise IndexUnavailableError("the memory index is not open; call ensure_collection() first")
        return self._shard

    async def ensure_collection(self, dense_size: int) -> None:
        await asyncio.to_thread(self._open, dense_size)

    def _open(self, dense_size: int) -> None:
        from bot.retrieval.index.edge import open_shard

        if self._shard is not None:
            return
        self._shard = open_shard(
            self._path, dense_size, MEMORY_PAYLOAD_INDEXES, what="the channel memory store"
        )
        log.info("memory_index.opened", backend=self.backend, path=str(self._path))

    def _filter(self, scope: MemoryScope) -> Any:
        import qdrant_edge as qe

        must: list[Any] = []
        for key, value in scope.conditions():
            if isinstance(value, tuple):
                gte, lt = value
                must.append(qe.FieldCondition(key=key, range=qe.RangeFloat(gte=gte, lt=lt)))
            else:
                must.append(qe.FieldCondition(key=key, match=qe.MatchValue(value)))
        return qe.Filter(must=must)

    def _update(self, operation: Any) -> None:
        with self._write_lock:
            try:
                self.shard.update(operation)
            except Exception as exc:
                raise IndexUnavailableError(f"writing the channel memory store failed: {exc}") from exc

    async def upsert(self, points: Sequence[MemoryPoint]) -> None:
        import qdrant_edge as qe

        if not points:
            return
        built = [
            qe.Point(
                id=message_point_id(p.message.message_id),
                vector={
                    DENSE_VECTOR: p.dense,
                    SPARSE_VECTOR: qe.SparseVector(p.sparse.indices, p.sparse.values),
                },
                payload=p.message.payload(),
            )
            for p in points
        ]
        await asyncio.to_thread(self._update, qe.UpdateOperation.upsert_points(built))

    async def get(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        stored = await self.payloads([message_point_id(m) for m in message_ids])
        return {m.message_id: m for m in stored.values()}

    async def payloads(self, point_ids: Sequence[str]) -> dict[str, StoredMessage]:
        if not point_ids:
            return {}
        records = await asyncio.to_thread(self.shard.retrieve, list(point_ids), True, False)
        return {str(r.id): StoredMessage.from_payload(dict(r.payload or {})) for r in records}

    async def delete_messages(self, message_ids: Sequence[int]) -> None:
        import qdrant_edge as qe

        if message_ids:
            ids: list[Any] = [message_point_id(m) for m in message_ids]
            await asyncio.to_thread(self._update, qe.UpdateOperation.delete_points(ids))

    async def delete_scope(self, scope: MemoryScope) -> None:
        import qdrant_edge as qe

        operation = qe.UpdateOperation.delete_points_by_filter(self._filter(scope))
        await asyncio.to_thread(self._update, operation)

    async def count(self, scope: MemoryScope) -> int:
        import qdrant_edge as qe

        request = qe.CountRequest(exact=True, filter=self._filter(scope))
        return int(await asyncio.to_thread(self.shard.count, request))

    async def ranking(
        self, *, dense: list[float] | None, sparse: SparseVec | None, limit: int, scope: MemoryScope
    ) -> list[tuple[str, float]]:
        import qdrant_edge as qe

        if dense is not None:
            query = qe.Query.Nearest(dense, using=DENSE_VECTOR)
        else:
            assert sparse is not None
            query = qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE_VECTOR)
        request = qe.QueryRequest(limit=limit, query=query, filter=self._filter(scope))
        points = await asyncio.to_thread(self.shard.query, request)
        return [(str(p.id), float(p.score)) for p in points]

    async def flush(self) -> None:
        await asyncio.to_thread(self.shard.flush)

    async def close(self) -> None:
        if self._shard is not None:
            shard, self._shard = self._shard, None
            await asyncio.to_thread(shard.flush)
            await asyncio.to_thread(shard.close)


class ServerMemoryIndex(MemoryIndex):
    """A collection of its own on the Qdrant server (`MEMORY_COLLECTION`)."""

    backend = "server"

    def __init__(self, client: Any, collection: str) -> None:
        self._client = client
        self._collection = collection

    @contextmanager
    def _reachable(self, action: str) -> Iterator[None]:
        """Connection failures and server errors become IndexUnavailableError ("unavailable right
        now" to users), as for the paper index."""
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        try:
            yield
        except (ResponseHandlingException, UnexpectedResponse) as exc:
            log.warning("memory_index.unavailable", action=action, error=str(exc)[:300])
            raise IndexUnavailableError(f"the channel memory collection failed ({action}): {exc}") from exc

    def _filter(self, scope: MemoryScope) -> Any:
        from qdrant_client import models

        must: list[Any] = []
        for key, value in scope.conditions():
            if isinstance(value, tuple):
                gte, lt = value
                must.append(models.FieldCondition(key=key, range=models.Range(gte=gte, lt=lt)))
            else:
                must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        return models.Filter(must=must)

    async def ensure_collection(self, dense_size: int) -> None:
        from qdrant_client import models

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
            )
            for name in MEMORY_PAYLOAD_INDEXES:
                await self._client.create_payload_index(
                    self._collection, name, field_schema=models.PayloadSchemaType.INTEGER
                )
        except Exception as exc:
            raise IndexUnavailableError(f"the channel memory collection is not usable: {exc}") from exc

    async def upsert(self, points: Sequence[MemoryPoint]) -> None:
        from qdrant_client import models

        if not points:
            return
        built = [
            models.PointStruct(
                id=message_point_id(p.message.message_id),
                vector={
                    DENSE_VECTOR: p.dense,
                    SPARSE_VECTOR: models.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=p.message.payload(),
            )
            for p in points
        ]
        with self._reachable("upsert"):
            await self._client.upsert(self._collection, points=built, wait=True)

    async def get(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        stored = await self.payloads([message_point_id(m) for m in message_ids])
        return {m.message_id: m for m in stored.values()}

    async def payloads(self, point_ids: Sequence[str]) -> dict[str, StoredMessage]:
        if not point_ids:
            return {}
        with self._reachable("retrieve"):
            records = await self._client.retrieve(self._collection, ids=list(point_ids), with_payload=True)
        return {str(r.id): StoredMessage.from_payload(dict(r.payload or {})) for r in records}

    async def delete_messages(self, message_ids: Sequence[int]) -> None:
        from qdrant_client import models

        if message_ids:
            ids: list[Any] = [message_point_id(m) for m in message_ids]
            with self._reachable("delete"):
                await self._client.delete(
                    self._collection, points_selector=models.PointIdsList(points=ids), wait=True
                )

    async def delete_scope(self, scope: MemoryScope) -> None:
        from qdrant_client import models

        selector = models.FilterSelector(filter=self._filter(scope))
        with self._reachable("delete"):
            await self._client.delete(self._collection, points_selector=selector, wait=True)

    async def count(self, scope: MemoryScope) -> int:
        with self._reachable("count"):
            result = await self._client.count(self._collection, count_filter=self._filter(scope), exact=True)
        return int(result.count)

    async def ranking(
        self, *, dense: list[float] | None, sparse: SparseVec | None, limit: int, scope: MemoryScope
    ) -> list[tuple[str, float]]:
        from qdrant_client import models

        query: Any = (
            dense
            if dense is not None
            else models.SparseVector(
                indices=sparse.indices if sparse else [], values=sparse.values if sparse else []
            )
        )
        with self._reachable("query"):
            response = await self._client.query_points(
                self._collection,
                query=query,
                using=DENSE_VECTOR if dense is not None else SPARSE_VECTOR,
                query_filter=self._filter(scope),
                limit=limit,
            )
        return [(str(p.id), float(p.score)) for p in response.points]

    async def close(self) -> None:
        await self._client.close()


def open_memory_index(settings: Settings) -> MemoryIndex:
    """Beside the paper index: `<data>/qdrant-memory` for Edge, `MEMORY_COLLECTION` on a server."""
    if settings.qdrant.url:
        from qdrant_client import AsyncQdrantClient

        api_key = settings.qdrant.api_key.get_secret_value() if settings.qdrant.api_key else None
        client = AsyncQdrantClient(
            url=settings.qdrant.url,
            api_key=api_key,
            timeout=int(settings.qdrant.timeout_s),
            check_compatibility=False,
        )
        return ServerMemoryIndex(client, settings.memory.collection)
    return EdgeMemoryIndex(settings.core.qdrant_path.parent / "qdrant-memory")
