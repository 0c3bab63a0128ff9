"""How should BM25 and dense rankings be fused? Tuned on a dev sample, checked on the test sample.

Collects, once, the top-50 BM25 and dense chunk lists (with scores) for the ai_summary queries of
two disjoint samples (test: seed 13, the one bench/retrieval_eval.py reports; dev: another seed),
then scores fusion functions offline: RRF with several k and weights, min-max convex combination,
and distribution-based (z-score) fusion. A fusion is only worth adopting if the setting picked on
dev also beats both single retrievers on test.

    .venv/bin/python bench/fusion_study.py [--queries 500] [--dev-seed 29]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections.abc import Callable

from common import open_full_index
from retrieval_eval import sample_queries

Ranked = list[tuple[str, float]]  # (paper id, score), best first, one entry per paper
Fusion = Callable[[Ranked, Ranked], list[str]]
DEPTH = 50


def per_paper(hits: list[tuple[str, float]]) -> Ranked:
    seen: dict[str, float] = {}
    for pid, score in hits:
        seen.setdefault(pid, score)
    return list(seen.items())


def rrf(k: float, w_sparse: float = 1.0, w_dense: float = 1.0) -> Fusion:
    def fuse(sparse: Ranked, dense: Ranked) -> list[str]:
        scores: dict[str, float] = {}
        for weight, ranking in ((w_sparse, sparse), (w_dense, dense)):
            for rank, (pid, _) in enumerate(ranking):
                scores[pid] = scores.get(pid, 0.0) + weight / (k + rank + 1)
        return sorted(scores, key=lambda p: -scores[p])

    return fuse


def _minmax(ranking: Ranked) -> dict[str, float]:
    values = [s for _, s in ranking]
    low, high = min(values), max(values)
    return {pid: (s - low) / (high - low) if high > low else 1.0 for pid, s in ranking}


def _zscore(ranking: Ranked) -> dict[str, float]:
    values = [s for _, s in ranking]
    mean, spread = statistics.fmean(values), statistics.pstdev(values) or 1.0
    low, high = mean - 3 * spread, mean + 3 * spread
    return {pid: (s - low) / (high - low) for pid, s in ranking}


def convex(alpha: float, norm: Callable[[Ranked], dict[str, float]]) -> Fusion:
    """alpha * sparse + (1 - alpha) * dense, each normalized; a paper missing from a list gets 0."""

    def fuse(sparse: Ranked, dense: Ranked) -> list[str]:
        s, d = norm(sparse), norm(dense)
        scores = {pid: alpha * s.get(pid, 0.0) + (1 - alpha) * d.get(pid, 0.0) for pid in {*s, *d}}
        return sorted(scores, key=lambda p: -scores[p])

    return fuse


def metrics(ranked_lists: list[list[str]], targets: list[str]) -> tuple[float, float]:
    r1 = sum(r[:1] == [t] for r, t in zip(ranked_lists, targets, strict=True)) / len(targets)
    mrr = 0.0
    for ranked, target in zip(ranked_lists, targets, strict=True):
        top = ranked[:10]
        mrr += 1 / (top.index(target) + 1) if target in top else 0.0
    return r1, mrr / len(targets)


async def collect(search, queries, search_filter) -> list[tuple[Ranked, Ranked, str]]:  # type: ignore[no-untyped-def]
    rows = []
    for text, target in queries:
        sparse = await search.search_chunks(text, limit=DEPTH, search_filter=search_filter, mode="sparse")
        dense = await search.search_chunks(text, limit=DEPTH, search_filter=search_filter, mode="dense")
        rows.append(
            (
                per_paper([(h.paper.paper_id, h.score) for h in sparse]),
                per_paper([(h.paper.paper_id, h.score) for h in dense]),
                target,
            )
        )
    return rows


def candidates() -> dict[str, Fusion]:
    out: dict[str, Fusion] = {}
    for k in (1, 2, 5, 10, 20, 60):
        for ws in (1.0, 1.5, 2.0, 3.0):
            out[f"rrf k={k} w_bm25={ws}"] = rrf(k, ws, 1.0)
    for alpha in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        out[f"minmax a={alpha}"] = convex(alpha, _minmax)
        out[f"zscore a={alpha}"] = convex(alpha, _zscore)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--test-seed", type=int, default=13)
    parser.add_argument("--dev-seed", type=int, default=29)
    args = parser.parse_args()

    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.index import SearchFilter
    from bot.retrieval.search import SearchService

    embedder = LocalEmbedder()
    index = await open_full_index(embedder)
    search = SearchService(index, embedder)
    hf_only = SearchFilter(sources=("hf",))
    test_q = sample_queries(args.queries, args.test_seed)
    test_ids = {t for _, t in test_q}
    dev_pool = sample_queries(args.queries * 2, args.dev_seed)
    dev_q = [q for q in dev_pool if q[1] not in test_ids][: args.queries]
    data = {"dev": await collect(search, dev_q, hf_only), "test": await collect(search, test_q, hf_only)}
    await index.close()

    results: dict[str, dict[str, tuple[float, float]]] = {}
    for split, rows in data.items():
        targets = [t for _, _, t in rows]
        results[split] = {
            "BM25 only": metrics([[p for p, _ in s] for s, _, _ in rows], targets),
            "dense only": metrics([[p for p, _ in d] for _, d, _ in rows], targets),
        }
        for name, fuse in candidates().items():
            results[split][name] = metrics([fuse(s, d) for s, d, _ in rows], targets)

    print(f"dev: {len(dev_q)} queries (seed {args.dev_seed}), test: {len(test_q)} (seed {args.test_seed})")
    print("| fusion | dev R@1 | dev MRR@10 | test R@1 | test MRR@10 |")
    print("|---|---|---|---|---|")
    for name in results["dev"]:
        (dr1, dmrr), (tr1, tmrr) = results["dev"][name], results["test"][name]
        print(f"| {name} | {dr1:.3f} | {dmrr:.4f} | {tr1:.3f} | {tmrr:.4f} |")
    fusions = [n for n in results["dev"] if n not in ("BM25 only", "dense only")]
    top = max(results["dev"][n] for n in fusions)
    print(f"\nbest on dev (R@1, MRR@10 = {top}): {[n for n in fusions if results['dev'][n] == top]}")
    from bot.retrieval.index.base import HYBRID_BM25_WEIGHT

    adopted = f"minmax a={HYBRID_BM25_WEIGHT}"
    r1, mrr = results["test"][adopted]
    print(f"adopted (middle of the dev plateau): {adopted}: test R@1 {r1:.3f}, MRR@10 {mrr:.4f}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
