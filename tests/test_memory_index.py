"""Channel memory's collection, the same contract on both back ends: Qdrant Edge, and qdrant-client
(`:memory:` standing in for a server). Real MiniLM vectors, real BM25 vectors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.retrieval.index.memory import (
    EdgeMemoryIndex,
    MemoryIndex,
    MemoryPoint,
    MemoryScope,
    ServerMemoryIndex,
    StoredMessage,
)
from bot.retrieval.sparse import sparse_document, sparse_query

TEXTS = {
    # message id: (guild, channel, author, ts, text)
    1: (10, 100, 7, 1_000, "We concluded that LoRA rank 8 is enough for the adapters."),
    2: (10, 100, 8, 2_000, "The Titans memory module did not help on long documents."),
    3: (10, 101, 7, 3_000, "In the other channel: LoRA rank 64 worked better for us."),
    4: (11, 100, 7, 4_000, "Another server also discussed LoRA rank choices."),
    5: (10, 100, 7, 5_000, "Diffusion models need many sampling steps."),
}


@pytest.fixture(params=["edge", "server"])
async def memory_index(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Any
) -> AsyncIterator[MemoryIndex]:
    index: MemoryIndex
    if request.param == "edge":
        index = EdgeMemoryIndex(tmp_path / "memory")
    else:
        from qdrant_client import AsyncQdrantClient

        index = ServerMemoryIndex(AsyncQdrantClient(location=":memory:"), "memory")
    await index.ensure_collection(embedder.dimensions)
    vectors = await embedder.embed_documents([t[4] for t in TEXTS.values()])
    points = []
    for (message_id, (guild, channel, author, ts, text)), vector in zip(TEXTS.items(), vectors, strict=True):
        message = StoredMessage(
            guild, channel, None, message_id, author, f"user{author}", ts, f"url/{message_id}", text
        )
        points.append(MemoryPoint(message, vector, sparse_document(text)))
    await index.upsert(points)
    yield index
    await index.close()


async def search(index: MemoryIndex, embedder: Any, query: str, scope: MemoryScope) -> list[int]:
    dense = await embedder.embed_query(query)
    hits = await index.search(dense=dense, sparse=sparse_query(query), limit=5, scope=scope)
    return [hit.message.message_id for hit in hits]


async def test_search_stays_inside_its_guild_channel_and_time_range(
    memory_index: MemoryIndex, embedder: Any
) -> None:
    found = await search(memory_index, embedder, "LoRA rank", MemoryScope(guild_id=10, channel_id=100))
    assert found[0] == 1 and set(found) <= {1, 2, 5}  # never channel 101, never guild 11
    recent = await search(
        memory_index, embedder, "LoRA rank", MemoryScope(guild_id=10, channel_id=100, since_ts=1_500)
    )
    assert 1 not in recent and set(recent) <= {2, 5}
    stored = await memory_index.get([1, 3, 99])
    assert sorted(stored) == [1, 3] and stored[1].jump_url == "url/1" and stored[3].channel_id == 101


async def test_counts_and_deletes_by_message_author_channel_and_age(memory_index: MemoryIndex) -> None:
    assert await memory_index.count(MemoryScope(guild_id=10)) == 4
    assert await memory_index.count(MemoryScope(guild_id=10, author_id=7)) == 3
    await memory_index.delete_messages([2, 99])
    assert await memory_index.count(MemoryScope(guild_id=10, channel_id=100)) == 2
    await memory_index.delete_scope(MemoryScope(guild_id=10, channel_id=100, before_ts=2_000))  # expired
    assert sorted(await memory_index.get([1, 5])) == [5]
    await memory_index.delete_scope(MemoryScope(guild_id=10, author_id=7))  # forget a member
    assert await memory_index.count(MemoryScope(guild_id=10)) == 0
    assert await memory_index.count(MemoryScope(guild_id=11)) == 1  # another server's: untouched
