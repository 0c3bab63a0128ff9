"""Answer quality of Iter-RetGen over the 48 seed papers, per embedded model, in one run (issue 12).

Questions (hand-written, bench/data/, see bench/README.md):
- seed_questions.jsonl: answerable questions, single- and multi-paper, expected papers by title;
- unanswerable_questions.jsonl: off-topic questions and on-topic details no abstract holds, each with
  the reason;
each marked "split": "dev" (choose settings on it), "test" (held out; report on it) or "test2" (a
second held-out split, written on 2026-12-08 before any run, since "test" had been read too often).

Each model in --models is served by the project's own path (`bot.llm.llm_session` with
`LLMSettings(LOCAL_LLM_MODEL=name)` and its recommended limits), one model at a time, and answers
every question through `AnswerService.answer(question, iterations=T)`. Reported per model and T:
- fallback rate: answers that are the extractive fallback (all questions);
- expected paper cited: answerable questions whose final citations include an expected paper;
- grounded sentences: answer sentences (claims) carrying a citation whose excerpt supports them,
  by the project's own check (`bot.rag.attribution.score_sentences` / `SentenceSupport.supported_by`),
  over generated answers (fallbacks quote the excerpts and are left out); beside it the same share by
  an independent, stricter check (>= 0.5 of the sentence's content words *other than the question's*
  found in a cited excerpt, so restating the question grounds nothing), and the share of the
  model's own answer sentences, before attribution dropped any, that some shown excerpt supports;
- closest matches: yes/no questions the model did not answer from the excerpts, answered with the
  closest passage quoted (`bot.rag.extractive.closest_match`); beside expected paper cited, the share
  cited by the model's own answers alone; on the unanswerable set a closest match is no refusal;
  closest added: questions asking for several papers whose answer got the closest passage quoted
  after it (its paper not named by the model); the model's-own share leaves that passage out;
- refusals on the unanswerable set: the fixed reply, or `cannot_answer`;
- false refusals: answerable questions answered with the fixed reply;
- seconds per answer (median, p90), LLM calls and retrievals per answer (T each), tokens;
- source recall (expected papers among the final Sources) and citation precision, as before;
- peak RSS of the llama.cpp server process (VmHWM of /proc/<pid>/status at the end of its run).
Plus, unless --skip-overhead, the non-LLM overhead per iteration (retrieval + prompt assembly)
measured with a zero-latency scripted LLM over the 10k-paper bench index.

    .venv/bin/python bench/answer_eval.py --skip-overhead --split test \
        --models qwen2.5-coder-1.5b-instruct,qwen2.5-coder-0.5b-instruct,gemma-3-270m
    .venv/bin/python bench/answer_eval.py --skip-quality          # the overhead table only

Per-question records go to --records (default bench/out/answer_eval_records.jsonl).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import OUT, ROOT, SHARED, open_full_index, percentile
from embedded_llm import DEFAULT_MODELS, MODELS_DIR, embedded_model, parse_models

QUESTIONS = ROOT / "bench" / "data" / "seed_questions.jsonl"
UNANSWERABLE = ROOT / "bench" / "data" / "unanswerable_questions.jsonl"
OVERLAP_MIN = 0.5

_WORD = re.compile(r"[^\W\d_]{3,}|\d+(?:\.\d+)?")
_CITE = re.compile(r"\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
_OVERLAP_STOP_WORDS = """the and for are was were that this with from which what when where who how why
    its their these those than then them they into onto over under about also such each other more
    most can could
    does did done has have had not but all any our out use used using uses based paper papers
    excerpt excerpts source sources study propose proposes proposed
