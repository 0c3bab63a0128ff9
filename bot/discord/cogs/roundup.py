"""The weekly roundup's poll end: when Discord finalizes a roundup's "paper of the week" poll, hand the
counts to `RoundupService` (bot.digest.roundup), which opens the discussion thread on the winner.

Discord reports a poll's end twice — MESSAGE_UPDATE with `poll.results.is_finalized`, and a
POLL_RESULT message (type 46) referencing the poll — and either may be missed (a restart). Both are
listened to; the service opens the thread once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import discord
import structlog
from discord.ext import commands, tasks

from bot.digest.roundup import RoundupService
from bot.discord.digest_messages import DiscordDigestPoster
from bot.discord.protocol import Paperbot, as_paperbot

log = structlog.get_logger(__name__)


def final_counts(poll: Mapping[str, Any] | None) -> dict[int, int] | None:
    """Answer id → votes of a finalized poll payload; None while the poll is open."""
    results = (poll or {}).get("results") or {}
    if not results.get("is_finalized"):
        return None
    return {int(c["id"]): int(c.get("count", 0)) for c in results.get("answer_counts") or []}


class RoundupCog(commands.Cog, name="Roundup"):
    def __init__(self, bot: Paperbot, poster: DiscordDigestPoster) -> None:
        if bot.services.state is None:
            raise RuntimeError("weekly roundups need the state database (services.state)")
        self.bot = bot
        self.roundups: RoundupService = bot.services.state.roundups
        self.poster = poster

    async def cog_load(self) -> None:
        self.missed_polls.start()

    async def cog_unload(self) -> None:
        self.missed_polls.cancel()

    @tasks.loop(minutes=10)
    async def missed_polls(self) -> None:
        """Poll ends Discord reported while the bot was down: read the finalized poll instead."""
        try:
            due = await self.roundups.due_polls()
        except Exception:
            log.exception("roundup.missed_polls_failed")
            return
        for channel_id, message_id in due:
            try:
                channel = await self.bot.fetch_channel(channel_id)
                if not isinstance(channel, discord.abc.Messageable):
                    continue
                message = await channel.fetch_message(message_id)
            except discord.HTTPException as exc:
                log.warning("roundup.poll_fetch_failed", message_id=message_id, error=str(exc)[:200])
                continue
            if message.poll is not None and message.poll.is_finalized():
                counts = {answer.id: answer.vote_count for answer in message.poll.answers}
                await self._closed(channel_id, message_id, counts)

    @missed_polls.before_loop
    async def _after_ready(self) -> None:
        await self.poster.client.wait_until_ready()

    async def _closed(self, channel_id: int, message_id: int, counts: dict[int, int]) -> None:
        try:
            await self.roundups.poll_closed(
                channel_id=channel_id, message_id=message_id, counts=counts, poster=self.poster
            )
        except Exception:
            log.exception("roundup.discussion_failed", channel_id=channel_id, poll_message_id=message_id)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        me = self.bot.user
        author = (payload.data.get("author") or {}).get("id")
        if payload.guild_id is None or me is None or author is None or int(author) != me.id:
            return
        counts = final_counts(payload.data.get("poll"))
        if counts is not None:
            await self._closed(payload.channel_id, payload.message_id, counts)

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        me = self.bot.user
        if message.type is not discord.MessageType.poll_result or me is None or message.guild is None:
            return
        reference = message.reference
        if reference is None or reference.message_id is None or message.author.id != me.id:
            return
        try:
            poll_message = await message.channel.fetch_message(reference.message_id)
        except discord.HTTPException as exc:
            log.warning("roundup.poll_fetch_failed", message_id=reference.message_id, error=str(exc)[:200])
            return
        poll = poll_message.poll
        if poll is None or not poll.is_finalized():
            return
        counts = {answer.id: answer.vote_count for answer in poll.answers}
        await self._closed(message.channel.id, poll_message.id, counts)


async def setup(bot: commands.Bot) -> None:
    paperbot = as_paperbot(bot)
    if paperbot.services.state is None:
        return
    await bot.add_cog(RoundupCog(paperbot, DiscordDigestPoster(bot, add_reactions=False)))
