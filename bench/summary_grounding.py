"""The summary check (bot/digest/grounding.py) on real Hugging Face papers: does it keep grounded
summaries and reject summaries of other papers? Optionally, what it does to a real model's summaries.

    .venv/bin/python bench/summary_grounding.py [--hardest 400] [--seed 1]
    .venv/bin/python bench/summary_grounding.py --llm-base-url http://127.0.0.1:8080/v1 --model NAME
        [--papers 30]

Without a model, over every paper of the slim files with an abstract and an `ai_summary` (a grounded
summary written by Hugging Face's model), the summary given as the TL;DR is checked against
- its own paper: the share of its sentences kept (the check should not reject good summaries);
- the next paper of the files (usually the same day): the share rejected;
- the hardest other paper, for a sample: of all the others, the one whose words cover most of the
  summary's content words (a near-topic neighbour): the share rejected.
Each summary is checked against the title and abstract exactly as the model would be given them
(`model_input`). With `--llm-base-url`, the first `--papers` recent papers are summarized by that
OpenAI-compatible server with prompts/summary.txt, and the table gives the sentences kept, the
summaries that hold up, and what was dropped as a copy of the prompt or a repeated line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import re
import time
from typing import Any, Literal

from common import HF_FILES  # also puts the repo root on sys.path and sets offline env

from bot.core.papers import Paper
from bot.digest.grounding import MIN_SUPPORT, Source, check_sentence, check_summary, sentences
from bot.digest.summaries import model_input


def load_papers() -> list[tuple[str, Paper]]:
    """(daily date, paper) for every record with an abstract and an AI summary, in file order."""
    papers = []
    for path in HF_FILES:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            raw = record["paper"]
            if raw.get("summary") and raw.get("ai_summary"):
                paper = Paper(
                    paper_id=raw["id"],
                    title=raw["title"],
                    abstract=raw["summary"],
                    ai_summary=raw["ai_summary"],
                )
                papers.append((record.get("daily_date", ""), paper))
    return papers


def source_of(paper: Paper) -> str:
    title, abstract = model_input(paper)
    return f"{title}\n{abstract}"


def check_rates(papers: list[tuple[str, Paper]], hardest: int, seed: int) -> bool:
    sources = [Source(source_of(p)) for _, p in papers]
    started = time.perf_counter()
    own = [
        check_summary(f"TL;DR: {p.ai_summary}", source=s.text)
        for (_, p), s in zip(papers, sources, strict=True)
    ]
    per_check_ms = (time.perf_counter() - started) * 1000 / len(papers)
    kept = sum(c.kept for c in own)
    total = sum(c.kept + len(c.dropped) for c in own)
    recent = [c for (day, _), c in zip(papers, own, strict=True) if day >= "2026"]
    recent_kept = sum(c.kept for c in recent) / max(1, sum(c.kept + len(c.dropped) for c in recent))

    neighbour = [
        check_summary(f"TL;DR: {papers[(i + 1) % len(papers)][1].ai_summary}", source=sources[i].text)
        for i in range(len(papers))
    ]
    neighbour_rejected = sum(not c.holds_up for c in neighbour) / len(neighbour)

    rng = random.Random(seed)
    sample = rng.sample(range(len(papers)), min(hardest, len(papers)))
    hard_rejected = 0
    for i in sample:
        summary = papers[i][1].ai_summary or ""
        content = check_sentence(summary, sources[i]).content
        best = max(
            (j for j in range(len(papers)) if j != i),
            key=lambda j: sum(term.split("-")[0] in sources[j].stems for term in content),
        )
        hard_rejected += not check_summary(f"TL;DR: {summary}", source=sources[best].text).holds_up
    hard_rate = hard_rejected / len(sample)

    print(f"{len(papers)} Hugging Face papers with an abstract and an AI summary (MIN_SUPPORT {MIN_SUPPORT})")
    print("| summary checked against | papers | result |")
    print("|---|---|---|")
    print(f"| its own paper | {len(papers)} | {kept / total:.3f} of {total} sentences kept |")
    print(f"| its own paper, 2026 days only | {len(recent)} | {recent_kept:.3f} of the sentences kept |")
    print(f"| the next paper of the files | {len(papers)} | {neighbour_rejected:.4f} rejected |")
    print(f"| the hardest other paper (seed {seed}) | {len(sample)} | {hard_rate:.3f} rejected |")
    print(f"check time: {per_check_ms:.2f} ms per summary (one core)")
    ok = kept / total >= 0.9 and neighbour_rejected >= 0.9 and hard_rate >= 0.9
    print(f"{'PASS' if ok else 'FAIL'}: own kept >= 0.9, other rejected >= 0.9 (next and hardest)")
    return ok


async def model_rates(
    papers: list[Paper], base_url: str, model: str, api_mode: Literal["chat", "completions"], max_tokens: int
) -> None:
    from bot.core.prompts import load_prompt
    from bot.digest.grounding import prompt_fixed_text
    from bot.digest.summaries import clean_summary
    from bot.llm import LLMClient

    template = load_prompt("summary")
    prompt_text = prompt_fixed_text(template.parts)
    llm = LLMClient(
        base_url=base_url, api_key=None, model=model, api_mode=api_mode, timeout_s=300, max_retries=0
    )
    reasons: collections.Counter[str] = collections.Counter()
    kept = total = held = shown_copies = shown_repeats = 0
    seconds = []
    examples: list[dict[str, Any]] = []
    try:
        for paper in papers:
            title, abstract = model_input(paper)
            prompt = template.render(title=title, abstract=abstract or "(no abstract)")
            started = time.perf_counter()
            completion = await llm.generate(
                system=prompt.system,
                user=prompt.user,
                turns=prompt.turns,
                reply_prefix=prompt.reply_prefix,
                max_tokens=max_tokens,
                stop=["\nTitle:", "\nAbstract:"],
            )
            seconds.append(time.perf_counter() - started)
            text = clean_summary(completion.text)
            checked = check_summary(text, source=f"{title}\n{abstract}", prompt_text=prompt_text)
            kept += checked.kept
            total += checked.kept + len(checked.dropped)
            held += checked.holds_up
            reasons.update(d.reason for d in checked.dropped)
            shown = [_plain(x) for x in sentences(checked.text)]
            shown_copies += sum(bool(x) and x in _plain(prompt_text) for x in shown)
            shown_repeats += len(shown) - len(set(shown))
            if len(examples) < 5:
                examples.append({"title": title[:60], "model": text, "shown": checked.text or "(fallback)"})
    finally:
        await llm.aclose()
    print(f"\n{model}: {len(papers)} papers, {total} sentences written")
    print(
        "| sentences kept | summaries that hold up | dropped: unsupported / prompt copy / repeated / empty |"
    )
    print("|---|---|---|")
    print(
        f"| {kept / max(1, total):.3f} | {held}/{len(papers)} | {reasons['unsupported']} / "
        f"{reasons['prompt_echo']} / {reasons['repeated']} / {reasons['no_content']} |"
    )
    print(f"seconds per summary: median {sorted(seconds)[len(seconds) // 2]:.1f}")
    for example in examples:
        print(json.dumps(example, ensure_ascii=False))
    print(f"shown: {shown_copies} sentences found verbatim in the prompt, {shown_repeats} repeated sentences")


def _plain(text: str) -> str:
    """Lower-case words only, labels out: how two sentences are compared for copies and repeats."""
    text = text.removeprefix("TL;DR:").strip()
    return " ".join(re.findall(r"\w+", text.lower()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hardest", type=int, default=400, help="sample size for the hardest-other check")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--llm-base-url", help="an OpenAI-compatible server to summarize with")
    parser.add_argument("--model", default="local")
    parser.add_argument("--api-mode", choices=["chat", "completions"], default="chat")
    parser.add_argument("--papers", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=160)
    args = parser.parse_args()
    papers = load_papers()
    ok = check_rates(papers, args.hardest, args.seed)
    if args.llm_base_url:
        recent = [p for day, p in sorted(papers, key=lambda item: item[0], reverse=True)][: args.papers]
        asyncio.run(model_rates(recent, args.llm_base_url, args.model, args.api_mode, args.max_tokens))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