"""
_OVERLAP_STOP = frozenset(_OVERLAP_STOP_WORDS.split())


def load_questions(  # type: ignore[type-arg]
    path: Path, split: str, limit: int | None, form: str = "all", matching: str | None = None
) -> list[dict]:
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if matching is not None:
        items = [item for item in items if re.search(matching, item["q"], re.IGNORECASE)]
    if split != "all":
        items = [item for item in items if item.get("split") == split]
    from bot.rag.question_form import asks_whether, seeks_paper

    if form == "whether":  # only yes/no questions ("Is there a paper that …?")
        items = [item for item in items if asks_whether(item["q"])]
    elif form == "seeks":  # asking for a work by what it does, not yes/no ("Which method …?")
        items = [item for item in items if seeks_paper(item["q"]) and not asks_whether(item["q"])]
    return items[:limit] if limit is not None else items


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


def _overlap_words(text: str) -> set[str]:
    """Content words, cut to 6 letters (a crude stem), for the independent overlap check."""
    return {w.lower()[:6] for w in _WORD.findall(_CITE.sub(" ", text)) if w.lower() not in _OVERLAP_STOP}


def overlap(sentence: str, excerpt: str, question: str = "") -> float:
    """Share of the sentence's content words, other than the question's own, found in the excerpt:
    0 for a sentence that only restates the question ("Pointer Networks use dropout rate [1].")."""
    words = _overlap_words(sentence) - _overlap_words(question)
    return len(words & _overlap_words(excerpt)) / len(words) if words else 0.0


def model_part(answer) -> str:  # type: ignore[no-untyped-def]
    """The answer without the closest passage quoted after it (`Answer.closest_added`)."""
    from bot.rag.extractive import ALSO_CLOSEST_LABEL

    return answer.text.partition("\n" + ALSO_CLOSEST_LABEL)[0]


async def sentence_checks(answer, embedder) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Counts over one generated answer: its claims, the claims grounded by a cited excerpt (project
    check and independent overlap check), and the model's own answer sentences before attribution
    and how many of them some shown excerpt supports."""
    from bot.rag.attribution import is_refusal, score_sentences
    from bot.rag.iter_retgen import CANNOT_ANSWER, final_answer_line

    counts = {"claims": 0, "grounded": 0, "overlap_grounded": 0, "raw_claims": 0, "raw_supported": 0}
    if not answer.trace or answer.fallback:
        return counts
    sources = answer.sources or answer.trace[-1].sources
    text = {s.number: f"{s.paper.title}\n{s.text}" for s in sources}
    question = answer.standalone_question
    if not answer.cannot_answer and not answer.closest_match:  # a closest match is a quote, like a fallback
        for _, support in await score_sentences(model_part(answer), sources, embedder, question=question):
            if not support.claim:
                continue
            counts["claims"] += 1
            counts["grounded"] += any(support.supported_by(n) for n in support.cited)
            counts["overlap_grounded"] += any(
                overlap(support.text, text[n], question) >= OVERLAP_MIN for n in support.cited
            )
    raw = final_answer_line(answer.trace[-1].generation)
    for _, support in await score_sentences(raw, answer.trace[-1].sources, embedder, question=question):
        if not support.claim or is_refusal(support.text, CANNOT_ANSWER):
            continue
        counts["raw_claims"] += 1
        counts["raw_supported"] += bool(support.supporters)
    return counts


def source_json(source) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """A shown excerpt as recorded, enough to rebuild it for --replay."""
    return {
        "number": source.number, "text": source.text, "score": source.score,
        "section": source.section, "kind": source.kind, "page": source.page, "anchor": source.anchor,
        "paper": source.paper.model_dump(mode="json", exclude={"abs_url", "pdf_url", "url"}),
    }  # fmt: skip


def source_from_json(body: dict):  # type: ignore[no-untyped-def,type-arg]
    from bot.core.papers import Paper
    from bot.rag.packing import Source

    paper = Paper.model_validate({k: v for k, v in body["paper"].items() if k in Paper.model_fields})
    fields = {k: body.get(k) for k in ("section", "kind", "page", "anchor")}
    return Source(number=body["number"], paper=paper, text=body["text"], score=body["score"], **fields)


