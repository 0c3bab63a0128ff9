"""Personal DM digests at scale: 1,000 users × 20 follows over one real Hugging Face day.

The real personal-digest service (`PersonalDigestService`, built by the production wiring
`build_digest_services`) runs end to end below Discord: the real 2026-08-18 Hugging Face day (29
papers, the saved API response) through the digest's `SourceLoader` and a directory fetcher, the real
embedding model over a Qdrant Edge index (topic similarity), SQLite in a temp dir (follows, summary
cache, the delivery ledger), the real `openai` client against the scripted OpenAI-compatible server
answering every completion after a fixed latency, and an in-memory `PersonalPoster` (our own
boundary; the Discord DM poster is exercised against the fake Discord by tests/test_discord_library.py).

Follows are drawn with a fixed seed: per user 7 authors (about a third of them on the day's papers,
the rest from other days of the slim HF records), 6 topics from a pool of 40 and 7 queries from a
pool of 50 — 20 each. The follows are bulk-inserted before the clock starts.

    .venv/bin/python bench/personal_digest_bench.py [--users 1000] [--follows 20] [--llm-latency-ms 100]
                                                    [--concurrency 4] [--seed 16] [--postgresql]

Two passes, each on a fresh database (an empty summary cache): the first is timed; the second repeats
it under tracemalloc for the peak of Python allocations. Checked: LLM calls = distinct papers
summarized; every user with a pick got exactly one header and their picks; a rerun sends nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import SHARED  # also puts the repo root on sys.path and sets offline env

HF_DAY_FILE = SHARED / "hf_daily_papers" / "raw_api_daily_papers_2026-08-18.json"
OTHER_DAYS = SHARED / "hf_daily_papers" / "hf_daily_papers_slim_part1.jsonl"
TOPICS = [
    "GUI agents", "text-to-image diffusion", "video generation", "3D generation", "world models",
    "reinforcement learning for LLMs", "reward models", "mixture of experts", "long-context attention",
    "retrieval-augmented generation", "code generation", "mathematical reasoning", "multimodal LLMs",
    "speech synthesis", "robot manipulation", "autonomous driving", "model compression", "quantization",
    "knowledge distillation", "instruction tuning", "preference optimization", "hallucination",
    "benchmark for agents", "tool use", "chain-of-thought reasoning", "image editing",
    "medical imaging", "graph neural networks", "time series forecasting", "federated learning",
    "privacy attacks", "jailbreaks and safety", "embodied AI", "point clouds", "neural rendering",
    "scientific discovery with LLMs", "protein design", "efficient inference", "state space models",
    "evaluation of LLM judges",
]  # fmt: skip
QUERIES = [
    "agent", "diffusion", "benchmark", "reinforcement learning", "transformer", "LLM", "video",
    "3D", "reasoning", "multimodal", "evaluation", "dataset", "alignment", "RL", "attention",
    "token", "memory", "planning", "robot", "image", "speech", "code", "math", "scaling", "efficient",
    "open-weight", "world model", "harness", "GUI", "routing", "retrieval", "safety", "sparse",
    "latent", "distillation", "fine-tuning", "reward", "policy", "simulation", "physics",
    "generation", "editing", "segmentation", "tracking", "graph", "language model", "survey",
    "compression", "hallucination", "long context",
]  # fmt: skip


@dataclass
class CountingDMs:
    headers: dict[int, int] = field(default_factory=dict)
    papers: dict[int, list[str]] = field(default_factory=dict)
    next_id: int = 10_000

    async def send_header(self, user_id: int, header: Any) -> int:
        self.headers[user_id] = self.headers.get(user_id, 0) + 1
        self.next_id += 1
        return self.next_id

    async def send_paper(self, user_id: int, post: Any) -> int:
        self.papers.setdefault(user_id, []).append(post.paper.paper_id)
        self.next_id += 1
        return self.next_id

    async def find_recent(self, user_id: int, marker: str) -> list[tuple[int, str]]:
        return []


def draw_follows(
    users: int, per_user: int, seed: int, day_authors: list[str], other_authors: list[str]
) -> list[dict[str, Any]]:
    from bot.library.records import fold

    rng = random.Random(seed)
    rows = []
    n_topics, n_authors = 6, 7
    n_queries = per_user - n_topics - n_authors
    for user in range(users):
        user_id = 10**17 + user
        authors = rng.sample(day_authors, 2) + rng.sample(other_authors, n_authors - 2)
        chosen = (
            [("author", a) for a in authors]
            + [("topic", t) for t in rng.sample(TOPICS, n_topics)]
            + [("query", q) for q in rng.sample(QUERIES, n_queries)]
        )
        rows += [{"user_id": user_id, "kind": k, "value": v, "value_key": fold(v)} for k, v in chosen]
    return rows


@dataclass
class Pass:
    wall_s: float
    llm_calls: int
    report: Any
    dms: CountingDMs
    rerun_sent: int
    peak: int | None


async def one_pass(*, args: argparse.Namespace, root: Path, n: int, index: Any, embedder: Any,
                   follows: list[dict[str, Any]], measure_memory: bool) -> Pass:  # fmt: skip
    from sqlalchemy import insert

    from bot.app.services import build_digest_services
    from bot.core.config import load_settings
    from bot.db import Database, upgrade_schema
    from bot.db.library_tables import FollowRow
    from bot.digest.sources import directory_fetcher
    from bot.ingest.pipeline import Ingestor
    from bot.llm import LLMClient
    from bot.retrieval.search import SearchService
    from tests.support.digest import HF_DAY, summary_responder
    from tests.support.scripted_llm import ScriptedLLMServer

    latency_s = args.llm_latency_ms / 1000

    class FixedLatencyLLM(ScriptedLLMServer):
        async def _completions(self, request: Any) -> Any:
            await asyncio.sleep(latency_s)
            return await super()._completions(request)

    os.environ["PAPERBOT_DATA_DIR"] = str(root / f"data{n}")
    if args.postgres is not None:  # a fresh database on the throwaway server for each pass
        os.environ["DATABASE_URL"] = args.postgres.create_database()
    settings = load_settings()
    database = Database.from_settings(settings)
    await upgrade_schema(database.engine)
    async with database.transaction() as session:
        await session.execute(insert(FollowRow), follows)
    async with FixedLatencyLLM(responder=summary_responder) as server:
        llm = LLMClient(
            base_url=server.base_url, api_key=None, model="scripted-model", api_mode="chat",
            timeout_s=30, max_retries=0,
        )  # fmt: skip
        state = build_digest_services(
            settings, database,
            search=SearchService(index, embedder, encoding=settings.tokenizer.encoding),
            ingestor=Ingestor(index, embedder, settings.tokenizer), llm=llm,
            fetch=directory_fetcher(root / "sources"),
        )  # fmt: skip
        dms = CountingDMs()
        if measure_memory:
            tracemalloc.start()
        started = time.perf_counter()
        report = await state.personal.run(HF_DAY, poster=dms)
        wall = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if measure_memory else None
        if measure_memory:
            tracemalloc.stop()
        llm_calls = len(server.requests_to("/v1/chat/completions"))
        rerun = await state.personal.run(HF_DAY, poster=dms)
        await llm.aclose()
    await database.close()
    return Pass(wall, llm_calls, report, dms, rerun.papers_sent, peak)


def maxrss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


async def main(args: argparse.Namespace) -> int:
    import structlog

    from bot.core.config import TokenizerSettings
    from bot.ingest.pipeline import Ingestor
    from bot.ingest.sources import parse_bytes
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index.edge import EdgePaperIndex
    from tests.support.digest import HF_DAY

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    os.environ["DIGEST_SUMMARY_CONCURRENCY"] = str(args.concurrency)
    papers = parse_bytes(HF_DAY_FILE.read_bytes(), source_name=f"hf:{HF_DAY}", fmt="hf_json").papers
    day_authors = sorted({a for p in papers for a in p.authors})
    other = [json.loads(line) for line in OTHER_DAYS.read_text().splitlines()]
    other_authors = sorted(
        {a["name"] for item in other for a in item.get("paper", {}).get("authors", []) if a.get("name")}
        - set(day_authors)
    )
    follows = draw_follows(args.users, args.follows, args.seed, day_authors, other_authors)
    with tempfile.TemporaryDirectory(prefix="personal-bench-") as tmp:
        root = Path(tmp)
        os.chdir(root)  # no stray .env is read
        (root / "sources").mkdir()
        shutil.copy(HF_DAY_FILE, root / "sources" / f"hf_daily_{HF_DAY}.json")
        rss_start = maxrss_mib()
        t0 = time.perf_counter()
        embedder = LocalEmbedder(batch_size=32)
        index = EdgePaperIndex(root / "qdrant")
        await index.ensure_collection(embedder.dimensions)
        await Ingestor(index, embedder, TokenizerSettings()).ingest(papers)
        warm_s = time.perf_counter() - t0
        print(
            f"personal digest bench: {args.users} users × {args.follows} follows "
            f"({len(follows)} rows; {len(day_authors)} authors on the day, "
            f"{len(other_authors)} from other days) over hf:{HF_DAY} ({len(papers)} real papers); "
            f"scripted LLM latency {args.llm_latency_ms:.0f} ms, "
            f"DIGEST_SUMMARY_CONCURRENCY={args.concurrency}"
        )
        print(f"  index warm-up (model load, embedding {len(papers)} papers): {warm_s:.1f} s")
        runs = [
            await one_pass(args=args, root=root, n=n, index=index, embedder=embedder, follows=follows,
                           measure_memory=memory)
            for n, memory in enumerate((False, True))
        ]  # fmt: skip
        await index.close()
    timed, traced = runs
    print(f"  state database: {'PostgreSQL (a throwaway local server)' if args.postgres else 'SQLite'}")
    report = timed.report
    sent = sum(len(v) for v in timed.dms.papers.values())
    ok_calls = all(r.llm_calls == r.report.distinct_papers == r.report.llm_summaries for r in runs)
    ok_once = all(
        r.rerun_sent == 0 and set(r.dms.headers.values()) <= {1} and len(r.dms.headers) == r.report.with_picks
        for r in runs
    )
    ok_all = report.delivered == report.with_picks and report.failed == 0 and not report.errors
    print(
        f"  users due: {report.users}; with at least one pick: {report.with_picks}; delivered: "
        f"{report.delivered}; papers sent: {sent} ({sent / max(report.with_picks, 1):.1f} per user)"
    )
    print(
        f"  LLM calls: {timed.llm_calls} for {report.distinct_papers} distinct papers summarized "
        f"({sent} user-paper summaries shown; second pass {traced.llm_calls} calls)"
    )
    print(f"  {'PASS' if ok_calls else 'FAIL'}: LLM calls == distinct papers summarized")
    print(f"  {'PASS' if ok_once else 'FAIL'}: one digest per user, a rerun sends nothing")
    print(
        f"  wall time, all {args.users} personal digests (load, topic similarity, pick, summarize, "
        f"plan and send through the ledger): {timed.wall_s:.2f} s "
        f"({timed.wall_s / max(args.users, 1) * 1000:.1f} ms a user)"
    )
    assert traced.peak is not None
    print(
        f"  memory: tracemalloc peak during the run {traced.peak / 2**20:.1f} MiB (second pass); "
        f"process maxrss {maxrss_mib():.0f} MiB (before loading the embedding model {rss_start:.0f} MiB)"
    )
    return 0 if ok_calls and ok_once and ok_all else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--follows", type=int, default=20)
    parser.add_argument("--llm-latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=4, help="DIGEST_SUMMARY_CONCURRENCY")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--postgresql", action="store_true", help="state in PostgreSQL (Debian's binaries, as the tests)"
    )
    options = parser.parse_args()
    options.postgres = None
    if not options.postgresql:
        sys.exit(asyncio.run(main(options)))
    from tests.support.postgres import find_pg_bin, running_postgres

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not installed (make postgres)")
    with running_postgres(bin_dir) as server:
        options.postgres = server
        code = asyncio.run(main(options))
    sys.exit(code)
