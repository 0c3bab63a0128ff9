"""/library: each user's saved papers — list, export (as a file), note, remove, import a .bib, and
forget-me; the 🔖 Save and 👍/👎 buttons are registered here. Every reply is ephemeral: a library is
private to its owner. Also starts the personal DM digests' daily job with the Discord DM poster.

A translator only: the rules live in `bot.library.service.LibraryService`.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.discord.errors import UserFacingError
from bot.discord.formatting import NO_MENTIONS, clip, split_message
from bot.discord.library_ui import DYNAMIC_ITEMS, plural, with_notice
from bot.discord.personal_messages import DiscordDMPoster
from bot.discord.protocol import Paperbot, as_paperbot, state_services

if TYPE_CHECKING:
    pass

log = structlog.get_logger(__name__)

FORMAT_CHOICES = [
    app_commands.Choice(name="BibTeX (.bib)", value="bibtex"),
    app_commands.Choice(name="RIS (Zotero, EndNote)", value="ris"),
    app_commands.Choice(name="CSL-JSON", value="csl-json"),
    app_commands.Choice(name="Markdown", value="markdown"),
]


class LibraryCog(
    commands.GroupCog, name="Library", group_name="library", group_description="Your saved papers (private)"
):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot
        self.state = state_services(bot, "library")
        self.poster = DiscordDMPoster(bot)  # type: ignore[arg-type]  # the bot is a discord.Client
        super().__init__()

    async def cog_load(self) -> None:
        shards = self.bot.settings.discord
        if shards.shard_count and shards.shard_ids is not None and 0 not in shards.shard_ids:
            # DMs belong to no guild: one process sends them all, the one that runs shard 0.
            log.info("personal_digest.not_scheduled", reason="shard 0 runs in another process")
            return
        self.state.personal.start(self.poster)

    async def cog_unload(self) -> None:
        self.state.personal.shutdown()

    @commands.Cog.listener()
    async def on_app_command_completion(
        self, interaction: discord.Interaction, command: app_commands.Command[Any, ..., Any]
    ) -> None:
        """A member whose digest DM failed (50007) is told at their next command, whichever it is:
        after it has answered, as one more private message. /library and /follow say it themselves."""
        if command.qualified_name.split(" ")[0] in ("library", "follow"):
            return
        try:
            if not interaction.response.is_done() or not await self.state.library.has_dm_notice(
                interaction.user.id
            ):
                return
            notice = await self.state.library.dm_notice(interaction.user.id)
            if notice:
                await interaction.followup.send(f"⚠️ {notice}", ephemeral=True, allowed_mentions=NO_MENTIONS)
        except Exception:  # the command itself succeeded; the notice waits for the next one
            log.warning("library.dm_notice_failed", user_id=interaction.user.id, exc_info=True)

    async def _reply(self, interaction: discord.Interaction, text: str, **kwargs: Any) -> None:
        text = await with_notice(self.state, interaction.user.id, text)
        parts = split_message(text) or ["…"]
        for index, part in enumerate(parts):
            extra = kwargs if index == len(parts) - 1 else {}
            if interaction.response.is_done():
                await interaction.followup.send(part, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra)
            else:
                await interaction.response.send_message(
                    part, ephemeral=True, allowed_mentions=NO_MENTIONS, **extra
                )

    async def _paper_choices(
        self, interaction: discord.Interaction, typed: str
    ) -> list[app_commands.Choice[str]]:
        papers = await self.state.library.matching_saved(interaction.user.id, typed)
        return [app_commands.Choice(name=clip(p.title, 100), value=p.paper_id[:100]) for p in papers]

    @app_commands.command(name="save", description="Save a paper to your library by arXiv id or link")
    @app_commands.describe(paper="arXiv id (2405.15738) or arxiv.org link")
    async def save(self, interaction: discord.Interaction, paper: app_commands.Range[str, 1, 200]) -> None:
        outcome = await self.state.library.save(interaction.user.id, paper)
        title = discord.utils.escape_markdown(outcome.paper.title)
        verb = "Saved" if outcome.added else "Already saved:"
        await self._reply(
            interaction,
            f"🔖 {verb} **{clip(title, 200)}** ({plural(outcome.total, 'paper')} in your library).",
        )

    @app_commands.command(name="list", description="Your saved papers, newest first")
    @app_commands.describe(page="Page number (10 papers a page)")
    async def list_(
        self, interaction: discord.Interaction, page: app_commands.Range[int, 1, 1000] = 1
    ) -> None:
        listing = await self.state.library.page(interaction.user.id, page)
        if not listing.total:
            await self._reply(
                interaction, "Your library is empty: use 🔖 Save under a paper, or `/library save`."
            )
            return
        start = (listing.page - 1) * 10
        lines = [f"**Your library** · {listing.total} papers · page {listing.page}/{listing.pages}"]
        for rank, item in enumerate(listing.items, start + 1):
            paper = item.paper
            title = discord.utils.escape_markdown(clip(paper.title, 150))
            link = f" · <{paper.url}>" if paper.url else ""
            lines.append(f"{rank}. **{title}** · `{paper.paper_id}`{link}")
            if item.note:
                lines.append(f"   📝 {discord.utils.escape_markdown(clip(item.note, 200))}")
        if listing.page < listing.pages:
            lines.append(f"Next: `/library list page:{listing.page + 1}`")
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(
        name="export", description="Your library as a file: BibTeX, RIS, CSL-JSON or Markdown"
    )
    @app_commands.choices(format=FORMAT_CHOICES)
    async def export(self, interaction: discord.Interaction, format: app_commands.Choice[str]) -> None:
        exported = await self.state.library.export(interaction.user.id, format.value)
        file = discord.File(io.BytesIO(exported.text.encode("utf-8")), filename=exported.filename)
        await self._reply(interaction, f"Your library, {exported.count} papers, as {format.name}.", file=file)

    @app_commands.command(name="note", description="Add or change your note on a saved paper")
    @app_commands.describe(paper="A paper in your library", text="Your note (empty clears it)")
    async def note(
        self,
        interaction: discord.Interaction,
        paper: app_commands.Range[str, 1, 200],
        text: app_commands.Range[str, 0, 1000] = "",
    ) -> None:
        paper_id = await self.state.library.note(interaction.user.id, paper, text)
        await self._reply(interaction, f"📝 Note {'saved' if text.strip() else 'cleared'} on `{paper_id}`.")

    @app_commands.command(name="remove", description="Remove a paper from your library")
    @app_commands.describe(paper="A paper in your library")
    async def remove(self, interaction: discord.Interaction, paper: app_commands.Range[str, 1, 200]) -> None:
        paper_id = await self.state.library.remove(interaction.user.id, paper)
        await self._reply(interaction, f"Removed `{paper_id}` from your library.")

    @note.autocomplete("paper")
    @remove.autocomplete("paper")
    async def _saved_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return await self._paper_choices(interaction, current)

    @app_commands.command(
        name="import", description="Import a .bib file: its papers found in the index are saved"
    )
    @app_commands.describe(file="A BibTeX file (.bib, UTF-8, at most 5 MB)")
    async def import_(self, interaction: discord.Interaction, file: discord.Attachment) -> None:
        limit = self.bot.settings.library.max_bib_bytes
        if file.size > limit:
            raise UserFacingError(
                f"The .bib file is {file.size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB."
            )
        await interaction.response.defer(thinking=True, ephemeral=True)
        report = await self.state.library.import_bib(interaction.user.id, await file.read())
        lines = [
            f"Read {report.entries} entries: saved {len(report.saved)} new papers"
            f", {report.already} already in your library, {len(report.unmatched)} not in paperbot's index."
        ]
        if report.over_limit:
            lines.append(
                f"{report.over_limit} more did not fit: a library holds at most "
                f"{self.bot.settings.library.max_saved} papers."
            )
        if report.unmatched:
            shown = ", ".join(f"`{clip(label, 60)}`" for label in report.unmatched[:10])
            more = f" and {len(report.unmatched) - 10} more" if len(report.unmatched) > 10 else ""
            lines.append(f"Not found: {shown}{more}.")
        if report.saved:
            lines.append("Your saved papers now steer your personal digest's picks (`/follow`).")
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="forget-me", description="Delete everything paperbot stores about you")
    @app_commands.describe(confirm="True to delete your library, notes, follows and feedback for good")
    async def forget_me(self, interaction: discord.Interaction, confirm: bool = False) -> None:
        if not confirm:
            await self._reply(
                interaction,
                "This deletes your library, notes, follows, digest settings and 👍/👎 feedback, for good. "
                "Run `/library forget-me confirm:True` to do it.",
            )
            return
        removed = await self.state.library.forget_me(interaction.user.id)
        await interaction.response.send_message(
            f"Done: {removed} records about you were deleted. paperbot keeps nothing else about you.",
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: commands.Bot) -> None:
    paperbot = as_paperbot(bot)
    bot.add_dynamic_items(*DYNAMIC_ITEMS)  # Save and 👍/👎 work after any restart
    if paperbot.services.state is None:
        log.info("discord.library_disabled", detail="no state database: /library is not registered")
        return
    await bot.add_cog(LibraryCog(paperbot))
