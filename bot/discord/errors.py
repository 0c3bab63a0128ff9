"""One place that turns any failure into a short message for the user and a full log line for us.

Used by the command tree (`PaperCommandTree.on_error`), by buttons and modals, and by the chat
listener: expected failures (bad input, cooldowns) are logged at info with the reason; anything
else is logged with its traceback and a reference the user can quote. Our own errors are mapped by
kind (`bot.core.errors`), never class by class.
"""

from __future__ import annotations

import math
import uuid

import discord
import structlog
from discord import app_commands

from bot.core.errors import DependencyUnavailableError, UserInputError
from bot.core.metrics import observe_command, seconds_since
from bot.discord.formatting import NO_MENTIONS, quoted_input

log = structlog.get_logger(__name__)

# Set in `interaction.extras` while the original response shows progress ("searching…") that an
# error must replace, rather than leave on screen next to a separate error message.
SHOWS_PROGRESS = "paperbot.shows_progress"


class UserFacingError(UserInputError):
    """An error whose message is written for the user (bad input, not found, not allowed)."""


class RateLimited(app_commands.CheckFailure):
    def __init__(self, retry_after: float, *, guild_wide: bool = False) -> None:
        super().__init__(f"rate limited for {retry_after:.1f}s")
        self.retry_after = retry_after
        self.guild_wide = guild_wide


def unwrap(error: BaseException) -> BaseException:
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    return error


def user_message(error: BaseException) -> tuple[str, bool]:
    """(message, expected): expected errors are the user's input or a known limit, not our bug."""
    error = unwrap(error)
    if isinstance(error, RateLimited):
        seconds = max(1, math.ceil(error.retry_after))
        if error.guild_wide:
            return f"This server is asking a lot right now — try again in {seconds} s.", True
        return f"You're going a bit fast — try again in {seconds} s.", True
    if isinstance(error, UserInputError):
        return _sentence(str(error)), True
    if isinstance(error, app_commands.TransformerError):
        value = quoted_input(str(error.value), 80)
        return f"I couldn't read the value {value}; please check the option.", True
    if isinstance(error, app_commands.MissingPermissions):
        names = (p.replace("_", " ").replace("guild", "server").title() for p in error.missing_permissions)
        needed = ", ".join(names)
        return f"You need the {needed} permission for that.", True
    if isinstance(error, app_commands.NoPrivateMessage):
        return "That command only works in a server.", True
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use that command here.", True
    if isinstance(error, DependencyUnavailableError):
        return f"{error.what} is unavailable right now; please try again in a minute", False
    return "", False


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def describe_failure(error: BaseException) -> str:
    """Log the failure and return what the user should read (with a reference when it is our fault)."""
    text, expected = user_message(error)
    original = unwrap(error)
    if expected:
        log.info("discord.request_refused", reason=text, error_type=type(original).__name__)
        return text
    reference = uuid.uuid4().hex[:8]
    log.error("discord.request_failed", reference=reference, error_type=type(original).__name__,
              exc_info=original)  # fmt: skip
    if text:
        return f"{text} (reference `{reference}`)."
    return f"Something went wrong on my side (reference `{reference}`); it has been logged."


async def send_error(interaction: discord.Interaction, text: str) -> None:
    try:
        if interaction.extras.pop(SHOWS_PROGRESS, False):
            await interaction.edit_original_response(content=text, embeds=[], view=None,
                                                     allowed_mentions=NO_MENTIONS)  # fmt: skip
        elif interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:  # the interaction expired or the channel is gone
        log.warning("discord.error_reply_failed", error=str(exc))


def failure_outcome(error: BaseException) -> str:
    """The metrics outcome of a failure: user_error, rate_limited or error."""
    if isinstance(unwrap(error), RateLimited):
        return "rate_limited"
    return "user_error" if user_message(error)[1] else "error"


def command_name(interaction: discord.Interaction) -> str:
    command = interaction.command
    if command is not None:
        return command.qualified_name
    return "component" if interaction.type == discord.InteractionType.component else "modal"


async def report_interaction_error(interaction: discord.Interaction, error: BaseException) -> None:
    """For commands, buttons and modals alike."""
    observe_command(command_name(interaction), seconds_since(interaction.created_at), failure_outcome(error))
    await send_error(interaction, describe_failure(error))
