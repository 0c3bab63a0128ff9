"""Search latency with full texts (issue 14): the 10k-paper bench index, then the same with 100 full
texts indexed, in one run.

The 100 full texts: the 12 real ones of ../shared/data/fulltext (from bench/fulltext_eval.py's index)
and 88 copies of their passages (cycled, vectors reused) attached to 88 other papers of the index —
real text and real passage counts, so the index holds what 100 full texts add. Timed: `/search`
(SearchService.search: one result per paper, title + abstract chunks) and the answers' retrieval
(SearchService.search_chunks over every chunk, k = 5), query embedding included.

.venv/bin/python bench/fulltext_eval.py        # first: builds bench/out/fulltext<tokens>
.venv/bin/python bench/fulltext_latency.py [--queries 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import time
from pathlib import Path

from common import FULL_INDEX_DIR, OUT, ROOT, percentile

sys.path.insert(0, str(Path(__file__).parent))
from fulltext_eval import eval_index_dir

EVAL_DIR = eval_index_dir()  # bench/fulltext_eval.py's index: 10k papers + the 12 real full texts
LATENCY_DIR = OUT / f"{EVAL_DIR.name}_latency"
BASELINE_DIR = OUT / "fulltext_baseline_10k"  # a copy: bench/out/full stays free for other benches
QUESTIONS = [
    ROOT / "bench" / "data" / "paraphrase_questions.jsonl",
    ROOT / "bench" / "data" / "fulltext_questions.jsonl",
]
WORDS = (
    "diffusion", "reasoning", "agents", "video", "retrieval", "robot", "speech", "graph", "math",
    "benchmark", "alignment", "efficient", "long context", "multimodal", "3D", "code", "medical",
)  # fmt: skip


async def add_copies(index, copies: int) -> int:  # type: ignore[no-untyped-def]
    """Attach the 12 real full texts' passages (cycled) to `copies` other papers; returns passages added."""
    from qdrant_edge import CountRequest, FieldCondition, Filter, RangeFloat, ScrollRequest

    from bot.core.papers import point_id
    from bot.retrieval.index import IndexedChunk, SparseVec
    from bot.retrieval.index.base import FULLTEXT_FIRST_CHUNK

    shard = index.shard
    flt = Filter(must=[FieldCondition(key="chunk_no", range=RangeFloat(gte=FULLTEXT_FIRST_CHUNK))])
    real: dict[str, list] = {}  # type: ignore[type-arg]
    offset = None
    while True:  # every real passage with its vectors
        points, offset = shard.scroll(
            ScrollRequest(limit=512, offset=offset, filter=flt, with_payload=True, with_vector=True)
        )
        for p in points:
            real.setdefault(p.payload["paper_id"], []).append(p)
        if offset is None:
            break
    total = shard.count(CountRequest(exact=True, filter=flt))
    assert total == sum(map(len, real.values())), (total, sum(map(len, real.values())))
    sources = [sorted(ps, key=lambda p: p.payload["chunk_no"]) for _, ps in sorted(real.items())]
    ids = [pid for pid in await _paper_ids(index) if pid not in real]
    rng = random.Random(14)
    targets = rng.sample(ids, copies)
    added = 0
    for i, paper_id in enumerate(targets):
        paper = (await index.fetch_papers([paper_id]))[paper_id]
        chunks = []
        for p in sources[i % len(sources)]:
            vector = p.vector
            sparse = vector["bm25"]
            chunks.append(
                IndexedChunk(
                    point_id=point_id(paper_id, p.payload["chunk_no"]), paper=paper,
                    chunk_no=p.payload["chunk_no"],
                    text=p.payload["chunk_text"], dense=list(vector["dense"]),
                    sparse=SparseVec(list(sparse.indices), list(sparse.values)),
                    passage={k: p.payload.get(k) for k in ("section", "kind", "page", "anchor")},
                )
            )  # fmt: skip
        await index.upsert(chunks)
        added += len(chunks)
    await index.flush()
    return added


