"""/memory enable|disable|status|forget, and the gateway events that keep channel memory true.

A translator only: it decides which messages are part of a conversation with the bot (a question
that mentions or replies to it, its own answers, messages in its threads), hands them to
`MemoryService` (bot.memory) with guild, channel, author, time and jump link, and passes every edit
and deletion on as it arrives (MESSAGE_UPDATE, MESSAGE_DELETE, MESSAGE_DELETE_BULK), so they take
effect within seconds. Nothing is handed over for a channel that has not opted in.
"""

from __future__ import annotations

import discord
import structlog
from discord import app_commands
from discord.ext import commands, tasks

from bot.discord.errors import UserFacingError
from bot.discord.formatting import NO_MENTIONS
from bot.discord.protocol import Paperbot, as_paperbot
from bot.memory import ChannelMessage, MemoryService, MemoryStatus

log = structlog.get_logger(__name__)


def status_text(status: MemoryStatus) -> str:
    if not status.enabled:
        return (
            "Channel memory is **off** here: nothing said in this channel is stored. A member with "
            "Manage Server can turn it on with `/memory enable`."
        )
    since = f" since <t:{int(status.enabled_at.timestamp())}:D>" if status.enabled_at else ""
    return (
        f"Channel memory is **on** here{since}.\n"
        "**What is kept:** the conversations I take part in — questions that mention me or reply to "
        "me, my answers, and messages in my threads — not the rest of the channel. Each with its "
        "author, time and a link to it, in this channel's own store; it is searched only for "
        "`/ask scope:channel` asked in this channel.\n"
        f"**For how long:** {status.retention_days} days, then deleted. Edited and deleted messages "
        "are updated or removed here within a minute.\n"
        f"**Stored now:** {status.stored} message{'s' if status.stored != 1 else ''}.\n"
        "Anyone can remove their own messages with `/memory forget`."
    )


def can_manage(interaction: discord.Interaction) -> bool:
    return bool(interaction.permissions.manage_guild)