def answer_from_trace(question: str, trace: list[dict]):  # type: ignore[no-untyped-def,type-arg]
    """An Answer holding a recorded trace (queries, excerpts shown, generations), not yet concluded."""
    from bot.rag.iter_retgen import Answer, IterationTrace

    result = Answer(question=question, standalone_question=question, text="", citations=[],
                    iterations=len(trace))  # fmt: skip
    result.trace = [
        IterationTrace(step["query"], [source_from_json(x) for x in step["sources"]], step["generation"])
        for step in trace
    ]
    return result


async def answer_record(name: str, t: int, kind: str, item: dict, answer, embedder) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """One answer's record: the answer, its checks and the whole trace (queries, excerpts shown,
    generations), so that --replay can check the same generations again without the model."""
    from bot.rag.iter_retgen import CANNOT_ANSWER

    refused = answer.cannot_answer or answer.text.strip() == CANNOT_ANSWER
    cited_titles = [c.title for c in answer.citations]
    shown = answer.sources or (answer.trace[-1].sources if answer.trace else [])
    final_titles = {s.paper.title for s in shown}
    checks = await sentence_checks(answer, embedder)
    record = {
        "model": name, "T": t, "kind": kind, "split": item.get("split"), "q": item["q"],
        "answer": answer.text, "citations": cited_titles, "cited": answer.cited,
        "fallback": answer.fallback, "cannot_answer": answer.cannot_answer,
        "closest_match": answer.closest_match, "closest_added": answer.closest_added, "refused": refused,
        "llm_calls": answer.llm_calls, "retrievals": answer.retrievals,
        "tokens": answer.prompt_tokens + answer.completion_tokens,
        "seconds": round(answer.seconds, 2), "llm_seconds": round(answer.llm_seconds, 2),
        "generation": answer.trace[-1].generation if answer.trace else "",
        "trace": [
            {"query": step.query, "generation": step.generation,
             "sources": [source_json(s) for s in step.sources]}
            for step in answer.trace
        ],
        **checks,
    }  # fmt: skip
    if kind == "answerable":
        expected = set(item["expected"])
        own = model_part(answer)
        own_titles = {c.title for c in answer.citations if f"[{c.n}]" in own}
        record.update(
            expected=sorted(expected),
            expected_cited=bool(expected & set(cited_titles)),
            expected_cited_by_model=bool(expected & own_titles) and not answer.closest_match,
            source_recall=len(expected & final_titles) / len(expected),
        )
    else:
        record["why"] = item.get("why")
    return record


def print_record(record: dict) -> None:  # type: ignore[type-arg]
    mark = "cited" if record.get("expected_cited") else ("REFUSED" if record["refused"] else "-")
    print(
        f"[{record['model']} T={record['T']}] {record['kind'][:5]} {record['seconds']:5.1f}s "
        f"calls={record['llm_calls']} fb={int(record['fallback'])} {mark} {record['q'][:60]!r} "
        f"-> {record['answer'][:110]!r} grounded={record['grounded']}/{record['claims']}",
        file=sys.stderr,
    )


async def replay(
    path: Path, embedder, records_out: Path, verbose: bool, prompt: str = "answer"
) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """The recorded generations of an earlier run checked again by today's code (attribution, the
    draft fallback, the refusal rules) without running a model: for tuning those on the dev split.
    Times, LLM calls and token counts are the recorded ones."""
    from bot.core.config import LLMSettings, RagSettings
    from bot.rag.iter_retgen import AnswerService
    from bot.retrieval.search import SearchService

    questions = {
        item["q"]: item for file in (QUESTIONS, UNANSWERABLE) for item in load_questions(file, "all", None)
    }
    service = AnswerService(SearchService(None, embedder), None, RagSettings(), LLMSettings(), prompt=prompt)  # type: ignore[arg-type]
    done: list[dict] = []  # type: ignore[type-arg]
    lines = path.read_text().splitlines()  # noqa: ASYNC240 (a bench script; nothing else runs)
    with records_out.open("w") as out:
        for line in lines:
            old = json.loads(line)
            if old["kind"] == "server" or "trace" not in old:
                done.append(old)
                continue
            result = answer_from_trace(old["q"], old["trace"])
            # A fallback after every generation was made came from the generations (a prompt echo),
            # so it is checked again; one after an LLM error has no generation to check.
            replayable = not old["fallback"] or (
                len(old["trace"]) == old["T"] and all(step["generation"] for step in old["trace"])
            )
            if replayable:
                await service.conclude(result)
            else:
                result.text, result.fallback = old["answer"], True
            for key in ("llm_calls", "retrievals"):
                setattr(result, key, old[key])
            result.seconds = old["seconds"]
            item = questions[old["q"]]
            record = await answer_record(old["model"], old["T"], old["kind"], item, result, embedder)
            record.update(tokens=old["tokens"], llm_seconds=old["llm_seconds"])
            if not replayable:
                record["citations"], record["expected_cited"] = old["citations"], old.get("expected_cited")
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            done.append(record)
            if verbose and (record["answer"] != old["answer"]):
                print(f"CHANGED was {old['answer'][:100]!r}", file=sys.stderr)
                print_record(record)
    return done


