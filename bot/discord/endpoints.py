"""Where discord.py connects: Discord itself, an API proxy (nirn-proxy) or a local test server."""

from __future__ import annotations

import discord
import discord.gateway
import discord.http
import yarl

from bot.core.config import DiscordSettings


def apply_endpoints(settings: DiscordSettings) -> None:
    discord.http.Route.BASE = settings.api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


def build_intents(settings: DiscordSettings) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.guild_reactions = True  # 👍/👎 feedback on digest posts
    intents.message_content = settings.message_content_intent
    intents.dm_messages = settings.allow_dms
    return intents
