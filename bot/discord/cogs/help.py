"""/help, generated from the command tree: every command the bot registered, and nothing it did not."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.formatting import BRAND_COLOUR, EMBED_DESCRIPTION, NO_MENTIONS, clip
from bot.discord.protocol import Paperbot, as_paperbot

# What no slash command describes.
CONVERSATION_HELP = (
    "**Mention me** or reply to me — I answer in a thread and remember the thread's conversation.\n"
    "Add `private: True` to /search or /ask to see the result only yourself."
)


def command_line(command: app_commands.Command[Any, ..., Any] | app_commands.Group) -> str:
    """`**/search** `query` [since] [limit] [private] — Find papers…`; a group lists its subcommands."""
    if isinstance(command, app_commands.Group):
        subcommands = " · ".join(f"`{sub.name}`" for sub in command.commands)
        admins = command.default_permissions is not None and command.default_permissions.manage_guild
        return f"**/{command.name}** {subcommands} — {command.description}" + (
            " (server admins)" if admins else ""
        )
    options = " ".join(f"`{p.name}`" if p.required else f"[{p.name}]" for p in command.parameters)
    return f"**/{command.name}**{' ' + options if options else ''} — {command.description}"


def help_text(tree: app_commands.CommandTree) -> str:
    commands_ = [c for c in tree.get_commands(type=discord.AppCommandType.chat_input)]
    lines = [command_line(c) for c in commands_ if isinstance(c, app_commands.Command | app_commands.Group)]
    return clip("\n".join([*lines, CONVERSATION_HELP]), EMBED_DESCRIPTION)


class HelpCog(commands.Cog, name="Help"):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What paperbot can do")
    async def help(self, interaction: discord.Interaction) -> None:
        embed = discord.Embed(title="paperbot", description=help_text(self.bot.tree), colour=BRAND_COLOUR)
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(HelpCog(as_paperbot(bot)))
