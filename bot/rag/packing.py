"""Number the retrieved chunks, fit them into the prompt's token budget, order them for long contexts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from bot.core.papers import Paper, clean_user_text
from bot.core.words import STOP_WORDS
from bot.rag.question_form import asks_whether
from bot.retrieval.index import ChunkHit
from bot.retrieval.tokens import count_tokens, truncate_tokens

MIN_SOURCE_TOKENS = 48

# Source text must not be able to close the excerpt block and speak as the prompt, nor forge a line
# of the prompt's structure ("Question:", "Answer:", "[2] Title") inside it: each source is one line,
# without the invisible characters that could hide a delimiter ("EXCERPTS>\u200b>>").
_DELIMITERS = re.compile(r"<<<\s*EXCERPTS|EXCERPTS\s*>>>|<<<|>>>", re.IGNORECASE)
# The end of a whole sentence, closing quotes or brackets allowed.
_WHOLE_SENTENCE_END = re.compile(r"[.!?][\"')\]”’]*$")


def cut_mid_sentence(text: str) -> bool:
    """`text` stops inside a sentence: an excerpt cut to fit its share of the prompt."""
    return not _WHOLE_SENTENCE_END.search(text.strip())


@dataclass(frozen=True)
class Source:
    number: int  # the [n] the model sees; 1 = the strongest retrieval result
    paper: Paper
    text: str
    score: float
    # A full-text passage's place in the paper (None for title + abstract chunks): "§3.2 Training",
    # body/caption/table, its PDF page, its arXiv HTML anchor.
    section: str | None = None
    kind: str | None = None
    page: int | None = None
    anchor: str | None = None

    @property
    def where(self) -> str:
        """Where in the paper: "§3.2 Training (p. 4)", "§4 Results, table"; "" for an abstract."""
        if not self.section or self.kind == "abstract":
            return ""
        kind = f", {self.kind}" if self.kind in ("caption", "table") else ""
        page = f" (p. {self.page})" if self.page else ""
        return f"{self.section}{kind}{page}"


# A sentence of paper text that addresses the model instead of the reader: it starts with an
# imperative, speaks of "your system prompt", or asks to ignore previous instructions. The excerpt
# block already marks paper text as data; dropping these keeps a small model from obeying or
# quoting them. (No sentence of the 11,010 papers in ../shared/data matches.)
_INSTRUCTION = re.compile(
    r"^\W*(?:ignore|disregard|forget|override|reveal|print|repeat|reply|respond|say|write)\b"
    r"|\byour\s+(?:system\s+prompt|instructions|rules|prompt)\b"
    r"|\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+|the\s+)?(?:previous|prior|above|preceding|earlier)\s+"
    r"(?:instructions|rules|prompts?|directions)\b"
    r"|\byou\s+are\s+now\b|\bnew\s+instructions\s*:",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# A table passage is its caption, then its rows joined by "; " (bot.fulltext.latex): each row is a
# piece of its own, so a question about one figure keeps that row, not only the caption.
_SENTENCE_OR_ROW = re.compile(r"(?<=[.!?;])\s+")


def sanitize_source_text(text: str) -> str:
    return clean_user_text(_DELIMITERS.sub(" ", clean_user_text(text)))


def remove_instructions(text: str) -> str:
    """`text` without the sentences that give the model instructions."""
    return " ".join(s for s in _SENTENCE.split(text) if not _INSTRUCTION.search(s))


def both_ends_order(sources: Sequence[Source]) -> list[Source]:
    """Strongest first and last, weakest in the middle (Long-Context LLMs Meet RAG):
    ranks 1, 3, 5, … then …, 6, 4, 2."""
    ranked = sorted(sources, key=lambda s: s.number)
    return ranked[0::2] + ranked[1::2][::-1]


@lru_cache(maxsize=4096)
def _safe_line(text: str, *, drop_instructions: bool) -> str:
    """Cached: each source is formatted once to be measured and again to be rendered."""
    line = sanitize_source_text(text)
    return remove_instructions(line) if drop_instructions else line


def format_source(source: Source) -> str:
    body = _safe_line(source.text, drop_instructions=True)
    title = _safe_line(source.paper.title, drop_instructions=False)
    where = f" — {_safe_line(source.where, drop_instructions=False)}" if source.where else ""
    return f"[{source.number}] {title}{where}\n{body}"


_WORD = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and len(w) > 1}


def focus(text: str, question: str, max_tokens: int, encoding: str, *, rows: bool = False) -> str:
    """A passage cut to `max_tokens` around its sentence that shares the most content words with
    the question (then its neighbours, before and after, while they fit), not at its head: in a
    full text the answer is as likely at a passage's end as at its start."""
    if not question or count_tokens(text, encoding) <= max_tokens:
        return truncate_tokens(text, max_tokens, encoding)[0]
    sentences = (_SENTENCE_OR_ROW if rows else _SENTENCE).split(text)
    wanted = _content_words(question)
    scores = [len(wanted & _content_words(sentence)) for sentence in sentences]
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    first = last = best
    used = count_tokens(sentences[best], encoding)
    if used > max_tokens:
        return truncate_tokens(sentences[best], max_tokens, encoding)[0]
    while True:
        grown = False
        for i in (last + 1, first - 1):  # after first: a sentence that names a thing, then its figures
            if 0 <= i < len(sentences) and not first <= i <= last:
                cost = count_tokens(sentences[i], encoding) + 1
                if used + cost <= max_tokens:
                    used += cost
                    first, last = min(first, i), max(last, i)
                    grown = True
        if not grown:
            return " ".join(sentences[first : last + 1])


