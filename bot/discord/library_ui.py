"""The 🔖 Save button (paper cards, /search results, digest posts) and the 👍/👎 buttons of personal DM
digests. Their custom_ids carry the paper, so they work after any restart; they are registered by
the library cog's `setup`, and other cogs only attach them (`save_button`, `personal_feedback_row`).
Replies are ephemeral: a library is private to its owner."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import discord

from bot.discord.errors import UserFacingError, report_interaction_error
from bot.discord.formatting import NO_MENTIONS
from bot.discord.log_context import bind_interaction
from bot.discord.protocol import as_paperbot

if TYPE_CHECKING:
    from bot.app.services import DigestServices

NO_LIBRARY = "Saved papers need the bot's state database, which this bot runs without."


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def library_state(client: object) -> DigestServices:
    """The bot's database-backed services (library, follows, personal digests); a clear refusal
    when the bot runs without a state database."""
    state = as_paperbot(client).services.state
    if state is None:
        raise UserFacingError(NO_LIBRARY)
    return state


async def with_notice(state: DigestServices, user_id: int, text: str) -> str:
    """`text`, preceded once by the notice that the user's last digest DM could not be delivered."""
    notice = await state.library.dm_notice(user_id)
    return f"⚠️ {notice}\n\n{text}" if notice else text


class SaveButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"pb:save:(?P<pid>.{1,90})"):
    def __init__(self, paper_id: str, row: int | None = None, label: str = "🔖 Save") -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label, style=discord.ButtonStyle.secondary, custom_id=f"pb:save:{paper_id}"
        )
        super().__init__(button, row=row)
        self.paper_id = paper_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SaveButton:
        return cls(match["pid"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bind_interaction(interaction, command="button:save")
        try:
            state = library_state(interaction.client)
            outcome = await state.library.save(interaction.user.id, self.paper_id)
            title = discord.utils.escape_markdown(outcome.paper.title)[:200]
            text = (
                f"🔖 Saved **{title}** to your library ({plural(outcome.total, 'paper')})."
                if outcome.added
                else f"**{title}** is already in your library."
            )
            text = await with_notice(state, interaction.user.id, text + " See `/library list`.")
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception as exc:  # component errors don't reach the tree's handler
            await report_interaction_error(interaction, exc)


class PersonalFeedbackButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"pb:pf:(?P<vote>up|down):(?P<pid>.{1,90})"
):
    """👍/👎 under a paper of a personal DM digest: steers that user's own next picks."""

    def __init__(self, vote: str, paper_id: str, row: int | None = None) -> None:
        button: discord.ui.Button[Any] = discord.ui.Button(
            emoji="👍" if vote == "up" else "👎",
            style=discord.ButtonStyle.secondary,
            custom_id=f"pb:pf:{vote}:{paper_id}",
        )
        super().__init__(button, row=row)
        self.vote = vote
        self.paper_id = paper_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PersonalFeedbackButton:
        return cls(match["vote"], match["pid"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bind_interaction(interaction, command=f"button:feedback_{self.vote}")
        try:
            state = library_state(interaction.client)
            value = 1 if self.vote == "up" else -1
            await state.follows.feedback(interaction.user.id, self.paper_id, value)
            text = (
                "👍 Noted: more papers like this one in your digest."
                if value > 0
                else "👎 Noted: fewer papers like this one in your digest."
            )
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception as exc:
            await report_interaction_error(interaction, exc)


def save_view(paper_id: str) -> discord.ui.View:
    """A view with only the Save button (paper cards, digest posts)."""
    view = discord.ui.View(timeout=None)
    view.add_item(SaveButton(paper_id))
    return view


def personal_paper_view(paper_id: str) -> discord.ui.View:
    """Under a personal digest's paper: Save, 👍, 👎."""
    view = discord.ui.View(timeout=None)
    view.add_item(SaveButton(paper_id))
    view.add_item(PersonalFeedbackButton("up", paper_id))
    view.add_item(PersonalFeedbackButton("down", paper_id))
    return view


DYNAMIC_ITEMS = (SaveButton, PersonalFeedbackButton)
