"""One place that turns any failure into a short message for the user and a full log line for us."""

from __future__ import annotations

import uuid

import discord
import structlog
from discord import app_commands

from bot.discord.formatting import NO_MENTIONS
from bot.index import IndexUnavailableError
from bot.rag.iter_retgen import QuestionError
from bot.search import QueryError

log = structlog.get_logger(__name__)


class UserFacingError(Exception):
    """An error whose message is written for the user (bad input, not found, not allowed)."""


class RateLimited(app_commands.CheckFailure):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s")
        self.retry_after = retry_after


def user_message(error: BaseException) -> tuple[str, bool]:
    """(message, expected): expected errors are the user's input or a known outage, not our bug."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, RateLimited):
        return f"You're going a bit fast — try again in {max(1, round(error.retry_after))} s.", True
    if isinstance(error, UserFacingError | QueryError | QuestionError):
        return str(error), True
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the Manage Server permission for that.", True
    if isinstance(error, app_commands.NoPrivateMessage):
        return "That command only works in a server.", True
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use that command here.", True
    if isinstance(error, IndexUnavailableError):
        return "The paper index is unavailable right now; please try again in a minute.", False
    return "", False


async def send_error(interaction: discord.Interaction, text: str) -> None:
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:  # the interaction expired or the channel is gone
        log.warning("discord.error_reply_failed", error=str(exc))


async def on_app_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    await report_interaction_error(interaction, error)


async def report_interaction_error(interaction: discord.Interaction, error: BaseException) -> None:
    """For commands, buttons and modals alike."""
    text, expected = user_message(error)
    if expected:
        log.info("discord.command_refused", reason=text)
    else:
        reference = uuid.uuid4().hex[:8]
        log.error("discord.command_failed", reference=reference, exc_info=error)
        text = text or f"Something went wrong on my side (reference `{reference}`); it has been logged."
    await send_error(interaction, text)
