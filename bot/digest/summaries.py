"""Digest summaries by the LLM (prompts/summary.txt), checked against the abstract and cached per
(paper, prompt and check version, model).

Generation runs with bounded concurrency, and a paper being summarized for one channel is awaited,
not summarized again, by the others: ten channels pay for one call.

Every summary is checked against the title and abstract the model was given (`grounding`): the
sentences they do not support, the prompt's own text and repeated lines are dropped. When the TL;DR
itself does not hold up, the paper gets Hugging Face's AI summary when its record has one, else the
first sentences of its abstract, each with a `note` saying so. What the check kept is cached; a
summary that did not hold up is cached as "" (the fallback is rebuilt from the record), so the model
is not paid again for the same paper, prompt and model. When the LLM fails, the paper gets the first
sentences of its abstract, noted as such and never cached, so a later digest tries the LLM again.
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
from bot.digest.grounding import CHECK_VERSION, check_summary, prompt_fixed_text
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


# Labels shown under a summary that is not the LLM's (Discord: "-# (…)", CLI: " (…)").
SUMMARIZER_UNAVAILABLE = "first sentences of the abstract; the summarizer was unavailable"
BUDGET_SPENT = "first sentences of the abstract; this server has used today's LLM budget"
SUMMARY_UNSUPPORTED = "first sentences of the abstract; the model's summary did not match the abstract"
HF_AI_SUMMARY = "Hugging Face's AI summary; the model's summary did not match the abstract"


@dataclass(frozen=True)
class Summary:
    paper_id: str
    text: str
    note: str | None = None  # why this is not the model's summary (one of the labels above); None when it is
    from_cache: bool = False
    tokens: int = 0  # LLM tokens (prompt + completion) this summary cost when it was made

    @property
    def is_fallback(self) -> bool:
        return self.note is not None


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


def model_input(paper: Paper, encoding: str = "cl100k_base") -> tuple[str, str]:
    """The title and abstract the model is given, and its summary is checked against.

    Paper text is untrusted: one line each, no invisible characters, no sentences that instruct the
    model (the same treatment as answer excerpts), so an instruction in an abstract supports nothing.
    """
    abstract = remove_instructions(sanitize_source_text(paper.abstract))
    return sanitize_source_text(paper.title), truncate_tokens(abstract, ABSTRACT_MAX_TOKENS, encoding)[0]


def unsupported_fallback(paper: Paper) -> tuple[str, str]:
    """What a paper shows when the model's summary did not hold up, and its label: Hugging Face's AI
    summary when the record has one, else the abstract's first sentences."""
    ai_summary = clean_text(paper.ai_summary or "")
    if ai_summary:
        return _shorten(ai_summary, SUMMARY_MAX_CHARS), HF_AI_SUMMARY
    return fallback_summary(paper), SUMMARY_UNSUPPORTED


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
        self._prompt_text = prompt_fixed_text(self._template.parts)  # rules and worked example
        self._encoding = encoding
        self._inflight: dict[tuple[str, str, str], asyncio.Task[Summary]] = {}

    @property
    def prompt_version(self) -> str:
        """The template's version and the check's: what was cached under an older one is made again."""
        return f"{self._template.version}-{CHECK_VERSION}"

    @property
    def model(self) -> str:
        return self._llm.model if self._llm is not None else NO_LLM_MODEL

    async def summarize(self, papers: Sequence[Paper]) -> dict[str, Summary]:
        """A summary for every paper (by paper id), from the cache, the LLM, or the fallback."""
        unique = list({p.paper_id: p for p in papers}.values())
        cached = await self._repo.cached_summaries(
            [p.paper_id for p in unique], prompt_version=self.prompt_version, model=self.model
        )
        by_id = {p.paper_id: p for p in unique}
        results = {pid: self._cached_summary(by_id[pid], text) for pid, text in cached.items()}
        missing = [p for p in unique if p.paper_id not in results]
        generated = await asyncio.gather(*(self._shared(p) for p in missing))
        results.update({s.paper_id: s for s in generated})
        log.info(
            "digest.summaries",
            papers=len(unique),
            cached=len(cached),
            fallback=sum(s.is_fallback for s in generated),
            unsupported=sum(s.note in (HF_AI_SUMMARY, SUMMARY_UNSUPPORTED) for s in results.values()),
        )
        return results

    async def is_cached(self, paper: Paper) -> bool:
        return await self._cached_text(paper) is not None

    def _cached_summary(self, paper: Paper, text: str) -> Summary:
        if not text:  # the model's summary did not hold up when it was made
            fallback, note = unsupported_fallback(paper)
            return Summary(paper.paper_id, fallback, note, from_cache=True)
        return Summary(paper.paper_id, text, from_cache=True)

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
            return Summary(paper.paper_id, fallback_summary(paper), SUMMARIZER_UNAVAILABLE)
        # Another channel's task may have stored it between our cache read and this task's start
        # (its in-flight entry is gone once it finishes): look once more before paying for it.
        cached = await self._cached_text(paper)
        if cached is not None:
            return self._cached_summary(paper, cached)
        title, abstract = model_input(paper, self._encoding)
        prompt = self._template.render(title=title, abstract=abstract or "(no abstract)")
        try:
            async with self._semaphore:
                completion = await self._llm.generate(
                    system=prompt.system,
                    user=prompt.user,
                    turns=prompt.turns,
                    reply_prefix=prompt.reply_prefix,
                    max_tokens=self._max_tokens,
                    stop=_STOP,
                )
        except LLMError as exc:
            log.warning("digest.summary_fallback", paper_id=paper.paper_id, error=str(exc)[:300])
            return Summary(paper.paper_id, fallback_summary(paper), SUMMARIZER_UNAVAILABLE)
        tokens = completion.prompt_tokens + completion.completion_tokens
        text = clean_summary(completion.text)
        if not text:
            log.warning(
                "digest.summary_empty", paper_id=paper.paper_id, finish_reason=completion.finish_reason
            )
            return Summary(paper.paper_id, fallback_summary(paper), SUMMARIZER_UNAVAILABLE)
        checked = check_summary(text, source=f"{title}\n{abstract}", prompt_text=self._prompt_text)
        if checked.dropped:
            log.info(
                "digest.summary_checked",
                paper_id=paper.paper_id,
                kept=checked.kept,
                dropped=[d.reason for d in checked.dropped],
                holds_up=checked.holds_up,
            )
        await self._repo.store_summary(
            paper.paper_id, prompt_version=self.prompt_version, model=self.model, text=checked.text
        )
        if not checked.holds_up:
            fallback, note = unsupported_fallback(paper)
            return Summary(paper.paper_id, fallback, note, tokens=tokens)
        return Summary(paper.paper_id, checked.text, tokens=tokens)


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
        return CardSummary(summary.text, summary.note)
