"""Ingest throughput vs the raw embedding model on the same texts, in one run.

The pipeline (parse → dedupe → chunk → embed → BM25 → upsert into Qdrant Edge) should add at
most 15 % over `model.encode` alone. Runs alternate raw/pipeline twice and keep each side's best.

    .venv/bin/python bench/ingest_throughput.py [--papers 600]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from common import HF_FILES


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=600)
    args = parser.parse_args()

    from bot.core.config import TokenizerSettings
    from bot.ingest.pipeline import Ingestor
    from bot.ingest.sources import parse_path
    from bot.retrieval.chunking import chunk_paper
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index.edge import EdgePaperIndex

    papers = parse_path(HF_FILES[0]).papers[: args.papers]
    tokenizer = TokenizerSettings()
    texts = [
        c.text
        for p in papers
        for c in chunk_paper(
            p, max_tokens=tokenizer.chunk_tokens, overlap=tokenizer.chunk_overlap, encoding=tokenizer.encoding
        )
    ]
    embedder = LocalEmbedder()
    embedder.encode(texts[:64])  # warm-up

    raw_times, pipeline_times = [], []
    for _ in range(2):
        started = time.perf_counter()
        embedder.encode(texts)
        raw_times.append(time.perf_counter() - started)

        workdir = Path(tempfile.mkdtemp(prefix="paperbot-bench-"))
        index = EdgePaperIndex(workdir / "qdrant")
        await index.ensure_collection(embedder.dimensions)
        fresh = parse_path(HF_FILES[0]).papers[: args.papers]  # parsing is part of the pipeline
        started = time.perf_counter()
        report = await Ingestor(index, embedder, tokenizer).ingest(fresh)
        await index.flush()
        pipeline_times.append(time.perf_counter() - started)
        assert report.new == len(papers), report.summary()
        await index.close()
        shutil.rmtree(workdir)

    raw, pipe = min(raw_times), min(pipeline_times)
    overhead = pipe / raw - 1
    print(f"{len(papers)} papers, {len(texts)} chunks; best of 2 alternating runs")
    print("| path | seconds | papers/s |")
    print("|---|---|---|")
    print(f"| raw model.encode on the same chunk texts | {raw:.1f} | {len(papers) / raw:.1f} |")
    print(f"| full ingest pipeline | {pipe:.1f} | {len(papers) / pipe:.1f} |")
    print(
        f"pipeline overhead: {overhead * 100:.1f} % (target <= 15 %): "
        f"{'PASS' if overhead <= 0.15 else 'FAIL'}"
    )


if __name__ == "__main__":
    asyncio.run(main())
