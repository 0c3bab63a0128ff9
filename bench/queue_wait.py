"""Queue wait: N questions asked at the same moment of the embedded LLM, which answers one at a time.

The real path: `bot.llm.llm_session` starts the configured embedded model (LOCAL_LLM_MODEL; or
OPENAI_BASE_URL for a configured server), `AnswerService` answers over the 48 seed papers at the
default T, and every question goes through the generation queue (bot/llm/queue.py). Prints, per
question, the places it was told, its wait for the model, its own LLM time and its total time; then
the median and max of the wait and the total, and how busy the model was kept (LLM seconds / wall
seconds: 1.0 means no slot stood idle while a question waited).

    LOCAL_LLM_MODEL=gemma-3-270m .venv/bin/python bench/queue_wait.py [--questions 5]

PASS: every question was answered by the model (no "busy" fallback), each one that waited was told
its place down to its turn, and the longest total stayed inside Discord's 15-minute window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from answer_eval import QUESTIONS, build_seed_index
from common import ROOT

DISCORD_WINDOW_S = 15 * 60


class Places:
    """An AnswerProgress that keeps the queue places it is told."""

    def __init__(self) -> None:
        self.places: list[int] = []

    async def stage(self, step: str, iteration: int, total: int) -> None:
        return None

    async def partial(self, text: str) -> None:
        return None

    async def queued(self, ahead: int) -> None:
        self.places.append(ahead)


async def run(args: argparse.Namespace) -> bool:
    from bot.core.config import LLMSettings, RagSettings
    from bot.llm import llm_session
    from bot.rag.extractive import BUSY_LABEL
    from bot.rag.iter_retgen import AnswerService
    from bot.retrieval.embedding import LocalEmbedder
    from bot.retrieval.search import SearchService

    questions = [json.loads(line)["q"] for line in QUESTIONS.read_text().splitlines() if line.strip()]
    questions = questions[: args.questions]
    embedder = LocalEmbedder()
    llm_settings = LLMSettings()
    with tempfile.TemporaryDirectory() as tmp:
        index = await build_seed_index(embedder, Path(tmp) / "qdrant")
        try:
            async with llm_session(llm_settings, ROOT / "data" / "models") as client:
                service = AnswerService(SearchService(index, embedder), client, RagSettings(), llm_settings)
                await service.answer("What is SHERL?")  # warm up: model loaded, prompt prefix cached
                print(
                    f"model {client.model}, {client.queue.max_concurrent} generation(s) at a time, "
                    f"{len(questions)} questions asked at once; load average "
                    f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
                )
                trackers = [Places() for _ in questions]
                started = time.perf_counter()
                answers = await asyncio.gather(
                    *(service.answer(q, progress=p) for q, p in zip(questions, trackers, strict=True))
                )
                wall = time.perf_counter() - started
        finally:
            await index.close()

    print("| # | question | places told | wait s | LLM s | total s | answer |")
    print("|---|---|---|---|---|---|---|")
    for n, (question, answer, tracker) in enumerate(zip(questions, answers, trackers, strict=True), 1):
        kind = (
            "busy fallback"
            if answer.text.startswith(BUSY_LABEL)
            else ("extractive" if answer.fallback else "generated")
        )
        places = ", ".join(map(str, tracker.places)) or "—"
        print(
            f"| {n} | {question[:48]} | {places} | {answer.queue_seconds:.1f} | "
            f"{answer.llm_seconds:.1f} | {answer.seconds:.1f} | {kind} |"
        )
    waits = [a.queue_seconds for a in answers]
    totals = [a.seconds for a in answers]
    busy = sum(a.llm_seconds for a in answers) / wall
    print(f"wait: median {statistics.median(waits):.1f} s, max {max(waits):.1f} s")
    print(f"total: median {statistics.median(totals):.1f} s, max {max(totals):.1f} s (wall {wall:.1f} s)")
    print(f"model busy {busy:.2f} of the wall time (LLM seconds / wall seconds)")

    told = all(not t.places or t.places[-1] == 0 for t, a in zip(trackers, answers, strict=True))
    waited_told = all(t.places for t, a in zip(trackers, answers, strict=True) if a.queue_seconds > 0.5)
    no_busy = not any(a.text.startswith(BUSY_LABEL) for a in answers)
    ok = told and waited_told and no_busy and max(totals) < DISCORD_WINDOW_S
    print(
        f"every waiting question told its place down to its turn, none refused or timed out, "
        f"max total < {DISCORD_WINDOW_S} s: {'PASS' if ok else 'FAIL'}"
    )
    return ok


def main() -> None:
    import structlog

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=5)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    ok = asyncio.run(run(parser.parse_args()))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
