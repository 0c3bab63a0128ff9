"""A Document → passages: token windows within each section (never across two), sentence-aligned
with an overlap; each figure caption and table is a passage of its own."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.papers import NOT_A_REFERENCE_PERIOD, paper_reference
from bot.fulltext.document import BlockKind, Document, Section
from bot.retrieval.index.base import FULLTEXT_FIRST_CHUNK
from bot.retrieval.tokens import get_encoding

_SENTENCE = re.compile(rf"(?<=[.!?]){NOT_A_REFERENCE_PERIOD}\s+(?=[A-Z0-9\"'(\[])")
# A paper's own numbered citations ("[27]", "[6, 3]", "[12-14]") would read as the answer's [n]
# source numbers; they become "(ref. 27)".
_PAPER_CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,–-]\s*\d{1,3})*)\]")


def paper_citations_as_text(text: str) -> str:
    return _PAPER_CITATION.sub(lambda match: paper_reference(match.group(1)), text)


@dataclass(frozen=True)
class Passage:
    chunk_no: int
    text: str  # what is stored, shown to the LLM and quoted in citations
    section: str  # "§3.2 Training"
    kind: BlockKind
    page: int | None
    anchor: str | None

    def embedding_text(self, title: str) -> str:
        """What is embedded and BM25-weighted: the passage with its paper and section, so a question
        that names either still finds it."""
        return f"{title}\n{self.section}\n{self.text}"

    def payload(self) -> dict[str, object]:
        return {"section": self.section, "kind": self.kind, "page": self.page, "anchor": self.anchor}


def _windows(sentences: list[str], max_tokens: int, overlap: int, encoding: str) -> list[str]:
    enc = get_encoding(encoding)
    sized = [(s, len(enc.encode(s, disallowed_special=()))) for s in sentences if s.strip()]
    windows: list[str] = []
    current: list[tuple[str, int]] = []
    for sentence, tokens in sized:
        if tokens > max_tokens:  # one very long "sentence" (a table row dump): cut it by tokens
            ids = enc.encode(sentence, disallowed_special=())
            step = max(1, max_tokens - overlap)
            pieces = [enc.decode(ids[i : i + max_tokens]) for i in range(0, len(ids), step)]
            if current:
                windows.append(" ".join(s for s, _ in current))
                current = []
            windows.extend(pieces)
            continue
        if current and sum(t for _, t in current) + tokens > max_tokens:
            windows.append(" ".join(s for s, _ in current))
            kept: list[tuple[str, int]] = []
            for item in reversed(current):  # the last sentences, up to `overlap` tokens, start the next
                if sum(t for _, t in kept) + item[1] > overlap:
                    break
                kept.insert(0, item)
            current = kept
        current.append((sentence, tokens))
    if current:
        windows.append(" ".join(s for s, _ in current))
    return windows


def _section_passages(
    section: Section, max_tokens: int, overlap: int, encoding: str
) -> list[tuple[str, BlockKind, int | None]]:
    out: list[tuple[str, BlockKind, int | None]] = []
    body: list[str] = []
    body_page: int | None = None

    def flush() -> None:
        nonlocal body, body_page
        if body:
            out.extend((w, "body", body_page) for w in _windows(body, max_tokens, overlap, encoding))
        body, body_page = [], None

    for block in section.blocks:
        if block.kind != "body":
            flush()
            out.extend(
                (w, block.kind, block.page) for w in _windows([block.text], max_tokens, overlap, encoding)
            )
            continue
        if body_page is not None and block.page is not None and block.page != body_page and len(body) > 3:
            flush()  # keep a passage's page number true to most of its text
        if body_page is None:
            body_page = block.page
        body.extend(_SENTENCE.split(block.text))
    flush()
    return out


def document_passages(document: Document, *, max_tokens: int, overlap: int, encoding: str) -> list[Passage]:
    passages: list[Passage] = []
    for section in document.sections:
        for text, kind, page in _section_passages(section, max_tokens, overlap, encoding):
            passages.append(
                Passage(
                    chunk_no=FULLTEXT_FIRST_CHUNK + len(passages),
                    text=paper_citations_as_text(text),
                    section=section.label,
                    kind=kind,
                    page=page,
                    anchor=section.anchor,
                )
            )
    return passages
