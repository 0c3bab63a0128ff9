"""Search latency at 10k papers in embedded mode (Qdrant Edge), query embedding included.

.venv/bin/python bench/search_latency.py [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from common import open_full_index, percentile


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.search import SearchService

    embedder = LocalEmbedder()
    index = await open_full_index(embedder)
    papers = await index.count_papers()
    search = SearchService(index, embedder)
    words = (
        "diffusion",
        "reasoning",
        "agents",
        "video",
        "retrieval",
        "robot",
        "speech",
        "graph",
        "math",
        "benchmark",
        "alignment",
        "efficient",
        "long context",
        "multimodal",
        "3D",
        "code",
        "medical",
    )
    rng = random.Random(7)
    queries = [" ".join(rng.sample(words, 3)) for _ in range(args.queries)]
    for q in queries[:10]:  # warm-up
        await search.search(q, limit=10)

    totals, embeds = [], []
    for q in queries:
        t0 = time.perf_counter()
        await embedder.embed_query(q)
        t1 = time.perf_counter()
        await search.search(q, limit=10)
        t2 = time.perf_counter()
        embeds.append(t1 - t0)
        totals.append(t2 - t1)
    await index.close()
    print(f"papers in index: {papers}; {len(queries)} queries, top-10 hybrid, query embedding included")
    print("| measure | p50 ms | p95 ms |")
    print("|---|---|---|")
    print(
        f"| search (embed + hybrid query + per-paper grouping) | {percentile(totals, 0.5) * 1000:.1f} | "
        f"{percentile(totals, 0.95) * 1000:.1f} |"
    )
    print(
        f"| query embedding alone | {percentile(embeds, 0.5) * 1000:.1f} | "
        f"{percentile(embeds, 0.95) * 1000:.1f} |"
    )
    verdict = "PASS" if percentile(totals, 0.95) <= 0.100 else "FAIL"
    print(f"p95 <= 100 ms: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
