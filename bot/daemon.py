"""`python -m bot run`: wire everything once, run the Discord bot until stopped."""

from __future__ import annotations

import asyncio
import signal

import discord
import structlog

from bot.config import Settings
from bot.discord.bot import create_bot
from bot.discord.endpoints import apply_endpoints
from bot.services import open_services

log = structlog.get_logger(__name__)

EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps a misconfigured bot down


class ConfigurationError(RuntimeError):
    pass


async def run_bot(settings: Settings) -> None:
    token = settings.discord.token.get_secret_value() if settings.discord.token else ""
    if not token:
        raise ConfigurationError("DISCORD_TOKEN is not set; put the bot token in .env (see .env.example)")
    apply_endpoints(settings.discord)
    async with open_services(settings, with_llm=True) as services:
        bot = create_bot(services, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _request_shutdown, bot, sig)
        try:
            async with bot:
                await bot.start(token)
        except discord.LoginFailure as exc:
            raise ConfigurationError(f"Discord rejected the token: {exc}") from exc
        except discord.PrivilegedIntentsRequired as exc:
            raise ConfigurationError(
                "the message-content intent is not enabled for this bot in the developer portal; enable it "
                "or set DISCORD_MESSAGE_CONTENT_INTENT=false"
            ) from exc


def _request_shutdown(bot: discord.Client, sig: signal.Signals) -> None:
    asyncio.ensure_future(_shutdown(bot, sig))


async def _shutdown(bot: discord.Client, sig: signal.Signals) -> None:
    log.info("daemon.stopping", signal=sig.name)
    await bot.close()
