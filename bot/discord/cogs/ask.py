"""/ask: Iter-RetGen with live progress and the final answer streamed into the same message."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.answering import answer_interaction
from bot.discord.protocol import Paperbot, as_paperbot


class AskCog(commands.Cog, name="Ask"):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot

    @app_commands.command(name="ask", description="Ask a question; the answer cites the papers it used")
    @app_commands.describe(question="Your question about the papers", private="Only you see the answer")
    async def ask(
        self,
        interaction: discord.Interaction,
        question: app_commands.Range[str, 1, 1000],
        private: bool = False,
    ) -> None:
        await answer_interaction(self.bot, interaction, question, private=private)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AskCog(as_paperbot(bot)))
