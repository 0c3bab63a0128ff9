"""Digest summaries by the LLM (prompts/summary.txt), cached per (paper, prompt version, model).

Generation runs with bounded concurrency, and a paper being summarized for one channel is awaited,
not summarized again, by the others: ten channels pay for one call. When the LLM fails, the paper
still gets the first sentences of its abstract, flagged `is_fallback` (never cached, so a later
digest tries the LLM again).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from bot.core.papers import Paper, clean_text
from bot.core.prompts import PromptTemplate, load_prompt
from bot.db.repository import Repository
from bot.limits.budget import TokenBudget
from bot.llm import LLMClient, LLMError
from bot.rag.packing import remove_instructions, sanitize_source_text
from bot.retrieval.tokens import truncate_tokens

log = structlog.get_logger(__name__)

SUMMARY_MAX_CHARS = 700
FALLBACK_MIN_CHARS = 160
FALLBACK_MAX_CHARS = 320
ABSTRACT_MAX_TOKENS = 700
NO_LLM_MODEL = "none"
_STOP = ["\nTitle:", "\nAbstract:"]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[“\"])")
_TLDR = re.compile(r"^\s*(?:\*\*)?tl;?\s*dr:?(?:\*\*)?\s*:?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Summary:
    paper_id: str
    text: str
    is_fallback: bool
    from_cache: bool = False
    tokens: int = 0  # LLM tokens (prompt + completion) this summary cost when it was made


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + "…"


def fallback_summary(paper: Paper) -> str:
    """The abstract's first sentences (about two), or a note when there is no abstract."""
    abstract = clean_text(paper.abstract)
    if not abstract:
        return "No summary available: the paper has no abstract."
    text = ""
    for sentence in _SENTENCE_END.split(abstract):
        text = f"{text} {sentence}".strip()
        if len(text) >= FALLBACK_MIN_CHARS:
            break
    return _shorten(text, FALLBACK_MAX_CHARS)


def clean_summary(raw: str) -> str:
    """The model's answer as "TL;DR: …" plus at most two more lines; "" when nothing usable came back."""
    text = raw
    for stop in _STOP:
        text = text.split(stop, 1)[0]
    lines = [clean_text(line) for line in text.strip().splitlines()]
    lines = [line for line in lines if line][:3]
    if not lines:
        return ""
    lines[0] = _TLDR.sub("", lines[0])
    if not lines[0]:
        return ""
    return _shorten("\n".join([f"TL;DR: {lines[0]}", *lines[1:]]), SUMMARY_MAX_CHARS)


