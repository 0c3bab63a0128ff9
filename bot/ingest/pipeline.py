"""Papers → dedupe/merge with what is stored → chunks → dense + BM25 vectors → Qdrant."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from bot.core.config import TokenizerSettings
from bot.core.papers import Paper, point_id
from bot.ingest.merge import dedupe, match_stored_titles, merge_papers
from bot.ingest.sources import Rejected
from bot.retrieval.chunking import chunk_paper
from bot.retrieval.embedding import Embedder
from bot.retrieval.index import IndexedChunk, PaperIndex
from bot.retrieval.index.base import FULLTEXT_FIRST_CHUNK
from bot.retrieval.sparse import sparse_document

log = structlog.get_logger(__name__)

ProgressCallback = Callable[[int], None]


@dataclass
class IngestReport:
    read: int = 0
    new: int = 0
    updated: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    new_ids: list[str] = field(default_factory=list)

    def add(self, other: IngestReport) -> None:
        self.read += other.read
        self.new += other.new
        self.updated += other.updated
        self.duplicates += other.duplicates
        self.rejected.extend(other.rejected)
        self.chunks += other.chunks
        self.seconds += other.seconds
        self.new_ids.extend(other.new_ids)

    def summary(self) -> str:
        return (
            f"read {self.read} / new {self.new} / updated {self.updated} / "
            f"duplicates {self.duplicates} / rejected {len(self.rejected)}"
        )


class Ingestor:
    def __init__(
        self,
        index: PaperIndex,
        embedder: Embedder,
        tokenizer: TokenizerSettings,
        *,
        batch_size: int = 256,
    ) -> None:
        self._index = index
        self._embedder = embedder
        self._tokenizer = tokenizer
        self._batch_size = batch_size

    async def ingest(
        self, papers: Sequence[Paper], *, progress: ProgressCallback | None = None
    ) -> IngestReport:
        """Store `papers`; a paper already stored is merged, re-embedded only if its text changed."""
        started = time.perf_counter()
        distinct, repeated = dedupe(papers)
        report = IngestReport(duplicates=repeated)
        for start in range(0, len(distinct), self._batch_size):
            batch = distinct[start : start + self._batch_size]
            await self._ingest_batch(batch, report)
            if progress:
                progress(len(batch) + (repeated if start == 0 else 0))
        report.seconds = time.perf_counter() - started
        log.info(
            "ingest.done",
            new=report.new,
            updated=report.updated,
            duplicates=report.duplicates,
            chunks=report.chunks,
            seconds=round(report.seconds, 2),
        )
        return report

    async def _ingest_batch(self, batch: Sequence[Paper], report: IngestReport) -> None:
        matched = await match_stored_titles(self._index, batch)
        batch = matched.papers
        stored = await self._index.fetch_papers([p.paper_id for p in batch])
        to_embed: list[tuple[Paper, int]] = []  # (paper, previous chunk count or 0)
        metadata_only: list[Paper] = []
        for paper in batch:
            old = stored.get(paper.paper_id)
            if old is None:
                to_embed.append((paper, 0))
                report.new += 1
                report.new_ids.append(paper.paper_id)
                continue
            merged = merge_papers(old, paper)
            if merged.to_payload() == old.to_payload():
                report.duplicates += 1
            elif merged.text_hash != old.text_hash:
                to_embed.append((merged, 1))
                report.updated += 1
            else:
                metadata_only.append(merged)
                report.updated += 1
        if metadata_only:
            await self._index.set_paper_metadata(metadata_only)
        if to_embed:
            report.chunks += await self._embed_and_store(to_embed)
        for title_id in matched.superseded:  # stored again above under the paper's real id
            await self._index.delete_chunks(title_id, 0)

    async def _embed_and_store(self, items: Sequence[tuple[Paper, int]]) -> int:
        chunks = [
            chunk
            for paper, _ in items
            for chunk in chunk_paper(
                paper,
                max_tokens=self._tokenizer.chunk_tokens,
                overlap=self._tokenizer.chunk_overlap,
                encoding=self._tokenizer.encoding,
            )
        ]
        dense = await self._embedder.embed_documents([c.text for c in chunks])
        papers = {paper.paper_id: paper for paper, _ in items}
        indexed = [
            IndexedChunk(
                point_id=point_id(chunk.paper_id, chunk.chunk_no),
                paper=papers[chunk.paper_id],
                chunk_no=chunk.chunk_no,
                text=chunk.text,
                dense=vector,
                sparse=sparse_document(chunk.text),
            )
            for chunk, vector in zip(chunks, dense, strict=True)
        ]
        await self._index.upsert(indexed)
        counts: dict[str, int] = {}
        for chunk in chunks:
            counts[chunk.paper_id] = counts.get(chunk.paper_id, 0) + 1
        for paper, previously_stored in items:
            if previously_stored:  # a new version may have fewer chunks than the old one
                await self._index.delete_chunks(
                    paper.paper_id, counts[paper.paper_id], until_chunk=FULLTEXT_FIRST_CHUNK
                )
        return len(indexed)
