"""Discord message shapes: limits, splitting, embeds. Every send uses NO_MENTIONS."""

from __future__ import annotations

import re
from collections.abc import Sequence

import discord

from bot.models import Paper
from bot.rag.citations import Citation
from bot.rag.iter_retgen import Answer

NO_MENTIONS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000
EMBED_TITLE, EMBED_DESCRIPTION, EMBED_FIELD_NAME, EMBED_FIELD_VALUE = 256, 4096, 256, 1024
EMBED_FOOTER, EMBED_TOTAL, EMBEDS_PER_MESSAGE, FIELDS_PER_EMBED = 2048, 6000, 10, 25
BRAND_COLOUR = discord.Colour(0xF5A623)


def clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split on paragraph boundaries, then lines, then words; never exceed `limit`."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for separator, pieces in (("\n\n", text.split("\n\n")),):
        for piece in pieces:
            candidate = f"{current}{separator}{piece}" if current else piece
            if len(candidate) <= limit:
                current = candidate
                continue
            if current:
                parts.append(current)
            current = ""
            if len(piece) <= limit:
                current = piece
            else:
                parts.extend(_split_long(piece, limit))
    if current:
        parts.append(current)
    return parts


def _split_long(text: str, limit: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for token in re.split(r"(?<=\n)|(?<= )", text):
        if len(current) + len(token) <= limit:
            current += token
            continue
        if current:
            parts.append(current.rstrip())
        while len(token) > limit:  # a single huge word
            parts.append(token[:limit])
            token = token[limit:]
        current = token
    if current.strip():
        parts.append(current.rstrip())
    return parts


def first_sentences(text: str, max_chars: int = 300) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    out = ""
    for sentence in sentences:
        if out and len(out) + len(sentence) + 1 > max_chars:
            break
        out = f"{out} {sentence}".strip()
    return clip(out or text, max_chars)


def paper_embed(paper: Paper, *, summary: str | None = None, footer: str | None = None) -> discord.Embed:
    """Title → arXiv link, authors, date, upvotes, a one-line gist (or the given summary)."""
    gist = summary or paper.ai_summary or first_sentences(paper.abstract)
    embed = discord.Embed(
        title=clip(paper.title, EMBED_TITLE),
        url=paper.url,
        description=clip(gist, EMBED_DESCRIPTION),
        colour=BRAND_COLOUR,
    )
    if paper.authors:
        authors = ", ".join(paper.authors[:6]) + (" et al." if len(paper.authors) > 6 else "")
        embed.add_field(name="Authors", value=clip(authors, EMBED_FIELD_VALUE), inline=False)
    details = []
    if paper.published:
        details.append(paper.published.isoformat())
    if paper.upvotes is not None:
        details.append(f"▲ {paper.upvotes}")
    if paper.categories:
        details.append(", ".join(paper.categories[:4]))
    if details:
        embed.add_field(name="Details", value=clip(" · ".join(details), EMBED_FIELD_VALUE), inline=False)
    links = [f"[{label}]({url})" for label, url in (("PDF", paper.pdf_url), ("Code", paper.github_url),
                                                     ("Project", paper.project_url)) if url]
    if links:
        embed.add_field(name="Links", value=" · ".join(links), inline=False)
    embed.set_footer(text=clip(footer or paper.paper_id, EMBED_FOOTER))
    return embed


def sources_embed(citations: Sequence[Citation], *, cited: bool = True) -> discord.Embed:
    lines = []
    for c in citations:
        title = clip(c.title, 200).replace("[", "(").replace("]", ")")
        lines.append(f"**[{c.n}]** [{title}]({c.url})" if c.url else f"**[{c.n}]** {title}")
    embed = discord.Embed(
        title="Sources" if cited else "Sources (retrieved, not cited)",
        description=clip("\n".join(lines), EMBED_DESCRIPTION),
        colour=BRAND_COLOUR,
    )
    return embed


def embeds_total(embeds: Sequence[discord.Embed]) -> int:
    return sum(len(e) for e in embeds)


def fit_embeds(embeds: Sequence[discord.Embed]) -> list[list[discord.Embed]]:
    """Group embeds into messages within 10 per message and 6000 characters per message."""
    groups: list[list[discord.Embed]] = []
    for embed in embeds:
        if groups and len(groups[-1]) < EMBEDS_PER_MESSAGE and embeds_total(groups[-1]) + len(embed) <= EMBED_TOTAL:
            groups[-1].append(embed)
        else:
            groups.append([embed])
    return groups


def answer_messages(answer: Answer) -> list[tuple[str, list[discord.Embed]]]:
    """The answer as Discord messages: text split at 2000 characters, Sources embed on the last one."""
    chunks = split_message(answer.text) or ["…"]
    messages: list[tuple[str, list[discord.Embed]]] = [(chunk, []) for chunk in chunks]
    if answer.citations:
        messages[-1][1].append(sources_embed(answer.citations, cited=answer.cited))
    return messages