@app_commands.guild_only()
class MemoryCog(
    commands.GroupCog,
    name="Memory",
    group_name="memory",
    group_description="Channel memory: opt-in, status, forget",
):
    def __init__(self, bot: Paperbot) -> None:
        if bot.services.memory is None:
            raise RuntimeError("/memory needs the state database and the memory index (services.memory)")
        self.bot = bot
        self.memory: MemoryService = bot.services.memory
        super().__init__()
        self.sweep.change_interval(seconds=self.memory.settings.sweep_interval_s)

    async def cog_load(self) -> None:
        self.sweep.start()

    async def cog_unload(self) -> None:
        self.sweep.cancel()

    @tasks.loop(seconds=300)
    async def sweep(self) -> None:
        try:
            await self.memory.purge_expired()
        except Exception:
            log.exception("memory.sweep_failed")

    # -------------------------------------------------------------- commands

    @staticmethod
    def _where(interaction: discord.Interaction) -> tuple[int, int]:
        channel = interaction.channel
        if interaction.guild_id is None or channel is None:
            raise UserFacingError("Channel memory is set per server text channel.")
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        if channel_id is None:
            raise UserFacingError("Channel memory is set per server text channel.")
        return interaction.guild_id, channel_id

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

    @app_commands.command(name="enable", description="Remember this channel's conversations with the bot")
    @app_commands.describe(retention_days="Days to keep each message (default 90)")
    async def enable(
        self, interaction: discord.Interaction, retention_days: app_commands.Range[int, 1, 3650] | None = None
    ) -> None:
        if not can_manage(interaction):
            raise UserFacingError("Turning channel memory on needs the Manage Server permission.")
        guild_id, channel_id = self._where(interaction)
        status = await self.memory.enable(
            guild_id=guild_id,
            channel_id=channel_id,
            user_id=interaction.user.id,
            retention_days=retention_days,
        )
        await self._reply(interaction, status_text(status))

    @app_commands.command(
        name="disable", description="Stop remembering this channel and delete what was kept"
    )
    async def disable(self, interaction: discord.Interaction) -> None:
        if not can_manage(interaction):
            raise UserFacingError("Turning channel memory off needs the Manage Server permission.")
        guild_id, channel_id = self._where(interaction)
        deleted = await self.memory.disable(guild_id=guild_id, channel_id=channel_id)
        await self._reply(
            interaction,
            f"Channel memory is **off** here; {deleted} stored message{'s' if deleted != 1 else ''} deleted.",
        )

    @app_commands.command(name="status", description="What this channel's memory keeps, and for how long")
    async def status(self, interaction: discord.Interaction) -> None:
        guild_id, channel_id = self._where(interaction)
        await self._reply(
            interaction, status_text(await self.memory.status(guild_id=guild_id, channel_id=channel_id))
        )

    @app_commands.command(name="forget", description="Delete your remembered messages in this server")
    @app_commands.describe(user="Whose messages (default: yours; someone else's needs Manage Server)")
    async def forget(self, interaction: discord.Interaction, user: discord.User | None = None) -> None:
        guild_id, _ = self._where(interaction)
        target = user or interaction.user
        if target.id != interaction.user.id and not can_manage(interaction):
            raise UserFacingError("Forgetting someone else's messages needs the Manage Server permission.")
        deleted = await self.memory.forget_user(guild_id=guild_id, user_id=target.id)
        whose = "your" if target.id == interaction.user.id else "their"
        await self._reply(interaction, f"Forgot {whose} messages in this server: {deleted} deleted.")

    # -------------------------------------------------------------- what is remembered

    def _is_conversation(self, message: discord.Message) -> bool:
        """A message of a conversation the bot takes part in."""
        me = self.bot.user
        if me is None:
            return False
        channel = message.channel
        if isinstance(channel, discord.Thread) and channel.owner_id == me.id:
            return True  # its threads: questions, follow-ups and its answers
        if message.author.id == me.id:
            return message.reference is not None  # an answer given as a reply in the channel
        if message.author.bot or message.webhook_id is not None:
            return False
        if any(user.id == me.id for user in message.mentions):
            return True
        resolved = message.reference.resolved if message.reference else None
        return isinstance(resolved, discord.Message) and resolved.author.id == me.id

    def _text(self, message: discord.Message) -> str:
        me = self.bot.user
        text = message.content
        if me is not None:
            text = text.replace(f"<@{me.id}>", "").replace(f"<@!{me.id}>", "")
        return text

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.guild is None or not message.content:
            return
        channel = message.channel
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        if channel_id is None or await self.memory.channel(channel_id) is None:
            return  # not opted in: nothing is looked at further, nothing is stored
        if not self._is_conversation(message):
            return
        await self.memory.remember(
            [
                ChannelMessage(
                    guild_id=message.guild.id,
                    channel_id=channel_id,
                    thread_id=channel.id if isinstance(channel, discord.Thread) else None,
                    message_id=message.id,
                    author_id=message.author.id,
                    author_name=message.author.display_name,
                    created_at=message.created_at,
                    text=self._text(message),
                    jump_url=message.jump_url,
                )
            ]
        )

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        if payload.guild_id is None or "content" not in payload.data:
            return
        await self.memory.edited(payload.message_id, self._strip(str(payload.data.get("content") or "")))

    def _strip(self, text: str) -> str:
        me = self.bot.user
        return text.replace(f"<@{me.id}>", "").replace(f"<@!{me.id}>", "") if me else text

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        await self.memory.deleted([payload.message_id])

    @commands.Cog.listener()
    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        await self.memory.deleted(sorted(payload.message_ids))


async def setup(bot: commands.Bot) -> None:
    paperbot = as_paperbot(bot)
    if paperbot.services.memory is None:
        log.info("memory.off", reason="no state database or memory index")
        return
    await bot.add_cog(MemoryCog(paperbot))
