"""Binds who, where and what to every log line of one interaction or message handler.

Each interaction and each event runs in its own asyncio task, so binding structlog's contextvars at
the start of the handler scopes them to that request only.
"""

from __future__ import annotations

import uuid

import discord
import structlog


def bind_request(*, guild_id: int | None, channel_id: int | None, user_id: int, command: str | None) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=uuid.uuid4().hex[:12],
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        command=command,
    )


def bind_interaction(interaction: discord.Interaction, command: str | None = None) -> None:
    if command is None and interaction.command is not None:
        command = interaction.command.qualified_name
    bind_request(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        command=command,
    )


def bind_message(message: discord.Message, command: str) -> None:
    bind_request(
        guild_id=message.guild.id if message.guild else None,
        channel_id=message.channel.id,
        user_id=message.author.id,
        command=command,
    )
