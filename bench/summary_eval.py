"""Digest summaries of real Hugging Face papers, per embedded model, in one run (issue 12).

Papers: bench/data/summary_papers.jsonl, a fixed seeded sample of 60 papers of
../shared/data/hf_daily_papers (abstracts of >= 80 words; 36 with an HF ai_summary), marked
"split": "dev" | "test" (30 each). Each model in --models is served by the project's own path
(`bot.llm.llm_session`, `LLMSettings(LOCAL_LLM_MODEL=name)`), one model at a time, and summarizes
each paper through the project's `SummaryService` (a fresh SQLite summary cache per model, so every
summary is generated), one paper at a time. Reported per model:
- fallback rate: papers shown something other than the model's summary (split into "did not hold
  up" — HF's ai_summary or the abstract's first sentences — and "no usable generation");
- grounded sentences: by the project's check (`bot.digest.grounding.check_summary` against the
  title and abstract the model was given, `summaries.model_input`), both of the model's raw
  summary (`clean_summary` of its completion: what the check received) and of what is shown;
  and what the check dropped from the raw summaries, by reason;
- copies of the prompt's worked example (a sentence equal to, contained in, or with word overlap
  (Jaccard) >= 0.8 with a line of the example; an independent check) and repeated lines (a
  sentence with Jaccard >= 0.8 with an earlier one of the same summary): summaries with one, raw
  and shown; and summaries whose TL;DR only restates the title (Jaccard >= 0.8), raw and shown;
- seconds per summary (median, p90) and the server's peak RSS (VmHWM).

    .venv/bin/python bench/summary_eval.py --split test \
        --models qwen2.5-coder-1.5b-instruct,qwen2.5-coder-0.5b-instruct,gemma-3-270m
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
from collections import Counter
from pathlib import Path
from typing import Any

from common import OUT, ROOT, SHARED, percentile
from embedded_llm import DEFAULT_MODELS, MODELS_DIR, embedded_model, parse_models

PAPERS = ROOT / "bench" / "data" / "summary_papers.jsonl"
COPY_JACCARD = 0.8
REPEAT_JACCARD = 0.8
_WORD = re.compile(r"[^\W_]+")
_EXAMPLE_LINE = re.compile(r"^\s*(TL;DR|Key contribution):\s*(\S.*)$", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:TL;DR|[A-Za-z][A-Za-z ]{0,30}?):\s+")


def load_papers(split: str, limit: int | None) -> list:  # type: ignore[type-arg]
    from bot.ingest.sources import parse_path

    items = [json.loads(line) for line in PAPERS.read_text().splitlines() if line.strip()]
    if split != "all":
        items = [item for item in items if item["split"] == split]
    items = items[:limit] if limit is not None else items
    by_id = {}
    for name in sorted({item["file"] for item in items}):
        by_id.update({p.paper_id: p for p in parse_path(SHARED / "hf_daily_papers" / name).papers})
    return [(item, by_id[item["paper_id"]]) for item in items]


def words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD.findall(text))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def summary_sentences(text: str) -> list[str]:
    """The sentences of a summary, without the "TL;DR:" / "Key contribution:" labels."""
    from bot.digest.grounding import sentences

    return sentences("\n".join(_LABEL.sub("", line) for line in text.splitlines()))


def example_lines(template) -> list[str]:  # type: ignore[no-untyped-def]
    """The worked example's answer lines, wherever the summary prompt keeps them."""
    lines = [line for part in template.parts for line in part.splitlines()]
    return [m.group(2).strip() for line in lines if (m := _EXAMPLE_LINE.match(line))]


def example_copies(text: str, examples: list[str], source: str) -> int:
    """Sentences of `text` that copy a line of the worked example (and are not in the paper itself)."""
    found = 0
    source_lower = " ".join(source.lower().split())
    for sentence in summary_sentences(text):
        s = " ".join(sentence.lower().split()).rstrip(".")
        for example in examples:
            e = " ".join(example.lower().split()).rstrip(".")
            contained = (len(s.split()) >= 3 and s in e) or e in s
            if (contained or jaccard(words(s), words(e)) >= COPY_JACCARD) and e not in source_lower:
                found += 1
                break
    return found


def restates_title(text: str, title: str) -> bool:
    """The TL;DR is only the paper's title again (word overlap (Jaccard) >= 0.8): true, but no summary."""
    first = summary_sentences(text)[:1]
    return bool(first) and jaccard(words(first[0]), words(title)) >= COPY_JACCARD


