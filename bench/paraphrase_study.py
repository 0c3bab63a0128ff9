"""Retrieval levers for questions worded as people ask them (issue 13), each in its own row.

Question sets (all over the bench corpus: 9,577 HF papers + three arXiv listings + the seed page):
  paraphrase dev / test — bench/data/paraphrase_questions.jsonl, 52 + 52 hand-written questions;
  ai_summary dev / test — 500 HF `ai_summary` queries each (test: seed 13, the sample
  bench/retrieval_eval.py reports; dev: seed 29 without the test papers, as bench/fusion_study.py),
  searched among HF papers only, as retrieval_eval does. The ai_summary sets are the no-regression check.
  `--ai-heldout`: also every other HF `ai_summary` (none of the test, the 500 and 1,500 dev samples or the
  paraphrase questions' papers, so nothing any choice was made on), with the shipped fusion's wins and
  losses against the fusion used before, query by query.

Levers (choose on the dev columns, read the test columns): query cleaning, field-aware BM25 (title
weight), fusion (fixed convex, RRF, confidence-adaptive), pseudo-relevance feedback (dense Rocchio,
BM25 expansion), the learned query adapter (bench/train_query_adapter.py), reranking the top 20 by title
similarity. Scores come from the in-memory corpus (bench/retrieval_corpus.py: the cached MiniLM
vectors and an exact copy of the index's BM25); `--check-index` first compares its BM25 and dense
top-10 with the real bench index's on the paraphrase questions.

    nice -n 10 .venv/bin/python bench/paraphrase_study.py [--check-index] [--adapter PATH] [--ai-heldout]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import HF_FILES, OUT
from embedding_cache import CachedEmbedder
from retrieval_corpus import (
    Bm25Index,
    Corpus,
    Question,
    ai_summary_queries,
    load_corpus,
    paraphrase_questions,
)

DEPTH = 50  # each ranking's depth before fusion, as the index's HYBRID_DEPTH
SHIPPED, BEFORE = "clean + adaptive z p=1.0", "paperbot before: convex, BM25 0.7"
Ranking = tuple[np.ndarray, np.ndarray]  # (paper rows, scores), best first
Fusion = Callable[[Ranking, Ranking], list[int]]


def top(scores: np.ndarray, k: int = DEPTH, *, positive: bool = False) -> Ranking:
    scores = scores.copy()
    if positive:  # a sparse search returns only papers sharing a term with the query
        scores[scores <= 0] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k == 0:
        return np.array([], int), np.array([], np.float32)
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return order, scores[order]


def minmax(r: Ranking) -> dict[int, float]:
    rows, s = r
    if len(s) == 0:
        return {}
    span = float(s[0] - s[-1])
    return {int(p): (float(v) - float(s[-1])) / span if span else 1.0 for p, v in zip(rows, s, strict=True)}


def convex(alpha: float) -> Fusion:
    from bot.retrieval.index.base import fused_ranking

    def fuse(sparse: Ranking, dense: Ranking) -> list[int]:
        pairs = fused_ranking(
            list(zip(dense[0].tolist(), dense[1].tolist(), strict=True)),
            list(zip(sparse[0].tolist(), sparse[1].tolist(), strict=True)),
            limit=DEPTH, fusion="convex", bm25_weight=alpha,
        )  # fmt: skip
        return [p for p, _ in pairs]

    return fuse


def rrf(k: int) -> Fusion:
    from bot.retrieval.index.base import fused_ranking

    def fuse(sparse: Ranking, dense: Ranking) -> list[int]:
        pairs = fused_ranking(
            list(zip(dense[0].tolist(), dense[1].tolist(), strict=True)),
            list(zip(sparse[0].tolist(), sparse[1].tolist(), strict=True)),
            limit=DEPTH, fusion="rrf", bm25_weight=0.5, rrf_k=k,
        )  # fmt: skip
        return [p for p, _ in pairs]

    return fuse


def gap(r: Ranking) -> float:
    """How clearly a ranking's first result leads: (s1 − s2) / (s1 − s_last), in [0, 1]."""
    s = r[1]
    if len(s) < 2 or s[0] == s[-1]:
        return 0.0
    return float((s[0] - s[1]) / (s[0] - s[-1]))


def adaptive_gap(alpha0: float, gamma: float) -> Fusion:
    """Convex fusion whose BM25 weight moves toward the ranking whose leader is clearer."""

    def fuse(sparse: Ranking, dense: Ranking) -> list[int]:
        alpha = min(1.0, max(0.0, alpha0 + gamma * (gap(sparse) - gap(dense))))
        return convex(alpha)(sparse, dense)

    return fuse


