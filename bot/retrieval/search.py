"""Hybrid paper search: BM25 and dense rankings fused by the index (`fused_ranking` in
bot.retrieval.index.base, as QDRANT_HYBRID_FUSION says), one result per paper.

Questions are read as people ask them (issue 13): BM25 gets the question without its asking frame
(`query_text.clean_question`, RETRIEVAL_CLEAN_QUESTIONS); bench/README.md has the figures behind it
and behind the fusion."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import structlog

from bot.core.config import Settings
from bot.core.errors import UserInputError
from bot.core.metrics import observe_retrieval
from bot.core.papers import SearchHit, clean_user_text
from bot.retrieval.embedding import Embedder
from bot.retrieval.index import ChunkHit, PaperIndex, SearchFilter, SparseVec
from bot.retrieval.index.base import SearchMode
from bot.retrieval.query_text import clean_question
from bot.retrieval.sparse import sparse_query
from bot.retrieval.tokens import truncate_tokens

log = structlog.get_logger(__name__)

# all-MiniLM-L6-v2 reads 256 word pieces; a tiktoken budget a little under that keeps the
# whole query visible to the model.
MAX_QUERY_TOKENS = 200
MAX_LIMIT = 50


class QueryError(UserInputError, ValueError):
    """The query cannot be run; the message is meant for the user."""


@dataclass
class SearchResult:
    query: str
    hits: list[SearchHit]
    truncated: bool = False


class SearchService:
    """Plain BM25 + MiniLM queries by default; `build_search_service` applies the settings."""

    def __init__(
        self,
        index: PaperIndex,
        embedder: Embedder,
        *,
        encoding: str = "cl100k_base",
        clean_questions: bool = False,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self._encoding = encoding
        self.clean_questions = clean_questions

    def describe(self) -> str:
        return f"fusion {self.index.fusion}, question cleaning {'on' if self.clean_questions else 'off'}"

    async def query_vectors(self, text: str, mode: SearchMode) -> tuple[list[float] | None, SparseVec | None]:
        """The dense and BM25 query vectors `mode` needs; BM25 reads the cleaned question if configured."""
        dense = await self.embedder.embed_query(text) if mode != "sparse" else None
        sparse = None
        if mode != "dense":
            sparse = sparse_query(clean_question(text) if self.clean_questions else text)
        return dense, sparse

    def prepare_query(self, query: str, max_tokens: int = MAX_QUERY_TOKENS) -> tuple[str, bool]:
        text = clean_user_text(query)
        if not text:
            raise QueryError("the search query is empty; type a few words describing the papers you want")
        text, truncated = truncate_tokens(text, max_tokens, self._encoding)
        if truncated:
            log.warning("search.query_truncated", max_tokens=max_tokens)
        return text, truncated

    async def search_chunks(
        self,
        query: str,
        *,
        limit: int,
        search_filter: SearchFilter | None = None,
        mode: SearchMode = "hybrid",
        max_query_tokens: int = MAX_QUERY_TOKENS,
    ) -> list[ChunkHit]:
        """Top chunks (several may come from one paper); used by retrieval-augmented answers."""
        text, _ = self.prepare_query(query, max_query_tokens)
        started = time.monotonic()
        dense, sparse = await self.query_vectors(text, mode)
        hits = await self.index.query(
            dense=dense, sparse=sparse, mode=mode, limit=limit, search_filter=search_filter or SearchFilter()
        )
        observe_retrieval(time.monotonic() - started, mode)
        return hits

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        since: dt.date | None = None,
        until: dt.date | None = None,
        categories: tuple[str, ...] = (),
        mode: SearchMode = "hybrid",
    ) -> SearchResult:
        if not 1 <= limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        text, truncated = self.prepare_query(query)
        # One result per paper: full-text passages stay out of /search (answers rank them).
        search_filter = SearchFilter(since=since, until=until, categories=categories, abstracts_only=True)
        chunks = await self.search_chunks(text, limit=limit * 3, search_filter=search_filter, mode=mode)
        best: dict[str, SearchHit] = {}
        for chunk in chunks:  # already sorted by score: the first chunk of a paper is its best
            if chunk.paper.paper_id not in best:
                best[chunk.paper.paper_id] = SearchHit(
                    paper=chunk.paper, score=chunk.score, chunk_no=chunk.chunk_no, chunk_text=chunk.text
                )
        return SearchResult(query=text, hits=list(best.values())[:limit], truncated=truncated)


def build_search_service(settings: Settings, index: PaperIndex, embedder: Embedder) -> SearchService:
    """Search as configured (RETRIEVAL_*); the fusion is the index's (QDRANT_HYBRID_FUSION)."""
    return SearchService(
        index,
        embedder,
        encoding=settings.tokenizer.encoding,
        clean_questions=settings.retrieval.clean_questions,
    )
