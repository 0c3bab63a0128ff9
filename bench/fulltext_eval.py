"""Full-text answers (issue 14): is the evidence for a detail question in a passage the answer cites?

The index is the 10k-paper bench index (bench/out/full, copied, never changed) plus the full texts of
the 12 papers of ../shared/data/fulltext, each in the format an on-demand fetch would get first
(HTML, else the LaTeX e-print, else the PDF). Each question of bench/data/fulltext_questions.jsonl
names its paper in words and has evidence phrases from the paper's body; a question counts when
one of the answer's cited passages contains a phrase (lower-cased, punctuation as spaces).

In the same run, the baseline: plain BM25 over 120-word windows (stride 60) of the same 12 full
texts alone (no distractor papers), top 5 and top 3. Also: parse time and passages per paper for
every file set of each format, retrieval recall@k of the production search, and whether every cited
passage carries its section.

.venv/bin/python bench/fulltext_eval.py                       # extractive answers (no LLM)
.venv/bin/python bench/fulltext_eval.py --llm                 # + the default embedded model
.venv/bin/python bench/fulltext_eval.py --replay bench/out/fulltext_eval.jsonl   # re-check, no model

Every answer's record holds its whole trace (queries, excerpts shown, generations), so `--replay`
checks the recorded generations again with today's attribution and citation code, without the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from common import FULL_INDEX_DIR, OUT, ROOT, SHARED

FULLTEXT = SHARED / "fulltext"
QUESTIONS = ROOT / "bench" / "data" / "fulltext_questions.jsonl"
PREFERENCE = {"html": 0, "latex": 1, "pdf": 2}  # the on-demand order


def eval_index_dir() -> Path:
    """One index per passage size (FULLTEXT_CHUNK_TOKENS), so changing it never mixes two."""
    from bot.core.config import FulltextSettings

    return OUT / f"fulltext{FulltextSettings().chunk_tokens}"


def norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def contains(text: str, phrases: list[str]) -> bool:
    flat = norm(text)
    return any(norm(p) in flat for p in phrases)


def manifest() -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in (FULLTEXT / "MANIFEST.jsonl").read_text().splitlines() if line]


def source_path(entry: dict) -> Path:  # type: ignore[type-arg]
    return FULLTEXT / entry["slug"] / "latex" if entry["format"] == "latex" else FULLTEXT / entry["files"][0]


def parse_every_file_set() -> tuple[dict[str, object], list[dict]]:  # type: ignore[type-arg]
    """Each of the 16 file sets parsed and cut into passages: (documents by slug+format, rows)."""
    from bot.core.config import FulltextSettings, TokenizerSettings
    from bot.fulltext.chunking import document_passages
    from bot.fulltext.files import parse_path
    from bot.fulltext.latex import SourceLimits

    settings, tokenizer = FulltextSettings(), TokenizerSettings()
    documents: dict[str, object] = {}
    rows = []
    for entry in manifest():
        started = time.perf_counter()
        document = parse_path(source_path(entry), max_bytes=2**30, limits=SourceLimits())
        seconds = time.perf_counter() - started
        passages = document_passages(
            document,
            max_tokens=settings.chunk_tokens,
            overlap=settings.chunk_overlap,
            encoding=tokenizer.encoding,
        )
        documents[f"{entry['slug']}:{entry['format']}"] = document
        rows.append(
            {"slug": entry["slug"], "format": entry["format"], "seconds": seconds, "passages": len(passages),
             "sections": len(document.outline()), "bytes": entry["bytes"]}
        )  # fmt: skip
    return documents, rows


def bm25_windows(texts: dict[str, str], size: int = 120, stride: int = 60):  # type: ignore[no-untyped-def]
    windows: list[tuple[str, str]] = []
    for slug, text in texts.items():
        words = text.split()
        for start in range(0, max(1, len(words) - size + stride), stride):
            windows.append((slug, " ".join(words[start : start + size])))
    tokenized = [norm(w).split() for _, w in windows]
    df = Counter(t for tokens in tokenized for t in set(tokens))
    average = sum(map(len, tokenized)) / len(tokenized)

    def top(query: str, k: int) -> list[tuple[str, str]]:
        terms = norm(query).split()
        scores = []
        for i, tokens in enumerate(tokenized):
            tf = Counter(tokens)
            score = 0.0
            for term in terms:
                if term not in tf:
                    continue
                idf = math.log(1 + (len(tokenized) - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] * 2.5 / (tf[term] + 1.5 * (1 - 0.75 + 0.75 * len(tokens) / average))
            scores.append((score, i))
        scores.sort(reverse=True)
        return [windows[i] for _, i in scores[:k]]

    return top, len(windows)


def document_text(document) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(block.text for section in document.sections for block in section.blocks)


async def build_index(data_dir: Path, documents: dict, embedder, llm):  # type: ignore[no-untyped-def,type-arg]
    """The 10k bench index copied once, plus each paper's full text in its on-demand format."""
    from bot.app.services import build_services
    from bot.core.config import CoreSettings, Settings
    from bot.core.papers import Paper
    from bot.retrieval.index.edge import EdgePaperIndex

    if not (data_dir / "qdrant").exists():
        if not (FULL_INDEX_DIR / "qdrant").exists():
            sys.exit("build the 10k bench index first: .venv/bin/python bench/search_latency.py")
        shutil.copytree(FULL_INDEX_DIR / "qdrant", data_dir / "qdrant")
    settings = Settings(core=CoreSettings(data_dir=data_dir))
    index = EdgePaperIndex(data_dir / "qdrant")
    await index.ensure_collection(embedder.dimensions)
    services = build_services(settings, index=index, embedder=embedder, llm=llm)
    chosen: dict[str, dict] = {}  # type: ignore[type-arg]
    for entry in manifest():
        best = chosen.get(entry["slug"])
        if best is None or PREFERENCE[entry["format"]] < PREFERENCE[best["format"]]:
            chosen[entry["slug"]] = entry
    assert services.fulltext is not None
    indexed = {}
    for slug, entry in chosen.items():
        document = documents[f"{slug}:{entry['format']}"]
        indexed[slug] = (entry, document)
        if services.fulltext.status(entry["arxiv_id"]) is not None:
            continue
        paper = (await index.fetch_papers([entry["arxiv_id"]])).get(entry["arxiv_id"])
        if paper is None:  # not in the 10k: a paper record as arXiv would give it
            paper = Paper(
                paper_id=entry["arxiv_id"], arxiv_id=entry["arxiv_id"], title=entry["title"],
                abstract=document.abstract, authors=document.authors, sources=["arxiv"],
            )  # fmt: skip
            await services.ingestor.ingest([paper])
        result = await services.fulltext.add(document, source=str(source_path(entry)), paper=paper)
        print(f"indexed {slug}: {entry['format']}, {result.record.passages} passages", file=sys.stderr)
    await index.flush()
    return services, index, indexed


