"""/digest: subscribe a channel to scheduled digests, show and change them, preview, run now; and the
👍/👎 reactions on digest posts that steer the next days' picks.

Every subcommand needs Manage Server. Discord hides the commands from other members
(`default_permissions`), and each one checks the permission again here, because a server's admins
can override command visibility in the integration settings.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import discord
import structlog
from discord import app_commands
from discord.ext import commands
from pydantic import ValidationError

from bot.core.timing import timezone_suggestions
from bot.db.repository import Repository
from bot.digest import cron as digest_schedule
from bot.digest.categories import category_suggestions
from bot.digest.records import LAYOUTS, Subscription
from bot.digest.service import DigestService
from bot.digest.status import describe_run, digest_status, local_today, preview_digest
from bot.digest.subscriptions import SubscriptionLimitError, new_subscription, update_subscription
from bot.discord.digest_messages import FEEDBACK_EMOJI, digest_paper_embed, header_embed
from bot.discord.errors import UserFacingError
from bot.discord.formatting import NO_MENTIONS, clip, fit_embeds, split_message

if TYPE_CHECKING:
    from bot.discord.bot import PaperBotBase

log = structlog.get_logger(__name__)

LAYOUT_CHOICES = [app_commands.Choice(name=layout.replace("_", " "), value=layout) for layout in LAYOUTS]
admin_only = app_commands.checks.has_permissions(manage_guild=True)


def validation_text(error: ValidationError) -> str:
    """Pydantic's errors as one sentence for the admin who typed the options."""
    parts = []
    for item in error.errors():
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        where = ".".join(str(p) for p in item.get("loc", ()))
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


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
        f"**Announce empty days:** {'yes' if sub.announce_empty else 'no'}",
        f"**Paused:** {'yes' if sub.paused else 'no'}",
    ]
    return "\n".join(lines)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class DigestCog(
    commands.GroupCog, name="Digest", group_name="digest", group_description="Scheduled paper digests"
):
    def __init__(self, bot: PaperBotBase) -> None:
        self.bot = bot
        super().__init__()

    # -------------------------------------------------------------- helpers

    @property
    def repo(self) -> Repository:
        if self.bot.services.repo is None:
            raise UserFacingError("Digests are not enabled on this bot (no state database).")
        return self.bot.services.repo

    @property
    def digests(self) -> DigestService:
        if self.bot.services.digests is None:
            raise UserFacingError("Digests are not enabled on this bot (no state database).")
        return self.bot.services.digests

    async def _subscription(self, interaction: discord.Interaction) -> Subscription:
        sub = await self.repo.get_channel_subscription(self._channel_id(interaction))
        if sub is None:
            raise UserFacingError("This channel has no digest; set one up with `/digest subscribe`.")
        return sub

    @staticmethod
    def _channel_id(interaction: discord.Interaction) -> int:
        if interaction.channel_id is None or interaction.guild_id is None:
            raise UserFacingError("Digests are set up in a server's text channel.")
        return interaction.channel_id

    async def _next_run(self, sub: Subscription) -> dt.datetime | None:
        scheduler = self.bot.digest_scheduler
        if scheduler is not None:
            return await scheduler.schedule(sub)
        return None if sub.paused else digest_schedule.next_run_time(sub, dt.datetime.now(dt.UTC))

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
    )
    @app_commands.choices(layout=LAYOUT_CHOICES)
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
    ) -> None:
        channel_id = self._channel_id(interaction)
        if isinstance(interaction.channel, discord.Thread):
            raise UserFacingError("Subscribe a text channel, not a thread.")
        options: dict[str, Any] = {
            "topics": topics, "hf_daily": hf_daily, "arxiv_categories": arxiv, "post_time": time,
            "timezone": timezone, "weekdays": weekdays, "layout": layout, "keywords": keywords,
            "negative_keywords": negative_keywords, "min_upvotes": min_upvotes, "max_papers": max_papers,
            "announce_empty": announce_empty,
        }  # fmt: skip
        assert interaction.guild_id is not None
        current = await self.repo.get_channel_subscription(channel_id)
        digest_settings = self.bot.settings.digest
        try:
            if current is None:
                guild = await self.repo.get_guild_settings(interaction.guild_id)
                settings = new_subscription(
                    guild_id=interaction.guild_id, channel_id=channel_id, options=options,
                    digest=digest_settings, guild=guild, created_by=interaction.user.id,
                )  # fmt: skip
            else:
                settings = update_subscription(current.settings(), options, digest_settings)
        except ValidationError as exc:
            raise UserFacingError(validation_text(exc)) from None
        except SubscriptionLimitError as exc:
            raise UserFacingError(str(exc)) from None
        sub = await self.repo.save_subscription(settings)
        next_run = await self._next_run(sub)
        log.info("digest.subscribed", subscription_id=sub.id, updated=current is not None)
        verb = "Updated" if current is not None else "Subscribed"
        text = (
            f"{verb} this channel's digest.\n{settings_text(sub)}\n"
            f"**Next digest:** {next_run_text(next_run, sub.timezone)}"
        )
        missing = self._missing_permissions(interaction, sub)
        if missing:
            text += f"\n⚠️ I am missing these permissions here: {', '.join(missing)}."
        await self._reply(interaction, text)

    @subscribe.autocomplete("timezone")
    async def timezone_autocomplete(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=name, value=name) for name in timezone_suggestions(current, 25)]

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
        removed = await self.repo.delete_subscription(self._channel_id(interaction))
        if removed is None:
            raise UserFacingError("This channel has no digest.")
        if self.bot.digest_scheduler is not None:
            self.bot.digest_scheduler.unschedule(removed.id)
        log.info("digest.unsubscribed", subscription_id=removed.id)
        await self._reply(interaction, "This channel's digest is stopped. Past posts stay where they are.")

    @app_commands.command(name="settings", description="Show this channel's digest settings")
    @admin_only
    async def settings(self, interaction: discord.Interaction) -> None:
        sub = await self._subscription(interaction)
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
        sub = await self.repo.set_paused(self._channel_id(interaction), paused)
        if sub is None:
            raise UserFacingError("This channel has no digest; set one up with `/digest subscribe`.")
        next_run = await self._next_run(sub)
        word = "paused" if paused else f"resumed; next digest {next_run_text(next_run, sub.timezone)}"
        await self._reply(interaction, f"This channel's digest is {word}.")

    # -------------------------------------------------------------- status / preview / now

    @app_commands.command(name="status", description="Last digest runs, their counts and errors, next run")
    @admin_only
    async def status(self, interaction: discord.Interaction) -> None:
        status = await digest_status(
            self.repo, self._channel_id(interaction), scheduler=self.bot.digest_scheduler
        )
        if status is None:
            raise UserFacingError("This channel has no digest; set one up with `/digest subscribe`.")
        sub = status.subscription
        lines = [f"**Digest:** {sub.schedule_text()}{' (paused)' if sub.paused else ''}"]
        lines.append(f"**Next run:** {next_run_text(status.next_run, sub.timezone)}")
        lines.append("**Last runs:**" if status.runs else "**Last runs:** none yet")
        lines += [f"- {clip(describe_run(run), 400)}" for run in status.runs]
        await self._reply(interaction, "\n".join(lines))

    @app_commands.command(name="preview", description="Show (only to you) what would be posted now, and why")
    @admin_only
    async def preview(self, interaction: discord.Interaction) -> None:
        sub = await self._subscription(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        preview = await preview_digest(self.digests, sub)
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
        sub = await self._subscription(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        today = local_today(sub)
        scheduler = self.bot.digest_scheduler
        if scheduler is not None:
            outcome = await scheduler.run_now(sub, today)
        else:
            outcome = await self.digests.run(sub, today, trigger="manual")
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
        repo = self.bot.services.repo
        if value is None or repo is None or payload.guild_id is None or (me and payload.user_id == me.id):
            return
        post = await repo.find_post(payload.message_id)
        if post is None or post.kind != "paper":
            return
        if added:
            await repo.record_feedback(
                guild_id=payload.guild_id, channel_id=post.channel_id, message_id=payload.message_id,
                paper_id=post.item, user_id=payload.user_id, value=value,
            )  # fmt: skip
        else:
            await repo.remove_feedback(message_id=payload.message_id, user_id=payload.user_id, value=value)
        log.info("digest.feedback", paper_id=post.item, value=value, added=added, channel_id=post.channel_id)