async def evaluate_model(  # type: ignore[no-untyped-def]
    name: str, args: argparse.Namespace, index, embedder, answerable: list, unanswerable: list, records
) -> list[dict]:  # type: ignore[type-arg]
    """Every question answered by model `name` at each T: one record per answer (written to
    `records` as it comes), then one "server" record with the server's start time and peak RSS."""
    from bot.core.config import RagSettings
    from bot.rag.iter_retgen import AnswerService
    from bot.retrieval.search import SearchService

    done: list[dict] = []  # type: ignore[type-arg]

    def keep(record: dict) -> None:  # type: ignore[type-arg]
        done.append(record)
        records.write(json.dumps(record, ensure_ascii=False) + "\n")
        records.flush()

    async with embedded_model(name, args.models_dir) as run:
        print(
            f"[{name}] server ready in {run.start_seconds:.1f} s (pid {run.server_pid}); "
            f"prompt <= {run.settings.prompt_tokens} tokens, answer <= {run.settings.answer_tokens} tokens",
            file=sys.stderr,
        )
        service = AnswerService(
            SearchService(index, embedder), run.client, RagSettings(), run.settings, prompt=args.prompt
        )
        for t in args.iterations:
            for kind, items in (("answerable", answerable), ("unanswerable", unanswerable)):
                for item in items:
                    answer = await service.answer(item["q"], iterations=t)
                    record = await answer_record(name, t, kind, item, answer, embedder)
                    keep(record)
                    if args.verbose:
                        print_record(record)
    keep(
        {
            "model": name,
            "kind": "server",
            "start_seconds": round(run.start_seconds, 2),
            "peak_rss_gib": run.peak_rss_kib / 1024**2 if run.peak_rss_kib else None,
        }
    )
    return done


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def _share(part: int, whole: int) -> float:
    return part / whole if whole else float("nan")