def answer_json(mode: str, q: dict, answer, hit: bool) -> dict:  # type: ignore[no-untyped-def,type-arg]
    from answer_eval import source_json

    return {
        "mode": mode, "id": q["id"], "q": q["q"], "split": q["split"], "hit": hit,
        "answer": answer.text, "fallback": answer.fallback, "cannot_answer": answer.cannot_answer,
        "seconds": round(answer.seconds, 2),
        "llm_calls": answer.llm_calls, "retrievals": answer.retrievals,
        "citations": [{"paper_id": c.paper_id, "section": c.section, "passage": c.passage}
                      for c in answer.citations],
        "trace": [
            {"query": step.query, "generation": step.generation,
             "sources": [source_json(s) for s in step.sources]}
            for step in answer.trace
        ],
    }  # fmt: skip


async def replay(path: Path, records_out: Path, split: str) -> None:
    """The recorded generations checked again by today's code (attribution, citations), no model."""
    from answer_eval import answer_from_trace

    from bot.core.config import LLMSettings, RagSettings
    from bot.rag.iter_retgen import AnswerService
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.search import SearchService

    questions = {q["id"]: q for q in map(json.loads, QUESTIONS.read_text().splitlines()) if q}
    embedder = LocalEmbedder()
    service = AnswerService(SearchService(None, embedder), None, RagSettings(), LLMSettings())  # type: ignore[arg-type]
    hits: dict[str, list[bool]] = {}
    with records_out.open("w") as out:
        for line in path.read_text().splitlines():  # noqa: ASYNC240 (a bench script)
            old = json.loads(line)
            q = questions[old["id"]]
            if split != "all" and q["split"] != split:
                continue
            if old["fallback"] or not old.get("trace"):
                hits.setdefault(old["mode"], []).append(old["hit"])
                out.write(line + "\n")
                continue
            result = answer_from_trace(q["q"], old["trace"])
            await service.conclude(result)
            result.llm_calls, result.retrievals = old["llm_calls"], old["retrievals"]
            result.seconds = old["seconds"]
            hit = any(contains(c.passage, q["evidence"]) for c in result.citations)
            if hit != old["hit"] or result.text != old["answer"]:
                change = f"{old['answer'][:90]!r} -> {result.text[:90]!r}"
                print(f"{q['id']} {old['hit']}->{hit}: {change}", file=sys.stderr)
            hits.setdefault(old["mode"], []).append(hit)
            out.write(json.dumps(answer_json(old["mode"], q, result, hit), ensure_ascii=False) + "\n")
    for mode, found in hits.items():
        print(f"| {mode} (replayed) | {pct(sum(found), len(found))} |")


