"""`DigestPoster` for Discord: the header, then each paper as an embed whose footer carries the marker.

Layouts:
- `thread_per_paper`: each paper is a message in the channel with a discussion thread opened on it
  (the thread shares the message's id; follow-up questions there are answered by the chat cog);
- `message_per_paper`: each paper is a plain message, replying to the header.

The marker (`paperbot digest 2026-08-18 · 2408.12345`) sits in every embed footer, so after a crash
the service can find what was already sent by reading the channel's recent messages.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import discord
import structlog

from bot.core.papers import Paper
from bot.digest.delivery import DigestHeader, PaperPost, ReadingGuide
from bot.discord.formatting import (
    BRAND_COLOUR,
    EMBED_DESCRIPTION,
    EMBED_FIELD_VALUE,
    EMBED_FOOTER,
    NO_MENTIONS,
    THREAD_NAME_LIMIT,
    clip,
    fit_embed,
    note_line,
    paper_embed,
)
from bot.discord.library_ui import save_view

log = structlog.get_logger(__name__)

FEEDBACK_EMOJI = {"👍": 1, "👎": -1}
RECENT_MESSAGES = 100


def header_embed(header: DigestHeader) -> discord.Embed:
    """The digest's first message, or the one line of an empty day."""
    if header.empty_message is not None:
        embed = discord.Embed(
            title=clip(header.title, 256),
            description=clip(header.empty_message, EMBED_DESCRIPTION),
            colour=BRAND_COLOUR,
        )
    else:
        embed = discord.Embed(title=clip(header.title, 256), description=header.tally, colour=BRAND_COLOUR)
        if header.sources:
            embed.add_field(name="Sources", value=clip(", ".join(header.sources), EMBED_FIELD_VALUE))
    embed.set_footer(text=clip(header.marker, EMBED_FOOTER))
    return embed


def roundup_header_text(header: DigestHeader) -> str:
    """A weekly roundup's first message, which carries the poll (so no embed): title, tally, what the
    poll is for, and the marker as a small line."""
    lines = [f"**{header.title}**", header.tally]
    if header.sources:
        lines.append(f"Sources: {', '.join(header.sources)}")
    if header.poll is not None:
        lines.append(
            f"Vote below for the paper of the week (open {header.poll.hours} h). When the poll closes "
            "I open a discussion thread on the winner with a short reading guide."
        )
    lines.append(f"-# {header.marker}")
    return clip("\n".join(lines), 2000)


def reading_guide_embed(guide: ReadingGuide) -> discord.Embed:
    """The paper of the week: its title → link, the vote, 3 questions each citing its excerpt."""
    votes = (
        f"Paper of the week with {guide.votes} of {guide.total_votes} votes."
        if guide.total_votes
        else "Paper of the week (no votes were cast: the roundup's top pick)."
    )
    questions = "\n".join(f"{n}. {q.text} [{q.source}]" for n, q in enumerate(guide.questions, 1))
    description = f"{votes}\n\n**Reading guide**\n{questions}"
    if guide.note:
        description += f"\n{note_line(guide.note)}"
    embed = discord.Embed(
        title=clip(f"📖 {guide.paper.title}", 256),
        url=guide.paper.url,
        description=clip(description, EMBED_DESCRIPTION),
        colour=BRAND_COLOUR,
    )
    for source in guide.sources[:10]:
        embed.add_field(
            name=clip(f"[{source.number}] {source.label}", 256),
            value=clip(source.text, 300),
            inline=False,
        )
    embed.set_footer(text=clip(guide.marker, EMBED_FOOTER))
    return fit_embed(embed)


def digest_paper_embed(post: PaperPost) -> discord.Embed:
    """Title → arXiv link, authors, upvotes, the summary (labelled when it is not the LLM's), why."""
    summary = post.summary + (f"\n{note_line(post.summary_note)}" if post.summary_note else "")
    embed = paper_embed(post.paper, summary=summary, footer=post.marker)
    if post.why:
        embed.insert_field_at(0, name="Why this paper", value=clip(post.why, EMBED_FIELD_VALUE), inline=False)
    embed.title = clip(f"{post.rank}. {embed.title}", 256)
    return fit_embed(embed)


