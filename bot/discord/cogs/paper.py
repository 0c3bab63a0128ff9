"""/paper: a paper card from an arXiv id or an arxiv.org / huggingface.co/papers link — nothing else."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import discord
from discord import app_commands
from discord.ext import commands
from discord.utils import MISSING

from bot.core.papers import clean_user_text, parse_arxiv_id
from bot.discord.errors import UserFacingError
from bot.discord.formatting import (
    NO_MENTIONS,
    card_summary_text,
    paper_embed,
    quoted_input,
    with_fulltext_field,
)
from bot.discord.library_ui import save_view
from bot.discord.protocol import Paperbot, as_paperbot

ALLOWED_HOSTS = {"arxiv.org", "www.arxiv.org", "export.arxiv.org", "huggingface.co", "www.huggingface.co"}
_HF_PAPER_PATH = re.compile(r"^/papers/(?P<id>[^/?#]+)/?$")
_ARXIV_PATH = re.compile(r"^/(?:abs|pdf)/(?P<id>[^?#]+?)(?:\.pdf)?/?$")


def paper_id_from_input(raw: str) -> str:
    """The arXiv id (no version) from an id or an allowed link; UserFacingError for anything else."""
    text = clean_user_text(raw).strip("<>")  # zero-width and control characters are not part of it
    if not text:
        raise UserFacingError("Give an arXiv id (2405.15738) or an arxiv.org / huggingface.co/papers link.")
    if "://" in text or text.startswith(("arxiv.org", "www.", "huggingface.co")):
        parts = urlsplit(text if "://" in text else f"https://{text}")
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or host not in ALLOWED_HOSTS:
            raise UserFacingError("Only arxiv.org and huggingface.co/papers links are accepted.")
        pattern = _HF_PAPER_PATH if "huggingface" in host else _ARXIV_PATH
        match = pattern.match(parts.path)
        if not match:
            raise UserFacingError("That link is not an arXiv abstract/PDF or a Hugging Face paper page.")
        text = match.group("id")
    parsed = parse_arxiv_id(text)
    if parsed is None:
        example = "expected something like 2405.15738 or 2405.15738v2"
        raise UserFacingError(f"{quoted_input(raw, 80)} is not an arXiv id ({example}).")
    return parsed[0]


class PaperCog(commands.Cog, name="Paper"):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot

    @app_commands.command(name="paper", description="Show a paper card with its summary")
    @app_commands.describe(id_or_url="arXiv id, arxiv.org link or huggingface.co/papers link")
    async def paper(
        self, interaction: discord.Interaction, id_or_url: app_commands.Range[str, 1, 300]
    ) -> None:
        paper_id = paper_id_from_input(id_or_url)  # refuse anything else before deferring
        await interaction.response.defer(thinking=True)
        paper = (await self.bot.services.index.fetch_papers([paper_id])).get(paper_id)
        if paper is None:
            await interaction.followup.send(
                f"arXiv:{paper_id} isn't in paperbot's index yet (it knows the papers of its ingested "
                "sources).",
                allowed_mentions=NO_MENTIONS,
            )
            return
        summary = await self.bot.services.cards.for_card(paper, interaction.guild_id)
        embed = paper_embed(paper, summary=card_summary_text(summary))
        fulltext = self.bot.services.fulltext
        record = fulltext.status(paper.paper_id) if fulltext is not None else None
        # On demand: the card goes out at once, then shows the sections once the full text is in.
        fetching = record is None and fulltext is not None and fulltext.can_fetch(paper)
        message = await interaction.followup.send(
            embed=with_fulltext_field(embed, record, fetching=fetching),
            allowed_mentions=NO_MENTIONS,
            view=save_view(paper.paper_id) if self.bot.services.state is not None else MISSING,
            wait=True,
        )
        if fetching and fulltext is not None:
            record = await fulltext.ensure(paper)
            await message.edit(embed=with_fulltext_field(embed, record, fetching=False))


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(PaperCog(as_paperbot(bot)))
