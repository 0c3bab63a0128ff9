"""Check the model's [n] citations against the sources it was shown; build the Sources list ourselves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.rag.packing import Source

ABSTRACT_SECTION = "Abstract"
# "[2]", "[1, 3]", "[1; 3]": one citation group, its numbers in group 1.
CITATION_GROUP = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")


@dataclass(frozen=True)
class Citation:
    n: int
    paper_id: str
    title: str
    url: str | None
    # Where in the paper: "§3.2 Training (p. 4)" for a full-text passage, "Abstract" for a title +
    # abstract chunk; and the passage text the LLM was shown.
    section: str | None = None
    passage: str = ""

    @property
    def where(self) -> str:
        """The section to show beside the title: a full-text passage's place; nothing for an
        abstract (every paper has one, and "Title Abstract" reads as part of the title)."""
        return "" if not self.section or self.section == ABSTRACT_SECTION else self.section


def source_url(source: Source) -> str | None:
    """The passage's section on arxiv.org/html when its anchor is known, else the paper's page."""
    if source.anchor and source.paper.arxiv_id:
        return f"https://arxiv.org/html/{source.paper.arxiv_id}#{source.anchor}"
    return source.paper.url


def verify_citations(answer: str, sources: Sequence[Source]) -> tuple[str, list[Citation]]:
    """Drop every [n] that is not a shown source; return the cleaned answer and the valid citations
    in order of first use, taken from the retrieval results (never from model text)."""
    by_number = {s.number: s for s in sources}
    used: list[int] = []

    def keep_valid(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"[,;]", match.group(1))]
        valid = [n for n in numbers if n in by_number]
        for n in valid:
            if n not in used:
                used.append(n)
        return "".join(f"[{n}]" for n in valid)

    cleaned = CITATION_GROUP.sub(keep_valid, answer)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", cleaned)
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned).strip()
    citations = [
        Citation(
            n=n,
            paper_id=by_number[n].paper.paper_id,
            title=by_number[n].paper.title,
            url=source_url(by_number[n]),
            section=by_number[n].where or by_number[n].section,
            passage=by_number[n].text,
        )
        for n in used
    ]
    return cleaned, citations


def format_sources_list(citations: Sequence[Citation]) -> str:
    lines = []
    for c in citations:
        label = f"{c.title} {c.where}" if c.where else c.title
        lines.append(f"[{c.n}] {label} — {c.url}" if c.url else f"[{c.n}] {label}")
    return "\n".join(lines)
