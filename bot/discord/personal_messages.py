"""`PersonalPoster` for Discord: personal digests by direct message.

The DM channel is opened with `POST /users/@me/channels` (discord.py's `create_dm`, cached by the
client). A user who does not accept DMs from the bot makes Discord answer 403 with code 50007; that
becomes `DMClosedError`, and the service keeps their follows and tells them at their next use.
"""

from __future__ import annotations

import discord

from bot.digest.delivery import PaperPost
from bot.discord.digest_messages import digest_paper_embed
from bot.discord.formatting import BRAND_COLOUR, EMBED_FOOTER, NO_MENTIONS, clip
from bot.discord.library_ui import personal_paper_view
from bot.library.digests import DMClosedError, PersonalHeader

CANNOT_DM = 50007
RECENT_MESSAGES = 50


def personal_header_embed(header: PersonalHeader) -> discord.Embed:
    embed = discord.Embed(
        title=clip(header.title, 256),
        description=(
            "Picked from what you follow. 👍/👎 under a paper tunes your next picks, 🔖 saves it to "
            "`/library`. Change what you follow with `/follow`, or stop these with "
            "`/follow settings delivery:off`."
        ),
        colour=BRAND_COLOUR,
    )
    embed.set_footer(text=clip(header.marker, EMBED_FOOTER))
    return embed


class DiscordDMPoster:
    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def _dm(self, user_id: int) -> discord.DMChannel:
        return await self.client.create_dm(discord.Object(id=user_id))

    async def _send(self, user_id: int, **kwargs: object) -> int:
        channel = await self._dm(user_id)
        try:
            message = await channel.send(allowed_mentions=NO_MENTIONS, **kwargs)  # type: ignore[call-overload]
        except discord.Forbidden as exc:
            if exc.code == CANNOT_DM:
                raise DMClosedError(str(exc)) from exc
            raise
        return message.id

    async def send_header(self, user_id: int, header: PersonalHeader) -> int:
        return await self._send(user_id, embed=personal_header_embed(header))

    async def send_paper(self, user_id: int, post: PaperPost) -> int:
        return await self._send(
            user_id, embed=digest_paper_embed(post), view=personal_paper_view(post.paper.paper_id)
        )

    async def find_recent(self, user_id: int, marker: str) -> list[tuple[int, str]]:
        channel = await self._dm(user_id)
        me = self.client.user
        found: list[tuple[int, str]] = []
        async for message in channel.history(limit=RECENT_MESSAGES):
            if me is None or message.author.id != me.id:
                continue
            for embed in message.embeds:
                footer = embed.footer.text or ""
                if footer.startswith(marker):
                    found.append((message.id, footer))
        return found
