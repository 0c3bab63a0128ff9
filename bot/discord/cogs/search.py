"""/search and the buttons under its results (which keep working after a restart)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.papers import Paper, is_title_id
from bot.discord.answering import answer_interaction
from bot.discord.errors import UserFacingError, report_interaction_error
from bot.discord.formatting import (
    NO_MENTIONS,
    card_summary_text,
    defang_links,
    fit_embeds,
    paper_embed,
    quoted_input,
)
from bot.discord.library_ui import SaveButton
from bot.discord.log_context import bind_interaction
from bot.discord.protocol import Paperbot, as_paperbot
from bot.retrieval.index import SearchFilter

MAX_RESULTS = 10
ROWS_WITH_BUTTONS = 5  # Discord allows 5 rows of components per message
MODAL_TIMEOUT_S = 15 * 60  # an abandoned modal must not stay in memory forever
_RELATIVE = re.compile(r"^(\d{1,4})\s*([dwmy])$")
_SINCE_HELP = "`since` must be a date like 2026-08-01 or a span like 7d, 2w, 3m, 1y"


def parse_since(value: str | None, today: dt.date | None = None) -> dt.date | None:
    """`2026-08-01`, or a span back from today: `7d`, `2w`, `3m`, `1y`."""
    if not value or not value.strip():
        return None
    text = value.strip().lower()
    match = _RELATIVE.match(text)
    try:
        if match:
            amount, unit = int(match.group(1)), match.group(2)
            days = amount * {"d": 1, "w": 7, "m": 30, "y": 365}[unit]
            return (today or dt.date.today()) - dt.timedelta(days=days)
        return dt.date.fromisoformat(text)
    except (ValueError, OverflowError):  # not a date, or a span reaching before year 1
        raise UserFacingError(f"{_SINCE_HELP}; got {quoted_input(value, 40)}.") from None


class PaperButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=r"pb:(?P<action>sum|ask|sim):(?P<pid>.{1,90})"
):
    """A button whose custom_id carries its action and paper, so it works after any restart."""

    LABELS: ClassVar[dict[str, str]] = {"sum": "Summarize", "ask": "Ask about this", "sim": "Similar papers"}

    def __init__(self, action: str, paper_id: str, rank: int | None = None, row: int | None = None) -> None:
        label = self.LABELS[action] + (f" #{rank}" if rank is not None else "")
        button: discord.ui.Button[Any] = discord.ui.Button(
            label=label, style=discord.ButtonStyle.secondary, custom_id=f"pb:{action}:{paper_id}"
        )
        super().__init__(button, row=row)
        self.action = action
        self.paper_id = paper_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> PaperButton:
        return cls(match["action"], match["pid"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bind_interaction(interaction, command=f"button:{self.action}")
        cog = interaction.client.get_cog("Search")  # type: ignore[attr-defined]
        assert isinstance(cog, SearchCog)
        try:
            await cog.on_button(interaction, self.action, self.paper_id)
        except Exception as exc:  # component errors don't reach the tree's handler
            await report_interaction_error(interaction, exc)


class AskAboutPaper(discord.ui.Modal, title="Ask about this paper"):
    question: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Your question", style=discord.TextStyle.paragraph, max_length=1000
    )

    def __init__(self, cog: SearchCog, paper: Paper) -> None:
        super().__init__(timeout=MODAL_TIMEOUT_S)
        self.cog = cog
        self.paper = paper

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        bind_interaction(interaction, command="modal:ask")
        await answer_interaction(
            self.cog.bot, interaction, str(self.question.value), private=True,
            search_filter=SearchFilter(paper_ids=(self.paper.paper_id,)),
        )  # fmt: skip

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await report_interaction_error(interaction, error)


def result_footer(rank: int, paper: Paper) -> str:
    """'#2 · 2407.07523'; only the rank for a paper known by its title alone (a saved page's)."""
    return f"#{rank}" if is_title_id(paper.paper_id) else f"#{rank} · {paper.paper_id}"


def results_view(papers: Sequence[Paper], *, save: bool = False) -> discord.ui.View:
    """Summarize / Ask / Similar (and 🔖 Save when the bot keeps libraries) for the first five papers,
    one row each. Fully dynamic: the view is never stored, the buttons are routed by their custom_id."""
    view = discord.ui.View(timeout=None)
    for rank, paper in enumerate(papers[:ROWS_WITH_BUTTONS], 1):
        for action in ("sum", "ask", "sim"):
            view.add_item(PaperButton(action, paper.paper_id, rank, row=rank - 1))
        if save:
            view.add_item(SaveButton(paper.paper_id, row=rank - 1, label=f"🔖 Save #{rank}"))
    return view


class SearchCog(commands.Cog, name="Search"):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot

    @app_commands.command(name="search", description="Find papers by topic (keyword + semantic search)")
    @app_commands.describe(
        query="What to look for",
        since="Only papers since a date (2026-08-01) or span (7d, 2w)",
        limit="How many papers (1-10)",
        private="Only you see the results",
    )
    async def search(
        self,
        interaction: discord.Interaction,
        query: app_commands.Range[str, 1, 500],
        since: str | None = None,
        limit: app_commands.Range[int, 1, MAX_RESULTS] = 5,
        private: bool = False,
    ) -> None:
        since_date = parse_since(since)
        self.bot.services.search.prepare_query(query)  # refuse an empty query before deferring
        await interaction.response.defer(thinking=True, ephemeral=private)
        result = await self.bot.services.search.search(query, limit=limit, since=since_date)
        shown = defang_links(result.query)
        empty = f"No papers found for “{shown}”" + (f" since {since_date}" if since_date else "") + "."
        await self._send_results(interaction, [h.paper for h in result.hits], private, empty=empty)

    async def _send_results(
        self, interaction: discord.Interaction, papers: Sequence[Paper], private: bool, *, empty: str
    ) -> None:
        if not papers:
            await interaction.followup.send(empty, ephemeral=private, allowed_mentions=NO_MENTIONS)
            return
        embeds = [paper_embed(p, footer=result_footer(rank, p)) for rank, p in enumerate(papers, 1)]
        groups = fit_embeds(embeds)
        saves = self.bot.services.state is not None  # 🔖 Save needs the state database
        for index, group in enumerate(groups):
            last = index == len(groups) - 1
            kwargs: dict[str, Any] = {"view": results_view(papers, save=saves)} if last else {}
            await interaction.followup.send(
                embeds=group, ephemeral=private, allowed_mentions=NO_MENTIONS, **kwargs
            )

    async def on_button(self, interaction: discord.Interaction, action: str, paper_id: str) -> None:
        papers = await self.bot.services.index.fetch_papers([paper_id])
        paper = papers.get(paper_id)
        if paper is None:
            raise UserFacingError("That paper is no longer in the index.")
        if action == "ask":
            await interaction.response.send_modal(AskAboutPaper(self, paper))
            return
        if action == "sum":
            self.bot.check_rate(interaction.user.id, interaction.guild_id)
            await interaction.response.defer(thinking=True, ephemeral=True)
            summary = await self.bot.services.cards.for_card(paper, interaction.guild_id)
            await interaction.followup.send(
                embed=paper_embed(paper, summary=card_summary_text(summary)),
                ephemeral=True,
                allowed_mentions=NO_MENTIONS,
            )
            return
        await interaction.response.defer(thinking=True, ephemeral=True)
        hits = await self.bot.services.search.search_chunks(
            f"{paper.title}\n{paper.abstract}", limit=15,
            search_filter=SearchFilter(exclude_paper_ids=(paper.paper_id,)),
        )  # fmt: skip
        similar = list({h.paper.paper_id: h.paper for h in hits}.values())[:5]
        await self._send_results(interaction, similar, True, empty="No similar papers found.")


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(SearchCog(as_paperbot(bot)))
    bot.add_dynamic_items(PaperButton)  # the result buttons work after any restart
