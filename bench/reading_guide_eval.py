"""Reading guides (issue 17) with a real embedded model: how many of the 3 questions per paper the
model writes that hold up against the excerpt they cite, and how many are replaced by quotes.

.venv/bin/python bench/reading_guide_eval.py [--papers 10] [--model qwen2.5-coder-1.5b-instruct]

The papers are the first `--papers` of the real Hugging Face day 2026-08-18 (ingested into a fresh
Qdrant Edge index under bench/out/guides); each guide goes through `RoundupService.reading_guide`,
the production path, with the model served by `llm_session` as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time

from common import ROOT, SHARED
from embedded_llm import embedded_model

OUT = ROOT / "bench" / "out" / "guides"
HF_DAY = SHARED / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=10)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    args = parser.parse_args()

    from bot.core.config import TokenizerSettings
    from bot.digest.roundup import GUIDE_QUESTIONS, RoundupService, grounded
    from bot.ingest.pipeline import Ingestor
    from bot.ingest.sources import parse_path
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index.edge import EdgePaperIndex
    from bot.retrieval.search import SearchService

    papers = parse_path(HF_DAY).papers[: args.papers]
    shutil.rmtree(OUT, ignore_errors=True)
    embedder = LocalEmbedder()
    index = EdgePaperIndex(OUT / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    await Ingestor(index, embedder, TokenizerSettings()).ingest(papers)
    search = SearchService(index, embedder)

    model_kept = quoted = 0
    seconds: list[float] = []
    async with embedded_model(args.model) as run:
        roundups = RoundupService(None, search, run.client)  # type: ignore[arg-type]
        for paper in papers:
            started = time.perf_counter()
            guide = await roundups.reading_guide(paper, marker="bench")
            seconds.append(time.perf_counter() - started)
            sources = {s.number: s for s in guide.sources}
            print(f"\n## {paper.title[:90]}  ({seconds[-1]:.1f} s)")
            for question in guide.questions:
                from_model = not question.text.startswith("The paper says: “")
                model_kept += from_model
                quoted += not from_model
                assert grounded(question.text, sources[question.source].text) or not from_model
                print(f"- [{'model' if from_model else 'quote'}] {question.text} [{question.source}]")
    total = len(papers) * GUIDE_QUESTIONS
    print(f"\n{args.model}: {len(papers)} guides, {total} questions")
    print("| questions from the model that held up | replaced by quotes | s/guide median |")
    print("|---|---|---|")
    median = sorted(seconds)[len(seconds) // 2]
    print(f"| {model_kept} ({model_kept / total:.2f}) | {quoted} ({quoted / total:.2f}) | {median:.1f} |")
    await index.close()


if __name__ == "__main__":
    asyncio.run(main())
