"""/digest: subscribe a channel to scheduled digests, show and change them, preview, run now, set the
server's defaults; and the 👍/👎 reactions on digest posts that steer the next days' picks.

A translator only: it reads the interaction, calls `SubscriptionService` (`bot.digest.subscriptions`)
and formats the reply; Discord's own parts (permissions, emoji, timestamps, embeds) stay here.

Every subcommand needs Manage Server. Discord hides the commands from other members
(`default_permissions`), and each one checks the permission again here, because a server's admins
can override command visibility in the integration settings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import discord
import structlog
from discord import app_commands
from discord.ext import commands

from bot.core.config import DigestSettings
from bot.core.timing import timezone_suggestions
from bot.digest.categories import category_suggestions
from bot.digest.records import CADENCES, LAYOUTS, GuildSettings, Subscription
from bot.digest.status import describe_run
from bot.digest.subscriptions import SubscriptionService
from bot.discord.digest_messages import FEEDBACK_EMOJI, digest_paper_embed, header_embed
from bot.discord.errors import UserFacingError
from bot.discord.formatting import NO_MENTIONS, clip, fit_embeds, split_message
from bot.discord.protocol import Paperbot, as_paperbot, state_services

log = structlog.get_logger(__name__)

LAYOUT_CHOICES = [app_commands.Choice(name=layout.replace("_", " "), value=layout) for layout in LAYOUTS]
CADENCE_CHOICES = [app_commands.Choice(name=cadence, value=cadence) for cadence in CADENCES]
WEEKDAY_CHOICES = [
    app_commands.Choice(name=name, value=name[:3].lower())
    for name in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
]
admin_only = app_commands.checks.has_permissions(manage_guild=True)


def next_run_text(when: dt.datetime | None, zone: str) -> str:
    if when is None:
        return "not scheduled (paused)"
    local = when.astimezone(ZoneInfo(zone))
    return f"<t:{int(when.timestamp())}:F> ({local:%a %d %b %H:%M} {zone})"


def settings_text(sub: Subscription) -> str:
    lines = [
        f"**Schedule:** {sub.schedule_text()}",
        f"**Sources:** {', '.join(sub.source_names)}",
        f"**Topics:** {', '.join(sub.topics) or '—'}",
        f"**Keywords:** {', '.join(sub.keywords) or '—'}",
        f"**Excluded keywords:** {', '.join(sub.negative_keywords) or '—'}",
        f"**Min upvotes:** {sub.min_upvotes} · **max papers:** {sub.max_papers}",
        f"**Layout:** {sub.layout.replace('_', ' ')}",
        f"**Cadence:** {sub.cadence}"
        + (" (the week's papers, ranked, with a paper-of-the-week poll)" if sub.cadence == "weekly" else ""),
        f"**Announce empty days:** {'yes' if sub.announce_empty else 'no'}",
        f"**Paused:** {'yes' if sub.paused else 'no'}",
    ]
    return "\n".join(lines)


def timezone_choices(typed: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=name, value=name) for name in timezone_suggestions(typed, 25)]


def defaults_text(guild: GuildSettings, digest: DigestSettings) -> str:
    time = (
        f"{guild.default_post_time:%H:%M}"
        if guild.default_post_time
        else f"{digest.default_time} (bot default)"
    )
    zone = guild.default_timezone or f"{digest.default_timezone} (bot default)"
    return (
        f"**Time:** {time} · **Time zone:** {zone}\n"
        "New digests use these when `/digest subscribe` is given no `time` or `timezone`; "
        "existing digests keep their own."
    )


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class DigestCog(
    commands.GroupCog, name="Digest", group_name="digest", group_description="Scheduled paper digests"
):
    def __init__(self, bot: Paperbot) -> None:
        self.bot = bot
        self.subscriptions: SubscriptionService = state_services(bot, "digest").subscriptions
        super().__init__()

    # -------------------------------------------------------------- helpers

    @staticmethod
    def _channel_id(interaction: discord.Interaction) -> int:
        if interaction.channel_id is None or interaction.guild_id is None:
            raise UserFacingError("Digests are set up in a server's text channel.")
        return interaction.channel_id

    @staticmethod
    def _guild_id(interaction: discord.Interaction) -> int:
        if interaction.guild_id is None:
            raise UserFacingError("Digests are set up in a server's text channel.")
        return interaction.guild_id

    @staticmethod
    def _missing_permissions(interaction: discord.Interaction, sub: Subscription) -> list[str]:
        perms = interaction.app_permissions
        needed = {"send_messages": perms.send_messages, "embed_links": perms.embed_links,
                  "read_message_history": perms.read_message_history}  # fmt: skip
        if sub.layout == "thread_per_paper":
            needed["create_public_threads"] = perms.create_public_threads
        return [name.replace("_", " ") for name, ok in needed.items() if not ok]

    async def _reply(self, interaction: discord.Interaction, text: str, *, ephemeral: bool = True) -> None:
        parts = split_message(text) or ["…"]
        if interaction.response.is_done():
            for part in parts:
                await interaction.followup.send(part, ephemeral=ephemeral, allowed_mentions=NO_MENTIONS)
            return
        await interaction.response.send_message(parts[0], ephemeral=ephemeral, allowed_mentions=NO_MENTIONS)
        for part in parts[1:]:
            await interaction.followup.send(part, ephemeral=ephemeral, allowed_mentions=NO_MENTIONS)

    # -------------------------------------------------------------- subscribe / settings

    @app_commands.command(name="subscribe", description="Post a daily paper digest in this channel")
    @app_commands.describe(
        topics="What the channel cares about, comma separated (e.g. retrieval, LLM agents)",
        hf_daily="Include Hugging Face daily papers (default yes)",
        arxiv="arXiv categories, comma separated (e.g. cs.CL, cs.IR)",
        time="Time of day, HH:MM (24-hour)",
        timezone="IANA time zone, e.g. Europe/Paris",
        weekdays="Days: mon-fri, daily, or e.g. mon,wed,fri",
        layout="A thread per paper, or one message per paper",
        keywords="Papers mentioning these rank higher, comma separated",
        negative_keywords="Papers mentioning these are left out, comma separated",
        min_upvotes="Leave out Hugging Face papers with fewer upvotes",
        max_papers="At most this many papers per digest",
        announce_empty="Post one line saying why on days with nothing to post",
        cadence="daily: the day's papers; weekly: a roundup of the week with a paper-of-the-week poll",
        weekday="The day of a weekly roundup",
    )
    @app_commands.choices(layout=LAYOUT_CHOICES, cadence=CADENCE_CHOICES, weekday=WEEKDAY_CHOICES)
    @admin_only
    async def subscribe(
        self,
        interaction: discord.Interaction,
        topics: app_commands.Range[str, 1, 1000] | None = None,
        hf_daily: bool | None = None,
        arxiv: app_commands.Range[str, 1, 300] | None = None,
        time: app_commands.Range[str, 3, 5] | None = None,
        timezone: app_commands.Range[str, 1, 64] | None = None,
        weekdays: app_commands.Range[str, 1, 60] | None = None,
        layout: str | None = None,
        keywords: app_commands.Range[str, 1, 1000] | None = None,
        negative_keywords: app_commands.Range[str, 1, 1000] | None = None,
        min_upvotes: app_commands.Range[int, 0, 100_000] | None = None,
        max_papers: app_commands.Range[int, 1, 50] | None = None,
        announce_empty: bool | None = None,
        cadence: str | None = None,
        weekday: str | None = None,
    ) -> None:
        channel_id = self._channel_id(interaction)
        if isinstance(interaction.channel, discord.Thread):
            raise UserFacingError("Subscribe a text channel, not a thread.")
        options: dict[str, Any] = {
            "topics": topics, "hf_daily": hf_daily, "arxiv_categories": arxiv, "post_time": time,
            "timezone": timezone, "layout": layout, "keywords": keywords,
            "negative_keywords": negative_keywords, "min_upvotes": min_upvotes, "max_papers": max_papers,
            "announce_empty": announce_empty, "cadence": cadence, "weekdays": weekday or weekdays,
        }  # fmt: skip
        result = await self.subscriptions.subscribe(
            guild_id=self._guild_id(interaction), channel_id=channel_id, options=options,
            user_id=interaction.user.id,
        )  # fmt: skip
        sub = result.subscription
        verb = "Updated" if result.updated else "Subscribed"
        text = (
            f"{verb} this channel's digest.\n{settings_text(sub)}\n"
            f"**Next digest:** {next_run_text(result.next_run, sub.timezone)}"
        )
        missing = self._missing_permissions(interaction, sub)
        if missing:
            text += f"\n⚠️ I am missing these permissions here: {', '.join(missing)}."
        await self._reply(interaction, text)

    @subscribe.autocomplete("timezone")
    async def timezone_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return timezone_choices(current)

    @subscribe.autocomplete("arxiv")
    async def arxiv_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [
            app_commands.Choice(name=label, value=value) for label, value in category_suggestions(current, 25)
        ]

    @app_commands.command(name="unsubscribe", description="Stop this channel's digest")
    @admin_only
    async def unsubscribe(self, interaction: discord.Interaction) -> None:
        await self.subscriptions.unsubscribe(self._channel_id(interaction))
        await self._reply(interaction, "This channel's digest is stopped. Past posts stay where they are.")

    @app_commands.command(name="settings", description="Show this channel's digest settings")
    @admin_only
    async def settings(self, interaction: discord.Interaction) -> None:
        sub = await self.subscriptions.get(self._channel_id(interaction))
        text = (
            f"{settings_text(sub)}\nChange them with `/digest subscribe` (only the options you give change)."
        )
        await self._reply(interaction, text)

    @app_commands.command(name="pause", description="Pause this channel's digest")
    @admin_only
    async def pause(self, interaction: discord.Interaction) -> None:
        await self._set_paused(interaction, True)

    @app_commands.command(name="resume", description="Resume this channel's paused digest")
    @admin_only
    async def resume(self, interaction: discord.Interaction) -> None:
        await self._set_paused(interaction, False)

    async def _set_paused(self, interaction: discord.Interaction, paused: bool) -> None:
        scheduled = await self.subscriptions.set_paused(self._channel_id(interaction), paused)
        next_run = next_run_text(scheduled.next_run, scheduled.subscription.timezone)
        word = "paused" if paused else f"resumed; next digest {next_run}"
        await self._reply(interaction, f"This channel's digest is {word}.")

    # -------------------------------------------------------------- status / preview / now

    @app_commands.command(name="status", description="Last digest runs, their counts and errors, next run")
    @admin_only
    async def status(self, interaction: discord.Interaction) -> None:
        status = await self.subscriptions.status(self._channel_id(interaction))
        sub = status.subscription
        lines = [f"**Digest:** {sub.schedule_text()}{' (paused)' if sub.paused else ''}"]
        lines.append(f"**Next run:** {next_run_text(status.next_run, sub.timezone)}")
        lines.append("**Last runs:**" if status.runs else "**Last runs:** none yet")
        lines += [f"- {clip(describe_run(run), 400)}" for run in status.runs]
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="preview", description="Show (only to you) what would be posted now, and why")
    @admin_only
    async def preview(self, interaction: discord.Interaction) -> None:
        sub = await self.subscriptions.get(self._channel_id(interaction))
        await interaction.response.defer(ephemeral=True, thinking=True)
        preview = await self.subscriptions.preview(sub)
        embeds = [header_embed(preview.header), *(digest_paper_embed(post) for post in preview.posts)]
        notes = "Preview — nothing was posted."
        if preview.errors:
            notes += "\nSource problems: " + clip("; ".join(preview.errors), 800)
        for number, group in enumerate(fit_embeds(embeds)):
            await interaction.followup.send(
                notes if number == 0 else "", embeds=group, ephemeral=True, allowed_mentions=NO_MENTIONS
            )

    @app_commands.command(name="now", description="Post today's digest in this channel now")
    @admin_only
    async def now(self, interaction: discord.Interaction) -> None:
        sub = await self.subscriptions.get(self._channel_id(interaction))
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self.subscriptions.run_now(sub)
        counts = outcome.counts
        text = {
            "posted": f"Posted {counts.posted} papers.",
            "partial": f"Posted {counts.posted} papers; {counts.failed} could not be posted.",
            "already_posted": "Today's digest was already posted here; nothing was posted again.",
            "empty": f"Nothing to post today: {outcome.empty_message or 'no papers matched.'}",
            "failed": "The digest failed.",
        }.get(outcome.status, f"Digest {outcome.status}.")
        if counts.recovered:
            text += f" ({counts.recovered} found already posted.)"
        if outcome.errors:
            text += "\nErrors: " + clip("; ".join(outcome.errors), 1200)
        await self._reply(interaction, text)

    # -------------------------------------------------------------- server defaults

    @app_commands.command(
        name="defaults", description="Show or set the time and time zone new digests start from"
    )
    @app_commands.describe(
        time="Time of day for new digests, HH:MM (24-hour)",
        timezone="IANA time zone for new digests, e.g. Europe/Paris",
    )
    @admin_only
    async def defaults(
        self,
        interaction: discord.Interaction,
        time: app_commands.Range[str, 3, 5] | None = None,
        timezone: app_commands.Range[str, 1, 64] | None = None,
    ) -> None:
        guild_id = self._guild_id(interaction)
        if time is None and timezone is None:
            defaults = await self.subscriptions.guild_defaults(guild_id)
            heading = "This server's defaults for new digests:"
        else:
            defaults = await self.subscriptions.set_guild_defaults(
                guild_id, timezone=timezone, post_time=time
            )
            heading = "Updated this server's defaults for new digests:"
        await self._reply(interaction, f"{heading}\n{defaults_text(defaults, self.bot.settings.digest)}")

    @defaults.autocomplete("timezone")
    async def defaults_timezone_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return timezone_choices(current)

    # -------------------------------------------------------------- feedback

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        await self._feedback(payload, added=True)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        await self._feedback(payload, added=False)

    async def _feedback(self, payload: discord.RawReactionActionEvent, *, added: bool) -> None:
        value = FEEDBACK_EMOJI.get(str(payload.emoji))
        me = self.bot.user
        if value is None or payload.guild_id is None or (me and payload.user_id == me.id):
            return
        await self.subscriptions.record_reaction(
            message_id=payload.message_id, guild_id=payload.guild_id, user_id=payload.user_id,
            value=value, added=added,
        )  # fmt: skip


async def setup(bot: commands.Bot) -> None:
    paperbot = as_paperbot(bot)
    if paperbot.services.state is None:
        log.info("discord.digests_disabled", detail="no state database: /digest is not registered")
        return
    await bot.add_cog(DigestCog(paperbot))
