"""Retrieval quality on real data: BM25-only vs dense-only vs hybrid, in one run.

Corpus: all 9,577 Hugging Face daily papers (the full bench index filtered to source "hf").
Queries: the `ai_summary` of 500 papers sampled with a fixed seed; the target is that paper.

    .venv/bin/python bench/retrieval_eval.py [--queries 500] [--seed 13]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from common import HF_FILES, open_full_index, percentile


def sample_queries(n: int, seed: int) -> list[tuple[str, str]]:
    from bot.ingest.sources import parse_path

    candidates = [(p.ai_summary, p.paper_id) for f in HF_FILES for p in parse_path(f).papers if p.ai_summary]
    candidates.sort(key=lambda item: item[1])
    return random.Random(seed).sample(candidates, n)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    from bot.embedding import LocalEmbedder
    from bot.index import SearchFilter
    from bot.search import SearchService

    embedder = LocalEmbedder()
    index = await open_full_index(embedder)
    search = SearchService(index, embedder)
    hf_only = SearchFilter(sources=("hf",))
    corpus = await index.count_papers(hf_only)
    queries = sample_queries(args.queries, args.seed)

    rows = {}
    for mode in ("sparse", "dense", "hybrid"):
        r1 = r5 = mrr = 0.0
        latencies = []
        for text, target in queries:
            started = time.perf_counter()
            hits = await search.search_chunks(text, limit=30, search_filter=hf_only, mode=mode)  # type: ignore[arg-type]
            latencies.append(time.perf_counter() - started)
            ranked = list(dict.fromkeys(h.paper.paper_id for h in hits))[:10]
            if target in ranked:
                rank = ranked.index(target) + 1
                r1 += rank == 1
                r5 += rank <= 5
                mrr += 1 / rank
        n = len(queries)
        rows[mode] = {
            "recall@1": r1 / n,
            "recall@5": r5 / n,
            "mrr@10": mrr / n,
            "p50_ms": percentile(latencies, 0.5) * 1000,
        }
    await index.close()

    names = {"sparse": "BM25 only", "dense": "dense only", "hybrid": "hybrid (RRF)"}
    print(f"corpus: {corpus} HF papers, {len(queries)} queries (ai_summary, seed {args.seed})")
    print("| retriever | Recall@1 | Recall@5 | MRR@10 | p50 ms |")
    print("|---|---|---|---|---|")
    for mode, row in rows.items():
        print(
            f"| {names[mode]} | {row['recall@1']:.3f} | {row['recall@5']:.3f} | {row['mrr@10']:.3f} | "
            f"{row['p50_ms']:.1f} |"
        )
    best_single = max(rows["sparse"]["mrr@10"], rows["dense"]["mrr@10"])
    verdict = "PASS" if rows["hybrid"]["mrr@10"] > best_single else "FAIL"
    print(f"hybrid beats both on MRR@10: {verdict}")
    print(json.dumps(rows))


if __name__ == "__main__":
    asyncio.run(main())
