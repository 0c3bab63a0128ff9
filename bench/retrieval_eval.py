"""Retrieval quality on real data: BM25-only vs dense-only vs hybrid, in one run.

A. Corpus: all 9,577 Hugging Face daily papers (the full bench index filtered to source "hf").
   Queries: the `ai_summary` of 500 papers sampled with a fixed seed; the target is that paper.
B. Corpus: the whole bench index plus the 48 seed-page papers. Queries: the natural-language
   questions of bench/data/seed_questions.jsonl (paraphrases, some with several expected papers).

    .venv/bin/python bench/retrieval_eval.py [--queries 500] [--seed 13]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

from common import HF_FILES, ROOT, SHARED, open_full_index, percentile

QUESTIONS = ROOT / "bench" / "data" / "seed_questions.jsonl"
MODES = ("sparse", "dense", "hybrid")
NAMES = {"sparse": "BM25 only", "dense": "dense only", "hybrid": "hybrid (convex, BM25 0.7)"}
Row = dict[str, float]


def sample_queries(n: int, seed: int) -> list[tuple[str, str]]:
    from bot.ingest.sources import parse_path

    candidates = [(p.ai_summary, p.paper_id) for f in HF_FILES for p in parse_path(f).papers if p.ai_summary]
    candidates.sort(key=lambda item: item[1])
    return random.Random(seed).sample(candidates, n)


async def evaluate(
    search: Any, items: list[tuple[str, set[str]]], search_filter: Any = None
) -> dict[str, Row]:
    """Recall@1/@5: share of the expected papers found (capped by k); MRR@10 of the first one found."""
    rows = {}
    for mode in MODES:
        r1 = r5 = mrr = 0.0
        latencies = []
        for text, expected in items:
            started = time.perf_counter()
            hits = await search.search_chunks(text, limit=30, search_filter=search_filter, mode=mode)
            latencies.append(time.perf_counter() - started)
            ranked = list(dict.fromkeys(h.paper.paper_id for h in hits))[:10]
            r1 += len(expected & set(ranked[:1])) / min(1, len(expected))
            r5 += len(expected & set(ranked[:5])) / min(5, len(expected))
            first = next((i for i, pid in enumerate(ranked, 1) if pid in expected), None)
            mrr += 1 / first if first else 0.0
        n = len(items)
        rows[mode] = {"recall@1": r1 / n, "recall@5": r5 / n, "mrr@10": mrr / n,
                      "p50_ms": percentile(latencies, 0.5) * 1000}  # fmt: skip
    return rows


def report(title: str, rows: dict[str, Row]) -> None:
    print(title)
    print("| retriever | Recall@1 | Recall@5 | MRR@10 | p50 ms |")
    print("|---|---|---|---|---|")
    for mode, row in rows.items():
        print(
            f"| {NAMES[mode]} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | {row['mrr@10']:.3f} | "
            f"{row['p50_ms']:.1f} |"
        )
    best_single = max(rows["sparse"]["mrr@10"], rows["dense"]["mrr@10"])
    print(f"hybrid beats both on MRR@10: {'PASS' if rows['hybrid']['mrr@10'] > best_single else 'FAIL'}\n")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    from bot.core.config import TokenizerSettings
    from bot.ingest.pipeline import Ingestor
    from bot.ingest.sources import parse_path
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index import SearchFilter
    from bot.retrieval.search import SearchService

    embedder = LocalEmbedder()
    index = await open_full_index(embedder)
    search = SearchService(index, embedder)
    hf_only = SearchFilter(sources=("hf",))
    corpus = await index.count_papers(hf_only)
    summaries = [(text, {target}) for text, target in sample_queries(args.queries, args.seed)]
    rows_a = await evaluate(search, summaries, hf_only)

    seed = parse_path(SHARED / "seed" / "000_c48a4a4dc127d178.txt").papers
    await Ingestor(index, embedder, TokenizerSettings()).ingest(seed)  # idempotent
    by_title = {p.title: p.paper_id for p in seed}
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    items = [(q["q"], {by_title[t] for t in q["expected"]}) for q in questions]
    rows_b = await evaluate(search, items)
    total = await index.count_papers()
    await index.close()

    report(f"A. {corpus} HF papers, {len(summaries)} ai_summary queries (seed {args.seed})", rows_a)
    report(f"B. {total} papers, {len(items)} natural-language questions (seed_questions.jsonl)", rows_b)
    print(json.dumps({"ai_summary": rows_a, "questions": rows_b}))


if __name__ == "__main__":
    asyncio.run(main())