class DiscordDigestPoster:
    """Posts digests through a connected discord.py client; never pings anyone."""

    def __init__(self, client: discord.Client, *, add_reactions: bool = True) -> None:
        self.client = client
        self.add_reactions = add_reactions
        self.fetching: set[asyncio.Task[object]] = set()  # FULLTEXT_MODE=eager fetches under way

    async def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise TypeError(f"channel {channel_id} cannot receive messages")
        return channel

    async def post_header(self, channel_id: int, header: DigestHeader) -> int:
        channel = await self._channel(channel_id)
        if header.poll is not None:  # the weekly roundup: its header carries the native poll
            poll = discord.Poll(question=header.poll.question, duration=dt.timedelta(hours=header.poll.hours))
            for _, text in header.poll.answers:
                poll.add_answer(text=text)
            message = await channel.send(roundup_header_text(header), poll=poll, allowed_mentions=NO_MENTIONS)
            return message.id
        message = await channel.send(embed=header_embed(header), allowed_mentions=NO_MENTIONS)
        return message.id

    async def open_discussion(self, channel_id: int, poll_message_id: int, guide: ReadingGuide) -> int:
        """A thread on the roundup's poll message, named after the winner, with the reading guide."""
        channel = await self._channel(channel_id)
        if not isinstance(channel, discord.TextChannel):
            raise TypeError(f"channel {channel_id} cannot hold threads")
        name = clip(f"Paper of the week: {guide.paper.title}", THREAD_NAME_LIMIT)
        thread = await channel.get_partial_message(poll_message_id).create_thread(name=name)
        await thread.send(embed=reading_guide_embed(guide), allowed_mentions=NO_MENTIONS)
        return thread.id

    async def post_paper(self, channel_id: int, post: PaperPost, parent_message_id: int | None) -> int:
        channel = await self._channel(channel_id)
        reference = None
        if post.layout == "message_per_paper" and parent_message_id is not None:
            reference = discord.MessageReference(
                message_id=parent_message_id, channel_id=channel_id, fail_if_not_exists=False
            )
        embed = digest_paper_embed(post)
        view = save_view(post.paper.paper_id)  # 🔖 Save: into the reader's own library
        if reference is not None:
            message = await channel.send(
                embed=embed,
                allowed_mentions=NO_MENTIONS,
                reference=reference,
                mention_author=False,
                view=view,
            )
        else:
            message = await channel.send(embed=embed, allowed_mentions=NO_MENTIONS, view=view)
        # Extras after the post: failing them must not make the service think the paper was not sent.
        if post.layout == "thread_per_paper" and isinstance(channel, discord.TextChannel):
            try:
                await message.create_thread(
                    name=clip(post.paper.title, THREAD_NAME_LIMIT) or post.paper.paper_id
                )
            except discord.HTTPException as exc:
                log.warning("digest.thread_failed", message_id=message.id, error=str(exc)[:200])
        if self.add_reactions:
            for emoji in FEEDBACK_EMOJI:
                try:
                    await message.add_reaction(emoji)
                except discord.HTTPException as exc:
                    log.info("digest.reaction_failed", message_id=message.id, error=str(exc)[:200])
                    break
        self._fetch_full_text(post.paper)
        return message.id

    def _fetch_full_text(self, paper: Paper) -> None:
        """FULLTEXT_MODE=eager: the posted paper's full text is fetched in the background (at arXiv's
        pace), so questions in its thread find the body without waiting for it."""
        services = getattr(self.client, "services", None)  # the paperbot client carries its services
        fulltext = getattr(services, "fulltext", None)
        if fulltext is None or fulltext.mode != "eager" or not fulltext.can_fetch(paper):
            return
        task: asyncio.Task[object] = asyncio.create_task(fulltext.ensure(paper))
        self.fetching.add(task)
        task.add_done_callback(self.fetching.discard)

    async def find_recent_digest_messages(self, channel_id: int, marker: str) -> list[tuple[int, str]]:
        """The bot's recent messages in the channel whose embed footer starts with `marker`."""
        channel = await self._channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            return []
        me = self.client.user
        found: list[tuple[int, str]] = []
        async for message in channel.history(limit=RECENT_MESSAGES):
            if me is None or message.author.id != me.id:
                continue
            for embed in message.embeds:
                footer = embed.footer.text or ""
                if footer.startswith(marker):
                    found.append((message.id, footer))
            if message.poll is not None:  # a weekly roundup's header: the marker ends its text
                last = message.content.rsplit("\n", 1)[-1].removeprefix("-# ").strip()
                if last.startswith(marker):
                    found.append((message.id, last))
        return found
