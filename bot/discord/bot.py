"""The bot: built once in `main` with its services; start-up work in `setup_hook`, clean-up in `close`."""

from __future__ import annotations

import uuid
from typing import Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.config import Settings
from bot.discord.endpoints import build_intents
from bot.discord.errors import RateLimited, on_app_command_error
from bot.discord.formatting import NO_MENTIONS
from bot.ratelimit import RateLimiter
from bot.services import Services

log = structlog.get_logger(__name__)


class PaperCommandTree(app_commands.CommandTree):
    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        # Every log line of this interaction carries who, where and what.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=uuid.uuid4().hex[:12],
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            command=interaction.command.qualified_name if interaction.command else None,
        )
        return True


class PaperBotBase(commands.Bot):
    def __init__(self, services: Services, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=build_intents(settings.discord),
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            tree_cls=PaperCommandTree,
            **kwargs,
        )
        self.services = services
        self.settings = settings
        self.rate_limiter = RateLimiter(
            user_cooldown_s=settings.discord.user_cooldown_s,
            guild_per_minute=settings.discord.guild_rate_per_minute,
        )

    def check_rate(self, user_id: int, guild_id: int | None) -> None:
        wait = self.rate_limiter.check(user_id, guild_id)
        if wait > 0:
            raise RateLimited(wait)

    async def setup_hook(self) -> None:
        from bot.discord.cogs import COGS, DYNAMIC_ITEMS

        self.tree.on_error = on_app_command_error
        for cog in COGS:
            await self.add_cog(cog(self))
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        await self._sync_commands()
        if not self.settings.discord.message_content_intent:
            log.warning(
                "discord.message_content_intent_off",
                detail="slash commands and @mentions work; plain follow-ups in threads are not seen",
            )
        log.info("discord.setup_done", cogs=len(COGS))

    async def _sync_commands(self) -> None:
        guild_ids = self.settings.discord.dev_guild_ids
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("discord.commands_synced", guild_id=guild_id, commands=len(synced))
        else:
            synced = await self.tree.sync()
            log.info("discord.commands_synced", scope="global", commands=len(synced))

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord.event_failed", event=event_method)


class PaperBot(PaperBotBase):
    pass


class ShardedPaperBot(PaperBotBase, commands.AutoShardedBot):
    pass


def create_bot(services: Services, settings: Settings) -> PaperBotBase:
    discord_settings = settings.discord
    if discord_settings.shard_count:
        return ShardedPaperBot(
            services, settings, shard_count=discord_settings.shard_count, shard_ids=discord_settings.shard_ids
        )
    return PaperBot(services, settings)
