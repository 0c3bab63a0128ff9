"""Answer quality of Iter-RetGen over the 48 seed papers, for T = 1, 2, 3 in one run, with the local LLM.

Questions: bench/data/seed_questions.jsonl (single- and multi-paper; expected papers by title).
Reports per T: source recall (expected papers among the final Sources), citation precision (cited [n]
that are expected papers), LLM calls, tokens and seconds per question; plus the non-LLM overhead per
iteration (retrieval + prompt assembly) measured with a zero-latency scripted LLM at 10k papers.

    .venv/bin/python bench/answer_eval.py [--iterations 1,2,3] [--limit N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from pathlib import Path

from common import ROOT, SHARED, open_full_index

QUESTIONS = ROOT / "bench" / "data" / "seed_questions.jsonl"


async def build_seed_index(embedder, path: Path):  # type: ignore[no-untyped-def]
    from bot.core.config import TokenizerSettings
    from bot.ingest.pipeline import Ingestor
    from bot.ingest.sources import parse_path
    from bot.retrieval.index.edge import EdgePaperIndex

    index = EdgePaperIndex(path)
    await index.ensure_collection(embedder.dimensions)
    papers = parse_path(SHARED / "seed" / "000_c48a4a4dc127d178.txt").papers
    await Ingestor(index, embedder, TokenizerSettings()).ingest(papers)
    return index


async def quality(args: argparse.Namespace, embedder) -> dict[int, dict[str, float]]:  # type: ignore[no-untyped-def]
    from bot.core.config import LLMSettings, RagSettings
    from bot.llm import llm_session
    from bot.rag.iter_retgen import AnswerService
    from bot.retrieval.search import SearchService

    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()][
        : args.limit
    ]
    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index = await build_seed_index(embedder, Path(tmp) / "qdrant")
        llm_settings = LLMSettings()
        async with llm_session(llm_settings, ROOT / "data" / "models") as client:
            service = AnswerService(SearchService(index, embedder), client, RagSettings(), llm_settings)
            for t in args.iterations:
                recall, precision_hits, cited_total = [], 0, 0
                calls, tokens, seconds, fallbacks, cannot = [], [], [], 0, 0
                for item in questions:
                    answer = await service.answer(item["q"], iterations=t)
                    expected = set(item["expected"])
                    final_titles = (
                        {s.paper.title for s in answer.trace[-1].sources} if answer.trace else set()
                    )
                    recall.append(len(expected & final_titles) / len(expected))
                    if answer.cited:
                        cited_total += len(answer.citations)
                        precision_hits += sum(c.title in expected for c in answer.citations)
                    calls.append(answer.llm_calls)
                    tokens.append(answer.prompt_tokens + answer.completion_tokens)
                    seconds.append(answer.seconds)
                    fallbacks += answer.fallback
                    cannot += answer.cannot_answer
                    if args.verbose:
                        missing = sorted(title[:40] for title in expected - final_titles)
                        print(
                            f"T={t} {item['q'][:60]!r} -> {answer.text[:100]!r} "
                            f"cites={[c.n for c in answer.citations]} missing={missing}"
                        )
                rows[t] = {
                    "source_recall": statistics.mean(recall),
                    "citation_precision": precision_hits / cited_total if cited_total else float("nan"),
                    "cited_answers": cited_total,
                    "llm_calls": statistics.mean(calls),
                    "tokens": statistics.mean(tokens),
                    "seconds": statistics.mean(seconds),
                    "fallbacks": fallbacks,
                    "cannot_answer": cannot,
                }
        await index.close()
    return rows


def realistic_draft(body: dict) -> str:  # type: ignore[type-arg]
    """What a model answering from the sources writes: ~120 tokens of reasoning and an answer line
    built from the first excerpt, so iteration 2 embeds a query as long as real ones."""
    prompt = str(body.get("prompt") or body.get("messages", [{}])[-1].get("content", ""))
    excerpt = prompt.rsplit("<<<EXCERPTS", 1)[-1].split("EXCERPTS>>>", 1)[0]
    words = " ".join(excerpt.split("\n", 2)[-1].split()).split(" ")
    return f"Excerpt [1] says that {' '.join(words[:70])} [1].\nAnswer: {' '.join(words[70:95])} [1]."


async def overhead(embedder) -> tuple[list[tuple[str, str, float, float]], int]:  # type: ignore[no-untyped-def]
    """Retrieval + prompt assembly per iteration at 10k papers, with a zero-latency scripted LLM:
    rows of (query runtime, draft, median s, max s) for ONNX and torch query embeddings and short
    and realistic drafts, all in one run; and the number of papers."""
    import sys

    sys.path.insert(0, str(ROOT))
    from bot.core.config import LLMSettings, RagSettings
    from bot.llm.client import LLMClient
    from bot.rag.iter_retgen import AnswerService
    from bot.retrieval.search import SearchService
    from tests.support.scripted_llm import ScriptedLLMServer

    index = await open_full_index(embedder)
    papers = await index.count_papers()
    questions = [json.loads(line)["q"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    drafts = {"short": lambda body: "Reasoning: r [1]\nAnswer: a [1]", "realistic": realistic_draft}
    onnx_encoder = embedder.query_encoder
    rows = []
    for draft_name, responder in drafts.items():
        async with ScriptedLLMServer(responder=responder) as server:
            client = LLMClient(
                base_url=server.base_url,
                api_key=None,
                model="zero",
                api_mode="completions",
                timeout_s=10,
                max_retries=0,
            )
            llm_settings = LLMSettings(OPENAI_BASE_URL=server.base_url)
            service = AnswerService(SearchService(index, embedder), client, RagSettings(), llm_settings)
            for runtime, encoder in (("onnx", onnx_encoder), ("torch", None)):
                if runtime == "onnx" and encoder is None:
                    continue  # ONNX unavailable here; the log says why
                embedder.query_encoder = encoder
                await service.answer(questions[0])  # warm-up
                per_iteration = []
                for q in questions:
                    answer = await service.answer(q, iterations=2)
                    per_iteration.append((answer.seconds - answer.llm_seconds) / answer.iterations)
                rows.append((runtime, draft_name, statistics.median(per_iteration), max(per_iteration)))
            await client.aclose()
    embedder.query_encoder = onnx_encoder
    await index.close()
    return rows, papers


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()

    from bot.retrieval.embedding import LocalEmbedder

    embedder = LocalEmbedder()
    rows_overhead, papers = await overhead(embedder)
    print(
        f"non-LLM overhead per iteration at {papers} papers (retrieval + prompt assembly, T=2, "
        "zero-latency scripted LLM), per query-embedding runtime and draft length:"
    )
    print("| query runtime | draft | median ms | max ms |")
    print("|---|---|---|---|")
    for runtime, draft, median_s, worst_s in rows_overhead:
        print(f"| {runtime} | {draft} | {median_s * 1000:.1f} | {worst_s * 1000:.1f} |")
    default = {(r, d): m for r, d, m, _ in rows_overhead}
    for draft in ("short", "realistic"):
        median_s = default.get(("onnx", draft), default[("torch", draft)])
        print(
            f"default runtime, {draft} draft: median {median_s * 1000:.1f} ms (target <= 50 ms): "
            f"{'PASS' if median_s <= 0.050 else 'FAIL'}"
        )
    if args.skip_quality:
        return
    rows = await quality(args, embedder)
    print(
        "| T | source recall | citation precision | cited | LLM calls/q | tokens/q | s/q | fallbacks "
        "| can't answer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for t, r in rows.items():
        print(
            f"| {t} | {r['source_recall']:.3f} | {r['citation_precision']:.3f} | {int(r['cited_answers'])} | "
            f"{r['llm_calls']:.1f} | {r['tokens']:.0f} | {r['seconds']:.1f} | {int(r['fallbacks'])} | "
            f"{int(r['cannot_answer'])} |"
        )
    if 1 in rows and 2 in rows:
        ok = rows[2]["source_recall"] >= rows[1]["source_recall"]
        print(f"T=2 source recall >= T=1: {'PASS' if ok else 'FAIL'}")
    print(json.dumps(rows))


if __name__ == "__main__":
    asyncio.run(main())
