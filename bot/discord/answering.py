"""Answering a question in an interaction (/ask, the "Ask about this" modal): defer at once, show
progress, stream, then the answer with its Sources."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import discord

from bot.discord.errors import SHOWS_PROGRESS
from bot.discord.formatting import NO_MENTIONS, answer_messages
from bot.discord.progress import ThrottledProgress
from bot.discord.protocol import Paperbot
from bot.rag.iter_retgen import Answer, AnswerProgress
from bot.retrieval.index import SearchFilter


async def answer_interaction(
    bot: Paperbot,
    interaction: discord.Interaction,
    question: str,
    *,
    private: bool,
    search_filter: SearchFilter | None = None,
    answer_with: Callable[[AnswerProgress], Awaitable[Answer]] | None = None,
) -> None:
    """Defer at once, show progress, stream, then the answer with its Sources. Shared by /ask and buttons.
    `answer_with` answers instead of the paper search (e.g. `/ask scope:channel`), given the progress."""
    bot.services.answers.validate_question(question)  # refuse bad input before deferring
    await bot.admit_llm_request(interaction.user.id, interaction.guild_id)
    await interaction.response.defer(thinking=True, ephemeral=private)
    interaction.extras[SHOWS_PROGRESS] = True
    progress = ThrottledProgress(
        lambda text: interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS),
        interval_s=bot.settings.discord.stream_edit_interval_s,
    )
    try:
        if answer_with is not None:
            answer = await answer_with(progress)
        else:
            if bot.services.fulltext is not None:  # on demand: the papers it is asked about
                await bot.services.fulltext.ensure_for_question(
                    question, paper_ids=search_filter.paper_ids if search_filter else ()
                )
            answer = await bot.services.answers.answer(
                question, progress=progress, search_filter=search_filter
            )
    finally:
        await progress.aclose()  # no progress edit may land after the answer
    await bot.services.budget.spend(interaction.guild_id, answer.prompt_tokens + answer.completion_tokens)
    messages = answer_messages(answer)
    first_text, first_embeds = messages[0]
    await interaction.edit_original_response(
        content=first_text, embeds=first_embeds, allowed_mentions=NO_MENTIONS
    )
    interaction.extras[SHOWS_PROGRESS] = False
    for text, embeds in messages[1:]:
        await interaction.followup.send(text, embeds=embeds, ephemeral=private, allowed_mentions=NO_MENTIONS)
