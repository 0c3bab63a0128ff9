"""BM25 sparse vectors, computed in-process by Qdrant Edge's embedder on every back end.

qdrant-client's `Document(model="Qdrant/bm25")` needs fastembed, which downloads its model and fails
offline; computing the vectors ourselves keeps both back ends identical. IDF is applied by Qdrant
(`Modifier.IDF`), so only term frequencies are sent.
"""

from __future__ import annotations

import qdrant_edge as qe

from bot.retrieval.index.base import SparseVec

_BM25 = qe.Bm25(qe.Bm25Config(language="english"))


def sparse_document(text: str) -> SparseVec:
    vector = _BM25.embed_document(text)
    return SparseVec(list(vector.indices), list(vector.values))


def sparse_query(text: str) -> SparseVec:
    vector = _BM25.embed_query(text)
    return SparseVec(list(vector.indices), list(vector.values))
