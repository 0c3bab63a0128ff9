"""Digests at scale: 50 channels, each posting the same 30-paper Hugging Face day, at once.

The real digest domain runs end to end below Discord: `build_digest_service` with a directory
fetcher over a saved Hugging Face daily file (30 real papers of one day, rebuilt from the slim
records), the real `Ingestor` and embedding model over a Qdrant Edge index in a temp dir, SQLite in
a temp dir (summary cache, ledger, runs), the real `openai` client against the scripted
OpenAI-compatible server answering every completion after a fixed latency, and the in-memory
`DigestPoster` of the tests. All channels run concurrently, as when they share a posting time.

    .venv/bin/python bench/digest_bench.py [--channels 50] [--papers 30] [--llm-latency-ms 100]
                                           [--concurrency 4] [--parallel 0]

Two passes, each on a fresh database (so each starts with an empty summary cache): the first is
timed; the second repeats it under tracemalloc for the peak of Python allocations (tracemalloc slows
Python code down, so its wall time is not reported). Checked: LLM calls = distinct papers summarized
(the cache and in-flight sharing make 50 channels pay once per paper), and the LLM phase against the
bound ceil(distinct papers / DIGEST_SUMMARY_CONCURRENCY) × latency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import SHARED  # also puts the repo root on sys.path and sets offline env

SLIM = SHARED / "hf_daily_papers" / "hf_daily_papers_slim_part1.jsonl"
DAY = dt.date(2024, 10, 18)  # 31 papers in part 1; the first 30 are served


@dataclass
class Pass:
    wall_s: float
    llm_calls: int
    llm_span_s: float  # first completion request received → last one answered
    llm_peak_inflight: int
    distinct_summarized: int
    fallbacks: int
    statuses: dict[str, int]
    headers: int
    paper_posts: int
    per_channel: set[int]
    tracemalloc_peak: int | None


def day_file(directory: Path, papers: int) -> Path:
    items = [json.loads(line) for line in SLIM.read_text().splitlines()]
    chosen = [item for item in items if item.get("daily_date") == DAY.isoformat()][:papers]
    if len(chosen) < papers:
        raise SystemExit(f"{SLIM.name} has only {len(chosen)} papers of {DAY}")
    path = directory / f"hf_daily_{DAY.isoformat()}.json"
    path.write_text(json.dumps(chosen))
    return path


async def one_pass(
    *, channels: int, papers: int, latency_s: float, data_dir: Path, sources_dir: Path,
    index: Any, embedder: Any, measure_memory: bool, parallel: int,
) -> Pass:  # fmt: skip
    from bot.app.services import build_digest_service
    from bot.core.config import load_settings
    from bot.db import Database, Repository, upgrade_schema
    from bot.digest.records import SubscriptionSettings
    from bot.digest.sources import directory_fetcher
    from bot.ingest.pipeline import Ingestor
    from bot.llm import LLMClient
    from bot.retrieval.search import SearchService
    from tests.support.digest import MemoryPoster, summary_responder
    from tests.support.scripted_llm import ScriptedLLMServer

    inflight = [0, 0]  # now, peak
    stamps: list[float] = []

    class FixedLatencyLLM(ScriptedLLMServer):
        """The scripted server, answering every completion after a fixed delay."""

        async def _completions(self, request: Any) -> Any:
            stamps.append(time.perf_counter())
            inflight[0] += 1
            inflight[1] = max(inflight[1], inflight[0])
            try:
                await asyncio.sleep(latency_s)
                return await super()._completions(request)
            finally:
                inflight[0] -= 1
                stamps.append(time.perf_counter())

    os.environ["PAPERBOT_DATA_DIR"] = str(data_dir)
    settings = load_settings()
    database = Database.from_settings(settings)
    await upgrade_schema(database.engine)
    repo = Repository(database)
    poster = MemoryPoster()
    async with FixedLatencyLLM(responder=summary_responder) as server:
        llm = LLMClient(
            base_url=server.base_url, api_key=None, model="scripted-model", api_mode="chat",
            timeout_s=30, max_retries=0,
        )  # fmt: skip
        service = build_digest_service(
            settings,
            repo=repo,
            search=SearchService(index, embedder, encoding=settings.tokenizer.encoding),
            ingestor=Ingestor(index, embedder, settings.tokenizer),
            llm=llm,
            fetch=directory_fetcher(sources_dir),
        )
        subs = [
            await repo.save_subscription(
                SubscriptionSettings(guild_id=1, channel_id=1000 + n, max_papers=papers)
            )
            for n in range(channels)
        ]
        if measure_memory:
            tracemalloc.start()
        started = time.perf_counter()
        gate = asyncio.Semaphore(parallel)

        async def run(sub: Any) -> Any:
            async with gate:
                return await service.run(sub, DAY, poster=poster, trigger="schedule")

        outcomes = await asyncio.gather(*(run(sub) for sub in subs), return_exceptions=True)
        wall = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if measure_memory else None
        if measure_memory:
            tracemalloc.stop()
        llm_calls = len(server.requests_to("/v1/chat/completions"))
        await llm.aclose()
    await database.close()

    posts = [m.post for m in poster.messages if m.post is not None]
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        key = outcome.status if not isinstance(outcome, BaseException) else _describe(outcome)
        statuses[key] = statuses.get(key, 0) + 1
    return Pass(
        wall_s=wall,
        llm_calls=llm_calls,
        llm_span_s=(max(stamps) - min(stamps)) if stamps else 0.0,
        llm_peak_inflight=inflight[1],
        distinct_summarized=len({p.paper.paper_id for p in posts if not p.summary_is_fallback}),
        fallbacks=sum(p.summary_is_fallback for p in posts),
        statuses=statuses,
        headers=sum(m.kind == "header" for m in poster.messages),
        paper_posts=len(posts),
        per_channel={len(poster.paper_ids(sub.channel_id)) for sub in subs},
        tracemalloc_peak=peak,
    )


def _describe(error: BaseException) -> str:
    cause = error.__cause__ or error
    return f"raised {type(error).__name__} ({type(cause).__name__}: {str(cause).splitlines()[0][:60]})"


def maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


async def main(args: argparse.Namespace) -> int:
    import structlog

    from bot.core.config import TokenizerSettings
    from bot.ingest.pipeline import Ingestor
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index.edge import EdgePaperIndex

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    os.environ["DIGEST_SUMMARY_CONCURRENCY"] = str(args.concurrency)
    os.environ["DIGEST_MAX_PAPERS_LIMIT"] = str(max(args.papers, 25))
    latency_s = args.llm_latency_ms / 1000
    with tempfile.TemporaryDirectory(prefix="digest-bench-") as tmp:
        root = Path(tmp)
        os.chdir(root)  # no stray .env is read
        sources_dir = root / "sources"
        sources_dir.mkdir()
        day_path = day_file(sources_dir, args.papers)
        rss_start = maxrss_mib()

        # The index already holds the day's papers, as after the morning's first fetch (embedding
        # on CPU is measured by bench/ingest_throughput.py, not here).
        t0 = time.perf_counter()
        embedder = LocalEmbedder(batch_size=32)
        index = EdgePaperIndex(root / "qdrant")
        await index.ensure_collection(embedder.dimensions)
        await Ingestor(index, embedder, TokenizerSettings()).ingest(_hf_papers(day_path))
        warm_s = time.perf_counter() - t0

        print(
            f"digest bench: {args.channels} channels × {args.papers} papers of hf:{DAY} "
            f"(real records from {SLIM.name}), scripted LLM latency {args.llm_latency_ms:.0f} ms, "
            f"DIGEST_SUMMARY_CONCURRENCY={args.concurrency}"
        )
        print(
            f"  index warm-up (model load, embedding {args.papers} papers into Qdrant Edge): {warm_s:.1f} s"
        )
        print(f"  channels running at once: {args.parallel or args.channels}")
        runs = []
        for n, memory in enumerate((False, True)):
            runs.append(
                await one_pass(
                    channels=args.channels, papers=args.papers, latency_s=latency_s,
                    data_dir=root / f"data{n}", sources_dir=sources_dir, index=index,
                    embedder=embedder, measure_memory=memory, parallel=args.parallel or args.channels,
                )
            )  # fmt: skip
        await index.close()

    timed, traced = runs
    bound = math.ceil(timed.distinct_summarized / args.concurrency) * latency_s
    expected_posts = args.channels * args.papers
    ok_calls = all(r.llm_calls == r.distinct_summarized == args.papers and r.fallbacks == 0 for r in runs)
    ok_posts = all(set(r.statuses) == {"posted"} for r in runs) and all(
        r.paper_posts == expected_posts and r.per_channel == {args.papers} and r.headers == args.channels
        for r in runs
    )
    ok_bound = timed.llm_peak_inflight <= args.concurrency
    print(f"  run outcomes: {timed.statuses} (second pass: {traced.statuses})")
    print(
        f"  LLM calls: {timed.llm_calls} for {timed.distinct_summarized} distinct papers summarized "
        f"({args.channels * args.papers} channel-paper summaries needed; fallbacks {timed.fallbacks}; "
        f"second pass {traced.llm_calls} calls)"
    )
    print(f"  {'PASS' if ok_calls else 'FAIL'}: LLM calls == distinct papers summarized")
    print(
        f"  posts: {timed.paper_posts} paper posts + {timed.headers} headers "
        f"(expected {args.channels} × {args.papers} = {expected_posts}; "
        f"per channel {sorted(timed.per_channel)})"
    )
    print(f"  {'PASS' if ok_posts else 'FAIL'}: every channel got all {args.papers} papers")
    print(
        f"  concurrency bound ceil({timed.distinct_summarized}/{args.concurrency}) × "
        f"{args.llm_latency_ms:.0f} ms = {bound:.2f} s"
    )
    print(
        f"  LLM phase (first request → last answer): {timed.llm_span_s:.2f} s = "
        f"{timed.llm_span_s / bound:.2f}× the bound; peak in-flight requests {timed.llm_peak_inflight} "
        f"(limit {args.concurrency}: {'PASS' if ok_bound else 'FAIL'})"
    )
    print(
        f"  wall time, all {args.channels} digests (fetch, pick, summarize, post, ledger): "
        f"{timed.wall_s:.2f} s = {timed.wall_s / bound:.2f}× the bound; "
        f"{timed.wall_s - timed.llm_span_s:.2f} s outside the LLM phase"
    )
    assert traced.tracemalloc_peak is not None
    print(
        f"  memory: tracemalloc peak during the {args.channels}-channel run "
        f"{traced.tracemalloc_peak / 2**20:.1f} MiB "
        f"(second pass); process maxrss {maxrss_mib():.0f} MiB "
        f"(before loading the embedding model {rss_start:.0f} MiB)"
    )
    return 0 if ok_calls and ok_posts and ok_bound else 1


def _hf_papers(path: Path) -> list[Any]:
    from bot.ingest.sources import parse_bytes

    return parse_bytes(path.read_bytes(), source_name=f"hf:{DAY.isoformat()}", fmt="hf_json").papers


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--papers", type=int, default=30)
    parser.add_argument("--llm-latency-ms", type=float, default=100.0)
    parser.add_argument("--parallel", type=int, default=0, help="channels running at once (0 = all)")
    parser.add_argument("--concurrency", type=int, default=4, help="DIGEST_SUMMARY_CONCURRENCY")
    sys.exit(asyncio.run(main(parser.parse_args())))
