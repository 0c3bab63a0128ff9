"""Cogs are thin: parse the interaction, call a service, format the reply."""

from __future__ import annotations

from bot.discord.cogs.ask import AskCog
from bot.discord.cogs.chat import ChatCog
from bot.discord.cogs.digest import DigestCog
from bot.discord.cogs.help import HelpCog
from bot.discord.cogs.paper import PaperCog
from bot.discord.cogs.search import PaperButton, SearchCog

COGS = (SearchCog, AskCog, PaperCog, HelpCog, ChatCog, DigestCog)
DYNAMIC_ITEMS = (PaperButton,)

__all__ = ["COGS", "DYNAMIC_ITEMS", "DigestCog"]
