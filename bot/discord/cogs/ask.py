"""/ask: Iter-RetGen with live progress and the final answer streamed into the same message."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.answering import answer_interaction
from bot.discord.errors import UserFacingError
from bot.discord.protocol import Paperbot, as_paperbot
from bot.rag.iter_retgen import Answer, AnswerProgress


class AskCog(commands.Cog, name="Ask"):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot

    @app_commands.command(name="ask", description="Ask a question; the answer cites the papers it used")
    @app_commands.describe(
        question="Your question about the papers",
        private="Only you see the answer",
        scope="papers (default); channel: this channel's remembered discussion plus papers; "
        "library: only the papers you saved",
    )
    @app_commands.choices(
        scope=[
            app_commands.Choice(name="papers", value="papers"),
            app_commands.Choice(name="channel", value="channel"),
            app_commands.Choice(name="library", value="library"),
        ]
    )
    async def ask(
        self,
        interaction: discord.Interaction,
        question: app_commands.Range[str, 1, 1000],
        private: bool = False,
        scope: str = "papers",
    ) -> None:
        if scope == "library":
            await self._ask_library(interaction, question, private=private)
            return
        if scope == "channel":
            await self._ask_channel(interaction, question, private=private)
            return
        await answer_interaction(self.bot, interaction, question, private=private)

    async def _ask_channel(self, interaction: discord.Interaction, question: str, *, private: bool) -> None:
        """From this channel's memory (a thread asks its parent channel's) plus papers, cited with jump
        links."""
        memory = self.bot.services.memory
        channel = interaction.channel
        channel_id = channel.parent_id if isinstance(channel, discord.Thread) else interaction.channel_id
        if memory is None or interaction.guild_id is None or channel_id is None:
            raise UserFacingError(
                "Channel memory is not available here; ask without scope to search the papers."
            )
        guild_id = interaction.guild_id
        if await memory.channel(channel_id) is None:
            raise UserFacingError(
                "Channel memory is off in this channel, so there is no discussion to search. A server admin "
                "can turn it on with /memory enable; ask without scope to search the papers."
            )

        async def from_channel(progress: AnswerProgress) -> Answer:
            return await memory.answer(question, guild_id=guild_id, channel_id=channel_id, progress=progress)

        await answer_interaction(self.bot, interaction, question, private=private, answer_with=from_channel)

    async def _ask_library(self, interaction: discord.Interaction, question: str, *, private: bool) -> None:
        """Iter-RetGen over the asker's saved papers only (`/library`), with the same citations."""
        state = self.bot.services.state
        if state is None:
            raise UserFacingError("Saved papers need the bot's state database; ask without scope.")
        search_filter = await state.library.library_filter(interaction.user.id)
        await answer_interaction(
            self.bot, interaction, question, private=private, search_filter=search_filter
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AskCog(as_paperbot(bot)))
