"""Vector index: embedded Qdrant Edge by default, Qdrant server/cluster when QDRANT_URL is set."""

from __future__ import annotations

from bot.core.config import Settings
from bot.retrieval.index.base import (
    ChunkHit,
    IndexedChunk,
    IndexUnavailableError,
    PaperIndex,
    SearchFilter,
    SparseVec,
)

__all__ = [
    "ChunkHit",
    "IndexUnavailableError",
    "IndexedChunk",
    "PaperIndex",
    "SearchFilter",
    "SparseVec",
    "open_index",
]


def open_index(settings: Settings) -> PaperIndex:
    index: PaperIndex
    if settings.qdrant.url:
        from bot.retrieval.index.server import ServerPaperIndex

        index = ServerPaperIndex(settings.qdrant)
    else:
        from bot.retrieval.index.edge import EdgePaperIndex

        index = EdgePaperIndex(settings.core.qdrant_path)
    index.fusion = settings.qdrant.hybrid_fusion
    return index
