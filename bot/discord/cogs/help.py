"""/help."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.formatting import BRAND_COLOUR, NO_MENTIONS

if TYPE_CHECKING:
    from bot.discord.bot import PaperBotBase

HELP_TEXT = """\
**/search** `query` — find papers (hybrid keyword + semantic search); filter with `since` (2026-08-01 or 7d).
**/ask** `question` — an answer written from the papers, citing them as [n], with a Sources list.
**/paper** `id_or_url` — a paper card: arXiv id, arxiv.org abs/pdf link or huggingface.co/papers link.
**Mention me** or reply to me — I answer in a thread and remember the thread's conversation.
**/help** — this message.
Add `private: True` to /search or /ask to see the result only yourself."""


class HelpCog(commands.Cog, name="Help"):
    def __init__(self, bot: PaperBotBase) -> None:
        self.bot = bot

    @app_commands.command(name="help", description="What paperbot can do")
    async def help(self, interaction: discord.Interaction) -> None:
        embed = discord.Embed(title="paperbot", description=HELP_TEXT, colour=BRAND_COLOUR)
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)
