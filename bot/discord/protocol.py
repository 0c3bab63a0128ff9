"""What cogs may use of the bot: a small protocol, so a cog depends on these few members and not on
the bot class (discord.py's `examples/advanced_startup.py` style)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import discord
    from discord import app_commands

    from bot.app.services import DigestServices, Services
    from bot.core.config import Settings


@runtime_checkable
class Paperbot(Protocol):
    services: Services
    settings: Settings
    tree: app_commands.CommandTree

    @property
    def user(self) -> discord.ClientUser | None: ...

    async def admit_llm_request(self, user_id: int, guild_id: int | None) -> None:
        """Before an LLM-backed request: the guild's token budget, room in the LLM's queue, then
        the cooldowns."""
        ...

    def check_rate(self, user_id: int, guild_id: int | None) -> None:
        """The cooldowns alone (requests that cost no LLM tokens)."""
        ...

    async def fetch_channel(
        self, channel_id: int, /
    ) -> discord.abc.GuildChannel | discord.abc.PrivateChannel | discord.Thread: ...


def as_paperbot(bot: object) -> Paperbot:
    """The bot an extension is loaded into, checked to offer what cogs use."""
    if not isinstance(bot, Paperbot):
        raise TypeError(f"paperbot's cogs need a bot with services and settings, not {type(bot).__name__}")
    return bot


def state_services(bot: Paperbot, command: str) -> DigestServices:
    """What `/command` needs of the state database; a bot built without one cannot load that cog."""
    if bot.services.state is None:
        raise RuntimeError(f"/{command} needs the state database (services.state)")
    return bot.services.state
