"""/follow: what reaches you in your personal DM digest — authors, topics, arXiv categories, search
queries — and how (`settings delivery:dm|off cadence:daily|weekly`). Replies are ephemeral.

A translator only: the rules live in `bot.library.service.FollowService`, the digest in
`bot.library.digests`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.discord.formatting import NO_MENTIONS, clip, split_message
from bot.discord.library_ui import with_notice
from bot.discord.protocol import Paperbot, as_paperbot, state_services

if TYPE_CHECKING:
    pass

log = structlog.get_logger(__name__)

KIND_CHOICES = [
    app_commands.Choice(name="author", value="author"),
    app_commands.Choice(name="topic (semantic match)", value="topic"),
    app_commands.Choice(name="arXiv category", value="category"),
    app_commands.Choice(name="query (words in title or abstract)", value="query"),
]
DELIVERY_CHOICES = [
    app_commands.Choice(name="direct message", value="dm"),
    app_commands.Choice(name="off", value="off"),
]
CADENCE_CHOICES = [
    app_commands.Choice(name="daily", value="daily"),
    app_commands.Choice(name="weekly", value="weekly"),
]


class FollowCog(
    commands.GroupCog, name="Follow", group_name="follow", group_description="Your personal paper digest"
):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot
        self.state = state_services(bot, "follow")
        super().__init__()

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        text = await with_notice(self.state, interaction.user.id, text)
        for part in split_message(text) or ["…"]:
            if interaction.response.is_done():
                await interaction.followup.send(part, ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(part, ephemeral=True, allowed_mentions=NO_MENTIONS)

    def _delivery_text(self, delivery: str, cadence: str) -> str:
        if delivery == "off":
            return "Your digest is **off**; turn it on with `/follow settings delivery:dm`."
        library = self.bot.settings.library
        when = f"daily at {library.digest_time} UTC" if cadence == "daily" else (
            f"weekly on {library.weekly_day} at {library.digest_time} UTC"
        )  # fmt: skip
        return f"New papers matching your follows reach you by **direct message**, {when}."

    @app_commands.command(name="add", description="Follow an author, topic, arXiv category or query")
    @app_commands.describe(
        kind="What to follow", value="e.g. Tri Dao · state space models · cs.CL · mixture of experts"
    )
    @app_commands.choices(kind=KIND_CHOICES)
    async def add(
        self,
        interaction: discord.Interaction,
        kind: app_commands.Choice[str],
        value: app_commands.Range[str, 1, 100],
    ) -> None:
        follow, added = await self.state.follows.add(interaction.user.id, kind.value, value)
        _, settings = await self.state.follows.list(interaction.user.id)
        name = discord.utils.escape_markdown(follow.label())
        head = f"Now following {name}." if added else f"You already follow {name}."
        await self._reply(interaction, f"{head} {self._delivery_text(settings.delivery, settings.cadence)}")

    @app_commands.command(name="list", description="What you follow, and how your digest reaches you")
    async def list_(self, interaction: discord.Interaction) -> None:
        follows, settings = await self.state.follows.list(interaction.user.id)
        if not follows:
            await self._reply(interaction, "You follow nothing yet: `/follow add kind:author value:Tri Dao`.")
            return
        lines = [f"**You follow** ({len(follows)}/{self.bot.settings.library.max_follows}):"]
        lines += [f"{n}. {discord.utils.escape_markdown(f.label())}" for n, f in enumerate(follows, 1)]
        lines.append(self._delivery_text(settings.delivery, settings.cadence))
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="remove", description="Stop following something")
    @app_commands.describe(follow="Its number in /follow list, or its value")
    async def remove(self, interaction: discord.Interaction, follow: app_commands.Range[str, 1, 100]) -> None:
        removed = await self.state.follows.remove(interaction.user.id, follow)
        await self._reply(interaction, f"Stopped following {discord.utils.escape_markdown(removed.label())}.")

    @remove.autocomplete("follow")
    async def _follow_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        follows, _ = await self.state.follows.list(interaction.user.id)
        typed = current.lower()
        return [
            app_commands.Choice(name=clip(f"{n}. {f.label()}", 100), value=str(n))
            for n, f in enumerate(follows, 1)
            if typed in f.value.lower() or typed == str(n)
        ][:25]

    @app_commands.command(name="settings", description="How your personal digest reaches you")
    @app_commands.describe(delivery="By direct message, or off", cadence="Every day or once a week")
    @app_commands.choices(delivery=DELIVERY_CHOICES, cadence=CADENCE_CHOICES)
    async def settings(
        self,
        interaction: discord.Interaction,
        delivery: app_commands.Choice[str] | None = None,
        cadence: app_commands.Choice[str] | None = None,
    ) -> None:
        settings = await self.state.follows.configure(
            interaction.user.id,
            delivery=delivery.value if delivery else None,
            cadence=cadence.value if cadence else None,
        )
        await self._reply(interaction, self._delivery_text(settings.delivery, settings.cadence))


async def setup(bot: commands.Bot) -> None:
    paperbot = as_paperbot(bot)
    if paperbot.services.state is None:
        log.info("discord.follow_disabled", detail="no state database: /follow is not registered")
        return
    await bot.add_cog(FollowCog(paperbot))
