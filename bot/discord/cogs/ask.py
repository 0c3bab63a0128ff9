"""/ask: Iter-RetGen with live progress and the final answer streamed into the same message."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.errors import SHOWS_PROGRESS
from bot.discord.formatting import NO_MENTIONS, answer_messages
from bot.discord.progress import ThrottledProgress
from bot.retrieval.index import SearchFilter

if TYPE_CHECKING:
    from bot.discord.bot import PaperBotBase


async def answer_interaction(
    bot: PaperBotBase,
    interaction: discord.Interaction,
    question: str,
    *,
    private: bool,
    search_filter: SearchFilter | None = None,
) -> None:
    """Defer at once, show progress, stream, then the answer with its Sources. Shared by /ask and buttons."""
    bot.services.answers.validate_question(question)  # refuse bad input before deferring
    await bot.admit_llm_request(interaction.user.id, interaction.guild_id)
    await interaction.response.defer(thinking=True, ephemeral=private)
    interaction.extras[SHOWS_PROGRESS] = True
    progress = ThrottledProgress(
        lambda text: interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS),
        interval_s=bot.settings.discord.stream_edit_interval_s,
    )
    try:
        answer = await bot.services.answers.answer(question, progress=progress, search_filter=search_filter)
    finally:
        await progress.aclose()  # no progress edit may land after the answer
    await bot.token_budget.spend(interaction.guild_id, answer.prompt_tokens + answer.completion_tokens)
    messages = answer_messages(answer)
    first_text, first_embeds = messages[0]
    await interaction.edit_original_response(
        content=first_text, embeds=first_embeds, allowed_mentions=NO_MENTIONS
    )
    interaction.extras[SHOWS_PROGRESS] = False
    for text, embeds in messages[1:]:
        await interaction.followup.send(text, embeds=embeds, ephemeral=private, allowed_mentions=NO_MENTIONS)


class AskCog(commands.Cog, name="Ask"):
    def __init__(self, bot: PaperBotBase) -> None:
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