def zlead(r: Ranking) -> float:
    s = r[1]
    if len(s) < 3:
        return 0.0
    spread = float(np.std(s[1:])) or 1e-6
    return max(0.0, float((s[0] - np.mean(s[1:])) / spread))


def adaptive_z(power: float) -> Fusion:
    """BM25 weight = z^p / (z^p + z_dense^p), z = how many deviations the leader stands above the rest."""

    def fuse(sparse: Ranking, dense: Ranking) -> list[int]:
        zs, zd = zlead(sparse) ** power, zlead(dense) ** power
        alpha = zs / (zs + zd) if zs + zd else 0.5
        return convex(alpha)(sparse, dense)

    return fuse


@dataclass
class Variant:
    name: str
    clean: str = "none"  # none | bm25 | both
    title_weight: int = 1
    adapter: bool = False
    fusion: Fusion | None = None  # None: mode decides
    mode: str = "hybrid"  # hybrid | sparse | dense
    dense_prf: tuple[int, float] | None = None  # (top k, beta)
    bm25_prf: tuple[int, int, float] | None = None  # (top k, terms, weight)
    title_rerank: float = 0.0  # weight of the query-title cosine on the top 20


class Study:
    def __init__(self, corpus: Corpus, embedder: CachedEmbedder, adapter: np.ndarray | None) -> None:
        self.corpus = corpus
        self.embedder = embedder
        self.adapter = adapter
        self.bm25: dict[int, Bm25Index] = {}
        self.first_rows = corpus.first_chunk_rows()
        self.title_vectors: np.ndarray | None = None

    def bm25_index(self, title_weight: int) -> Bm25Index:
        if title_weight not in self.bm25:
            texts = self.corpus.chunk_texts
            if title_weight > 1:
                titles = [self.corpus.papers[p].title for p in self.corpus.chunk_paper]
                texts = [
                    f"{(t + chr(10)) * (title_weight - 1)}{x}" for t, x in zip(titles, texts, strict=True)
                ]
            self.bm25[title_weight] = Bm25Index.build(texts)
        return self.bm25[title_weight]

    def query_vector(self, text: str, adapter: bool) -> np.ndarray:
        q = self.embedder.encode_queries([text])[0]
        if adapter and self.adapter is not None:
            q = q @ self.adapter
            q = q / np.linalg.norm(q)
        return q

    def rank(self, v: Variant, text: str, hf_only: bool) -> list[int]:
        from bot.retrieval.query_text import clean_question

        corpus = self.corpus
        mask = ~corpus.hf if hf_only else None
        bm25_text = clean_question(text) if v.clean in ("bm25", "both") else text
        dense_text = clean_question(text) if v.clean == "both" else text
        index = self.bm25_index(v.title_weight)
        weights = index.query_weights(bm25_text)

        def sparse_ranking(w: dict[int, float]) -> Ranking:
            s = corpus.per_paper(index.scores(w))
            if mask is not None:
                s[mask] = -np.inf
            return top(s, positive=True)

        def dense_ranking(q: np.ndarray) -> Ranking:
            s = corpus.per_paper(corpus.dense @ q)
            if mask is not None:
                s[mask] = -np.inf
            return top(s)

        q = self.query_vector(dense_text, v.adapter)
        sparse = sparse_ranking(weights)
        dense = dense_ranking(q)
        fuse = v.fusion or convex(0.7)
        if v.mode == "sparse":
            ranked = sparse[0].tolist()
        elif v.mode == "dense":
            ranked = dense[0].tolist()
        else:
            ranked = fuse(sparse, dense)
        if v.dense_prf:
            k, beta = v.dense_prf
            feedback = corpus.dense[self.first_rows[ranked[:k]]].mean(axis=0)
            q2 = q + beta * feedback
            dense = dense_ranking(q2 / np.linalg.norm(q2))
            ranked = fuse(sparse, dense) if v.mode == "hybrid" else dense[0].tolist()
        if v.bm25_prf:
            k, n_terms, weight = v.bm25_prf
            rows = index.term_rows(self.first_rows[ranked[:k]].tolist())
            mass = np.asarray(rows.sum(axis=0)).ravel() * index.idf
            by_column = {c: t for t, c in index.columns.items()}
            known = {index.columns.get(t) for t in weights}
            picked = [c for c in np.argsort(-mass)[: n_terms + len(known)] if c not in known][:n_terms]
            if picked and mass[picked[0]] > 0:
                expanded = dict(weights)
                for c in picked:
                    expanded[by_column[int(c)]] = weight * float(mass[c] / mass[picked[0]])
                sparse = sparse_ranking(expanded)
                ranked = fuse(sparse, dense) if v.mode == "hybrid" else sparse[0].tolist()
        if v.title_rerank and self.title_vectors is not None:
            head = ranked[:20]
            base = {p: 1.0 - i / 20 for i, p in enumerate(head)}  # the fused order, as a rank score
            sims = self.title_vectors[head] @ q
            low, high = float(sims.min()), float(sims.max())
            rescored = {
                p: base[p] + v.title_rerank * ((s - low) / (high - low) if high > low else 0.0)
                for p, s in zip(head, sims.tolist(), strict=True)
            }
            ranked = sorted(head, key=lambda p: -rescored[p]) + ranked[20:]
        return ranked


