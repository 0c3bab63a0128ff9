"""Full texts into the index: a parsed Document is matched to its stored paper (same arXiv id, else
same normalized title; else it becomes a new paper), cut into passages by section, embedded and
stored beside the paper's abstract chunks (numbers from FULLTEXT_FIRST_CHUNK up). On demand, a
paper's full text is fetched from arXiv the first time it is opened or asked about."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from bot.core.config import FulltextSettings, TokenizerSettings
from bot.core.errors import PaperbotError
from bot.core.papers import Paper, clean_text, parse_arxiv_id, point_id, title_paper_id
from bot.fulltext.chunking import Passage, document_passages
from bot.fulltext.document import Document, Format, FullTextError
from bot.fulltext.fetch import ArxivFullTextFetcher
from bot.fulltext.files import parse_bytes, parse_path
from bot.fulltext.latex import SourceLimits
from bot.fulltext.store import FullTextRecord, FullTextStore
from bot.ingest.pipeline import Ingestor
from bot.retrieval.embedding import Embedder
from bot.retrieval.index import IndexedChunk, PaperIndex, SearchFilter
from bot.retrieval.index.base import FULLTEXT_FIRST_CHUNK
from bot.retrieval.search import SearchService
from bot.retrieval.sparse import sparse_document

log = structlog.get_logger(__name__)

# New-style arXiv ids as people paste them: "2310.06825", "arXiv:2310.06825v2", arxiv.org links.
_ARXIV_ID = re.compile(r"(?<![\d.])(\d{4}\.\d{4,5})(?:v\d+)?(?![\d])")
MAX_NAMED_PAPERS = 3  # a question naming more does not fetch them all


def title_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", clean_text(title).lower()).strip()


@dataclass(frozen=True)
class FullTextResult:
    paper: Paper
    record: FullTextRecord
    new_paper: bool  # no stored record matched: the file became a paper of its own


class FullTextService:
    def __init__(
        self,
        index: PaperIndex,
        embedder: Embedder,
        search: SearchService,
        ingestor: Ingestor,
        settings: FulltextSettings,
        tokenizer: TokenizerSettings,
        store: FullTextStore,
        fetcher: ArxivFullTextFetcher | None = None,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._search = search
        self._ingestor = ingestor
        self._settings = settings
        self._tokenizer = tokenizer
        self.store = store
        self._fetcher = fetcher
        self._locks: dict[str, asyncio.Lock] = {}
        self.limits = SourceLimits(max_expanded_bytes=int(settings.max_expanded_mb * 2**20))

    @property
    def mode(self) -> str:
        return self._settings.mode

    def status(self, paper_id: str) -> FullTextRecord | None:
        return self.store.get(paper_id)

    def can_fetch(self, paper: Paper) -> bool:
        """Whether `ensure` would try arXiv for this paper (on demand or eager, an arXiv id)."""
        return (
            self._settings.mode != "off"
            and self._fetcher is not None
            and paper.arxiv_id is not None
            and parse_arxiv_id(paper.arxiv_id) is not None
        )

    def read_path(self, path: Path) -> tuple[Document, float]:
        started = time.perf_counter()
        document = parse_path(path, max_bytes=int(self._settings.max_file_mb * 2**20), limits=self.limits)
        return document, time.perf_counter() - started

    async def ingest_path(self, path: Path) -> FullTextResult:
        """`python -m bot ingest FILE.pdf|FILE.html|FOLDER|FILE.tar.gz`."""
        document, seconds = await asyncio.to_thread(self.read_path, path)
        return await self.add(document, source=str(path), parse_seconds=seconds)

    async def add(
        self, document: Document, *, source: str, paper: Paper | None = None, parse_seconds: float = 0.0
    ) -> FullTextResult:
        new_paper = False
        if paper is None:
            paper = await self.match(document)
        if paper is None:
            paper = self._paper_from(document)
            await self._ingestor.ingest([paper])
            new_paper = True
        passages = document_passages(
            document,
            max_tokens=self._settings.chunk_tokens,
            overlap=min(self._settings.chunk_overlap, self._settings.chunk_tokens // 2),
            encoding=self._tokenizer.encoding,
        )
        if not passages:
            raise FullTextError(f"{source}: no passages to index")
        await self._store_passages(paper, passages)
        record = FullTextRecord(
            paper_id=paper.paper_id,
            source_format=document.source_format,
            source=source,
            sections=document.outline(),
            passages=len(passages),
            parse_seconds=round(parse_seconds, 3),
            indexed_at=dt.datetime.now(dt.UTC),
        )
        self.store.put(record)
        log.info(
            "fulltext.indexed",
            paper_id=paper.paper_id,
            format=document.source_format,
            sections=len(record.sections),
            passages=len(passages),
            new_paper=new_paper,
        )
        return FullTextResult(paper=paper, record=record, new_paper=new_paper)

    async def match(self, document: Document) -> Paper | None:
        """The stored paper this full text belongs to: same arXiv id, else the same normalized title."""
        if document.arxiv_id:
            stored = await self._index.fetch_papers([document.arxiv_id])
            if document.arxiv_id in stored:
                return stored[document.arxiv_id]
        key = title_key(document.title)
        if len(key) < 8:
            return None
        stored = await self._index.fetch_papers([title_paper_id(document.title)])
        if stored:
            return next(iter(stored.values()))
        hits = await self._search.search_chunks(
            document.title, limit=10, search_filter=SearchFilter(abstracts_only=True), mode="sparse"
        )
        return next((h.paper for h in hits if title_key(h.paper.title) == key), None)

    @staticmethod
    def _paper_from(document: Document) -> Paper:
        title = document.title or "Untitled paper"
        return Paper(
            paper_id=document.arxiv_id or title_paper_id(title),
            title=title,
            abstract=document.abstract,
            authors=document.authors,
            arxiv_id=document.arxiv_id,
            sources=["file"],
        )

    async def _store_passages(self, paper: Paper, passages: list[Passage]) -> None:
        texts = [p.embedding_text(paper.title) for p in passages]
        vectors = await self._embedder.embed_documents(texts)
        chunks = [
            IndexedChunk(
                point_id=point_id(paper.paper_id, passage.chunk_no),
                paper=paper,
                chunk_no=passage.chunk_no,
                text=passage.text,
                dense=vector,
                sparse=sparse_document(text),
                passage=passage.payload(),
            )
            for passage, text, vector in zip(passages, texts, vectors, strict=True)
        ]
        for start in range(0, len(chunks), 256):
            await self._index.upsert(chunks[start : start + 256])
        # A shorter new version leaves no passages of the old one behind.
        await self._index.delete_chunks(paper.paper_id, FULLTEXT_FIRST_CHUNK + len(passages))

    async def ensure(self, paper: Paper) -> FullTextRecord | None:
        """On demand: the paper's full text, fetched from arXiv and indexed if it is not yet. Never
        raises: a paper without full text is still a paper (the reason is logged)."""
        record = self.store.get(paper.paper_id)
        if record is not None or not self.can_fetch(paper):
            return record
        lock = self._locks.setdefault(paper.paper_id, asyncio.Lock())
        async with lock:
            record = self.store.get(paper.paper_id)
            if record is not None:
                return record
            try:
                return await self._fetch_and_add(paper)
            except PaperbotError as exc:
                log.warning("fulltext.unavailable", paper_id=paper.paper_id, error=str(exc))
                return None
            finally:
                self._locks.pop(paper.paper_id, None)

    async def ensure_for_question(
        self, question: str, *, paper_ids: Sequence[str] = (), context: str = ""
    ) -> list[FullTextRecord]:
        """On demand before an answer: the full texts of the papers a question is about — those it
        is asked through (a card's Ask button: `paper_ids`) and those its text or its thread
        (`context`, e.g. the digest post a thread hangs off) names by arXiv id or link."""
        wanted = list(dict.fromkeys([*paper_ids, *_ARXIV_ID.findall(f"{question}\n{context}")]))
        if not wanted or self._settings.mode == "off":
            return []
        stored = await self._index.fetch_papers(wanted[:MAX_NAMED_PAPERS])
        records = [await self.ensure(paper) for paper in stored.values()]
        return [r for r in records if r is not None]

    async def _fetch_and_add(self, paper: Paper) -> FullTextRecord:
        assert self._fetcher is not None and paper.arxiv_id
        failed: tuple[Format, ...] = ()
        while True:
            download = await self._fetcher.fetch(paper.arxiv_id, skip=failed)
            started = time.perf_counter()
            try:
                document = await asyncio.to_thread(
                    parse_bytes,
                    download.data,
                    name=download.url,
                    max_bytes=int(self._settings.max_file_mb * 2**20),
                    limits=self.limits,
                )
            except FullTextError as exc:  # e.g. an HTML page without sections: try the next format
                log.info("fulltext.format_unusable", url=download.url, error=str(exc))
                failed = (*failed, download.source_format)
                continue
            seconds = time.perf_counter() - started
            result = await self.add(document, source=download.url, paper=paper, parse_seconds=seconds)
            return result.record
