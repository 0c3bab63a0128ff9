"""Search latency at 10k papers in embedded mode (Qdrant Edge), query embedding included, with search
as the settings configure it (`build_search_service`: question cleaning, the query adapter, the fusion).

.venv/bin/python bench/search_latency.py [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from common import ROOT, open_full_index, percentile

QUESTIONS = ROOT / "bench" / "data" / "paraphrase_questions.jsonl"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()

    from bot.core.config import Settings
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.search import build_search_service

    embedder = LocalEmbedder()
    index = await open_full_index(embedder)
    papers = await index.count_papers()
    search = build_search_service(Settings(), index, embedder)
    print(f"search as configured: {search.describe()}")
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

    # The hand-written questions of issue 13 too: longer than keyword queries, so dearer to embed.
    questions = [json.loads(line)["q"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    rows = {"keyword queries": queries, "paraphrase questions": questions}
    timings: dict[str, tuple[list[float], list[float]]] = {}
    for name, texts in rows.items():
        totals, embeds = [], []
        for q in texts:
            t0 = time.perf_counter()
            await embedder.embed_query(q)
            t1 = time.perf_counter()
            await search.search(q, limit=10)
            t2 = time.perf_counter()
            embeds.append(t1 - t0)
            totals.append(t2 - t1)
        timings[name] = (totals, embeds)
    await index.close()
    print(f"papers in index: {papers}; top-10 hybrid, query embedding included")
    print("| queries | measure | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for name, (totals, embeds) in timings.items():
        print(
            f"| {len(rows[name])} {name} | search (embed + hybrid query + per-paper grouping) | "
            f"{percentile(totals, 0.5) * 1000:.1f} | {percentile(totals, 0.95) * 1000:.1f} |"
        )
        print(
            f"| {len(rows[name])} {name} | query embedding alone | {percentile(embeds, 0.5) * 1000:.1f} | "
            f"{percentile(embeds, 0.95) * 1000:.1f} |"
        )
    worst = max(percentile(totals, 0.95) for totals, _ in timings.values())
    print(f"p95 <= 100 ms: {'PASS' if worst <= 0.100 else 'FAIL'}")


if __name__ == "__main__":
    asyncio.run(main())