def table_row(answers: list[dict], t: int) -> dict[str, float]:  # type: ignore[type-arg]
    """The figures of one model at one T over `answers` (its records for some questions)."""
    answerable = [a for a in answers if a["kind"] == "answerable"]
    unanswerable = [a for a in answers if a["kind"] == "unanswerable"]
    seconds = [a["seconds"] for a in answers]
    claims = sum(a["claims"] for a in answers)
    raw_claims = sum(a["raw_claims"] for a in answers)
    cited = [title for a in answerable if a["cited"] for title in a["citations"]]
    cited_expected = sum(title in a["expected"] for a in answerable if a["cited"] for title in a["citations"])
    return {
        "questions": len(answers),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "fallback_rate": _mean([a["fallback"] for a in answers]),
        "expected_cited": _mean([a["expected_cited"] for a in answerable]),
        # the same, counting only the model's own answers (not the closest passage quoted)
        "expected_cited_generated": _mean(
            [
                a.get("expected_cited_by_model", a["expected_cited"] and not a.get("closest_match"))
                for a in answerable
            ]
        ),
        "closest_added": sum(bool(a.get("closest_added")) for a in answers),
        "closest_match": sum(bool(a.get("closest_match")) for a in answers),
        "closest_match_unanswerable": sum(bool(a.get("closest_match")) for a in unanswerable),
        "grounded_rate": _share(sum(a["grounded"] for a in answers), claims),
        "overlap_grounded_rate": _share(sum(a["overlap_grounded"] for a in answers), claims),
        "claims": claims,
        "raw_supported_rate": _share(sum(a["raw_supported"] for a in answers), raw_claims),
        "raw_claims": raw_claims,
        "refusal_rate": _mean([a["refused"] for a in unanswerable]),
        "false_refusals": sum(a["refused"] for a in answerable),
        "seconds_median": statistics.median(seconds) if seconds else float("nan"),
        "seconds_p90": percentile(seconds, 0.9) if seconds else float("nan"),
        "llm_calls": _mean([a["llm_calls"] for a in answers]),
        "answers_not_T_calls": sum(a["llm_calls"] != t for a in answers),
        "retrievals": _mean([a["retrievals"] for a in answers]),
        "tokens": _mean([a["tokens"] for a in answers]),
        "source_recall": _mean([a["source_recall"] for a in answerable]),
        "citation_precision": _share(cited_expected, len(cited)),
    }


Tables = dict[str, dict[str, dict[str, float]]]  # model → "T=2 test" → figures


def tabulate(records: list[dict]) -> Tables:  # type: ignore[type-arg]
    """Per model and T: a row over every question, and one per split when there are several."""
    tables: Tables = {}
    servers = {r["model"]: r for r in records if r["kind"] == "server"}
    for model in dict.fromkeys(r["model"] for r in records):
        answers = [r for r in records if r["model"] == model and r["kind"] != "server"]
        rows: dict[str, dict[str, float]] = {}
        for t in sorted({a["T"] for a in answers}):
            at_t = [a for a in answers if a["T"] == t]
            splits = sorted({a["split"] for a in at_t})
            groups = [(s, [a for a in at_t if a["split"] == s]) for s in splits] if len(splits) > 1 else []
            for label, group in [*groups, ("all" if len(splits) > 1 else splits[0], at_t)]:
                row = table_row(group, t)
                peak = servers.get(model, {}).get("peak_rss_gib")
                row["peak_rss_gib"] = peak if peak is not None else float("nan")
                rows[f"T={t} {label}"] = row
        tables[model] = rows
    return tables


