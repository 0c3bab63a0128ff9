"""Split a paper into token windows: title + abstract is usually one chunk."""

from __future__ import annotations

from bot.core.papers import Chunk, Paper
from bot.retrieval.tokens import get_encoding


def paper_text(paper: Paper) -> str:
    return f"{paper.title}\n\n{paper.abstract}".strip()


def chunk_paper(paper: Paper, *, max_tokens: int, overlap: int, encoding: str) -> list[Chunk]:
    """Windows of `max_tokens` with `overlap`; each later window repeats the title for context."""
    enc = get_encoding(encoding)
    text = paper_text(paper)
    tokens = enc.encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return [Chunk(paper_id=paper.paper_id, chunk_no=0, text=text, token_count=len(tokens))]

    title_prefix = enc.encode(f"{paper.title}\n\n", disallowed_special=())
    body = enc.encode(paper.abstract, disallowed_special=())
    window = max(max_tokens - len(title_prefix), overlap + 1)
    step = window - overlap
    chunks: list[Chunk] = []
    for start in range(0, len(body), step):
        piece = title_prefix + body[start : start + window]
        chunks.append(
            Chunk(
                paper_id=paper.paper_id, chunk_no=len(chunks), text=enc.decode(piece), token_count=len(piece)
            )
        )
        if start + window >= len(body):
            break
    return chunks
