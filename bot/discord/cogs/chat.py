"""Mentions and replies: answer in a thread; the thread's own history is the conversation memory.

Memory lives in Discord, not in the process: after a restart the thread is read again, so nothing
Discord still has is lost.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord
import structlog
from discord.ext import commands

from bot.discord.errors import RateLimited, user_message
from bot.discord.formatting import NO_MENTIONS, answer_messages, clip
from bot.rag.iter_retgen import Turn

if TYPE_CHECKING:
    from bot.discord.bot import PaperBotBase

log = structlog.get_logger(__name__)
HISTORY_MESSAGES = 30
THREAD_NAME_LIMIT = 90


class ChatCog(commands.Cog, name="Chat"):
    def __init__(self, bot: PaperBotBase) -> None:
        self.bot = bot

    def _addressed(self, message: discord.Message) -> bool:
        me = self.bot.user
        if me is None:
            return False
        if me in message.mentions:
            return True
        resolved = message.reference.resolved if message.reference else None
        if isinstance(resolved, discord.Message) and resolved.author.id == me.id:
            return True
        channel = message.channel
        return isinstance(channel, discord.Thread) and channel.owner_id == me.id

    def question_text(self, message: discord.Message) -> str:
        me = self.bot.user
        text = message.content
        if me is not None:
            text = re.sub(rf"<@!?{me.id}>", " ", text)
        return " ".join(text.split())

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or message.webhook_id is not None:
            return
        if message.guild is None and not self.bot.settings.discord.allow_dms:
            return
        if not self._addressed(message):
            return
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            guild_id=message.guild.id if message.guild else None,
            channel_id=message.channel.id,
            user_id=message.author.id,
            command="chat",
        )
        try:
            await self._answer(message)
        except Exception as exc:
            text, expected = user_message(exc)
            if not expected:
                log.exception("discord.chat_failed")
                text = text or "Something went wrong on my side; it has been logged."
            try:
                await message.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
            except discord.HTTPException:
                log.warning("discord.chat_error_reply_failed")

    async def _answer(self, message: discord.Message) -> None:
        question = self.question_text(message)
        if not question:
            await message.reply("Ask me something about the papers.", allowed_mentions=NO_MENTIONS,
                                mention_author=False)
            return
        self.bot.services.answers.validate_question(question)
        wait = self.bot.rate_limiter.check(message.author.id, message.guild.id if message.guild else None)
        if wait > 0:
            raise RateLimited(wait)
        destination: discord.abc.Messageable
        if isinstance(message.channel, discord.Thread) or message.guild is None:
            destination = message.channel
            history = await self._history(message)
        else:
            destination = await message.create_thread(name=clip(question, THREAD_NAME_LIMIT))
            history = []
        async with destination.typing():
            answer = await self.bot.services.answers.answer(question, history=history)
        for text, embeds in answer_messages(answer):
            await destination.send(text, embeds=embeds, allowed_mentions=NO_MENTIONS)

    async def _history(self, message: discord.Message) -> list[Turn]:
        """The conversation before `message`, oldest first: the thread's starter, then its messages."""
        me = self.bot.user
        turns: list[Turn] = []
        channel = message.channel
        if isinstance(channel, discord.Thread) and channel.parent is not None:
            try:
                starter = await channel.parent.fetch_message(channel.id)
                turns.append(Turn("user", self.question_text(starter)))
            except (discord.NotFound, discord.Forbidden):
                pass  # a thread not started from a message
        recent = [m async for m in channel.history(limit=HISTORY_MESSAGES, before=message)]
        for past in reversed(recent):
            if not past.content:
                continue
            role = "assistant" if me is not None and past.author.id == me.id else "user"
            turns.append(Turn(role, self.question_text(past) if role == "user" else past.content))
        return turns