def repeated_sentences(text: str) -> int:
    seen: list[frozenset[str]] = []
    repeats = 0
    for sentence in summary_sentences(text):
        w = words(sentence)
        if any(jaccard(w, earlier) >= REPEAT_JACCARD for earlier in seen):
            repeats += 1
        seen.append(w)
    return repeats


class RecordingLLM:
    """The client, recording the last completion (the model's raw summary) for the bench."""

    def __init__(self, client) -> None:  # type: ignore[no-untyped-def]
        self._client = client
        self.last = None

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._client, name)

    async def generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.last = await self._client.generate(*args, **kwargs)
        return self.last


def checked_source(paper, encoding: str) -> str:  # type: ignore[no-untyped-def]
    """The title and abstract the summary is checked against (what the model was given)."""
    from bot.digest import summaries

    if hasattr(summaries, "model_input"):
        title, abstract = summaries.model_input(paper, encoding)
    else:  # the service's own treatment before model_input existed
        from bot.rag.packing import remove_instructions, sanitize_source_text
        from bot.retrieval.tokens import truncate_tokens

        text = remove_instructions(sanitize_source_text(paper.abstract))
        title = sanitize_source_text(paper.title)
        abstract = truncate_tokens(text, summaries.ABSTRACT_MAX_TOKENS, encoding)[0]
    return f"{title}\n{abstract}"