def ai_summary_heldout(corpus: Corpus, exclude: frozenset[str]) -> list[Question]:
    """Every HF paper's `ai_summary` whose paper is not in `exclude`, in paper-id order."""
    from bot.ingest.sources import parse_path

    candidates = {p.paper_id: p.ai_summary for f in HF_FILES for p in parse_path(f).papers if p.ai_summary}
    return [
        (text, frozenset([corpus.by_id[pid]]))
        for pid, text in sorted(candidates.items())
        if pid not in exclude
    ]


def first_hit(ranked: list[int], expected: frozenset[int]) -> int:
    """Rank (1–10) of the first expected paper in the top 10; 11 when none is there."""
    return next((i for i, p in enumerate(ranked[:10], 1) if p in expected), 11)


def metrics(ranked_lists: list[list[int]], questions: list[Question]) -> dict[str, float]:
    r1 = r5 = mrr = 0.0
    for ranked, (_, expected) in zip(ranked_lists, questions, strict=True):
        top10 = ranked[:10]
        r1 += float(bool(expected & set(top10[:1])))
        r5 += len(expected & set(top10[:5])) / min(5, len(expected))
        first = next((i for i, p in enumerate(top10, 1) if p in expected), None)
        mrr += 1 / first if first else 0.0
    n = len(questions)
    return {"r1": r1 / n, "r5": r5 / n, "mrr": mrr / n}


def variants(adapter: bool) -> list[Variant]:
    out = [
        Variant("BM25 only", mode="sparse"),
        Variant("dense only", mode="dense"),
        Variant("RRF k=60", fusion=rrf(60)),
        Variant("RRF k=2 (QDRANT_HYBRID_FUSION=rrf)", fusion=rrf(2)),
        Variant("paperbot before: convex, BM25 0.7", fusion=convex(0.7)),
    ]
    for alpha in (0.3, 0.5):
        out.append(Variant(f"convex, BM25 {alpha}", fusion=convex(alpha)))
    out += [
        Variant("clean: BM25 only", mode="sparse", clean="bm25"),
        Variant("clean: dense only", mode="dense", clean="both"),
        Variant("clean BM25 query; convex 0.7", clean="bm25"),
        Variant("clean both queries; convex 0.7", clean="both"),
    ]
    for w in (2, 3):
        out.append(Variant(f"title ×{w}: BM25 only", mode="sparse", title_weight=w))
        out.append(Variant(f"title ×{w}; convex 0.7", title_weight=w))
    for alpha0 in (0.3, 0.5, 0.7):
        for gamma in (0.5, 1.0, 2.0):
            out.append(Variant(f"adaptive gap a0={alpha0} g={gamma}", fusion=adaptive_gap(alpha0, gamma)))
    for power in (1.0, 2.0, 4.0):
        out.append(Variant(f"adaptive z p={power}", fusion=adaptive_z(power)))
    for k, beta in ((3, 0.3), (5, 0.5)):
        out.append(Variant(f"dense PRF k={k} b={beta}; convex 0.7", dense_prf=(k, beta)))
    for k, n, w in ((3, 10, 0.3), (5, 20, 0.5)):
        out.append(Variant(f"BM25 PRF k={k} t={n} w={w}; convex 0.7", bm25_prf=(k, n, w)))
    for mu in (0.2, 0.5):
        out.append(Variant(f"rerank top 20 by title cosine mu={mu}; convex 0.7", title_rerank=mu))
    # Query cleaning combined with the other fusions (cleaning is the one lever that moved dev alone).
    out += [
        Variant("clean + convex 0.5", clean="bm25", fusion=convex(0.5)),
        Variant("clean + RRF k=60", clean="bm25", fusion=rrf(60)),
        Variant("clean + adaptive z p=1.0", clean="bm25", fusion=adaptive_z(1.0)),
        Variant("clean + adaptive z p=2.0", clean="bm25", fusion=adaptive_z(2.0)),
    ]
    for alpha0 in (0.5, 0.6, 0.7):
        for gamma in (0.5, 1.0):
            out.append(Variant(f"clean + adaptive gap a0={alpha0} g={gamma}", clean="bm25",
                               fusion=adaptive_gap(alpha0, gamma)))  # fmt: skip
    out += [
        Variant("clean + dense PRF k=3 b=0.3; convex 0.7", clean="bm25", dense_prf=(3, 0.3)),
        Variant("clean + rerank top 20 by title cosine mu=0.2; convex 0.7", clean="bm25", title_rerank=0.2),
    ]
    if adapter:
        for clean, tag in (("none", "adapter"), ("bm25", "adapter + clean")):
            out += [
                Variant(f"{tag}: dense only", mode="dense", adapter=True, clean=clean),
                Variant(f"{tag}; convex 0.7", adapter=True, clean=clean),
                Variant(f"{tag}; convex 0.5", adapter=True, clean=clean, fusion=convex(0.5)),
                Variant(f"{tag}; RRF k=60", adapter=True, clean=clean, fusion=rrf(60)),
            ]
            for alpha0 in (0.5, 0.7):
                for gamma in (0.5, 1.0, 2.0):
                    out.append(
                        Variant(f"{tag}; adaptive gap a0={alpha0} g={gamma}", adapter=True, clean=clean,
                                fusion=adaptive_gap(alpha0, gamma))
                    )  # fmt: skip
            out.append(Variant(f"{tag}; adaptive z p=2.0", adapter=True, clean=clean, fusion=adaptive_z(2.0)))
    return out