async def _paper_ids(index) -> list[str]:  # type: ignore[no-untyped-def]
    from qdrant_edge import FieldCondition, Filter, MatchValue, ScrollRequest

    ids, offset = [], None
    flt = Filter(must=[FieldCondition(key="chunk_no", match=MatchValue(0))])
    while True:
        points, offset = index.shard.scroll(
            ScrollRequest(limit=1024, offset=offset, filter=flt, with_payload=True, with_vector=False)
        )
        ids.extend(p.payload["paper_id"] for p in points)
        if offset is None:
            return ids


async def time_searches(search, texts: list[str]) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    timings: dict[str, list[float]] = {"search": [], "chunks": []}
    for q in texts[:10]:
        await search.search(q, limit=10)
        await search.search_chunks(q, limit=5)
    for q in texts:
        t0 = time.perf_counter()
        await search.search(q, limit=10)
        t1 = time.perf_counter()
        await search.search_chunks(q, limit=5)
        t2 = time.perf_counter()
        timings["search"].append(t1 - t0)
        timings["chunks"].append(t2 - t1)
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--copies", type=int, default=88, help="full texts added beyond the 12 real ones")
    args = parser.parse_args()

    from bot.core.config import Settings
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index.edge import EdgePaperIndex
    from bot.retrieval.search import build_search_service

    if not (EVAL_DIR / "qdrant").exists():
        sys.exit(f"run bench/fulltext_eval.py first (it builds {EVAL_DIR})")
    if not (BASELINE_DIR / "qdrant").exists():
        shutil.copytree(FULL_INDEX_DIR / "qdrant", BASELINE_DIR / "qdrant")
    if not (LATENCY_DIR / "qdrant").exists():
        shutil.copytree(EVAL_DIR / "qdrant", LATENCY_DIR / "qdrant")
        (LATENCY_DIR / "added").write_text("0")
    embedder = LocalEmbedder()
    rng = random.Random(7)
    texts = [" ".join(rng.sample(WORDS, 3)) for _ in range(args.queries)]
    for path in QUESTIONS:
        texts += [json.loads(line)["q"] for line in path.read_text().splitlines() if line.strip()]

    rows = []
    for name, directory in (
        ("10k papers, abstracts only", BASELINE_DIR),
        ("10k papers + 100 full texts", LATENCY_DIR),
    ):
        index = EdgePaperIndex(Path(directory) / "qdrant")
        await index.ensure_collection(embedder.dimensions)
        if directory == LATENCY_DIR and (LATENCY_DIR / "added").read_text() == "0":
            added = await add_copies(index, args.copies)
            (LATENCY_DIR / "added").write_text(str(added))
        from qdrant_edge import CountRequest

        points = index.shard.count(CountRequest(exact=True))
        search = build_search_service(Settings(), index, embedder)
        timings = await time_searches(search, texts)
        rows.append((name, await index.count_papers(), points, timings))
        await index.close()
    print(f"{len(texts)} queries ({args.queries} keyword queries + the paraphrase and full-text questions), "
          "query embedding included")  # fmt: skip
    print("| index | papers | points | /search p50 / p95 ms | answer retrieval (k = 5) p50 / p95 ms |")
    print("|---|---|---|---|---|")
    for name, papers, points, timings in rows:
        s, c = timings["search"], timings["chunks"]
        print(
            f"| {name} | {papers} | {points} | "
            f"{percentile(s, 0.5) * 1000:.1f} / {percentile(s, 0.95) * 1000:.1f} | "
            f"{percentile(c, 0.5) * 1000:.1f} / {percentile(c, 0.95) * 1000:.1f} |"
        )
    worst = max(percentile(t[k], 0.95) for *_, t in rows for k in t)
    print(f"p95 <= 100 ms: {'PASS' if worst <= 0.100 else 'FAIL'} (worst p95 {worst * 1000:.1f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
