"""`DigestPoster` for Discord: the header, then each paper as an embed whose footer carries the marker.

Layouts:
- `thread_per_paper`: each paper is a message in the channel with a discussion thread opened on it
  (the thread shares the message's id; follow-up questions there are answered by the chat cog);
- `message_per_paper`: each paper is a plain message, replying to the header.

The marker (`paperbot digest 2026-08-18 · 2408.12345`) sits in every embed footer, so after a crash
the service can find what was already sent by reading the channel's recent messages.
"""

from __future__ import annotations

import discord
import structlog

from bot.digest.delivery import DigestHeader, PaperPost
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

    async def _channel(self, channel_id: int) -> discord.abc.Messageable:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise TypeError(f"channel {channel_id} cannot receive messages")
        return channel

    async def post_header(self, channel_id: int, header: DigestHeader) -> int:
        channel = await self._channel(channel_id)
        message = await channel.send(embed=header_embed(header), allowed_mentions=NO_MENTIONS)
        return message.id

    async def post_paper(self, channel_id: int, post: PaperPost, parent_message_id: int | None) -> int:
        channel = await self._channel(channel_id)
        reference = None
        if post.layout == "message_per_paper" and parent_message_id is not None:
            reference = discord.MessageReference(
                message_id=parent_message_id, channel_id=channel_id, fail_if_not_exists=False
            )
        embed = digest_paper_embed(post)
        if reference is not None:
            message = await channel.send(
                embed=embed, allowed_mentions=NO_MENTIONS, reference=reference, mention_author=False
            )
        else:
            message = await channel.send(embed=embed, allowed_mentions=NO_MENTIONS)
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
        return message.id

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
        return found
