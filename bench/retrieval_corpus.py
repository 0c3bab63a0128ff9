"""The bench corpus held in memory for retrieval studies: every chunk's MiniLM vector (from the vector
cache, so the same vectors the bench index holds) and an exact in-memory copy of the index's BM25
(the same Qdrant Edge BM25 document and query vectors; IDF as Qdrant applies it), so that levers
which change document vectors or rankings can be scored without rebuilding an index per variant.

`bench/paraphrase_study.py` checks that this BM25 ranks like the real index on its questions.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field

import numpy as np
from common import HF_FILES, ROOT, SHARED, load_all_papers
from scipy import sparse as sp

QUESTIONS = ROOT / "bench" / "data" / "paraphrase_questions.jsonl"
SEED_PAGE = SHARED / "seed" / "000_c48a4a4dc127d178.txt"


def title_key(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", " ".join(title.split()).lower()).strip()


def corpus_papers() -> list:  # type: ignore[type-arg]
    """All HF papers, the three arXiv listings and the seed page, merged as ingest merges them."""
    from bot.ingest.merge import dedupe
    from bot.ingest.sources import parse_path

    papers, _ = dedupe([*load_all_papers(), *parse_path(SEED_PAGE).papers])
    return papers


@dataclass
class Bm25Index:
    """Chunk × term matrix of Qdrant Edge BM25 document values; scores = Σ idf · query · doc."""

    matrix: sp.csc_matrix
    columns: dict[int, int]
    idf: np.ndarray
    rows_csr: sp.csr_matrix | None = None

    @classmethod
    def build(cls, texts: list[str]) -> Bm25Index:
        from bot.retrieval.sparse import sparse_document

        columns: dict[int, int] = {}
        indptr, indices, values = [0], [], []
        for text in texts:
            vec = sparse_document(text)
            for term, value in zip(vec.indices, vec.values, strict=True):
                indices.append(columns.setdefault(term, len(columns)))
                values.append(value)
            indptr.append(len(indices))
        matrix = sp.csr_matrix((values, indices, indptr), shape=(len(texts), len(columns)), dtype=np.float32)
        n_docs = len(texts)
        df = np.asarray((matrix > 0).sum(axis=0)).ravel()
        idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        return cls(matrix.tocsc(), columns, idf)

    def query_weights(self, text: str) -> dict[int, float]:
        from bot.retrieval.sparse import sparse_query

        vec = sparse_query(text)
        return {t: v for t, v in zip(vec.indices, vec.values, strict=True)}

    def scores(self, weights: dict[int, float]) -> np.ndarray:
        cols = [(self.columns[t], w) for t, w in weights.items() if t in self.columns]
        if not cols:
            return np.zeros(self.matrix.shape[0], np.float32)
        idx = np.array([c for c, _ in cols])
        q = np.array([w for _, w in cols], np.float32) * self.idf[idx]
        return np.asarray(self.matrix[:, idx] @ q).ravel()

    def term_rows(self, rows: list[int]) -> sp.csr_matrix:
        """The chunks' BM25 document values (pseudo-relevance feedback reads them)."""
        if self.rows_csr is None:
            self.rows_csr = self.matrix.tocsr()
        return self.rows_csr[rows]


@dataclass
class Corpus:
    papers: list  # type: ignore[type-arg]
    chunk_texts: list[str]
    chunk_paper: np.ndarray  # chunk row → paper row
    dense: np.ndarray  # chunk row → unit vector
    hf: np.ndarray  # paper row → has source "hf"
    by_id: dict[str, int] = field(default_factory=dict)
    by_title: dict[str, list[int]] = field(default_factory=dict)

    def per_paper(self, chunk_scores: np.ndarray) -> np.ndarray:
        """A paper's score is its best chunk's, as the bot's per-paper grouping takes it."""
        out = np.full(len(self.papers), -np.inf, np.float32)
        np.maximum.at(out, self.chunk_paper, chunk_scores)
        return out

    def first_chunk_rows(self) -> np.ndarray:
        rows = np.full(len(self.papers), -1)
        for row in range(len(self.chunk_paper) - 1, -1, -1):
            rows[self.chunk_paper[row]] = row
        return rows


async def load_corpus(embedder) -> Corpus:  # type: ignore[no-untyped-def]
    from bot.core.config import TokenizerSettings
    from bot.retrieval.chunking import chunk_paper

    settings = TokenizerSettings()
    papers = corpus_papers()
    texts, owner = [], []
    for row, paper in enumerate(papers):
        for chunk in chunk_paper(
            paper,
            max_tokens=settings.chunk_tokens,
            overlap=settings.chunk_overlap,
            encoding=settings.encoding,
        ):
            texts.append(chunk.text)
            owner.append(row)
    dense = np.asarray(await embedder.embed_documents(texts), dtype=np.float32)
    corpus = Corpus(
        papers=papers,
        chunk_texts=texts,
        chunk_paper=np.array(owner),
        dense=dense,
        hf=np.array(["hf" in p.sources for p in papers]),
    )
    corpus.by_id = {p.paper_id: i for i, p in enumerate(papers)}
    for i, p in enumerate(papers):
        corpus.by_title.setdefault(title_key(p.title), []).append(i)
    return corpus


Question = tuple[str, frozenset[int]]  # (text, rows of the papers that answer it)


def paraphrase_questions(corpus: Corpus, split: str | None = None) -> list[Question]:
    """Resolved by normalized title: seed-page papers have no id of their own."""
    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    return [
        (r["q"], frozenset(corpus.by_title[title_key(r["expected"][0])]))
        for r in rows
        if split is None or r["split"] == split
    ]


def ai_summary_queries(
    corpus: Corpus, n: int, seed: int, exclude: frozenset[str] = frozenset()
) -> list[Question]:
    """The sample bench/retrieval_eval.py draws (same candidates, order and seed)."""
    from bot.ingest.sources import parse_path

    candidates = [(p.ai_summary, p.paper_id) for f in HF_FILES for p in parse_path(f).papers if p.ai_summary]
    candidates.sort(key=lambda item: item[1])
    if exclude:
        pool = random.Random(seed).sample(candidates, 2 * n)
        picked = [c for c in pool if c[1] not in exclude][:n]
    else:
        picked = random.Random(seed).sample(candidates, n)
    return [(text, frozenset([corpus.by_id[pid]])) for text, pid in picked]
