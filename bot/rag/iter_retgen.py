"""Iter-RetGen (Shao et al., 2023): retrieve with the question, generate, retrieve with the question
plus that draft, generate again; the last generation is the answer.

Each generation sees only its own iteration's sources. A conversation's follow-up is first made
standalone. Each sentence of the answer shows the excerpt that supports it, checked in code
(`bot.rag.attribution`), and a sentence none supports is dropped; the Sources list is the excerpts
cited, taken from the retrieval results, never from the model's text. A question asking for a paper
(yes/no, "Which method …?", "Where can I find …?") that the model does not answer from the excerpts
gets a passage, quoted and labelled: that of the paper its search ranked first by a clear margin
(`bot.rag.extractive.leader_match`), else the closest one when it is close enough
(`bot.rag.extractive.closest_match`); other unanswered questions get the fixed reply. A question
asking for several papers that the model answers without the paper closest to it gets that paper's
passage quoted after the answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from bot.core.config import MAX_ITERATIONS, MAX_TOP_K, LLMSettings, RagSettings
from bot.core.errors import UserInputError
from bot.core.papers import PAPER_REFERENCE, clean_user_text
from bot.core.prompts import load_prompt
from bot.llm.client import LLMClient, completion_prompt
from bot.llm.errors import LLMBusyError, LLMError
from bot.rag.attribution import Attribution, attribute, is_refusal, mark_cut_ends
from bot.rag.citations import Citation, verify_citations
from bot.rag.diversity import cap_per_section
from bot.rag.echo import PromptEcho
from bot.rag.extractive import (
    ALSO_CLOSEST_LABEL,
    BUSY_LABEL,
    EXTRACTIVE_LABEL,
    UNUSABLE_LABEL,
    closest_match,
    closest_passage,
    extractive_answer,
    leader_match,
    quote,
)
from bot.rag.packing import Source, pack_sources, render_sources
from bot.rag.question_form import asks_for_papers, seeks_paper
from bot.retrieval.index import ChunkHit, SearchFilter
from bot.retrieval.index.base import fused_ranking
from bot.retrieval.search import SearchService
from bot.retrieval.tokens import count_tokens, truncate_tokens

log = structlog.get_logger(__name__)

CANNOT_ANSWER = "I can't answer that from these papers."
# Small models go on to list the excerpts again ("[3] Title…") or start a new question: stop there.
ANSWER_STOPS = ["\nQuestion:", "<<<EXCERPTS", "EXCERPTS>>>", "\n\n\n", "\n[", "\n\n["]
# The retrieval query of iteration t > 1 is the question plus the previous draft; BM25 reads all of
# it, the dense model reads its first ~256 word pieces.
MAX_RETRIEVAL_QUERY_TOKENS = 512
# Candidates retrieved per excerpt slot when RAG_MAX_PER_SECTION caps passages from one section.
SECTION_CAP_OVERFETCH = 3
# The usual reciprocal-rank-fusion constant (Cormack et al., 2009).
ANCHOR_RRF_K = 60


class QuestionError(UserInputError, ValueError):
    """The question cannot be answered as asked; the message is for the user."""


class Retriever(Protocol):
    """Where an answer's excerpts come from: the paper search by default; `/ask scope:channel` adds the
    channel's remembered messages (bot.memory), each shown as an excerpt like a paper's."""

    async def __call__(
        self, query: str, *, limit: int, search_filter: SearchFilter | None, max_query_tokens: int
    ) -> list[ChunkHit]: ...


class AnswerProgress(Protocol):
    """What a front end (Discord, CLI) is told while an answer is being made."""

    async def stage(self, step: str, iteration: int, total: int) -> None:
        """`step` is "searching" or "thinking"."""

    async def partial(self, text: str) -> None:
        """The final generation so far, as it streams."""

    async def queued(self, ahead: int) -> None:
        """Waiting for the language model: `ahead` questions (or summaries) are being answered or
        waiting before this one; told again whenever it moves, and 0 when its turn comes."""


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass
class IterationTrace:
    query: str
    sources: list[Source]
    generation: str


@dataclass
class Answer:
    question: str
    standalone_question: str
    text: str
    citations: list[Citation]
    iterations: int
    llm_calls: int = 0
    retrievals: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    llm_seconds: float = 0.0  # time inside LLM calls; the rest is retrieval and prompt assembly
    fallback: bool = False  # extractive answer: the LLM was unavailable
    cannot_answer: bool = False
    # A question asking for a paper that the model did not answer from the excerpts: the closest
    # passage, quoted.
    closest_match: bool = False
    # False when a caller's retriever (scope:channel) ranked the excerpts: its scores do not tell how
    # far the first paper leads (`bot.rag.extractive.leader_match`).
    ranked_by_search: bool = True
    # A question asking for papers answered without the paper closest to it: that paper's passage,
    # quoted after the model's answer under `ALSO_CLOSEST_LABEL`.
    closest_added: bool = False
    # Kept for the JSON and the Sources heading: every sentence shown now cites the excerpt that
    # supports it, so this is always True.
    cited: bool = True
    queue_seconds: float = 0.0  # waiting for the language model (part of `seconds`)
    trace: list[IterationTrace] = field(default_factory=list)
    # The excerpts the text's [n] number: the last iteration's, or an earlier draft's when that
    # draft is the answer.
    sources: list[Source] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "answer": self.text,
            "citations": [
                {
                    "n": c.n,
                    "paper_id": c.paper_id,
                    "title": c.title,
                    "url": c.url,
                    "section": c.section,
                    "passage": c.passage,
                }
                for c in self.citations
            ],
            "iterations": self.iterations,
            "llm_calls": self.llm_calls,
            "retrievals": self.retrievals,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "fallback": self.fallback,
            "cannot_answer": self.cannot_answer,
            "closest_match": self.closest_match,
            "closest_added": self.closest_added,
            "cited": self.cited,
            "queue_seconds": round(self.queue_seconds, 3),
        }


def final_answer_line(generation: str) -> str:
    """The text after the last "Answer:"; the whole generation when the model skipped the line. A
    paper's own citation copied from an excerpt ("(ref. 27)", "(ref. DBLP:journals/…)") is left
    out: it points into that paper's bibliography, not to a source the reader is shown."""
    parts = re.split(r"(?im)^\s*answer\s*:", generation)
    return PAPER_REFERENCE.sub("", parts[-1] if len(parts) > 1 else generation).strip()


