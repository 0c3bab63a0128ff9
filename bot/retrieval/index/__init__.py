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
    if settings.qdrant.url:
        from bot.retrieval.index.server import ServerPaperIndex

        return ServerPaperIndex(settings.qdrant)  # fusion from settings.qdrant.hybrid_fusion
    from bot.retrieval.index.edge import EdgePaperIndex

    return EdgePaperIndex(settings.core.qdrant_path, fusion=settings.qdrant.hybrid_fusion)
