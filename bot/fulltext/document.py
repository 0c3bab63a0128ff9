"""One model for a paper's full text, whatever format it was parsed from (PDF, LaTeX, arXiv HTML)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from bot.core.errors import UserInputError
from bot.core.papers import clean_text

BlockKind = Literal["body", "caption", "table"]
Format = Literal["pdf", "latex", "html"]


class FullTextError(UserInputError, ValueError):
    """A full text cannot be read; the message names the file and says why, for the user."""


@dataclass
class Block:
    """A paragraph of body text, a figure caption or a table (caption plus cell text)."""

    text: str
    kind: BlockKind = "body"
    page: int | None = None


@dataclass
class Section:
    title: str
    number: str | None = None  # "3.2"; None for unnumbered ("Abstract", "Acknowledgments")
    anchor: str | None = None  # the HTML id (arxiv.org/html/ID#S3.SS2), when the source has one
    blocks: list[Block] = field(default_factory=list)

    @property
    def label(self) -> str:
        """ "§3.2 Training", or the bare title when the section has no number."""
        return f"§{self.number} {self.title}".strip() if self.number else self.title

    @property
    def first_page(self) -> int | None:
        return next((b.page for b in self.blocks if b.page is not None), None)


@dataclass
class Document:
    source_format: Format
    title: str = ""
    authors: list[str] = field(default_factory=list)
    arxiv_id: str | None = None
    abstract: str = ""
    sections: list[Section] = field(default_factory=list)
    references: list[str] = field(default_factory=list)  # kept apart: never retrieved as content

    @property
    def body_blocks(self) -> int:
        return sum(len(s.blocks) for s in self.sections)

    def outline(self) -> list[str]:
        """Section labels in order (what /paper lists)."""
        return [s.label for s in self.sections if s.blocks]


_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")
_HYPHEN_BREAK = re.compile(r"(\w)-\s*\n\s*(\w)")


def tidy(text: str) -> str:
    """One line of readable text: words split across lines joined, whitespace collapsed."""
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", clean_text(text))


# Headings that end the body: what follows is the reference list.
REFERENCES_TITLE = re.compile(r"^\s*(?:\d+\.?\s*)?(references|bibliography|works cited)\s*$", re.IGNORECASE)


def require_sections(document: Document, source: str) -> Document:
    """A document whose parser found no text at all is bad input, said once and clearly."""
    if not document.sections or document.body_blocks == 0:
        raise FullTextError(f"{source}: no readable sections or paragraphs were found")
    return document