async def check_index(study: Study, questions: list[Question]) -> None:
    """The in-memory BM25 and dense rankings against the real bench index's, top 10."""
    from common import open_full_index

    from bot.retrieval.search import SearchService

    index = await open_full_index(study.embedder)
    search = SearchService(index, study.embedder)
    agree = {"sparse": 0, "dense": 0}
    for text, _ in questions:
        for mode in agree:
            hits = await search.search(text, limit=10, mode=mode)  # type: ignore[arg-type]
            real = [h.paper.paper_id for h in hits.hits]
            mine = study.rank(Variant(mode, mode=mode), text, hf_only=False)
            mine_ids = [study.corpus.papers[p].paper_id for p in mine[: len(real)]]
            agree[mode] += real[:3] == mine_ids[:3]
    await index.close()
    print(f"index check, same top 3 as the bench index on {len(questions)} questions: {agree}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--adapter", type=Path, default=OUT / "query_adapter.npy")
    parser.add_argument("--check-index", action="store_true")
    parser.add_argument("--only", default="", help="run only variants whose name contains this")
    parser.add_argument("--names", default="", help="run only these variants (names separated by '|')")
    parser.add_argument(
        "--ai-dev-queries", type=int, default=0,
        help="a larger ai_summary dev sample (papers not in the test sample) to break ties on dev",
    )  # fmt: skip
    parser.add_argument(
        "--ai-heldout", action="store_true",
        help="also every ai_summary outside the test, both dev samples and the paraphrase questions' papers",
    )  # fmt: skip
    args = parser.parse_args()

    from bot.retrieval.embedding import LocalEmbedder

    embedder = CachedEmbedder(LocalEmbedder())
    corpus = await load_corpus(embedder)
    adapter = np.load(args.adapter) if args.adapter.exists() else None
    study = Study(corpus, embedder, adapter)
    sets = {
        "para dev": (paraphrase_questions(corpus, "dev"), False),
        "para test": (paraphrase_questions(corpus, "test"), False),
    }
    test = ai_summary_queries(corpus, args.queries, 13)
    test_ids = frozenset(corpus.papers[next(iter(e))].paper_id for _, e in test)
    dev_size = args.ai_dev_queries or args.queries
    sets["ai_summary dev"] = (ai_summary_queries(corpus, dev_size, 29, exclude=test_ids), True)
    sets["ai_summary test"] = (test, True)
    from bot.retrieval.query_text import clean_question

    texts = [t for qs, _ in sets.values() for t, _ in qs]
    embedder.encode_queries([*texts, *(clean_question(t) for t in texts)])
    if args.ai_heldout:
        used = set(test_ids)
        for size in {args.queries, 1500, dev_size}:  # the dev samples the choices were made on
            used |= {
                corpus.papers[next(iter(e))].paper_id
                for _, e in ai_summary_queries(corpus, size, 29, test_ids)
            }
        used |= {corpus.papers[r].paper_id for _, e in sets["para dev"][0] + sets["para test"][0] for r in e}
        sets["ai_summary held-out"] = (ai_summary_heldout(corpus, frozenset(used)), True)
        embedder.encode_queries([t for t, _ in sets["ai_summary held-out"][0]])  # dense reads them uncleaned
    study.title_vectors = embedder.encode_queries([p.title for p in corpus.papers])
    if args.check_index:
        await check_index(study, sets["para dev"][0] + sets["para test"][0])

    print(
        "| lever | para dev R@1 | para dev MRR@10 | para test R@1 | para test R@5 | para test MRR@10 | "
        "ai_summary dev R@1 | ai_summary dev MRR@10 | ai_summary test R@1 | ai_summary test MRR@10 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    results: dict[str, dict[str, dict[str, float]]] = {}
    hits: dict[str, list[int]] = {}  # variant → first-hit rank per held-out query
    for v in variants(adapter is not None):
        if args.only and args.only not in v.name:
            continue
        if args.names and v.name not in args.names.split("|"):
            continue
        started = time.perf_counter()
        results[v.name] = {}
        for name, (qs, hf_only) in sets.items():
            ranked = [study.rank(v, t, hf_only) for t, _ in qs]
            results[v.name][name] = metrics(ranked, qs)
            if name == "ai_summary held-out":
                hits[v.name] = [first_hit(r, e) for r, (_, e) in zip(ranked, qs, strict=True)]
        row = results[v.name]
        print(
            f"| {v.name} | {row['para dev']['r1']:.3f} | {row['para dev']['mrr']:.3f} | "
            f"{row['para test']['r1']:.3f} | {row['para test']['r5']:.3f} | {row['para test']['mrr']:.3f} | "
            f"{row['ai_summary dev']['r1']:.3f} | {row['ai_summary dev']['mrr']:.4f} | "
            f"{row['ai_summary test']['r1']:.3f} | {row['ai_summary test']['mrr']:.4f} |",
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    embedder.save()
    sizes = {name: len(qs) for name, (qs, _) in sets.items()}
    print(f"papers: {len(corpus.papers)}, chunks: {len(corpus.chunk_texts)}; questions: {sizes}")
    if args.ai_heldout:
        print("\n| fusion | ai_summary held-out queries | R@1 | R@5 | MRR@10 |\n|---|---|---|---|---|")
        n_heldout = sizes["ai_summary held-out"]
        for v_name, row in results.items():
            m = row["ai_summary held-out"]
            print(f"| {v_name} | {n_heldout} | {m['r1']:.4f} | {m['r5']:.4f} | {m['mrr']:.4f} |")
        if SHIPPED in hits and BEFORE in hits:
            pairs = list(zip(hits[SHIPPED], hits[BEFORE], strict=True))
            better = [i for i, (a, b) in enumerate(pairs) if a < b]
            worse = [i for i, (a, b) in enumerate(pairs) if a > b]
            won, lost = sum(pairs[i][0] == 1 for i in better), sum(pairs[i][1] == 1 for i in worse)
            print(
                f"{SHIPPED} vs {BEFORE}: expected paper ranked higher on {len(better)}, "
                f"lower on {len(worse)} of {len(pairs)} queries (at rank 1: won {won}, lost {lost}; "
                "rank 11 = not in the top 10)"
            )
            qs = sets["ai_summary held-out"][0]
            for i in better + worse:
                paper = corpus.papers[next(iter(qs[i][1]))].paper_id
                print(f"  {paper}: shipped rank {pairs[i][0]}, before rank {pairs[i][1]}")
    OUT.mkdir(parents=True, exist_ok=True)
    name = "paraphrase_study" + (f"-{args.only}" if args.only else "") + ("-names" if args.names else "")
    name += f"-aidev{args.ai_dev_queries}" if args.ai_dev_queries else ""
    name += "-heldout" if args.ai_heldout else ""
    (OUT / f"{name.replace(' ', '_')}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