async def quality(args: argparse.Namespace, embedder) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    answerable = load_questions(QUESTIONS, args.split, args.limit, args.form, args.matching)
    unanswerable = load_questions(UNANSWERABLE, args.split, args.unanswerable_limit, args.form, args.matching)
    print(
        f"{len(answerable)} answerable + {len(unanswerable)} unanswerable questions (split {args.split}), "
        f"T = {args.iterations}, models {args.models}",
        file=sys.stderr,
    )
    done: list[dict] = []  # type: ignore[type-arg]
    args.records.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, args.records.open("w") as records:
        index = await build_seed_index(embedder, Path(tmp) / "qdrant")
        try:
            for name in args.models:  # one at a time: each server is stopped before the next starts
                started = time.perf_counter()
                done += await evaluate_model(name, args, index, embedder, answerable, unanswerable, records)
                print(f"[{name}] done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        finally:
            await index.close()
    return done


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


def print_overhead(rows_overhead: list[tuple[str, str, float, float]], papers: int) -> None:
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


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def print_quality(tables: Tables) -> None:
    print(
        "| model | T, split | questions | fallback | expected cited (by the model's answer) "
        "| closest match (unanswerable) | closest added | grounded (project) "
        "| grounded (overlap beyond question) "
        "| raw supported | refused (unanswerable) | false refusals | s median | s p90 | LLM calls/q "
        "| retrievals/q | tokens/q | source recall | peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in tables.items():
        for label, r in rows.items():
            print(
                f"| {name} | {label} | {r['answerable']}+{r['unanswerable']} | {_pct(r['fallback_rate'])} "
                f"| {_pct(r['expected_cited'])} ({_pct(r['expected_cited_generated'])}) "
                f"| {r['closest_match']} ({r['closest_match_unanswerable']}) | {r.get('closest_added', 0)} "
                f"| {_pct(r['grounded_rate'])} ({r['claims']}) "
                f"| {_pct(r['overlap_grounded_rate'])} | {_pct(r['raw_supported_rate'])} ({r['raw_claims']}) "
                f"| {_pct(r['refusal_rate'])} | {r['false_refusals']} | {r['seconds_median']:.1f} "
                f"| {r['seconds_p90']:.1f} | {r['llm_calls']:.2f} | {r['retrievals']:.2f} "
                f"| {r['tokens']:.0f} "
                f"| {_pct(r['source_recall'])} | {r['peak_rss_gib']:.2f} |"
            )
    for name, rows in tables.items():
        recall = {}
        for label, r in rows.items():
            t, split = label.removeprefix("T=").split(" ", 1)
            if split == "all" or f"T={t} all" not in rows:  # the row over every question at this T
                ok = r["answers_not_T_calls"] == 0
                print(f"{name} T={t}: every answer made exactly {t} LLM calls: {'PASS' if ok else 'FAIL'}"
                      f" ({int(r['answers_not_T_calls'])} did not)")  # fmt: skip
                recall[int(t)] = r["source_recall"]
        if 1 in recall and 2 in recall:
            print(f"{name}: T=2 source recall >= T=1: {'PASS' if recall[2] >= recall[1] else 'FAIL'}")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=parse_models, default=list(DEFAULT_MODELS),
                        help="comma-separated embedded models (known names or .gguf paths)")  # fmt: skip
    parser.add_argument("--iterations", type=lambda s: [int(x) for x in s.split(",")], default=[2])
    parser.add_argument("--split", choices=("dev", "test", "dev2", "test2", "all"), default="all")
    parser.add_argument("--matching", default=None, metavar="REGEX",
                        help="only the questions matching REGEX (case-insensitive)")  # fmt: skip
    parser.add_argument("--form", choices=("all", "whether", "seeks"), default="all",
                        help="whether: only the yes/no questions (is there…, can…, has anyone…); "
                        "seeks: only the other questions that ask for a paper (which method…, where "
                        "can I find…, looking for a survey…)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="answerable questions per split filter")
    parser.add_argument("--unanswerable-limit", type=int, default=None)
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--records", type=Path, default=OUT / "answer_eval_records.jsonl")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--tabulate", type=Path, default=None,
                        help="print the tables of an earlier run's --records file, run nothing")  # fmt: skip
    parser.add_argument("--skip-overhead", action="store_true",
                        help="skip the 10k-paper overhead table (needs bench/out/full)")  # fmt: skip
    parser.add_argument("--prompt", default="answer", help="the answer prompt, a name in prompts/")
    parser.add_argument("--replay", type=Path, default=None,
                        help="check an earlier run's recorded generations again with today's code; "
                        "writes --records")  # fmt: skip
    args = parser.parse_args()
    if args.replay is not None:
        from bot.retrieval.embedding import LocalEmbedder

        print_quality(
            tabulate(await replay(args.replay, LocalEmbedder(), args.records, args.verbose, args.prompt))
        )
        return
    if args.tabulate is not None:
        records = [json.loads(line) for line in args.tabulate.read_text().splitlines() if line.strip()]
        print_quality(tabulate(records))
        return

    from bot.retrieval.embedding import LocalEmbedder

    embedder = LocalEmbedder()
    if not args.skip_overhead:
        rows_overhead, papers = await overhead(embedder)
        print_overhead(rows_overhead, papers)
    if args.skip_quality:
        return
    tables = tabulate(await quality(args, embedder))
    print_quality(tables)
    print(json.dumps(tables))


if __name__ == "__main__":
    asyncio.run(main())