def named_pointers(text: str, sources: Sequence[Source]) -> str:
    """An answer that is only citation markers ("[1][3]": small models answer "which papers…?" so)
    written out as the titles it points to, one a line: "- 2D Matryoshka Sentence Embeddings [1]"."""
    if re.search(r"[^\W\d_]", re.sub(r"\[[\d,;\s]*\]", "", text)):
        return text
    titles = {s.number: s.paper.title for s in sources}
    numbers = [int(n) for n in re.findall(r"\d+", text) if int(n) in titles]
    return "\n".join(f"- {titles[n]} [{n}]" for n in dict.fromkeys(numbers)) if numbers else text


def anchor_to_question(
    draft_hits: list[ChunkHit], question_hits: list[ChunkHit], *, limit: int, shown: int | None = None
) -> list[ChunkHit]:
    """Reciprocal-rank fusion of the question + draft ranking with the question's own ranking.

    A chunk both rankings found rises to the top; otherwise the two alternate, the question's first
    on ties. A good draft still brings in what the question missed; a draft about the wrong paper
    cannot displace the question's best match: it stays among the first `shown` (the k excerpts the
    model reads), though with long rankings every chunk both found outranks it by fusion alone."""
    chunks = {(h.paper.paper_id, h.chunk_no): h for h in [*question_hits, *draft_hits]}
    ranked = fused_ranking(
        [((h.paper.paper_id, h.chunk_no), h.score) for h in draft_hits],
        [((h.paper.paper_id, h.chunk_no), h.score) for h in question_hits],  # first on ties
        limit=limit,
        fusion="rrf",
        rrf_k=ANCHOR_RRF_K,
    )
    keys = [key for key, _ in ranked]
    if question_hits and shown:
        best = (question_hits[0].paper.paper_id, question_hits[0].chunk_no)
        if best not in keys[:shown]:
            keys = [key for key in keys if key != best]
            keys.insert(shown - 1, best)
    return [chunks[key] for key in keys[:limit]]


def check_answer_options(iterations: int | None, top_k: int | None) -> None:
    """The bounds of T and k chosen for one question (None: the configured default)."""
    if iterations is not None and not 1 <= iterations <= MAX_ITERATIONS:
        raise QuestionError(f"iterations must be between 1 and {MAX_ITERATIONS}")
    if top_k is not None and not 1 <= top_k <= MAX_TOP_K:
        raise QuestionError(f"k must be between 1 and {MAX_TOP_K}")


