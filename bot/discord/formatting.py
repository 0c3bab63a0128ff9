"""Discord message shapes: limits, splitting, embeds. Every send uses NO_MENTIONS."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import discord

from bot.core.papers import Paper, is_title_id
from bot.digest.summaries import CardSummary
from bot.rag.citations import Citation
from bot.rag.iter_retgen import Answer

NO_MENTIONS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000
THREAD_NAME_LIMIT = 90  # Discord allows 100; room for the "…"
EMBED_TITLE, EMBED_DESCRIPTION, EMBED_FIELD_NAME, EMBED_FIELD_VALUE = 256, 4096, 256, 1024
EMBED_FOOTER, EMBED_TOTAL, EMBEDS_PER_MESSAGE, FIELDS_PER_EMBED = 2048, 6000, 10, 25
EMBED_URL = 2048
BRAND_COLOUR = discord.Colour(0xF5A623)


_MASKED_LINK = re.compile(r"\[([^\[\]]*)\]\(")


def defang_links(text: str) -> str:
    """Untrusted text (paper fields, model answers, echoed input) with each masked link
    `[label](target)` shown as `label (target)`: no link can hide where it really goes."""
    while (plain := _MASKED_LINK.sub(r"\1 (", text)) != text:  # nested links unwrap one level a pass
        text = plain
    return text


def quoted_input(text: str, limit: int) -> str:
    """What the user typed, as inline code: nothing in it renders (links, mentions, markdown)."""
    return "`" + (text[:limit].replace("`", "'").replace("\n", " ") or " ") + "`"


def clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split on paragraph boundaries, then lines, then words; never exceed `limit`, never empty."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for piece in text.split("\n\n"):
        candidate = f"{current}\n\n{piece}" if current else piece
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
    return [part for part in parts if part.strip()]


def _split_long(text: str, limit: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for token in re.split(r"(?<=\n)|(?<= )", text):
        if len(current) + len(token) <= limit:
            current += token
            continue
        if current.strip():
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


def web_url(url: str | None) -> str | None:
    """`url` if Discord accepts it as a link (http(s), at most 2048 characters), else None."""
    if not url or len(url) > EMBED_URL or any(c.isspace() for c in url):
        return None
    return url if url.startswith(("https://", "http://")) else None


def _markdown_link(label: str, url: str) -> str:
    return f"[{label}]({url.replace('(', '%28').replace(')', '%29')})"


def paper_embed(paper: Paper, *, summary: str | None = None, footer: str | None = None) -> discord.Embed:
    """Title → arXiv link, authors, date, upvotes and a one-line gist (or the given summary)."""
    gist = summary if summary else first_sentences(paper.ai_summary or paper.abstract or paper.title)
    embed = discord.Embed(
        title=clip(defang_links(paper.title), EMBED_TITLE),
        url=next((u for u in (paper.abs_url, paper.project_url, paper.github_url) if web_url(u)), None),
        description=clip(defang_links(gist), EMBED_DESCRIPTION),
        colour=BRAND_COLOUR,
    )
    if paper.authors:
        authors = ", ".join(paper.authors[:6]) + (" et al." if len(paper.authors) > 6 else "")
        authors = defang_links(authors)
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
    links = ""
    for label, url in (("PDF", paper.pdf_url), ("Code", paper.github_url), ("Project", paper.project_url)):
        safe = web_url(url)
        if safe is None:
            continue
        candidate = f"{links} · {_markdown_link(label, safe)}" if links else _markdown_link(label, safe)
        if len(candidate) <= EMBED_FIELD_VALUE:  # a link cut in half is worse than no link
            links = candidate
    if links:
        embed.add_field(name="Links", value=links, inline=False)
    if footer or not is_title_id(paper.paper_id):  # a title-derived id is no id to show
        embed.set_footer(text=clip(footer or paper.paper_id, EMBED_FOOTER))
    return fit_embed(embed)


FULLTEXT_FIELD = "Full text"


def with_fulltext_field(
    embed: discord.Embed, record: FullTextStatus | None, *, fetching: bool
) -> discord.Embed:
    """The card's "Full text" field: the sections when it is indexed, else whether it is on its way."""
    if record is not None:
        sections = " · ".join(record.sections)
        value = f"Indexed ({record.source_format}, {len(record.sections)} sections): {sections}"
    elif fetching:
        value = "Fetching the full text from arXiv…"
    else:
        value = "Not indexed: answers use the abstract only."
    value = clip(defang_links(value), EMBED_FIELD_VALUE)
    index = next((i for i, f in enumerate(embed.fields) if f.name == FULLTEXT_FIELD), None)
    if index is None:
        embed.add_field(name=FULLTEXT_FIELD, value=value, inline=False)
    else:
        embed.set_field_at(index, name=FULLTEXT_FIELD, value=value, inline=False)
    return fit_embed(embed)


class FullTextStatus(Protocol):
    """What the card shows of a paper's indexed full text (bot.fulltext.store.FullTextRecord)."""

    source_format: str
    sections: list[str]


def fit_embed(embed: discord.Embed) -> discord.Embed:
    """Shorten the description so that the whole embed stays within Discord's 6000 characters."""
    excess = len(embed) - EMBED_TOTAL
    if excess > 0 and embed.description:
        embed.description = clip(embed.description, max(1, len(embed.description) - excess - 1))
    return embed


def sources_embed(citations: Sequence[Citation], *, cited: bool = True) -> discord.Embed:
    """The numbered Sources list; whole lines only, as many as fit."""
    description = ""
    for c in citations:
        title = clip(c.title, 200).replace("[", "(").replace("]", ")")
        url = web_url(c.url)
        line = f"**[{c.n}]** {_markdown_link(title, url)}" if url else f"**[{c.n}]** {title}"
        if c.where:  # a full-text passage: where in the paper
            line += f" {clip(c.where, 120).replace('[', '(').replace(']', ')')}"
        candidate = f"{description}\n{line}" if description else line
        if len(candidate) > EMBED_DESCRIPTION:
            break
        description = candidate
    return discord.Embed(
        title="Sources" if cited else "Sources (retrieved, not cited)",
        description=description or None,
        colour=BRAND_COLOUR,
    )


def embeds_total(embeds: Sequence[discord.Embed]) -> int:
    return sum(len(e) for e in embeds)


def fit_embeds(embeds: Sequence[discord.Embed]) -> list[list[discord.Embed]]:
    """Group embeds into messages within 10 per message and 6000 characters per message."""
    groups: list[list[discord.Embed]] = []
    for embed in embeds:
        fits = bool(groups) and len(groups[-1]) < EMBEDS_PER_MESSAGE
        if fits and embeds_total(groups[-1]) + len(embed) <= EMBED_TOTAL:
            groups[-1].append(embed)
        else:
            groups.append([embed])
    return groups


def answer_messages(answer: Answer) -> list[tuple[str, list[discord.Embed]]]:
    """The answer as Discord messages: text split at 2000 characters, Sources embed on the last one."""
    chunks = split_message(defang_links(answer.text)) or ["…"]
    messages: list[tuple[str, list[discord.Embed]]] = [(chunk, []) for chunk in chunks]
    if answer.citations:
        messages[-1][1].append(sources_embed(answer.citations, cited=answer.cited))
    return messages


def note_line(note: str) -> str:
    """A small grey line under a text, e.g. why a summary is the abstract's first sentences."""
    return f"-# ({note})"


def card_summary_text(summary: CardSummary) -> str:
    return summary.text + (f"\n{note_line(summary.note)}" if summary.note else "")