async def evaluate_model(  # type: ignore[no-untyped-def]
    name: str, args: argparse.Namespace, papers: list[tuple[dict[str, Any], Any]], records
) -> dict[str, Any]:
    from bot.core.config import DigestSettings, TokenizerSettings
    from bot.core.prompts import load_prompt
    from bot.db import Database, Repository, upgrade_schema
    from bot.digest.grounding import check_summary, prompt_fixed_text
    from bot.digest.summaries import HF_AI_SUMMARY, SUMMARY_UNSUPPORTED, SummaryService, clean_summary

    template = load_prompt("summary")
    examples = example_lines(template)
    prompt_text = prompt_fixed_text(template.parts)
    encoding = TokenizerSettings().encoding
    digest = DigestSettings()
    seconds: list[float] = []
    notes: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    raw = {"kept": 0, "total": 0, "copies": 0, "repeats": 0, "titles": 0, "summaries": 0}
    shown = {"kept": 0, "total": 0, "copies": 0, "repeats": 0, "titles": 0, "summaries": 0}
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'state.db'}")
        await upgrade_schema(database.engine)
        try:
            async with embedded_model(name, args.models_dir) as run:
                print(
                    f"[{name}] server ready in {run.start_seconds:.1f} s (pid {run.server_pid})",
                    file=sys.stderr,
                )
                llm = RecordingLLM(run.client)
                service = SummaryService(
                    Repository(database),
                    llm,  # type: ignore[arg-type]
                    concurrency=digest.summary_concurrency,
                    max_tokens=digest.summary_max_tokens,
                    encoding=encoding,
                )
                for item, paper in papers:
                    llm.last = None
                    started = time.perf_counter()
                    summary = (await service.summarize([paper]))[paper.paper_id]
                    seconds.append(time.perf_counter() - started)
                    source = checked_source(paper, encoding)
                    raw_text = clean_summary(llm.last.text) if llm.last is not None else ""
                    record = {
                        "model": name, "paper_id": paper.paper_id, "split": item["split"],
                        "title": item["title"], "seconds": round(seconds[-1], 2),
                        "completion": llm.last.text if llm.last is not None else None,
                        "shown": summary.text, "note": summary.note,
                    }  # fmt: skip
                    if raw_text:
                        check = check_summary(raw_text, source=source, prompt_text=prompt_text)
                        raw["summaries"] += 1
                        raw["kept"] += check.kept
                        raw["total"] += check.kept + len(check.dropped)
                        dropped.update(d.reason for d in check.dropped)
                        copies, repeats = (
                            example_copies(raw_text, examples, source),
                            repeated_sentences(raw_text),
                        )
                        raw["copies"] += copies > 0
                        raw["repeats"] += repeats > 0
                        raw["titles"] += restates_title(raw_text, paper.title)
                        record.update(
                            raw_kept=check.kept,
                            raw_dropped=[[d.reason, d.sentence] for d in check.dropped],
                            raw_copies=copies,
                            raw_repeats=repeats,
                        )
                    if summary.note is None:
                        check = check_summary(summary.text, source=source, prompt_text=prompt_text)
                        shown["summaries"] += 1
                        shown["kept"] += check.kept
                        shown["total"] += check.kept + len(check.dropped)
                        copies, repeats = (
                            example_copies(summary.text, examples, source),
                            repeated_sentences(summary.text),
                        )
                        shown["copies"] += copies > 0
                        shown["repeats"] += repeats > 0
                        shown["titles"] += restates_title(summary.text, paper.title)
                        record.update(shown_kept=check.kept, shown_dropped=len(check.dropped),
                                      shown_copies=copies, shown_repeats=repeats)  # fmt: skip
                    else:
                        notes[
                            "unsupported"
                            if summary.note in (HF_AI_SUMMARY, SUMMARY_UNSUPPORTED)
                            else "unavailable"
                        ] += 1
                    records.write(json.dumps(record, ensure_ascii=False) + "\n")
                    records.flush()
                    if args.verbose:
                        print(
                            f"[{name}] {seconds[-1]:5.1f}s {'FALLBACK ' if summary.note else ''}"
                            f"{item['title'][:50]!r}\n    raw:   {raw_text[:240]!r}\n"
                            f"    shown: {summary.text[:240]!r}",
                            file=sys.stderr,
                        )
        finally:
            await database.close()
    n = len(papers)
    return {
        "papers": n,
        "fallback_rate": (notes["unsupported"] + notes["unavailable"]) / n if n else float("nan"),
        "fallback_unsupported": notes["unsupported"],
        "fallback_unavailable": notes["unavailable"],
        "grounded_raw": raw["kept"] / raw["total"] if raw["total"] else float("nan"),
        "raw_sentences": raw["total"],
        "grounded_shown": shown["kept"] / shown["total"] if shown["total"] else float("nan"),
        "shown_sentences": shown["total"],
        "shown_summaries": shown["summaries"],
        "example_copies_raw": raw["copies"],
        "example_copies_shown": shown["copies"],
        "repeated_raw": raw["repeats"],
        "repeated_shown": shown["repeats"],
        "title_restated_raw": raw["titles"],
        "title_restated_shown": shown["titles"],
        "raw_summaries": raw["summaries"],
        "dropped_by_reason": dict(dropped),
        "seconds_median": statistics.median(seconds) if seconds else float("nan"),
        "seconds_p90": percentile(seconds, 0.9) if seconds else float("nan"),
        "peak_rss_gib": run.peak_rss_kib / 1024**2 if run.peak_rss_kib else float("nan"),
    }


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=parse_models, default=list(DEFAULT_MODELS),
                        help="comma-separated embedded models (known names or .gguf paths)")  # fmt: skip
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all")
    parser.add_argument("--limit", type=int, default=None, help="papers (after the split filter)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--records", type=Path, default=OUT / "summary_eval_records.jsonl")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    papers = load_papers(args.split, args.limit)
    print(f"{len(papers)} HF papers (split {args.split}), models {args.models}", file=sys.stderr)
    results = {}
    args.records.parent.mkdir(parents=True, exist_ok=True)
    with args.records.open("w") as records:
        for name in args.models:  # one at a time: each server is stopped before the next starts
            started = time.perf_counter()
            results[name] = await evaluate_model(name, args, papers, records)
            print(f"[{name}] done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(
        "| model | papers | fallback (did not hold up / no generation) | grounded raw (sentences) "
        "| grounded shown (sentences) | example copies raw / shown | repeated lines raw / shown "
        "| TL;DR = title raw / shown | s median | s p90 | peak RSS GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['papers']} | {_f(r['fallback_rate'])} ({r['fallback_unsupported']} / "
            f"{r['fallback_unavailable']}) | {_f(r['grounded_raw'])} ({r['raw_sentences']}) "
            f"| {_f(r['grounded_shown'])} ({r['shown_sentences']}) "
            f"| {r['example_copies_raw']} / {r['example_copies_shown']} "
            f"| {r['repeated_raw']} / {r['repeated_shown']} "
            f"| {r['title_restated_raw']} / {r['title_restated_shown']} "
            f"| {r['seconds_median']:.1f} | {r['seconds_p90']:.1f} | {r['peak_rss_gib']:.2f} |"
        )
    for name, r in results.items():
        print(f"{name}: dropped from raw summaries by reason: {r['dropped_by_reason']}")
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