class AnswerService:
    def __init__(
        self,
        search: SearchService,
        llm: LLMClient | None,
        rag: RagSettings,
        llm_settings: LLMSettings,
        *,
        encoding: str = "cl100k_base",
        prompt: str = "answer",
    ) -> None:
        self._search = search
        self._llm = llm
        self._rag = rag
        self._llm_settings = llm_settings
        self._encoding = encoding
        self._answer_prompt = load_prompt(prompt)
        self._standalone_prompt = load_prompt("standalone_question")
        # What the model must not show users even if it repeats it (or a paper asks it to).
        self._echo = PromptEcho(
            self._answer_prompt.system,
            "\n".join(self._answer_prompt.parts),
            self._answer_prompt.render(sources="", question="", cannot_answer=CANNOT_ANSWER).system,
        )

    def validate_question(self, question: str) -> str:
        text = clean_user_text(question)  # "\u200b" or control characters alone are an empty question
        if not text:
            raise QuestionError("the question is empty; ask something about the papers")
        if len(text) > self._rag.max_question_chars:
            raise QuestionError(
                f"the question is {len(text)} characters long; the limit is {self._rag.max_question_chars}"
            )
        return text

    def source_budget(self, question: str) -> int:
        """Tokens left for sources: the prompt budget minus the prompt without sources."""
        empty = self._answer_prompt.render(sources="", question=question, cannot_answer=CANNOT_ANSWER)
        text = completion_prompt(empty.system, empty.user, empty.turns, empty.reply_prefix)
        fixed = count_tokens(text, self._encoding)
        # and a few tokens per message for a chat template's role markers
        return self._llm_settings.prompt_tokens - fixed - 16 - 4 * len(empty.turns)

    async def answer(
        self,
        question: str,
        *,
        history: Sequence[Turn] = (),
        iterations: int | None = None,
        top_k: int | None = None,
        search_filter: SearchFilter | None = None,
        progress: AnswerProgress | None = None,
        retrieve: Retriever | None = None,
    ) -> Answer:
        options = (question, history, iterations, top_k, search_filter, progress, retrieve)
        if self._llm is None:
            return await self._answer(*options)
        # One place in the LLM's queue for the whole answer: taken at its first generation, so the
        # draft and the final generation run back to back and the next question waits for both.
        async with self._llm.queue.turn(on_wait=progress.queued if progress else None) as place:
            result = await self._answer(*options)
        result.queue_seconds = place.waited_s
        return result

    async def _answer(
        self,
        question: str,
        history: Sequence[Turn],
        iterations: int | None,
        top_k: int | None,
        search_filter: SearchFilter | None,
        progress: AnswerProgress | None,
        retrieve: Retriever | None = None,
    ) -> Answer:
        started = time.perf_counter()
        question = self.validate_question(question)
        check_answer_options(iterations, top_k)
        t_max = iterations or self._rag.iterations
        k = top_k or self._rag.top_k
        result = Answer(
            question=question, standalone_question=question, text="", citations=[], iterations=0,
            ranked_by_search=retrieve is None,
        )  # fmt: skip
        if history and self._llm is not None:
            result.standalone_question = await self._standalone(question, history, result)
        standalone = result.standalone_question

        draft = ""
        sources: list[Source] = []
        question_hits: list[ChunkHit] = []
        for t in range(1, t_max + 1):
            draft_signal = self._draft_signal(draft) if t > 1 else ""
            query = f"{standalone}\n{draft_signal}" if draft_signal else standalone
            query, _ = truncate_tokens(query, MAX_RETRIEVAL_QUERY_TOKENS, self._encoding)
            if progress:
                await progress.stage("searching", t, t_max)
            # With a per-section cap, more candidates than k, so a capped section's slots go to the
            # next passages from elsewhere. A caller's own retriever (scope:channel interleaves the
            # channel's messages with papers) is packed as it returns its hits.
            capped = retrieve is None and self._rag.max_per_section > 0
            fetch = k * SECTION_CAP_OVERFETCH if capped else k
            hits = await (retrieve or self._search.search_chunks)(
                query, limit=fetch, search_filter=search_filter, max_query_tokens=MAX_RETRIEVAL_QUERY_TOKENS
            )
            result.retrievals += 1
            if t == 1:
                question_hits = hits
            elif self._rag.anchor_question and query != standalone:
                # As many as the retrieval returned: a caller's retriever may return more than k
                # (scope:channel adds the channel's messages to k papers), and round 1 showed them all.
                hits = anchor_to_question(hits, question_hits, limit=max(fetch, len(hits)), shown=k)
            if capped:
                hits = cap_per_section(hits, limit=k, per_section=self._rag.max_per_section)
            sources = pack_sources(
                hits, budget_tokens=self.source_budget(standalone), encoding=self._encoding, share_among=k,
                question=standalone,
            )  # fmt: skip
            result.iterations = t
            if not sources:
                result.trace.append(IterationTrace(query=query, sources=[], generation=""))
                break
            if self._llm is None:
                return await self._fallback(result, sources, started)
            if progress:
                await progress.stage("thinking", t, t_max)
            try:
                draft = await self._generate(
                    standalone, sources, result, stream_to=progress if t == t_max else None
                )
            except LLMError as exc:
                log.warning("rag.llm_unavailable", error=str(exc), iteration=t)
                label = BUSY_LABEL if isinstance(exc, LLMBusyError) else EXTRACTIVE_LABEL
                return await self._fallback(result, sources, started, label=label)
            result.trace.append(IterationTrace(query=query, sources=sources, generation=draft))

        return await self._finish(result, draft, sources, started)

    def _draft_signal(self, draft: str) -> str:
        """What of the previous draft steers the next retrieval. Nothing when the draft's answer is
        unusable — only a copy of the prompt's rules or worked example (small models do that), or
        "can't answer" — since such a draft would only pull in unrelated papers; otherwise the draft
        minus anything it copied from the prompt."""
        answer = self._echo.strip(final_answer_line(draft))
        if (
            not answer
            or self._echo.mostly_copied(answer)
            or CANNOT_ANSWER.lower().rstrip(".") in answer.lower()
        ):
            return ""
        signal = self._echo.strip(draft)
        if not re.sub(r"(?i)\b(?:reasoning|answer)\s*:|\W", "", signal):
            return ""  # only labels and punctuation are left
        return signal

    async def _standalone(self, question: str, history: Sequence[Turn], result: Answer) -> str:
        lines: list[str] = []
        budget = self._rag.history_tokens
        for turn in reversed(history):  # newest turns first, until the budget is spent
            line = f"{'User' if turn.role == 'user' else 'Assistant'}: {' '.join(turn.text.split())}"
            cost = count_tokens(line, self._encoding)
            if cost > budget:
                break
            budget -= cost
            lines.insert(0, line)
        if not lines:
            return question
        prompt = self._standalone_prompt.render(history="\n".join(lines), question=question)
        assert self._llm is not None
        try:
            completion = await self._llm.generate(
                system=prompt.system, user=prompt.user, max_tokens=64, stop=["\n"]
            )
        except LLMError as exc:
            log.warning("rag.standalone_failed", error=str(exc))
            return question
        self._count(result, completion.prompt_tokens, completion.completion_tokens, completion.seconds)
        rewritten = " ".join(completion.text.split())
        return rewritten if 3 <= len(rewritten) <= self._rag.max_question_chars else question

    async def _generate(
        self, question: str, sources: list[Source], result: Answer, stream_to: AnswerProgress | None = None
    ) -> str:
        prompt = self._answer_prompt.render(
            sources=render_sources(sources), question=question, cannot_answer=CANNOT_ANSWER
        )
        assert self._llm is not None
        request = {
            "system": prompt.system,
            "user": prompt.user,
            "turns": prompt.turns,
            "reply_prefix": prompt.reply_prefix,
            "max_tokens": self._llm_settings.answer_tokens,
            "stop": ANSWER_STOPS,
        }
        if stream_to is None:
            completion = await self._llm.generate(**request)  # type: ignore[arg-type]
        else:
            text = ""
            async with self._llm.stream(**request) as stream:  # type: ignore[arg-type]
                async for delta in stream:
                    text += delta
                    await stream_to.partial(self._echo.visible_partial(text))
            assert stream.completion is not None
            completion = stream.completion
        self._count(result, completion.prompt_tokens, completion.completion_tokens, completion.seconds)
        return completion.text.strip()

    @staticmethod
    def _count(result: Answer, prompt_tokens: int, completion_tokens: int, seconds: float) -> None:
        result.llm_calls += 1
        result.llm_seconds += seconds
        result.prompt_tokens += prompt_tokens
        result.completion_tokens += completion_tokens

    async def conclude(self, result: Answer, started: float | None = None) -> Answer:
        """The answer from `result.trace`: its last generation, attributed to that iteration's
        excerpts. Also how `bench/answer_eval.py --replay` re-checks recorded generations."""
        last = result.trace[-1] if result.trace else IterationTrace(query="", sources=[], generation="")
        return await self._finish(result, last.generation, last.sources, started)

    async def _finish(
        self, result: Answer, generation: str, sources: list[Source], started: float | None
    ) -> Answer:
        started = time.perf_counter() if started is None else started
        line = final_answer_line(generation)
        text = self._echo.strip(line)
        if self._echo.mostly_copied(text):
            text = ""  # a rewording of the worked example is no answer either
        echoed = bool(sources and line and not text)  # only the prompt's example or rules repeated
        # Each sentence shows the excerpt that supports it; what no excerpt supports is dropped.
        attributed = await self._attributed(result, text, sources)
        if attributed is None and len(result.trace) > 1:
            # The last generation declined, echoed the prompt or nothing of it holds, but an earlier
            # draft answered from the excerpts it was shown: that draft, checked the same way, is the
            # answer.
            for earlier in reversed(result.trace[:-1]):
                draft = self._echo.strip(final_answer_line(earlier.generation))
                if draft and not self._echo.mostly_copied(draft):
                    attributed = await self._attributed(result, draft, earlier.sources)
                if attributed is not None:
                    sources = earlier.sources
                    log.info("rag.answer_from_draft", iteration=result.trace.index(earlier) + 1)
                    break
        if attributed is None and echoed:
            log.warning("rag.answer_was_prompt_echo")
            return await self._fallback(result, sources, started, label=UNUSABLE_LABEL)
        quoted = None
        if attributed is None and seeks_paper(result.standalone_question):
            # "Is there a paper that …?", "Which method …?": the small model often declines, denies or
            # only repeats the question while the paper asked about is shown. The search's clear
            # favourite answers best, else the passage closest to the question.
            quoted = await self._leader_match(result, sources)
            if quoted is None:
                quoted = await closest_match(result.standalone_question, sources, self._search.embedder)
        if quoted is not None:
            result.text, result.citations = verify_citations(quoted, sources)
            result.sources, result.closest_match = sources, True
        elif attributed is None:
            result.text, result.cannot_answer = CANNOT_ANSWER, True
        else:
            shown = mark_cut_ends(named_pointers(attributed.text, sources), sources)
            text, citations = verify_citations(shown, sources)
            added = await self._closest_not_named(result.standalone_question, citations, sources)
            if added is not None:
                text, citations = verify_citations(text + "\n" + added, sources)
                result.closest_added = True
            result.text, result.citations, result.sources = text, citations, sources
        result.seconds = time.perf_counter() - started
        log.info(
            "rag.answered",
            iterations=result.iterations,
            llm_calls=result.llm_calls,
            citations=len(result.citations),
            cannot_answer=result.cannot_answer,
            closest_match=result.closest_match,
            closest_added=result.closest_added,
            seconds=round(result.seconds, 2),
        )
        return result

    async def _leader_match(self, result: Answer, sources: list[Source]) -> str | None:
        """The passage of the paper that the question's own search ranked first by a clear margin
        (`leader_match`), for a question asking for a paper that the model left unconfirmed."""
        if not result.ranked_by_search or not result.trace:
            return None
        ranking = result.trace[0].sources  # the first retrieval's: the question's alone
        return await leader_match(result.standalone_question, ranking, sources, self._search.embedder)

    async def _closest_not_named(
        self, question: str, citations: Sequence[Citation], sources: list[Source]
    ) -> str | None:
        """For a question asking for several papers: the passage closest to it, quoted under
        `ALSO_CLOSEST_LABEL`, when its paper is not among those the answer cites. The small model
        lists a few of the papers shown and often not the one that matches best."""
        if not asks_for_papers(question):
            return None
        closest = await closest_passage(question, sources, self._search.embedder)
        if closest is None:
            return None
        named = {c.paper_id for c in citations}
        if any(s.number == closest[0] and s.paper.paper_id in named for s in sources):
            return None
        return ALSO_CLOSEST_LABEL + "\n" + quote([closest])

    async def _attributed(self, result: Answer, text: str, sources: list[Source]) -> Attribution | None:
        """`text` with each sentence cited by the excerpt that supports it; None when it is a refusal
        or no sentence of it holds."""
        if not sources or not text or is_refusal(text, CANNOT_ANSWER):
            return None
        question = result.standalone_question
        attributed = await attribute(text, sources, self._search.embedder, question=question)
        return attributed if attributed.text else None

    async def _fallback(
        self, result: Answer, sources: list[Source], started: float, label: str = EXTRACTIVE_LABEL
    ) -> Answer:
        result.fallback = True
        passages = await extractive_answer(
            result.standalone_question, sources, self._search.embedder, label=label
        )
        result.text, result.citations = verify_citations(passages, sources)
        result.sources = sources
        result.seconds = time.perf_counter() - started
        log.info("rag.extractive_fallback", sources=len(sources))
        return result
