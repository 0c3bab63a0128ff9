"""The bot: built once in `main` with its services; start-up work in `setup_hook`, clean-up in `close`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.core.config import Settings
from bot.digest.delivery import DigestPoster
from bot.digest.scheduler import DigestScheduler
from bot.discord.digest_messages import DiscordDigestPoster
from bot.discord.endpoints import build_intents
from bot.discord.errors import RateLimited, report_interaction_error
from bot.discord.formatting import NO_MENTIONS
from bot.discord.log_context import bind_interaction
from bot.limits.ratelimit import RateLimiter

if TYPE_CHECKING:
    from bot.app.services import Services

log = structlog.get_logger(__name__)

# Loaded by name in setup_hook, each through its module's `setup(bot)`.
EXTENSIONS = (
    "bot.discord.cogs.search",
    "bot.discord.cogs.ask",
    "bot.discord.cogs.paper",
    "bot.discord.cogs.help",
    "bot.discord.cogs.chat",
    "bot.discord.cogs.digest",
    "bot.discord.cogs.library",
    "bot.discord.cogs.follow",
    "bot.discord.cogs.memory",
    "bot.discord.cogs.roundup",
)
PosterFactory = Callable[[discord.Client], DigestPoster]


class PaperCommandTree(app_commands.CommandTree):
    """Binds every log line of a command to its guild, channel, user and command; reports failures."""

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        bind_interaction(interaction)
        settings: Settings = interaction.client.settings  # type: ignore[attr-defined]
        if interaction.guild_id is None and not settings.discord.allow_dms:
            # DISCORD_ALLOW_DMS=false: commands are not offered in DMs (`allowed_contexts`), and one
            # that arrives anyway is refused here, before it can run outside every guild's limits.
            if interaction.type is discord.InteractionType.application_command:
                await report_interaction_error(interaction, app_commands.NoPrivateMessage())
            return False
        return True

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        await report_interaction_error(interaction, error)


class PaperBotBase(commands.Bot):
    """Built once with every service (see `bot.app.services`); builds only its Discord-side parts:
    the rate limiter and the digest poster that the scheduler posts through once started."""

    def __init__(
        self,
        services: Services,
        settings: Settings,
        *,
        digest_poster: PosterFactory = DiscordDigestPoster,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=build_intents(settings.discord),
            allowed_mentions=NO_MENTIONS,
            help_command=None,
            tree_cls=PaperCommandTree,
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=settings.discord.allow_dms, private_channel=False
            ),
            **kwargs,
        )
        self.services = services
        self.settings = settings
        self.digest_poster = digest_poster(self)
        self.rate_limiter = RateLimiter(
            user_cooldown_s=settings.discord.user_cooldown_s,
            guild_per_minute=settings.discord.guild_rate_per_minute,
        )

    @property
    def digest_scheduler(self) -> DigestScheduler | None:
        """Started in setup_hook, stopped in close; None without a state database."""
        return self.services.state.scheduler if self.services.state is not None else None

    async def admit_llm_request(self, user_id: int, guild_id: int | None) -> None:
        """Before an LLM-backed request: the guild's daily budget, room in the LLM's queue, then the
        cooldowns (so a request refused for the budget or a full queue does not cost a cooldown)."""
        await self.services.budget.ensure_available(guild_id)
        if self.services.llm is not None:
            self.services.llm.queue.check_room()
        self.check_rate(user_id, guild_id)

    def check_rate(self, user_id: int, guild_id: int | None) -> None:
        verdict = self.rate_limiter.check(user_id, guild_id)
        if not verdict.allowed:
            raise RateLimited(verdict.wait, guild_wide=verdict.scope == "guild")

    async def setup_hook(self) -> None:
        for name in EXTENSIONS:
            await self.load_extension(name)
        await self._sync_commands()
        if self.digest_scheduler is not None:
            await self.digest_scheduler.start(self.digest_poster)
        if not self.settings.discord.message_content_intent:
            log.warning(
                "discord.message_content_intent_off",
                detail="slash commands and @mentions work; plain follow-ups in threads are not seen",
            )
        log.info("discord.setup_done", cogs=len(self.cogs))

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

    async def on_message(self, message: discord.Message, /) -> None:
        # No prefix commands: a mention is a question for ChatCog, not a command to look up (the
        # default would log CommandNotFound as an error for every mention).
        return

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        log.exception("discord.event_failed", event=event_method)

    async def close(self) -> None:
        log.info("discord.closing")
        if self.digest_scheduler is not None:
            # Before the connection closes: a digest being posted gets time to finish.
            await self.digest_scheduler.shutdown(grace_s=self.settings.digest.shutdown_grace_s)
        await super().close()


class PaperBot(PaperBotBase):
    pass


class ShardedPaperBot(PaperBotBase, commands.AutoShardedBot):
    pass


def create_bot(services: Services, settings: Settings, **options: Any) -> PaperBotBase:
    """`options` go to the bot (`digest_poster`) and to discord.py's client (e.g.
    `guild_ready_timeout` in tests)."""
    discord_settings = settings.discord
    if discord_settings.shard_count:
        return ShardedPaperBot(
            services,
            settings,
            shard_count=discord_settings.shard_count,
            shard_ids=discord_settings.shard_ids,
            **options,
        )
    return PaperBot(services, settings, **options)