def pct(part: int, whole: int) -> str:
    return f"{part}/{whole} = {part / whole:.2f}" if whole else "-"


def split_pct(found: list[bool], questions: list[dict]) -> str:  # type: ignore[type-arg]
    """All questions, then dev and test apart: "21/30 = 0.70 (dev 9/13, test 12/17)"."""
    parts = {
        split: [hit for hit, q in zip(found, questions, strict=True) if q["split"] == split]
        for split in ("dev", "test")
    }
    return (
        f"{pct(sum(found), len(found))} ("
        + ", ".join(f"{split} {sum(hits)}/{len(hits)}" for split, hits in parts.items())
        + ")"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", action="store_true", help="also answer with the default embedded model")
    parser.add_argument("--split", choices=["all", "dev", "test"], default="all")
    parser.add_argument("--k", type=int, default=5, help="passages retrieved per round (RAG_TOP_K)")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: bench/out/fulltext<tokens>")
    parser.add_argument("--replay", type=Path, default=None, help="re-check a records file's generations")
    parser.add_argument("--records", type=Path, default=OUT / "fulltext_eval.jsonl")
    args = parser.parse_args()
    if args.replay is not None:
        await replay(args.replay, args.records, args.split)
        return
    args.data_dir = args.data_dir or eval_index_dir()

    from bot.retrieval.embedding import LocalEmbedder

    documents, parse_rows = parse_every_file_set()
    print(
        "| format | file sets | parse s (median, max) | passages per paper (median, min-max) "
        "| sections (median) |"
    )
    print("|---|---|---|---|---|")
    for fmt in ("pdf", "latex", "html"):
        rows = [r for r in parse_rows if r["format"] == fmt]
        parse_s = [r["seconds"] for r in rows]
        passages = [r["passages"] for r in rows]
        print(
            f"| {fmt} | {len(rows)} | {statistics.median(parse_s):.2f}, {max(parse_s):.2f} | "
            f"{statistics.median(passages):.0f}, {min(passages)}-{max(passages)} | "
            f"{statistics.median([r['sections'] for r in rows]):.0f} |"
        )

    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    if args.split != "all":
        questions = [q for q in questions if q["split"] == args.split]
    embedder = LocalEmbedder()
    modes: list[tuple[str, object]] = [("extractive (no LLM)", None)]
    stack = None
    if args.llm:
        from contextlib import AsyncExitStack

        from embedded_llm import embedded_model

        from bot.core.config import DEFAULT_LOCAL_MODEL

        stack = AsyncExitStack()
        run = await stack.enter_async_context(embedded_model(DEFAULT_LOCAL_MODEL))
        modes.append((f"{DEFAULT_LOCAL_MODEL} (embedded)", run))
    services, index, indexed = await build_index(args.data_dir, documents, embedder, None)
    papers = await index.count_papers()

    texts = {slug: document_text(document) for slug, (_, document) in indexed.items()}
    top, windows = bm25_windows(texts)
    from bot.rag.diversity import cap_per_section
    from bot.rag.iter_retgen import SECTION_CAP_OVERFETCH

    results: dict[str, list[bool]] = {"bm25 top-5": [], "bm25 top-3": [], "search top-k": []}
    caps = (1, 2, 3)  # RAG_MAX_PER_SECTION candidates, on the question's own retrieval
    records = args.records.open("w")
    for q in questions:
        results["bm25 top-5"].append(any(contains(w, q["evidence"]) for _, w in top(q["q"], 5)))
        results["bm25 top-3"].append(any(contains(w, q["evidence"]) for _, w in top(q["q"], 3)))
        hits = await services.search.search_chunks(q["q"], limit=args.k * SECTION_CAP_OVERFETCH)
        results["search top-k"].append(any(contains(h.text, q["evidence"]) for h in hits[: args.k]))
        for cap in caps:
            capped = cap_per_section(hits, limit=args.k, per_section=cap)
            results.setdefault(f"cap {cap}", []).append(any(contains(h.text, q["evidence"]) for h in capped))

    from bot.rag.iter_retgen import AnswerService

    sectionless: dict[str, int] = {}
    seconds: dict[str, list[float]] = {}
    for name, run in modes:
        answers = (
            services.answers if run is None
            else AnswerService(services.search, run.client, services.settings.rag, run.settings)  # type: ignore[attr-defined]
        )  # fmt: skip
        results[name], seconds[name], sectionless[name] = [], [], 0
        for q in questions:
            answer = await answers.answer(q["q"], top_k=args.k)
            hit = any(contains(c.passage, q["evidence"]) for c in answer.citations)
            sectionless[name] += sum(1 for c in answer.citations if not c.section)
            results[name].append(hit)
            seconds[name].append(answer.seconds)
            records.write(json.dumps(answer_json(name, q, answer, hit), ensure_ascii=False) + "\n")
            records.flush()
    if stack is not None:
        await stack.aclose()
    await index.close()

    n = len(questions)
    print(
        f"\n{n} questions ({args.split}); index: {papers} papers, {len(indexed)} with full text; "
        f"k = {args.k}; BM25 baseline over {windows} windows of the 12 full texts alone"
    )
    print("| method | evidence found | |")
    print("|---|---|---|")
    print(f"| BM25, 120-word windows, top 5 (baseline) | {pct(sum(results['bm25 top-5']), n)} | retrieved |")
    print(f"| BM25, 120-word windows, top 3 (baseline) | {pct(sum(results['bm25 top-3']), n)} | retrieved |")
    searched = split_pct(results["search top-k"], questions)
    print(f"| paperbot search, top {args.k} passages | {searched} | retrieved |")
    for cap in caps:
        print(
            f"| paperbot search, top {args.k} passages, at most {cap} a section | "
            f"{split_pct(results[f'cap {cap}'], questions)} | retrieved (RAG_MAX_PER_SECTION={cap}) |"
        )
    for name, _ in modes:
        median = statistics.median(seconds[name])
        print(
            f"| paperbot answer, {name} | {split_pct(results[name], questions)} | in a cited passage; "
            f"citations without a section: {sectionless[name]}; median {median:.1f} s |"
        )


if __name__ == "__main__":
    asyncio.run(main())
