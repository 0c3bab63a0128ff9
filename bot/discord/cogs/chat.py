"""Mentions and replies: answer in a thread; the thread's own history is the conversation memory.

Memory lives in Discord, not in the process: after a restart the thread is read again, so nothing
Discord still has is lost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable

import discord
import structlog
from discord.ext import commands

from bot.core.metrics import observe_command
from bot.core.papers import clean_user_text
from bot.discord.errors import describe_failure, failure_outcome
from bot.discord.formatting import NO_MENTIONS, THREAD_NAME_LIMIT, answer_messages, clip
from bot.discord.log_context import bind_message
from bot.discord.progress import QueueNotice
from bot.discord.protocol import Paperbot, as_paperbot
from bot.rag.iter_retgen import Turn

log = structlog.get_logger(__name__)
HISTORY_MESSAGES = 30


class ChatCog(commands.Cog, name="Chat"):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot

    def _mentioned(self, message: discord.Message) -> bool:
        me = self.bot.user
        return me is not None and any(user.id == me.id for user in message.mentions)

    def _replies_to_me(self, message: discord.Message) -> bool:
        me = self.bot.user
        resolved = message.reference.resolved if message.reference else None
        return me is not None and isinstance(resolved, discord.Message) and resolved.author.id == me.id

    def _in_my_thread(self, message: discord.Message) -> bool:
        me = self.bot.user
        channel = message.channel
        return me is not None and isinstance(channel, discord.Thread) and channel.owner_id == me.id

    async def _resolve_channel(self, message: discord.Message) -> None:
        """A thread the cache does not know (archived before a restart, say) arrives as a partial
        channel: ask Discord what it is, so that its owner and history are known."""
        if not isinstance(message.channel, discord.PartialMessageable) or message.guild is None:
            return
        try:
            fetched = await self.bot.fetch_channel(message.channel.id)
        except discord.HTTPException as exc:
            log.warning("discord.channel_fetch_failed", channel_id=message.channel.id, error=str(exc))
            return
        if isinstance(fetched, discord.Thread):
            message.channel = fetched

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
        await self._resolve_channel(message)
        mentioned = self._mentioned(message) or message.guild is None  # a DM is always for the bot
        if not (mentioned or self._replies_to_me(message) or self._in_my_thread(message)):
            return
        bind_message(message, "chat")
        question = self.question_text(message)
        if not question:
            # Without the message-content intent, plain messages in our threads arrive without text:
            # only an explicit mention deserves an answer then.
            if mentioned:
                await self._reply(message, None, "Ask me something about the papers.")
            return
        thread: discord.Thread | None = None
        notice: QueueNotice | None = None
        started = time.monotonic()
        try:
            self.bot.services.answers.validate_question(question)
            guild_id = message.guild.id if message.guild else None
            await self.bot.admit_llm_request(message.author.id, guild_id)
            destination: discord.abc.Messageable = message.channel
            reply_to: discord.Message | None = None
            if isinstance(message.channel, discord.Thread) or message.guild is None:
                history = await self._history(message)
            else:
                history = self._replied_to(message)
                try:
                    name = clip(clean_user_text(question), THREAD_NAME_LIMIT)
                    thread = await message.create_thread(name=name)
                    destination = thread
                except discord.Forbidden:  # threads are not allowed here: answer in the channel
                    log.info("discord.thread_not_allowed")
                    reply_to = message
            notice = QueueNotice(
                self._sender(destination, reply_to),
                interval_s=self.bot.settings.discord.stream_edit_interval_s,
            )
            try:
                async with destination.typing():
                    fulltext = self.bot.services.fulltext
                    if fulltext is not None and fulltext.mode != "off":  # papers it or its thread names
                        links = await self._starter_links(message)
                        await fulltext.ensure_for_question(
                            question, context="\n".join([*(turn.text for turn in history), *links])
                        )
                    answer = await self.bot.services.answers.answer(
                        question, history=history, progress=notice
                    )
            finally:
                await notice.aclose()  # no progress edit may land after the answer
            await self.bot.services.budget.spend(guild_id, answer.prompt_tokens + answer.completion_tokens)
            shown = notice.message
            for text, embeds in answer_messages(answer):
                if shown is not None:  # the message that showed the question's place in the queue
                    await shown.edit(content=text, embeds=embeds, allowed_mentions=NO_MENTIONS)
                    shown = reply_to = None
                elif reply_to is not None:  # the first part answers the message, pinging nobody
                    await reply_to.reply(
                        text, embeds=embeds, allowed_mentions=NO_MENTIONS, mention_author=False
                    )
                    reply_to = None
                else:
                    await destination.send(text, embeds=embeds, allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            observe_command("chat", time.monotonic() - started, failure_outcome(exc))
            await self._reply(message, thread, describe_failure(exc), notice)
        else:
            observe_command("chat", time.monotonic() - started, "ok")

    @staticmethod
    def _sender(
        destination: discord.abc.Messageable, reply_to: discord.Message | None
    ) -> Callable[[str], Awaitable[discord.Message]]:
        """Posts where the answer's first part will go: as a reply to the question, or in the thread."""

        async def send(text: str) -> discord.Message:
            if reply_to is not None:
                return await reply_to.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
            return await destination.send(text, allowed_mentions=NO_MENTIONS)

        return send

    async def _reply(
        self,
        message: discord.Message,
        thread: discord.Thread | None,
        text: str,
        notice: QueueNotice | None = None,
    ) -> None:
        """In place of the question's queue message if it has one, else in the thread the answer was
        meant for, or as a reply (that pings nobody) to the message."""
        try:
            if notice is not None and notice.message is not None:
                await notice.message.edit(content=text, embeds=[], allowed_mentions=NO_MENTIONS)
            elif thread is not None:
                await thread.send(text, allowed_mentions=NO_MENTIONS)
            else:
                await message.reply(text, allowed_mentions=NO_MENTIONS, mention_author=False)
        except discord.HTTPException as exc:
            log.warning("discord.chat_reply_failed", error=str(exc))

    def _turn(self, message: discord.Message) -> Turn | None:
        """A past message as a conversation turn; None for other bots and messages without text."""
        me = self.bot.user
        mine = me is not None and message.author.id == me.id
        if not message.content or (message.author.bot and not mine):
            return None
        turn = Turn("assistant", message.content) if mine else Turn("user", self.question_text(message))
        return turn if turn.text else None

    async def _starter_links(self, message: discord.Message) -> list[str]:
        """The links of the card a thread hangs off (a digest post, a /paper card): which paper the
        thread is about, for fetching its full text on demand."""
        channel = message.channel
        if not isinstance(channel, discord.Thread) or not isinstance(channel.parent, discord.TextChannel):
            return []
        try:
            starter = await channel.parent.fetch_message(channel.id)
        except discord.HTTPException:
            return []
        return [embed.url for embed in starter.embeds if embed.url]

    def _replied_to(self, message: discord.Message) -> list[Turn]:
        """A reply continues the message it answers (typically one of our answers)."""
        resolved = message.reference.resolved if message.reference else None
        turn = self._turn(resolved) if isinstance(resolved, discord.Message) else None
        return [turn] if turn else []

    async def _history(self, message: discord.Message) -> list[Turn]:
        """The conversation before `message`, oldest first: what the thread's starter replied to, the
        starter, then the thread's messages."""
        turns: list[Turn] = []
        channel = message.channel
        if isinstance(channel, discord.Thread) and isinstance(channel.parent, discord.TextChannel):
            try:  # a thread started from a message has that message's id
                starter = await channel.parent.fetch_message(channel.id)
            except (discord.NotFound, discord.Forbidden):
                pass  # a thread not started from a message
            else:
                turns += self._replied_to(starter)
                if (turn := self._turn(starter)) is not None:
                    turns.append(turn)
        recent = [m async for m in channel.history(limit=HISTORY_MESSAGES, before=message)]
        turns += [turn for past in reversed(recent) if (turn := self._turn(past)) is not None]
        return turns


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ChatCog(as_paperbot(bot)))
