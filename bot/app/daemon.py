"""`python -m bot run`: wire everything once, run the Discord bot until stopped."""

from __future__ import annotations

import asyncio
import signal

import discord
import structlog

from bot.app.services import open_services
from bot.core.config import Settings
from bot.core.errors import ConfigurationError  # raised here; `paperbot run` exits EXIT_CONFIG on it
from bot.core.logs import flush_logging
from bot.core.metrics import track_llm_usage
from bot.discord.bot import create_bot
from bot.discord.endpoints import apply_endpoints
from bot.discord.instrumentation import instrument_bot
from bot.ops.checks import readiness_checks
from bot.ops.health import HealthServer, health_server

log = structlog.get_logger(__name__)

EXIT_CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps a misconfigured bot down


async def run_bot(settings: Settings) -> None:
    token = settings.discord.token.get_secret_value() if settings.discord.token else ""
    if not token:
        raise ConfigurationError("DISCORD_TOKEN is not set; put the bot token in .env (see .env.example)")
    apply_endpoints(settings.discord)
    try:
        # The health endpoint starts first: /healthz answers (and /readyz says "starting") while the
        # embedding model loads and the embedded LLM starts, which can take minutes on a small machine.
        async with (
            health_server(settings.ops, secrets=settings.secrets) as health,
            open_services(settings, with_llm=True, with_database=True) as services,
        ):
            bot = create_bot(services, settings)
            instrument_bot(bot)
            if services.llm is not None:
                track_llm_usage(services.llm.usage)
            if health is not None:
                llm_url = services.llm.base_url if services.llm is not None else None
                database = services.state.database if services.state is not None else None
                checks = readiness_checks(bot, index=services.index, llm_base_url=llm_url, database=database)
                for name, check in checks.items():
                    health.set_check(name, check)
            stopping: set[asyncio.Task[None]] = set()

            def on_signal(sig: signal.Signals) -> None:
                task = asyncio.create_task(_shutdown(bot, sig, health))
                stopping.add(task)
                task.add_done_callback(stopping.discard)

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
            try:
                async with bot:
                    await bot.start(token)
            except discord.LoginFailure as exc:
                raise ConfigurationError(f"Discord rejected the token: {exc}") from exc
            except discord.PrivilegedIntentsRequired as exc:
                raise ConfigurationError(
                    "the message-content intent is not enabled for this bot in the developer portal; enable "
                    "it or set DISCORD_MESSAGE_CONTENT_INTENT=false"
                ) from exc
        log.info("daemon.stopped")
    finally:
        flush_logging()


async def _shutdown(bot: discord.Client, sig: signal.Signals, health: HealthServer | None) -> None:
    log.info("daemon.stopping", signal=sig.name)
    if health is not None:
        health.mark_stopping()  # /readyz → 503 at once, so no new traffic is routed here
    await bot.close()