class SummaryService:
    def __init__(
        self,
        repo: Repository,
        llm: LLMClient | None,
        *,
        concurrency: int = 4,
        max_tokens: int = 160,
        template: PromptTemplate | None = None,
        encoding: str = "cl100k_base",
    ) -> None:
        self._repo = repo
        self._llm = llm
        self._semaphore = asyncio.Semaphore(concurrency)
        self._max_tokens = max_tokens
        self._template = template or load_prompt("summary")
        self._encoding = encoding
        self._inflight: dict[tuple[str, str, str], asyncio.Task[Summary]] = {}

    @property
    def prompt_version(self) -> str:
        return self._template.version

    @property
    def model(self) -> str:
        return self._llm.model if self._llm is not None else NO_LLM_MODEL

    async def summarize(self, papers: Sequence[Paper]) -> dict[str, Summary]:
        """A summary for every paper (by paper id), from the cache, the LLM, or the fallback."""
        unique = list({p.paper_id: p for p in papers}.values())
        cached = await self._repo.cached_summaries(
            [p.paper_id for p in unique], prompt_version=self.prompt_version, model=self.model
        )
        results = {
            pid: Summary(pid, text, is_fallback=False, from_cache=True) for pid, text in cached.items()
        }
        missing = [p for p in unique if p.paper_id not in results]
        generated = await asyncio.gather(*(self._shared(p) for p in missing))
        results.update({s.paper_id: s for s in generated})
        log.info(
            "digest.summaries",
            papers=len(unique),
            cached=len(cached),
            fallback=sum(s.is_fallback for s in generated),
        )
        return results

    async def is_cached(self, paper: Paper) -> bool:
        return await self._cached_text(paper) is not None

    async def _cached_text(self, paper: Paper) -> str | None:
        cached = await self._repo.cached_summaries(
            [paper.paper_id], prompt_version=self.prompt_version, model=self.model
        )
        return cached.get(paper.paper_id)

    async def _shared(self, paper: Paper) -> Summary:
        key = (paper.paper_id, self.prompt_version, self.model)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._generate(paper))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _generate(self, paper: Paper) -> Summary:
        if self._llm is None:
            return Summary(paper.paper_id, fallback_summary(paper), is_fallback=True)
        # Another channel's task may have stored it between our cache read and this task's start
        # (its in-flight entry is gone once it finishes): look once more before paying for it.
        cached = await self._cached_text(paper)
        if cached is not None:
            return Summary(paper.paper_id, cached, is_fallback=False, from_cache=True)
        # Paper text is untrusted: one line each, no invisible characters, no sentences that
        # instruct the model (the same treatment as answer excerpts).
        untrusted_abstract = remove_instructions(sanitize_source_text(paper.abstract))
        abstract, _ = truncate_tokens(untrusted_abstract, ABSTRACT_MAX_TOKENS, self._encoding)
        title = sanitize_source_text(paper.title)
        prompt = self._template.render(title=title, abstract=abstract or "(no abstract)")
        try:
            async with self._semaphore:
                completion = await self._llm.generate(
                    system=prompt.system, user=prompt.user, max_tokens=self._max_tokens, stop=_STOP
                )
        except LLMError as exc:
            log.warning("digest.summary_fallback", paper_id=paper.paper_id, error=str(exc)[:300])
            return Summary(paper.paper_id, fallback_summary(paper), is_fallback=True)
        text = clean_summary(completion.text)
        if not text:
            log.warning(
                "digest.summary_empty", paper_id=paper.paper_id, finish_reason=completion.finish_reason
            )
            return Summary(paper.paper_id, fallback_summary(paper), is_fallback=True)
        await self._repo.store_summary(
            paper.paper_id, prompt_version=self.prompt_version, model=self.model, text=text
        )
        tokens = completion.prompt_tokens + completion.completion_tokens
        return Summary(paper.paper_id, text, is_fallback=False, tokens=tokens)


# Labels shown under a summary that is not the LLM's (Discord: "-# (…)", CLI: " (…)").
SUMMARIZER_UNAVAILABLE = "first sentences of the abstract; the summarizer was unavailable"
BUDGET_SPENT = "first sentences of the abstract; this server has used today's LLM budget"


@dataclass(frozen=True)
class CardSummary:
    """A paper card's summary; `note` says why it is not the LLM's (None when it is)."""

    text: str
    note: str | None = None


class CardSummaries:
    """Summaries for `/paper` and the Summarize button, charged to the guild's daily token budget
    when they are made (cached ones are free). A guild that has spent its budget still gets the
    card, with the abstract's first sentences instead of a new summary. Without a state database
    (no summary cache) the card shows the paper's own summary or abstract."""

    def __init__(self, summaries: SummaryService | None, budget: TokenBudget) -> None:
        self._summaries = summaries
        self._budget = budget

    async def for_card(self, paper: Paper, guild_id: int | None) -> CardSummary:
        summaries = self._summaries
        if summaries is None:
            return CardSummary(paper.ai_summary or paper.abstract)
        if not await self._budget.has_room(guild_id) and not await summaries.is_cached(paper):
            return CardSummary(fallback_summary(paper), BUDGET_SPENT)
        summary = (await summaries.summarize([paper]))[paper.paper_id]
        await self._budget.spend(guild_id, summary.tokens)
        return CardSummary(summary.text, SUMMARIZER_UNAVAILABLE if summary.is_fallback else None)