def pack_sources(
    hits: Sequence[ChunkHit],
    *,
    budget_tokens: int,
    encoding: str,
    share_among: int = 1,
    question: str = "",
) -> list[Source]:
    """Keep the best hits whose formatted text fits in `budget_tokens`: one title + abstract chunk
    per paper, and any distinct full-text passages (a question about one paper's body needs several).

    With `share_among` = k, each excerpt is first cut to about budget/k tokens, so a tight budget
    holds k short excerpts rather than one long one; a full-text passage is cut around the sentence
    nearest the `question` (`focus`), an abstract at its end — except for a yes/no question ("Is
    there work on …?"), which restates the claim it asks about: its answer is the abstract's sentence
    that makes that claim, wherever it is (chosen on bench/answer_eval.py's dev yes/no questions).
    """
    per_source = max(MIN_SOURCE_TOKENS, budget_tokens // max(1, share_among))
    focus_abstracts = asks_whether(question)
    chosen: list[Source] = []
    used = 0
    seen: set[str] = set()
    for hit in hits:
        section, kind = hit.extra.get("section"), hit.extra.get("kind")
        passage = kind not in (None, "abstract")  # a full-text passage: several per paper may help
        key = f"{hit.paper.paper_id}#{hit.chunk_no}" if passage else hit.paper.paper_id
        if key in seen:
            continue
        text = hit.text.removeprefix(hit.paper.title).strip()
        heading = Source(
            number=len(chosen) + 1, paper=hit.paper, text="", score=hit.score,
            section=section, kind=kind, page=hit.extra.get("page"),
            anchor=hit.extra.get("anchor"),
        )  # fmt: skip
        # The share covers the excerpt's title line too, so that k excerpts fit the budget.
        room = max(MIN_SOURCE_TOKENS, per_source - count_tokens(format_source(heading), encoding) - 2)
        body = (
            focus(text, question, room, encoding, rows=kind == "table")
            if passage or focus_abstracts
            else truncate_tokens(text, room, encoding)[0]
        )
        candidate = replace(heading, text=body)
        cost = count_tokens(format_source(candidate), encoding) + 2  # the blank line between sources
        if used + cost > budget_tokens:
            continue  # a shorter, weaker source may still fit
        chosen.append(candidate)
        seen.add(key)
        used += cost
    return chosen


def render_sources(sources: Sequence[Source]) -> str:
    return "\n\n".join(format_source(s) for s in both_ends_order(sources))
